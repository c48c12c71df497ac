# -*- test-case-name: tests.test_nodes -*-
"""
The node directory: every node of the domain, as seen from its lifecycle
events.

A node is C{alive} while its NodeStatus events come on time, C{suspect}
once one is missed (nothing for 1.5 of its intervals), C{dead} after
C{agent.node-timeout} without any event, and gone on NodeLeave (or a while
after it died).  A node that comes back with a new incarnation has
restarted.  Time comes from the clock handed in, so tests drive it with
L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from clacks.common.components.plugin import Plugin
from clacks.common.events import Event, GenericEvent, NodeAnnounce, NodeLeave, NodeStatus
from clacks.common.handler import IInterfaceHandler

#: A node is suspect when nothing came for this many of its intervals.
SUSPECT_INTERVALS = 1.5


class NodeState(enum.Enum):
    alive = "alive"
    suspect = "suspect"
    dead = "dead"


@attrs.frozen
class NodeInfo:
    """
    What the directory knows of one node.

    @ivar lastSeen: clock time of the node's last event.
    @ivar status: its last NodeStatus, if any came.
    """

    node: str
    incarnation: str
    state: NodeState
    lastSeen: float
    interval: float
    version: str | None = None
    commands: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    methods: tuple[dict[str, Any], ...] = ()
    status: NodeStatus | None = None

    def asDict(self) -> dict[str, Any]:
        status = self.status
        return {
            "node": self.node,
            "incarnation": self.incarnation,
            "state": self.state.value,
            "lastSeen": self.lastSeen,
            "interval": self.interval,
            "version": self.version,
            "commands": list(self.commands),
            "objects": list(self.objects),
            "load": status.load if status else None,
            "inflight": status.inflight if status else None,
            "processed": status.processed if status else None,
            "draining": status.draining if status else False,
        }


class ChangeKind(enum.Enum):
    join = "join"
    restart = "restart"
    suspect = "suspect"
    alive = "alive"
    dead = "dead"
    leave = "leave"


@attrs.frozen
class NodeChange:
    """
    A local notification: C{node} joined, restarted, went suspect, came
    back, died or left.
    """

    kind: ChangeKind
    node: NodeInfo


Observer = Callable[[NodeChange], object]


@attrs.define
class _Entry:
    info: NodeInfo
    sequence: int = 0
    suspectCall: IDelayedCall | None = None
    deadCall: IDelayedCall | None = None
    purgeCall: IDelayedCall | None = None

    def cancelTimers(self) -> None:
        for call in (self.suspectCall, self.deadCall, self.purgeCall):
            if call is not None and call.active():
                call.cancel()
        self.suspectCall = self.deadCall = self.purgeCall = None


class NodeDirectory:
    """
    Tracks the nodes of one domain from NodeAnnounce, NodeStatus and
    NodeLeave events (feed them to L{handle}).

    @param clock: where time comes from.
    @param nodeTimeout: seconds without events before a node is dead.
    @param defaultInterval: the status interval assumed for a node until it
        says its own.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, nodeTimeout: float, defaultInterval: float) -> None:
        self._clock = clock
        self._nodeTimeout = nodeTimeout
        self._defaultInterval = defaultInterval
        self._entries: dict[str, _Entry] = {}
        self._observers: list[Observer] = []

    # Queries

    def nodes(self) -> list[NodeInfo]:
        """
        @return: every known node, dead ones included, sorted by id.
        """
        return [self._entries[n].info for n in sorted(self._entries)]

    def get(self, node: str) -> NodeInfo | None:
        entry = self._entries.get(node)
        return entry.info if entry else None

    def reachable(self) -> list[NodeInfo]:
        """
        @return: the nodes that are alive or suspect: those a call to all
            nodes expects an answer from.
        """
        return [i for i in self.nodes() if i.state is not NodeState.dead]

    def providers(self, command: str) -> list[str]:
        """
        @return: the reachable nodes that announced C{command}.
        """
        return [i.node for i in self.reachable() if command in i.commands]

    # Notifications

    def observe(self, observer: Observer) -> Callable[[], None]:
        """
        Call C{observer} with every L{NodeChange}.

        @return: a function that stops the notifications.
        """
        self._observers.append(observer)

        def stop() -> None:
            if observer in self._observers:
                self._observers.remove(observer)

        return stop

    def _notify(self, kind: ChangeKind, info: NodeInfo) -> None:
        self.log.info(
            "Node {node} {kind} ({state}, incarnation {incarnation})",
            node=info.node,
            kind=kind.value,
            state=info.state.value,
            incarnation=info.incarnation,
        )
        change = NodeChange(kind, info)
        for observer in list(self._observers):
            try:
                observer(change)
            except Exception:
                self.log.failure("Node change observer {observer!r} failed", observer=observer)

    # Input

    def handle(self, event: Event | GenericEvent) -> None:
        """
        Take in one lifecycle event; other events are ignored.
        """
        if isinstance(event, NodeLeave):
            self._leave(event)
        elif isinstance(event, NodeAnnounce | NodeStatus):
            self._seen(event)

    def _seen(self, event: NodeAnnounce | NodeStatus) -> None:
        now = self._clock.seconds()
        entry = self._entries.get(event.node)
        kind: ChangeKind | None = None
        if entry is None or entry.info.incarnation != event.incarnation:
            kind = ChangeKind.join if entry is None else ChangeKind.restart
            if entry is not None:
                entry.cancelTimers()
            entry = _Entry(
                NodeInfo(
                    node=event.node,
                    incarnation=event.incarnation,
                    state=NodeState.alive,
                    lastSeen=now,
                    interval=event.interval or self._defaultInterval,
                )
            )
            self._entries[event.node] = entry
        elif entry.info.state is not NodeState.alive:
            kind = ChangeKind.alive
        info = entry.info
        if isinstance(event, NodeStatus):
            if event.sequence <= entry.sequence and kind is None:
                return  # late duplicate of a status already seen
            entry.sequence = event.sequence
            info = attrs.evolve(info, status=event, interval=event.interval or info.interval)
        else:
            info = attrs.evolve(
                info,
                version=event.version,
                commands=tuple(event.commands),
                objects=tuple(event.objects),
                methods=tuple(event.methods),
                interval=event.interval or info.interval,
            )
        entry.info = attrs.evolve(info, state=NodeState.alive, lastSeen=now)
        self._arm(entry)
        if kind is not None:
            self._notify(kind, entry.info)

    def _leave(self, event: NodeLeave) -> None:
        entry = self._entries.get(event.node)
        if entry is None or entry.info.incarnation != event.incarnation:
            return
        entry.cancelTimers()
        del self._entries[event.node]
        self._notify(ChangeKind.leave, entry.info)

    # Timers

    def _arm(self, entry: _Entry) -> None:
        entry.cancelTimers()
        node = entry.info.node
        entry.suspectCall = self._clock.callLater(
            SUSPECT_INTERVALS * entry.info.interval, self._suspect, node
        )
        entry.deadCall = self._clock.callLater(self._nodeTimeout, self._dead, node)

    def _suspect(self, node: str) -> None:
        entry = self._entries[node]
        entry.suspectCall = None
        if entry.info.state is NodeState.alive:
            entry.info = attrs.evolve(entry.info, state=NodeState.suspect)
            self._notify(ChangeKind.suspect, entry.info)

    def _dead(self, node: str) -> None:
        entry = self._entries[node]
        entry.deadCall = None
        if entry.suspectCall is not None and entry.suspectCall.active():
            entry.suspectCall.cancel()
            entry.suspectCall = None
        entry.info = attrs.evolve(entry.info, state=NodeState.dead)
        # Keep the dead node listed for a while so operators see it, then
        # forget it so a churning domain does not grow the directory forever.
        entry.purgeCall = self._clock.callLater(self._nodeTimeout, self._purge, node)
        self._notify(ChangeKind.dead, entry.info)

    def _purge(self, node: str) -> None:
        entry = self._entries.pop(node)
        entry.purgeCall = None

    def stop(self) -> None:
        """
        Cancel every timer; the directory keeps its data but stops ageing it.
        """
        for entry in self._entries.values():
            entry.cancelTimers()


