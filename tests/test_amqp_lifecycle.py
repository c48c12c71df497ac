"""
Tests for L{clacks.handlers.amqp.lifecycle}, with a Clock and fake buses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from clacks.agent.config import AgentSettings, CoreConfig, defaultConfig
from clacks.agent.context import AgentContext
from clacks.common.components.objects import ObjectRegistry
from clacks.common.components.registry import PluginRegistry
from clacks.common.events import NodeAnnounce, NodeLeave, NodeStatus
from clacks.handlers.amqp.lifecycle import REANNOUNCE_DELAY, NodeLifecycle


class FakeEvents:
    """
    Records what is published; can be told to fail.
    """

    def __init__(self) -> None:
        self.published: list[Any] = []
        self.failWith: Exception | None = None

    def publish(self, event: Any, timeout: float | None = None) -> Deferred[None]:
        if self.failWith is not None:
            d: Deferred[None] = Deferred()
            d.errback(Failure(self.failWith))
            return d
        self.published.append(event)
        return succeed(None)

    def subscribe(self, pattern: str, callback: Any) -> Any:
        raise NotImplementedError()

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.published if isinstance(e, kind)]


class FakeBus:
    """
    Just readiness and its observers.
    """

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.observers: list[Callable[[bool], object]] = []

    def observe(self, observer: Callable[[bool], object]) -> Callable[[], None]:
        self.observers.append(observer)
        return lambda: self.observers.remove(observer)

    def set(self, ready: bool) -> None:
        self.ready = ready
        for observer in list(self.observers):
            observer(ready)


class FakeProbe:
    def rss(self) -> int:
        return 1234

    def cpu(self) -> float:
        return 1.5

    def load(self) -> float:
        return 0.25


class FakeWorkers:
    size = 1

    def busy(self) -> int:
        return 0

    def run(self, f: Any, *a: Any, **k: Any) -> Any:
        raise NotImplementedError()


class LifecycleTests(SynchronousTestCase):
    """
    NodeAnnounce on ready, NodeStatus on the interval, NodeLeave on stop.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        config = defaultConfig(
            core=CoreConfig(id="n1", domain="d"),
            agent=AgentSettings(statusInterval=10.0, nodeTimeout=30.0),
        )
        self.plugins = PluginRegistry()
        self.objects = ObjectRegistry()
        self.objects.register("obj.one", object)
        self.context = AgentContext(
            config=config,
            plugins=self.plugins,
            objects=self.objects,
            reactor=self.clock,
            workers=FakeWorkers(),
        )
        self.events = FakeEvents()
        self.bus = FakeBus()
        self.lifecycle = NodeLifecycle(
            self.context,
            self.events,  # type: ignore[arg-type]
            self.bus,  # type: ignore[arg-type]
            "inc1",
            commands=lambda: [{"name": "b"}, {"name": "a"}],
            probe=FakeProbe(),
        )

    def tearDown(self) -> None:
        self.successResultOf(self.lifecycle.stop())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_announceWhenReady(self) -> None:
        """
        Starting on a ready bus announces the node with its commands
        (sorted), objects and interval; every later connect announces again.
        """
        self.lifecycle.start()
        [announce] = self.events.of(NodeAnnounce)
        self.assertEqual(
            (announce.node, announce.incarnation, announce.commands, announce.objects),
            ("n1", "inc1", ["a", "b"], ["obj.one"]),
        )
        self.bus.set(False)
        self.bus.set(True)
        self.assertEqual(len(self.events.of(NodeAnnounce)), 2)

    def test_statusEveryInterval(self) -> None:
        """
        A NodeStatus goes out at start and then every interval, numbered
        from 1, with the process figures and counters.
        """
        self.context.stats.inflight = 2
        self.context.stats.processed = 7
        self.lifecycle.start()
        self.clock.advance(10)
        self.clock.advance(10)
        statuses = self.events.of(NodeStatus)
        self.assertEqual([s.sequence for s in statuses], [1, 2, 3])
        last = statuses[-1]
        self.assertEqual((last.rss, last.cpu, last.load), (1234, 1.5, 0.25))
        self.assertEqual((last.inflight, last.processed, last.lag), (2, 7, 0.0))
        self.assertTrue(last.connected)

    def test_lagMeasured(self) -> None:
        """
        A status that goes out late (the reactor was busy) reports how late,
        and the intervals it missed still count.
        """
        self.lifecycle.start()
        self.clock.advance(10.25)
        self.assertEqual(self.events.of(NodeStatus)[-1].lag, 0.25)
        self.clock.advance(34.75)  # t=45: 20 and 30 and 40 were missed
        statuses = self.events.of(NodeStatus)
        self.assertEqual(statuses[-1].lag, 5.0)
        self.clock.advance(5)  # t=50, on time again
        self.assertEqual(self.events.of(NodeStatus)[-1].lag, 0.0)

    def test_noStatusWhileDisconnected(self) -> None:
        """
        While the bus is down no status is sent (it could not be), but the
        sequence still counts the ticks.
        """
        self.lifecycle.start()
        self.bus.set(False)
        self.clock.advance(10)
        self.bus.set(True)
        self.clock.advance(10)
        self.assertEqual([s.sequence for s in self.events.of(NodeStatus)], [1, 3])

    def test_failedPluginsReported(self) -> None:
        """
        Plugins that failed are named in every status.
        """
        self.plugins._fail("broken", "init", "RuntimeError: x", "test")
        self.lifecycle.start()
        self.assertEqual(self.events.of(NodeStatus)[0].failedPlugins, ["broken"])
        self.flushLoggedErrors()

    def test_reannounceOnJoin(self) -> None:
        """
        A burst of joining nodes gets one NodeAnnounce, a moment later;
        our own join does not trigger one.
        """
        self.lifecycle.start()
        before = len(self.events.of(NodeAnnounce))
        self.lifecycle.nodeJoined("n1")
        self.lifecycle.nodeJoined("n2")
        self.lifecycle.nodeJoined("n3")
        self.clock.advance(REANNOUNCE_DELAY)
        self.assertEqual(len(self.events.of(NodeAnnounce)), before + 1)

    def test_leaveOnStop(self) -> None:
        """
        stop() ends the status loop and publishes NodeLeave with the counts.
        """
        self.context.stats.processed = 5
        self.context.stats.requeued = 1
        self.lifecycle.start()
        self.successResultOf(self.lifecycle.stop("maintenance"))
        [leave] = self.events.of(NodeLeave)
        self.assertEqual((leave.reason, leave.served, leave.requeued), ("maintenance", 5, 1))
        count = len(self.events.of(NodeStatus))
        self.clock.advance(100)
        self.assertEqual(len(self.events.of(NodeStatus)), count)

    def test_publishFailureLogged(self) -> None:
        """
        A status that cannot be published is logged; the loop goes on.
        """
        self.events.failWith = RuntimeError("broker says no")
        self.lifecycle.start()
        self.events.failWith = None
        self.clock.advance(10)
        self.assertEqual([s.sequence for s in self.events.of(NodeStatus)], [2])
