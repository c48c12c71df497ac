# -*- test-case-name: tests.test_amqp_lifecycle -*-
"""
The node's lifecycle events: NodeAnnounce when the bus is ready, NodeStatus
from a L{LoopingCall}, NodeLeave when the agent stops.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import psutil
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from clacks import __version__
from clacks.common.components._discovery import describeException
from clacks.common.events import NodeAnnounce, NodeLeave, NodeStatus
from clacks.interfaces import IAgentContext, IEventBus, IMessageBus

#: At most one NodeAnnounce per this many seconds in reply to new nodes.
REANNOUNCE_DELAY = 1.0
#: NodeLeave may wait this long for the broker's confirm.
LEAVE_TIMEOUT = 5.0


class ProcessProbe:
    """
    Reads the process's resource use for NodeStatus (from /proc; cheap).
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)

    def rss(self) -> int:
        return int(self._process.memory_info().rss)

    def cpu(self) -> float:
        return float(self._process.cpu_percent(None))

    def load(self) -> float:
        return float(os.getloadavg()[0])


class NodeLifecycle:
    """
    @param context: the agent.
    @param events: where the events go.
    @param bus: the connection whose readiness triggers NodeAnnounce;
        C{None} when standalone.
    @param incarnation: new at every start.
    @param commands: returns the descriptions (JSON-ready dicts with at
        least C{name}) of the commands this node provides.
    """

    log = Logger()

    def __init__(
        self,
        context: IAgentContext,
        events: IEventBus,
        bus: IMessageBus | None,
        incarnation: str,
        commands: Callable[[], list[dict[str, Any]]] = list,
        probe: Any = None,
    ) -> None:
        self._context = context
        self._clock = context.reactor
        self._events = events
        self._bus = bus
        self.incarnation = incarnation
        self._commands = commands
        self._probe = probe if probe is not None else ProcessProbe()
        self._interval = context.config.agent.statusInterval
        self._loop: LoopingCall | None = None
        self._sequence = 0
        self._ticks = 0
        self._startedAt = 0.0
        self._reannounce: IDelayedCall | None = None
        self._stopObserving: Callable[[], None] | None = None
        self.announced = 0

    @property
    def node(self) -> str:
        return self._context.config.core.id

    def start(self) -> None:
        if self._bus is not None:
            self._stopObserving = self._bus.observe(self._busChanged)
            if self._bus.ready:
                self.announce()
        else:
            self.announce()
        self._loop = LoopingCall.withCount(self._tick)
        self._loop.clock = self._clock
        self._startedAt = self._clock.seconds()
        self._loop.start(self._interval, now=True).addErrback(
            lambda f: self.log.failure("The NodeStatus loop stopped", f)
        )

    def _busChanged(self, ready: bool) -> None:
        if ready:
            self.announce()

    def announce(self) -> Deferred[None]:
        """
        Publish this node's NodeAnnounce.
        """
        methods = self._commands()
        event = NodeAnnounce(
            node=self.node,
            incarnation=self.incarnation,
            version=__version__,
            commands=sorted(m["name"] for m in methods),
            methods=methods,
            objects=self._context.objects.oids(),
            interval=self._interval,
        )
        self.announced += 1
        return self._publish(event, self._interval)

    def nodeJoined(self, node: str) -> None:
        """
        Another node appeared: announce ourselves again soon so it learns
        what we provide (one announce for a burst of joins).
        """
        if node == self.node or (self._reannounce and self._reannounce.active()):
            return
        self._reannounce = self._clock.callLater(REANNOUNCE_DELAY, self.announce)

    def status(self) -> NodeStatus:
        """
        @return: this node's status now.
        """
        # Lag first: the probes below read /proc and may wait for the GIL.
        expected = self._startedAt + self._ticks * self._interval
        lag = max(0.0, round(self._clock.seconds() - expected, 6))
        stats = self._context.stats
        connected = self._bus.ready if self._bus is not None else False
        return NodeStatus(
            node=self.node,
            incarnation=self.incarnation,
            sequence=self._sequence,
            interval=self._interval,
            load=self._probe.load(),
            cpu=self._probe.cpu(),
            rss=self._probe.rss(),
            inflight=stats.inflight,
            processed=stats.processed,
            lag=lag,
            connected=connected,
            draining=stats.draining,
            failedPlugins=sorted({f.name for f in self._context.plugins.failures}),
            refused=stats.refused,
        )

    def publishStatus(self) -> Deferred[None]:
        """
        Publish a NodeStatus now, out of turn (e.g. when starting to drain).
        """
        self._sequence += 1
        return self._publish(self.status(), self._interval)

    def _tick(self, count: int) -> None:
        # count > 1 means the reactor was too busy to run us for a while:
        # the missed intervals still count towards the expected time.
        self._ticks += count - 1 if self._sequence == 0 else count
        self._sequence += 1
        status = self.status()
        if self._bus is not None and not self._bus.ready:
            self.log.debug("Bus not connected: NodeStatus {seq} not sent", seq=status.sequence)
            return
        self._publish(status, self._interval)

    def _publish(self, event: Any, timeout: float) -> Deferred[None]:
        d = self._events.publish(event, timeout=timeout)

        def failed(failure: Failure) -> None:
            assert failure.value is not None
            self.log.warn(
                "{event} not published: {error}",
                event=event.eventType,
                error=describeException(failure.value),
            )

        return d.addErrback(failed)

    @inlineCallbacks
    def stop(self, reason: str = "shutdown") -> Any:
        """
        Stop the status loop and publish NodeLeave, waiting (boundedly) for
        its confirm.
        """
        if self._stopObserving is not None:
            self._stopObserving()
            self._stopObserving = None
        if self._reannounce is not None and self._reannounce.active():
            self._reannounce.cancel()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        stats = self._context.stats
        leave = NodeLeave(
            node=self.node,
            incarnation=self.incarnation,
            reason=reason,
            served=stats.processed,
            requeued=stats.requeued,
        )
        if self._bus is None or self._bus.ready:
            yield self._publish(leave, LEAVE_TIMEOUT)


__all__ = ["NodeLifecycle", "ProcessProbe"]