LIFECYCLE_PATTERNS = ("NodeAnnounce.#", "NodeStatus.#", "NodeLeave.#")


@implementer(IInterfaceHandler)
class NodeDirectoryPlugin(Plugin):
    """
    The domain's node directory as a plugin: look it up with
    C{context.plugins.get("NodeDirectory")} and use L{directory}.

    It listens to the lifecycle events of the C{AMQPHandler} plugin; a
    standalone agent knows only itself.
    """

    _priority_ = 20

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        settings = context.config.agent
        self.directory = NodeDirectory(
            context.reactor, settings.nodeTimeout, settings.statusInterval
        )
        self._subscriptions: list[Any] = []

    def serve(self) -> None:
        if "AMQPHandler" not in self.context.plugins:
            self.log.warn("No AMQPHandler plugin: the node directory stays empty")
            return
        events = self.context.plugins.get("AMQPHandler").events
        self._subscriptions = [
            events.subscribe(pattern, self.directory.handle) for pattern in LIFECYCLE_PATTERNS
        ]

    def stop(self) -> None:
        for subscription in self._subscriptions:
            subscription.unsubscribe()
        self._subscriptions = []
        self.directory.stop()


__all__ = [
    "ChangeKind",
    "LIFECYCLE_PATTERNS",
    "NodeChange",
    "NodeDirectory",
    "NodeDirectoryPlugin",
    "NodeInfo",
    "NodeState",
]
