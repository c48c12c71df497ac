"""
Agents with a users file, an ACL and the example object class, for the
tests of HTTP JSON-RPC, the ACL and remote objects on the real broker.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Mapping, Sequence
from importlib.metadata import EntryPoint
from typing import Any

import attrs
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from clacks.agent.config import AgentConfig
from clacks.agent.service import AgentService
from clacks.agent.users import addUser
from clacks.common.components.objects import ENTRY_POINT_GROUP
from tests.util.agents import DomainFixture, waitUntil
from tests.util.example import HelloPlugin

#: The example plugin, as C{DomainFixture.startAgent} takes plugins.
HELLO = [("hello", HelloPlugin)]

#: The example object class C{HelloGreeting} as an C{agent.object} entry
#: point (L{tests.util.example} puts the example package on the path).
GREETING = EntryPoint("HelloGreeting", "clacks_hello.objects:HelloGreeting", ENTRY_POINT_GROUP)

#: bcrypt rounds of the test users: the minimum, so logins are fast.
ROUNDS = 4


def usersFile(testCase: TestCase, users: Mapping[str, tuple[str, Iterable[str]]]) -> str:
    """
    Write a users file in a new directory of C{testCase}.

    @param users: user name to C{(password, groups)}.
    @return: the file's absolute path.
    """
    directory = os.path.abspath(testCase.mktemp())
    os.makedirs(directory)
    path = os.path.join(directory, "users")
    for name, (password, groups) in users.items():
        addUser(path, name, password, list(groups), rounds=ROUNDS)
    return path


def secured(
    config: AgentConfig,
    users: str | None = None,
    acl: Mapping[str, str] | None = None,
    **agent: Any,
) -> AgentConfig:
    """
    @param users: the users file (C{[core] users}).
    @param acl: the raw C{[acl]} section; none if C{None}.
    @param agent: C{[agent]} settings to change (C{objectTimeout=...}).
    @return: C{config} with these.
    """
    sections = dict(config.sections)
    if acl is not None:
        sections["acl"] = dict(acl)
    return attrs.evolve(
        config,
        core=attrs.evolve(config.core, users=users),
        agent=attrs.evolve(config.agent, **agent),
        sections=sections,
    )


def waitForDomain(
    domain: DomainFixture, agents: Sequence[AgentService], command: str = "greet"
) -> Deferred[float]:
    """
    Wait until each of C{agents} knows every other one as providing
    C{command} (so calls can be forwarded to it by name).
    """
    nodes = [agent.context.config.core.id for agent in agents]

    def known() -> bool:
        for agent in agents:
            directory = domain.directory(agent)
            for node in nodes:
                if node == agent.context.config.core.id:
                    continue
                info = directory.get(node)
                if info is None or command not in info.commands:
                    return False
        return True

    d: Deferred[float] = waitUntil(known, 15, f"the agents to know {', '.join(nodes)}")
    return d


@inlineCallbacks
def startSecuredAgent(
    domain: DomainFixture,
    node: str,
    users: str | None,
    acl: Mapping[str, str] | None = None,
    objects: bool = True,
    **agent: Any,
) -> Generator[Deferred[Any], Any, AgentService]:
    """
    Start agent C{node} with the example plugin, C{users}, C{acl} and
    (unless C{objects} is false) the C{HelloGreeting} object class.
    """
    config = secured(domain.config(node), users, acl, **agent)
    started: AgentService = yield domain.startAgent(
        node, plugins=HELLO, config=config, objects=[GREETING] if objects else []
    )
    return started


__all__ = [
    "GREETING",
    "HELLO",
    "ROUNDS",
    "secured",
    "startSecuredAgent",
    "usersFile",
    "waitForDomain",
]
