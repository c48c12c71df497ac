# -*- test-case-name: tests.test_acl -*-
"""
The access control list: who may call which command.

Configured in the C{[acl]} section; without it every caller may call every
command.  Each key is a principal, each value a comma-separated list::

    [acl]
    # Principals that may call everything.
    admins = group:admins, user:root
    # What everybody (authenticated or not) may call.
    * = ping, getMethods, getNodes, getCommandSchema
    # What a group or a user may call, as fnmatch patterns.
    group:ops = hello*, greet
    user:alice = whoami

A caller may call a command if one of the patterns of C{*}, of C{user:NAME}
or of any C{group:NAME} they belong to matches the command's name, or if
they are listed in C{admins}.  The check happens on the node that runs the
command, for AMQP and HTTP callers alike.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

import attrs

from clacks.agent.config import ConfigError


@attrs.frozen
class ACLPolicy:
    """
    @ivar enabled: whether an C{[acl]} section was configured.
    @ivar admins: principals (C{user:X}, C{group:Y}) that bypass the rules.
    @ivar rules: principal (C{*}, C{user:X}, C{group:Y}) to patterns.
    """

    enabled: bool = False
    admins: frozenset[str] = frozenset()
    rules: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)

    def principals(self, user: str | None, groups: Iterable[str]) -> set[str]:
        found = {"*"}
        if user:
            found.add(f"user:{user}")
        found.update(f"group:{g}" for g in groups)
        return found

    def allows(self, user: str | None, groups: Iterable[str], command: str) -> bool:
        if not self.enabled:
            return True
        principals = self.principals(user, groups)
        if principals & self.admins:
            return True
        return any(
            fnmatch.fnmatchcase(command, pattern)
            for principal in principals
            for pattern in self.rules.get(principal, ())
        )


def _principal(value: str, key: str) -> str:
    value = value.strip()
    kind, _, name = value.partition(":")
    if value != "*" and (kind not in ("user", "group") or not name):
        raise ConfigError(
            f"{value!r}: expected a principal: *, user:NAME or group:NAME", section="acl", key=key
        )
    return value


def parsePolicy(section: Mapping[str, str] | None) -> ACLPolicy:
    """
    @param section: the raw C{[acl]} section, or C{None} if absent.
    @raise ConfigError: naming the key whose value is wrong.
    """
    if section is None:
        return ACLPolicy()
    admins: set[str] = set()
    rules: dict[str, tuple[str, ...]] = {}
    for key, value in section.items():
        items = [v.strip() for v in value.split(",") if v.strip()]
        if key == "admins":
            admins.update(_principal(v, key) for v in items)
            continue
        principal = _principal(key, key)
        rules[principal] = tuple(items)
    return ACLPolicy(enabled=True, admins=frozenset(admins), rules=rules)


__all__ = ["ACLPolicy", "parsePolicy"]
