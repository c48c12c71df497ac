"""
Tests for L{clacks.agent.nodes}: the node directory, driven by a Clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from clacks.agent.nodes import ChangeKind, NodeChange, NodeDirectory, NodeState
from clacks.common.events import GenericEvent, NodeAnnounce, NodeLeave, NodeStatus

INTERVAL = 10.0
TIMEOUT = 30.0


def announce(node: str = "a", incarnation: str = "1", **kw: Any) -> NodeAnnounce:
    return NodeAnnounce(node=node, incarnation=incarnation, version="0.1", interval=INTERVAL, **kw)


def status(node: str = "a", incarnation: str = "1", sequence: int = 1) -> NodeStatus:
    return NodeStatus(node=node, incarnation=incarnation, sequence=sequence, interval=INTERVAL)


class DirectoryTests(SynchronousTestCase):
    """
    The directory follows nodes through join, suspicion, death, restart and
    leave, by the clock.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.directory = NodeDirectory(self.clock, TIMEOUT, INTERVAL)
        self.changes: list[NodeChange] = []
        self.directory.observe(self.changes.append)
        self.addCleanup(self.assertNoTimersLeft)

    def assertNoTimersLeft(self) -> None:
        self.directory.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def kinds(self) -> list[tuple[str, str]]:
        return [(c.kind.value, c.node.node) for c in self.changes]

    def test_join(self) -> None:
        """
        A NodeAnnounce makes the node known and alive with what it provides.
        """
        self.directory.handle(announce(commands=["ping", "echo"], objects=["obj"]))
        info = self.directory.get("a")
        assert info is not None
        self.assertEqual(info.state, NodeState.alive)
        self.assertEqual(info.commands, ("ping", "echo"))
        self.assertEqual(self.directory.providers("echo"), ["a"])
        self.assertEqual(self.kinds(), [("join", "a")])

    def test_statusAloneJoins(self) -> None:
        """
        A node first heard of through its NodeStatus joins too, with its
        load figures kept.
        """
        self.directory.handle(status())
        info = self.directory.get("a")
        assert info is not None and info.status is not None
        self.assertEqual(info.status.sequence, 1)
        self.assertEqual(self.kinds(), [("join", "a")])

    def test_suspectThenDead(self) -> None:
        """
        Nothing for 1.5 intervals makes a node suspect; nothing for
        node-timeout makes it dead; both are notified once.
        """
        self.directory.handle(announce())
        self.clock.advance(14.9)
        self.assertEqual(self.directory.get("a").state, NodeState.alive)  # type: ignore[union-attr]
        self.clock.advance(0.2)
        self.assertEqual(self.directory.get("a").state, NodeState.suspect)  # type: ignore[union-attr]
        self.clock.advance(TIMEOUT - 15.1 - 0.1)
        self.assertEqual(self.directory.get("a").state, NodeState.suspect)  # type: ignore[union-attr]
        self.clock.advance(0.2)
        self.assertEqual(self.directory.get("a").state, NodeState.dead)  # type: ignore[union-attr]
        self.assertEqual(self.kinds(), [("join", "a"), ("suspect", "a"), ("dead", "a")])
        self.assertEqual(self.directory.reachable(), [])

    def test_statusKeepsAlive(self) -> None:
        """
        Statuses on time keep a node alive indefinitely.
        """
        self.directory.handle(announce())
        for sequence in range(1, 20):
            self.clock.advance(INTERVAL)
            self.directory.handle(status(sequence=sequence))
        self.assertEqual(self.directory.get("a").state, NodeState.alive)  # type: ignore[union-attr]
        self.assertEqual(self.kinds(), [("join", "a")])

    def test_comesBack(self) -> None:
        """
        A suspect node whose status arrives again is alive again.
        """
        self.directory.handle(announce())
        self.clock.advance(16)
        self.directory.handle(status(sequence=2))
        self.assertEqual(self.kinds(), [("join", "a"), ("suspect", "a"), ("alive", "a")])

    def test_deadNodeForgotten(self) -> None:
        """
        A dead node stays listed for another node-timeout, then is dropped.
        """
        self.directory.handle(announce())
        self.clock.advance(TIMEOUT + 0.1)
        self.assertEqual([i.node for i in self.directory.nodes()], ["a"])
        self.clock.advance(TIMEOUT)
        self.assertEqual(self.directory.nodes(), [])

    def test_leave(self) -> None:
        """
        NodeLeave removes the node at once and cancels its timers.
        """
        self.directory.handle(announce())
        self.directory.handle(NodeLeave(node="a", incarnation="1"))
        self.assertIsNone(self.directory.get("a"))
        self.assertEqual(self.kinds(), [("join", "a"), ("leave", "a")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_staleLeaveIgnored(self) -> None:
        """
        A NodeLeave of an older incarnation does not remove the restarted
        node.
        """
        self.directory.handle(announce(incarnation="2"))
        self.directory.handle(NodeLeave(node="a", incarnation="1"))
        self.assertIsNotNone(self.directory.get("a"))

    def test_restart(self) -> None:
        """
        A new incarnation of a known node is a restart; its old data goes.
        """
        self.directory.handle(announce(commands=["old"]))
        self.directory.handle(announce(incarnation="2", commands=["new"]))
        info = self.directory.get("a")
        assert info is not None
        self.assertEqual((info.incarnation, info.commands), ("2", ("new",)))
        self.assertEqual(self.kinds(), [("join", "a"), ("restart", "a")])

    def test_lateStatusIgnored(self) -> None:
        """
        A status older than one already seen does not overwrite it.
        """
        self.directory.handle(status(sequence=5))
        self.directory.handle(status(sequence=4))
        self.assertEqual(self.directory.get("a").status.sequence, 5)  # type: ignore[union-attr]

    def test_otherEventsIgnored(self) -> None:
        """
        Events that are not lifecycle events change nothing.
        """
        self.directory.handle(GenericEvent("NodeStatusish", "x", {}))
        self.assertEqual(self.directory.nodes(), [])

    def test_brokenObserver(self) -> None:
        """
        An observer that raises is logged; the others are still told.
        """

        def broken(change: NodeChange) -> None:
            raise RuntimeError("observer bug")

        self.directory.observe(broken)
        late: list[NodeChange] = []
        self.directory.observe(late.append)
        self.directory.handle(announce())
        self.assertEqual(len(late), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_stopObserving(self) -> None:
        """
        The function observe() returns ends the notifications.
        """
        seen: list[NodeChange] = []
        stop = self.directory.observe(seen.append)
        stop()
        self.directory.handle(announce())
        self.assertEqual(seen, [])
        self.assertEqual(self.changes[0].kind, ChangeKind.join)
