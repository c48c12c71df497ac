# -*- test-case-name: tests.test_acl -*-
"""
The agent's security: its users file and its ACL, in one object the
command registry and the HTTP handler share.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from clacks.agent.acl import ACLPolicy, parsePolicy
from clacks.agent.config import AgentConfig
from clacks.agent.users import UserStore


class Security:
    """
    @ivar users: the L{UserStore}, or C{None} without C{[core] users}.
    @ivar policy: the L{ACLPolicy} of C{[acl]}.
    """

    log = Logger()

    def __init__(self, config: AgentConfig, clock: Any, runBlocking: Any) -> None:
        self.users = UserStore(config.core.users, clock, runBlocking) if config.core.users else None
        acl = config.sections.get("acl")
        self.policy: ACLPolicy = parsePolicy(dict(acl) if acl is not None else None)
        self.node = config.core.id

    def allows(self, user: str | None, command: str) -> bool:
        """
        Check the ACL; a denial is logged with user, command and node.
        """
        if not self.policy.enabled:
            # No [acl]: everyone may call everything, whatever their groups
            # (no need to look them up, on every call).
            return True
        groups = self.users.groupsOf(user) if self.users is not None else frozenset()
        allowed = self.policy.allows(user, groups, command)
        if not allowed:
            self.log.warn(
                "Denied: user {user} may not call {command} on node {node}",
                user=user or "(anonymous)",
                command=command,
                node=self.node,
            )
        return allowed


__all__ = ["Security"]
