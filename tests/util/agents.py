"""
Whole agents for integration tests: several in one reactor, each in its own
test domain on the real broker, all stopped and cleaned up after the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

import tests.util.nodropins as nodropins
from clacks.agent.config import (
    AgentConfig,
    AgentSettings,
    AMQPConfig,
    CoreConfig,
    HTTPConfig,
    parseBrokerURL,
)
from clacks.agent.service import AgentService, makeAgent
from clacks.handlers.amqp.topology import DomainTopology
from tests.util.broker import BROKER_URL, NAME_PREFIX, BrokerFixture, uniqueName


def builtinEntryPoints() -> list[Any]:
    """
    @return: the project's own C{agent.module} entry points, as installed:
        the plugins every agent runs (AMQP, node directory, HTTP).
    """
    return [ep for ep in entry_points(group="agent.module") if ep.value.startswith("clacks.")]


@inlineCallbacks
def waitUntil(
    predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.02
) -> Generator[Deferred[Any], Any, float]:
    """
    Poll C{predicate} until it holds.

    @return: the seconds it took.
    @raise AssertionError: naming C{what} if C{timeout} passes first.
    """
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        yield deferLater(reactor, step, lambda: None)
    return time.monotonic() - started


class DomainFixture:
    """
    A test domain (random name) on the test broker.  L{startAgent} runs
    agents in it; after the test they are stopped and the domain's
    exchanges and queues are deleted.

    @ivar interval: the status interval of the agents (short, for tests).
    """

    def __init__(
        self,
        testcase: TestCase,
        interval: float = 0.5,
        nodeTimeout: float | None = None,
        brokerURL: str = BROKER_URL,
    ) -> None:
        self.broker = BrokerFixture(testcase)
        self.testcase = testcase
        self.domain = uniqueName(f"{NAME_PREFIX}.domain")
        self.interval = interval
        self.nodeTimeout = nodeTimeout if nodeTimeout is not None else 3 * interval
        self.brokerURL = brokerURL
        self.agents: list[AgentService] = []
        for exchange in ("events", "commands", "dead"):
            self.broker.deleteAfterwards(exchange=f"{self.domain}.{exchange}")
        self.broker.deleteAfterwards(queue=f"{self.domain}.commands.any")
        self.broker.deleteAfterwards(queue=f"{self.domain}.dead")
        testcase.addCleanup(self.stopAll)

    def config(self, node: str, brokerURL: str | None = None, **amqp: Any) -> AgentConfig:
        amqpSettings: dict[str, Any] = {
            "url": parseBrokerURL(brokerURL or self.brokerURL),
            "reconnectInitial": 0.1,
            "reconnectMax": 0.5,
            "publishTimeout": 5.0,
            "heartbeat": 10,
        }
        amqpSettings.update(amqp)
        return AgentConfig(
            core=CoreConfig(id=node, domain=self.domain),
            amqp=AMQPConfig(**amqpSettings),
            http=HTTPConfig(listen="tcp:0:interface=127.0.0.1"),
            agent=AgentSettings(
                statusInterval=self.interval,
                nodeTimeout=self.nodeTimeout,
                threads=4,
                drainTimeout=2.0,
            ),
        )

    def topology(self, node: str) -> DomainTopology:
        return DomainTopology(self.domain, node)

    @inlineCallbacks
    def startAgent(
        self,
        node: str,
        plugins: Sequence[tuple[str, Any]] = (),
        waitReady: bool = True,
        config: AgentConfig | None = None,
        objects: Sequence[EntryPoint] | None = None,
        **amqp: Any,
    ) -> Generator[Deferred[Any], Any, AgentService]:
        """
        Build and start an agent with the built-in plugins plus C{plugins}.

        @param waitReady: wait until its bus is connected and declared.
        @param objects: C{agent.object} entry points for its object
            registry (C{None}: those found on C{sys.path}).
        @param amqp: C{[amqp]} settings to override (C{brokerURL} too).
        """
        config = config or self.config(node, **amqp)
        self.broker.deleteAfterwards(queue=f"{self.domain}.commands.node.{node}")
        agent = makeAgent(
            config,
            reactor=reactor,
            entryPoints=builtinEntryPoints(),
            dropins=nodropins,
            plugins=plugins,
            objectEntryPoints=None if objects is None else list(objects),
        )
        self.agents.append(agent)
        agent.startService()
        if waitReady:
            yield self.amqp(agent).bus.whenReady().addTimeout(15, reactor)
        return agent

    @staticmethod
    def amqp(agent: AgentService) -> Any:
        return agent.context.plugins.get("AMQPHandler")

    @staticmethod
    def directory(agent: AgentService) -> Any:
        return agent.context.plugins.get("NodeDirectory").directory

    @staticmethod
    def httpPort(agent: AgentService) -> int:
        port = agent.context.plugins.get("HTTPHandler").port
        assert port is not None
        return int(port.getHost().port)

    @inlineCallbacks
    def stopAgent(self, agent: AgentService) -> Generator[Deferred[Any], Any, None]:
        if agent.running:
            yield agent.stopService()

    @inlineCallbacks
    def stopAll(self) -> Generator[Deferred[Any], Any, None]:
        for agent in reversed(self.agents):
            yield self.stopAgent(agent)


@attrs.define
class EventRecorder:
    """
    Collects events handed to a subscription, with their arrival times.
    """

    events: list[Any] = attrs.Factory(list)
    times: list[float] = attrs.Factory(list)

    def __call__(self, event: Any) -> None:
        self.events.append(event)
        self.times.append(time.monotonic())

    def of(self, eventType: str, node: str | None = None) -> list[Any]:
        return [
            e for e in self.events if e.eventType == eventType and (node is None or e.node == node)
        ]


__all__ = ["DomainFixture", "EventRecorder", "builtinEntryPoints", "waitUntil"]
