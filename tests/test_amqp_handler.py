"""
Integration tests of L{clacks.handlers.amqp.handler.AMQPHandler} against the
real RabbitMQ: several agents in one reactor, each test in its own domain.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from clacks.agent.nodes import ChangeKind, NodeChange, NodeState
from clacks.common.events import Event, EventError, GenericEvent, NodeLeave
from clacks.handlers.amqp.compat import ChannelClosedError
from tests.util.agents import DomainFixture, EventRecorder, waitUntil


@attrs.frozen
class Thing(Event):
    """
    A plugin's event type.
    """

    text: str
    size: int = 0


class LifecycleTests(TestCase):
    """
    Agents of one domain see each other come, report and go.
    """

    def setUp(self) -> None:
        self.domain = DomainFixture(self)

    @inlineCallbacks
    def test_agentsSeeEachOther(self) -> Any:
        """
        Two agents see each other's NodeAnnounce and NodeStatus: each one's
        directory lists the other as alive, with its version and statuses.
        """
        a = yield self.domain.startAgent("alpha")
        b = yield self.domain.startAgent("beta")
        dirA, dirB = self.domain.directory(a), self.domain.directory(b)

        def seen(directory: Any, node: str) -> bool:
            info = directory.get(node)
            return bool(info and info.version and info.status and info.status.sequence >= 2)

        yield waitUntil(lambda: seen(dirA, "beta") and seen(dirB, "alpha"), 10, "both nodes")
        info = dirA.get("beta")
        self.assertEqual(info.state, NodeState.alive)
        self.assertEqual(info.incarnation, self.domain.amqp(b).incarnation)
        self.assertTrue(info.status.connected)
        self.assertGreater(info.status.rss, 0)
        self.assertEqual(sorted(i.node for i in dirA.nodes()), ["alpha", "beta"])

    @inlineCallbacks
    def test_leaveSeenWithinOneSecond(self) -> Any:
        """
        Stopping an agent publishes NodeLeave before its connection closes;
        the other agent drops it from its directory within 1 s.
        """
        a = yield self.domain.startAgent("alpha")
        b = yield self.domain.startAgent("beta")
        directory = self.domain.directory(a)
        yield waitUntil(lambda: directory.get("beta") is not None, 10, "beta to join")
        left: list[float] = []
        directory.observe(
            lambda c: left.append(time.monotonic()) if c.kind is ChangeKind.leave else None
        )
        stopping = time.monotonic()
        yield self.domain.stopAgent(b)
        yield waitUntil(lambda: bool(left), 1.0, "NodeLeave of beta")
        self.assertLess(left[0] - stopping, 1.0)
        self.assertIsNone(directory.get("beta"))

    @inlineCallbacks
    def test_restartRecognised(self) -> Any:
        """
        An agent that comes back under the same id with a new incarnation
        is seen as restarted, not as a new node.
        """
        a = yield self.domain.startAgent("alpha")
        directory = self.domain.directory(a)
        changes: list[NodeChange] = []
        directory.observe(changes.append)
        b1 = yield self.domain.startAgent("beta")
        yield waitUntil(lambda: directory.get("beta") is not None, 10, "beta")
        # Vanish without NodeLeave: stop the bus directly.
        handler = self.domain.amqp(b1)
        handler.lifecycle._loop.stop()
        handler.lifecycle._loop = None
        yield handler.bus.stop()
        b2 = yield self.domain.startAgent("beta")
        yield waitUntil(
            lambda: any(c.kind is ChangeKind.restart for c in changes), 10, "restart of beta"
        )
        self.assertEqual(directory.get("beta").incarnation, self.domain.amqp(b2).incarnation)


class EventBusTests(TestCase):
    """
    Plugins publish and subscribe to events through C{AMQPHandler.events}.
    """

    def setUp(self) -> None:
        self.domain = DomainFixture(self, interval=5.0)

    @inlineCallbacks
    def test_publishSubscribe(self) -> Any:
        """
        An event published by one agent reaches the other agent's matching
        subscription, and only the matching one; publish fires on confirm.
        """
        a = yield self.domain.startAgent("alpha")
        b = yield self.domain.startAgent("beta")
        for agent in (a, b):
            self.domain.amqp(agent).events.types.register(Thing)
        things, others = EventRecorder(), EventRecorder()
        self.domain.amqp(b).events.subscribe("Thing.#", things)
        self.domain.amqp(b).events.subscribe("Other.#", others)
        yield waitUntil(lambda: True, 0, "")
        # Bindings are made asynchronously; give them a moment by publishing
        # until the first arrives.
        yield self.publishUntilSeen(a, Thing(node="alpha", text="café ✓ 日本", size=3), things)
        self.assertEqual(things.events[-1], Thing(node="alpha", text="café ✓ 日本", size=3))
        self.assertEqual(others.events, [])

    @inlineCallbacks
    def publishUntilSeen(self, agent: Any, event: Any, recorder: EventRecorder) -> Any:
        deadline = time.monotonic() + 10
        while not recorder.events:
            yield self.domain.amqp(agent).events.publish(event)
            if time.monotonic() > deadline:
                self.fail("event never arrived")
            yield waitUntil(lambda: bool(recorder.events), 0.3, "event").addErrback(lambda f: None)

    @inlineCallbacks
    def test_unsubscribe(self) -> Any:
        """
        After unsubscribe() a subscription gets nothing more; another one on
        the same pattern still does.
        """
        a = yield self.domain.startAgent("alpha")
        events = self.domain.amqp(a).events
        events.types.register(Thing)
        first, second = EventRecorder(), EventRecorder()
        subscription = events.subscribe("Thing.*", first)
        events.subscribe("Thing.*", second)
        yield self.publishUntilSeen(a, Thing(node="alpha", text="1"), second)
        subscription.unsubscribe()
        count = len(first.events)
        yield events.publish(Thing(node="alpha", text="2"))
        yield waitUntil(lambda: len(second.events) >= 2, 5, "second event")
        self.assertEqual(len(first.events), count)

    @inlineCallbacks
    def test_invalidEventRefused(self) -> Any:
        """
        publish() refuses an event that fails its schema, before sending.
        """
        a = yield self.domain.startAgent("alpha")
        events = self.domain.amqp(a).events
        events.types.register(Thing)
        yield self.assertFailure(events.publish(Thing(node="alpha", text=7)), EventError)  # type: ignore[arg-type]

    @inlineCallbacks
    def test_malformedEventsDropped(self) -> Any:
        """
        Malformed bodies, wrong content types, bodies that fail the schema
        and events whose routing key lies are logged and dropped; the
        subscriber is never called with them and keeps receiving good ones.
        """
        a = yield self.domain.startAgent("alpha")
        handler = self.domain.amqp(a)
        statuses = EventRecorder()
        handler.events.subscribe("NodeStatus.#", statuses)
        connection = yield self.domain.broker.connect()
        channel = yield connection.newChannel()
        exchange = f"{self.domain.domain}.events"
        bad = [
            (b"\xff\xfe not utf-8", {}),
            (b"{not json", {}),
            (b'{"event": "NodeStatus", "node": "x", "sequence": "one"}', {}),
            (b'{"event": "NodeStatus", "node": "x"}', {"content-type": "text/plain"}),
            (
                b'{"event":"NodeStatus","node":"elsewhere","incarnation":"i",'
                b'"sequence":1,"interval":1}',
                {},
            ),
        ]
        dropped = handler.events.dropped
        for body, properties in bad:
            yield connection.publish(channel, exchange, "NodeStatus.x", body, properties)
        yield waitUntil(lambda: handler.events.dropped >= dropped + len(bad), 10, "drops")
        self.assertEqual([e for e in statuses.events if e.node != "alpha"], [])
        self.domain.amqp(a).lifecycle._tick(1)
        yield waitUntil(lambda: bool(statuses.of("NodeStatus", "alpha")), 5, "a good status")

    @inlineCallbacks
    def test_unknownEventTypeDelivered(self) -> Any:
        """
        An event of a type this agent does not know reaches a matching
        subscriber as a GenericEvent.
        """
        a = yield self.domain.startAgent("alpha")
        recorder = EventRecorder()
        self.domain.amqp(a).events.subscribe("Foreign.#", recorder)
        connection = yield self.domain.broker.connect()
        channel = yield connection.newChannel()
        body = b'{"event": "Foreign", "node": "other", "x": [1, 2]}'
        deadline = time.monotonic() + 10
        while not recorder.events and time.monotonic() < deadline:
            yield connection.publish(channel, f"{self.domain.domain}.events", "Foreign.other", body)
            yield waitUntil(lambda: bool(recorder.events), 0.3, "").addErrback(lambda f: None)
        self.assertEqual(recorder.events[0], GenericEvent("Foreign", "other", {"x": [1, 2]}))


class TopologyTests(TestCase):
    """
    The handler declares the domain's topology as docs/protocol.md says.
    """

    @inlineCallbacks
    def test_declared(self) -> Any:
        """
        After start, the exchanges and the shared and per-node command
        queues exist (passive declares succeed), and the event queue is
        consumed.
        """
        domain = DomainFixture(self)
        a = yield domain.startAgent("alpha")
        topology = domain.amqp(a).topology
        connection = yield domain.broker.connect()
        channel = yield connection.newChannel()
        for exchange in (topology.eventsExchange, topology.commandsExchange):
            yield channel.exchange_declare(exchange=exchange, type="topic", passive=True)
        for queue in (topology.sharedQueue, topology.nodeQueue):
            yield channel.queue_declare(queue=queue, passive=True)
        self.assertEqual(topology.nodeQueue, f"{domain.domain}.commands.node.alpha")

    @inlineCallbacks
    def test_quorumSharedQueue(self) -> Any:
        """
        With queue-type quorum the shared command queue is a quorum queue:
        redeclaring it as classic is refused by the broker.
        """
        domain = DomainFixture(self)
        a = yield domain.startAgent("alpha", queueType="quorum")
        topology = domain.amqp(a).topology
        connection = yield domain.broker.connect()
        channel = yield connection.newChannel()
        failure = yield self.assertFailure(
            channel.queue_declare(
                queue=topology.sharedQueue, durable=True, arguments={"x-queue-type": "classic"}
            ),
            ChannelClosedError,
        )
        self.assertEqual(failure.replyCode, 406)


class StandaloneTests(TestCase):
    """
    Without a broker URL the handler runs standalone.
    """

    @inlineCallbacks
    def test_localEvents(self) -> Any:
        """
        A standalone agent is ready, and its events reach its own
        subscribers: its directory knows itself.
        """
        import tests.util.nodropins as nodropins
        from clacks.agent.config import CoreConfig, HTTPConfig, defaultConfig
        from clacks.agent.service import makeAgent
        from tests.util.agents import builtinEntryPoints

        config = defaultConfig(
            core=CoreConfig(id="solo"), http=HTTPConfig(listen="tcp:0:interface=127.0.0.1")
        )
        agent = makeAgent(
            config, reactor=reactor, entryPoints=builtinEntryPoints(), dropins=nodropins
        )
        agent.startService()
        self.addCleanup(agent.stopService)
        handler = agent.context.plugins.get("AMQPHandler")
        self.assertTrue(handler.ready)
        directory = agent.context.plugins.get("NodeDirectory").directory
        yield waitUntil(lambda: directory.get("solo") is not None, 5, "self in directory")
        leaves = EventRecorder()
        handler.events.subscribe("NodeLeave.#", leaves)
        yield handler.events.publish(NodeLeave(node="other", incarnation="x"))
        yield waitUntil(lambda: bool(leaves.events), 5, "local NodeLeave")
