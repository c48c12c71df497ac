"""
Fault tests of the agent's bus against the real RabbitMQ: several agents in
one reactor, faults injected with L{FaultProxy} (silent network, cuts,
refused connections), connections closed from the broker's side, and a
private broker stopped and started again.  Each test runs in a domain of its
own.

What they show: a node that vanishes is declared dead in time; a connection
that breaks heals (reconnect, topology declared again, consumers and event
subscriptions back, NodeStatus resumes, readiness follows); a publish during
an outage is delivered after it or fails within its deadline, never lost
silently; NodeStatus keeps time while a plugin's job holds the GIL; odd
payloads and headers do not hurt the connection.
"""

from __future__ import annotations

import datetime
import decimal
import json
import struct
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs
import pika
from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody

from clacks.agent.commands import CallContext
from clacks.agent.nodes import ChangeKind, NodeChange, NodeState
from clacks.agent.service import AgentService
from clacks.common.events import GenericEvent
from clacks.handlers.amqp.bus import BusUnavailable, Delivery
from clacks.handlers.amqp.compat import AMQPClientFactory, AMQPConnection, UndecodableTable
from tests.util.agents import DomainFixture, EventRecorder, waitUntil
from tests.util.broker import brokerAddress, uniqueName
from tests.util.example import HelloPlugin
from tests.util.privatebroker import PrivateBroker, closeConnectionByPeerPort
from tests.util.proxy import FaultProxy

reactor: Any = globalReactor
log = Logger()

#: Seconds a healed agent has to show each sign of health.
HEAL_TIMEOUT = 10.0


def brokerURL(port: int) -> str:
    """
    @return: the URL of the broker, or of a proxy to it, on C{port} of
        127.0.0.1.
    """
    address = brokerAddress()
    return f"amqp://{address.username}:{address.password}@127.0.0.1:{port}/"


def pause(seconds: float) -> Deferred[None]:
    """
    @return: a Deferred firing after C{seconds}.
    """
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class ReactorWatch:
    """
    Measures how long the reactor goes without running a timer: a
    L{LoopingCall} every C{step} seconds records the longest gap between
    two runs.
    """

    def __init__(self, step: float = 0.02) -> None:
        self._last = time.monotonic()
        self.longest = 0.0
        self._loop = LoopingCall(self._tick)
        self._loop.start(step, now=False)

    def _tick(self) -> None:
        now = time.monotonic()
        self.longest = max(self.longest, now - self._last)
        self._last = now

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()


@attrs.frozen
class Healing:
    """
    What a test knows of an agent (the subject) before a fault, to check
    afterwards that it healed.

    @ivar observer: another agent, which watches the subject.
    @ivar connects: the subject's C{bus.connects} before the fault.
    @ivar eventQueue: the subject's event queue before the fault.
    @ivar pings: what the subject's C{Ping.#} subscription received.
    """

    observer: AgentService
    subject: AgentService
    connects: int
    eventQueue: str | None
    pings: EventRecorder


class FaultTestCase(TestCase):
    """
    A domain, and the tools to break and watch its agents' connections.

    L{setUp} creates the proxies' list before the domain, so that the
    cleanups stop the agents first, then the proxies.
    """

    timeout = 60

    def setUp(self) -> Any:
        self.proxies: list[FaultProxy] = []
        self.addCleanup(self._stopProxies)
        self.domain = DomainFixture(self)

    @inlineCallbacks
    def _stopProxies(self) -> Any:
        for proxy in self.proxies:
            yield proxy.stop()

    @inlineCallbacks
    def proxy(self, port: int | None = None) -> Any:
        """
        @return: a started L{FaultProxy} to the broker (on C{port}, by
            default the test broker's).
        """
        proxy = FaultProxy(reactor, "127.0.0.1", port or brokerAddress().port)
        self.proxies.append(proxy)
        yield proxy.start()
        return proxy

    def startAgent(
        self, node: str, port: int | None = None, plugins: Any = (), **amqp: Any
    ) -> Deferred[AgentService]:
        """
        Start agent C{node}, connecting to the broker (or proxy) on C{port}
        if given.
        """
        url = brokerURL(port) if port is not None else None
        config = self.domain.config(node, brokerURL=url, **amqp)
        return self.domain.startAgent(node, plugins=plugins, config=config)

    def bus(self, agent: AgentService) -> Any:
        return self.domain.amqp(agent).bus

    def events(self, agent: AgentService) -> Any:
        return self.domain.amqp(agent).events

    @inlineCallbacks
    def publishUntilSeen(
        self, agent: AgentService, event: GenericEvent, recorder: EventRecorder
    ) -> Any:
        """
        Publish C{event} from C{agent} until C{recorder} gets an event with
        its routing key: new bindings take effect a moment after
        C{subscribe()} returns.
        """
        deadline = time.monotonic() + HEAL_TIMEOUT

        def seen() -> bool:
            return any(e.routingKey == event.routingKey for e in recorder.events)

        while not seen():
            if time.monotonic() > deadline:
                self.fail(f"{event.routingKey} never arrived")
            yield self.events(agent).publish(event)
            yield waitUntil(seen, 0.3, event.routingKey).addErrback(lambda f: None)

    def statusSeen(self, directory: Any, node: str) -> int:
        """
        @return: the sequence of the last NodeStatus of C{node} that
            C{directory} took in while C{node} was alive and connected, or 0.
        """
        info = directory.get(node)
        if info is None or info.status is None or info.state is not NodeState.alive:
            return 0
        return int(info.status.sequence) if info.status.connected else 0

    @inlineCallbacks
    def httpReady(self, agent: AgentService) -> Any:
        """
        @return: the status code and JSON body of C{GET /health/ready} on
            C{agent}.
        """
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        url = f"http://127.0.0.1:{self.domain.httpPort(agent)}/health/ready".encode()
        response = yield Agent(reactor, pool=pool).request(b"GET", url).addTimeout(5, reactor)
        body = yield readBody(response)
        return response.code, json.loads(body)

    @inlineCallbacks
    def prepareHealing(self, observer: AgentService, subject: AgentService) -> Any:
        """
        Before a fault: C{subject} subscribes to C{Ping.#} (checked to
        work), and C{observer} has seen its statuses.

        @return: what L{assertHealed} needs to know of the time before.
        """
        pings = EventRecorder()
        self.events(subject).subscribe("Ping.#", pings)
        yield self.publishUntilSeen(observer, GenericEvent("Ping", "before", {}), pings)
        directory = self.domain.directory(observer)
        node = subject.context.config.core.id
        yield waitUntil(lambda: self.statusSeen(directory, node) > 0, 10, "statuses")
        return Healing(
            observer,
            subject,
            self.bus(subject).connects,
            self.events(subject)._queue,
            pings,
        )

    @inlineCallbacks
    def assertHealed(
        self, healing: Healing, connect: Callable[[], Deferred[AMQPConnection]]
    ) -> Any:
        """
        Check that the subject of C{healing} came back whole after a fault:
        it reconnected; its topology is declared (exchanges, command queues
        with consumers); its event subscription made before the fault gets,
        through a new event queue, an event published now by the observer;
        and the observer's directory sees its NodeStatus sequence go on
        increasing.

        @param connect: opens a connection to the broker, to look at it.
        @return: the seconds from the call until the subject was ready.
        """
        observer, subject = healing.observer, healing.subject
        started = time.monotonic()
        bus = self.bus(subject)
        yield bus.whenReady().addTimeout(HEAL_TIMEOUT, reactor)
        readyAfter = time.monotonic() - started
        yield self.bus(observer).whenReady().addTimeout(HEAL_TIMEOUT, reactor)
        self.assertGreater(bus.connects, healing.connects)

        topology = self.domain.amqp(subject).topology
        eventQueue = self.events(subject)._queue
        self.assertNotEqual(eventQueue, healing.eventQueue)
        connection = yield connect()
        channel = yield connection.newChannel()
        for exchange in (topology.eventsExchange, topology.commandsExchange):
            yield channel.exchange_declare(exchange=exchange, type="topic", passive=True)
        for queue in (topology.nodeQueue, topology.sharedQueue):
            declared = yield channel.queue_declare(queue=queue, passive=True)
            self.assertGreaterEqual(declared.consumer_count, 1, queue)
        # The new event queue is exclusive to the subject's connection: the
        # ping below shows that it is declared, bound and consumed.

        node = subject.context.config.core.id
        ping = GenericEvent("Ping", "after", {"text": uuid.uuid4().hex})
        yield self.events(observer).publish(ping)
        yield waitUntil(
            lambda: ping in healing.pings.events, HEAL_TIMEOUT, "the ping after the fault"
        )

        directory = self.domain.directory(observer)
        yield waitUntil(
            lambda: self.statusSeen(directory, node) > 0, HEAL_TIMEOUT, "a status after the fault"
        )
        first = self.statusSeen(directory, node)
        yield waitUntil(
            lambda: self.statusSeen(directory, node) >= first + 2,
            HEAL_TIMEOUT,
            "statuses to go on",
        )
        return readyAfter


class NodeLossTests(FaultTestCase):
    """
    A node that goes silent is declared suspect, then dead, by the others'
    timers alone.
    """

    @inlineCallbacks
    def test_vanishedNodeDeclaredDead(self) -> Any:
        """
        When beta's network goes silent (no FIN, no RST; beta's own
        heartbeat too slow to notice), alpha's directory marks beta suspect
        and then dead within node-timeout plus one interval, although no
        NodeLeave came and beta still believes it is connected.  Once the
        proxy cuts beta's connection, beta stops at once.
        """
        interval, nodeTimeout = self.domain.interval, self.domain.nodeTimeout
        self.assertEqual((interval, nodeTimeout), (0.5, 1.5))
        proxy = yield self.proxy()
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta", port=proxy.port, heartbeat=30)
        directory = self.domain.directory(alpha)
        yield waitUntil(lambda: self.statusSeen(directory, "beta") >= 2, 10, "beta's statuses")
        changes: list[tuple[float, NodeChange]] = []
        directory.observe(
            lambda c: changes.append((time.monotonic(), c)) if c.node.node == "beta" else None
        )

        silenced = time.monotonic()
        proxy.blackhole()
        yield waitUntil(
            lambda: any(c.kind is ChangeKind.dead for _, c in changes),
            nodeTimeout + interval + 2,
            "beta to be declared dead",
        )
        kinds = [c.kind for _, c in changes]
        self.assertEqual(kinds, [ChangeKind.suspect, ChangeKind.dead])
        suspectAfter = changes[0][0] - silenced
        deadAfter = changes[1][0] - silenced
        self.assertLessEqual(deadAfter, nodeTimeout + interval)
        self.assertGreaterEqual(deadAfter, nodeTimeout - interval)
        self.assertLess(suspectAfter, deadAfter)
        self.assertIs(directory.get("beta").state, NodeState.dead)
        # Beta noticed nothing: the verdict came from alpha's timers.
        self.assertTrue(self.bus(beta).ready)
        self.assertEqual(self.bus(beta).connects, 1)

        yield proxy.cut()
        yield waitUntil(lambda: not self.bus(beta).ready, 2, "beta to notice the cut")
        stopping = time.monotonic()
        yield self.domain.stopAgent(beta)
        stopTook = time.monotonic() - stopping
        self.assertLess(stopTook, 2.0)
        self.assertIs(directory.get("beta").state, NodeState.dead)
        log.info(
            "Vanished node: suspect after {suspect:.2f} s, dead after {dead:.2f} s; "
            "stop took {stop:.2f} s",
            suspect=suspectAfter,
            dead=deadAfter,
            stop=stopTook,
        )

    @inlineCallbacks
    def test_stopWhileSilent(self) -> Any:
        """
        An agent whose network went silent (its heartbeat too slow to
        notice) still stops in bounded time: every step that waits for the
        broker (consumer cancel, NodeLeave, connection close) gives up after
        its own timeout.
        """
        proxy = yield self.proxy()
        beta = yield self.startAgent("beta", port=proxy.port, heartbeat=60)
        proxy.blackhole()
        stopping = time.monotonic()
        yield self.domain.stopAgent(beta)
        stopTook = time.monotonic() - stopping
        # Cancel 5 s + NodeLeave 5 s + close 5 s and abort 1 s, plus the
        # draining status (one interval).
        self.assertLess(stopTook, 5 + 5 + 6 + 0.5 + 2)
        log.info("Stop on a silent connection took {stop:.1f} s", stop=stopTook)


class ReconnectTests(FaultTestCase):
    """
    A broken connection heals: the agent reconnects and comes back whole.
    """

    @inlineCallbacks
    def test_closedByBroker(self) -> Any:
        """
        A connection closed from the broker's side (320 CONNECTION_FORCED)
        heals: reconnect, topology, subscription and NodeStatus.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        healing = yield self.prepareHealing(alpha, beta)
        bus = self.bus(beta)
        port = bus._connection.transport.getHost().port
        closed = yield closeConnectionByPeerPort(port)
        self.assertEqual([c.peerPort for c in closed], [port])
        readyAfter = yield self.assertHealed(healing, self.domain.broker.connect)
        self.assertEqual(bus.connects, healing.connects + 1)
        log.info("Closed by the broker: ready again after {ready:.2f} s", ready=readyAfter)

    @inlineCallbacks
    def test_cutByNetwork(self) -> Any:
        """
        A connection cut by the network (RST), then refused for a while,
        heals once connections are accepted again; meanwhile
        C{/health/ready} answers 503, and 200 afterwards.
        """
        proxy = yield self.proxy()
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta", port=proxy.port)
        healing = yield self.prepareHealing(alpha, beta)
        code, body = yield self.httpReady(beta)
        self.assertEqual((code, body["bus"]), (200, "connected"))
        bus = self.bus(beta)

        proxy.refuse(True)
        proxy.cut()
        yield waitUntil(lambda: not bus.ready, 5, "beta to notice the cut")
        yield waitUntil(lambda: proxy.refused >= 1, 5, "beta to try again")
        code, body = yield self.httpReady(beta)
        self.assertEqual((code, body["ready"], body["bus"]), (503, False, "disconnected"))
        # A plugin that subscribes while the bus is down is bound on reconnect.
        late = EventRecorder()
        self.events(beta).subscribe("Late.#", late)
        # Only a new declaration can bring beta's node queue back.
        connection = yield self.domain.broker.connect()
        channel = yield connection.newChannel()
        yield channel.queue_delete(queue=self.domain.amqp(beta).topology.nodeQueue)

        proxy.refuse(False)
        yield self.assertHealed(healing, self.domain.broker.connect)
        lateEvent = GenericEvent("Late", "alpha", {})
        yield self.events(alpha).publish(lateEvent)
        yield waitUntil(lambda: lateEvent in late.events, 5, "the event of a late subscription")
        code, body = yield self.httpReady(beta)
        self.assertEqual((code, body["bus"]), (200, "connected"))


class BrokerRestartTests(FaultTestCase):
    """
    Agents on a private broker that is stopped and started again.
    """

    timeout = 120

    @inlineCallbacks
    def setUp(self) -> Any:
        # Created first, cleaned up last: after the agents are stopped.
        self.broker = PrivateBroker(self.mktemp())
        self.addCleanup(self.broker.cleanup)
        yield self.broker.start()
        self.proxies = []
        self.addCleanup(self._stopProxies)
        self.domain = DomainFixture(self, brokerURL=self.broker.url)

    @inlineCallbacks
    def connectToBroker(self) -> Any:
        """
        @return: a started connection to the private broker, closed after
            the test.
        """
        factory = AMQPClientFactory(
            vhost="/", heartbeat=0, connectionName=uniqueName("clacks-test-faults")
        )
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.broker.port, timeout=5)
        connection = yield endpoint.connect(factory)
        self.addCleanup(connection.closeConnection, 2)
        yield connection.start("guest", "guest").addTimeout(10, reactor)
        return connection

    @inlineCallbacks
    def test_brokerRestart(self) -> Any:
        """
        Both agents heal after their broker stops and starts again; the
        subject's topology, subscription and NodeStatus come back.
        """
        alpha = yield self.startAgent("alpha", port=self.broker.port)
        beta = yield self.startAgent("beta", port=self.broker.port)
        healing = yield self.prepareHealing(alpha, beta)
        yield self.broker.restart()
        readyAfter = yield self.assertHealed(healing, self.connectToBroker)
        log.info(
            "Broker restart took {restart:.1f} s; beta ready {ready:.2f} s after it",
            restart=self.broker.timings["restart"][-1],
            ready=readyAfter,
        )


class OutageTests(FaultTestCase):
    """
    Publishing while the broker cannot be reached: the message goes out
    after the outage, or its caller hears of it within its deadline.
    """

    @inlineCallbacks
    def outage(self) -> Any:
        """
        Start alpha (direct) and beta (through a proxy), with alpha
        subscribed to C{Outage.#}; then cut beta off and keep it off.

        @return: C{(proxy, beta, alpha's recorder)}.
        """
        proxy = yield self.proxy()
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta", port=proxy.port)
        received = EventRecorder()
        self.events(alpha).subscribe("Outage.#", received)
        yield self.publishUntilSeen(beta, GenericEvent("Outage", "warmup", {}), received)
        proxy.refuse(True)
        proxy.cut()
        yield waitUntil(lambda: not self.bus(beta).ready, 5, "beta to notice the cut")
        return proxy, beta, received

    @inlineCallbacks
    def test_deliveredAfterOutage(self) -> Any:
        """
        A publish made during an outage shorter than its timeout is sent
        once the connection is back: it fires (confirmed) and a subscriber
        on another agent receives the event.
        """
        proxy, beta, received = yield self.outage()
        event = GenericEvent("Outage", "beta", {"text": uuid.uuid4().hex})
        started = time.monotonic()
        published = self.events(beta).publish(event, timeout=5)
        reactor.callLater(1.0, proxy.refuse, False)
        yield published
        took = time.monotonic() - started
        self.assertGreaterEqual(took, 1.0)
        self.assertLess(took, 5.0)
        yield waitUntil(lambda: event in received.events, 5, "the event published in the outage")
        log.info("Publish during a 1 s outage confirmed after {took:.2f} s", took=took)

    @inlineCallbacks
    def test_failsWithinDeadline(self) -> Any:
        """
        A publish whose timeout passes during the outage fails with
        L{BusUnavailable}, at its deadline and not much later.
        """
        proxy, beta, received = yield self.outage()
        started = time.monotonic()
        published = self.events(beta).publish(GenericEvent("Outage", "lost", {}), timeout=1)
        failure = yield self.assertFailure(published, BusUnavailable)
        took = time.monotonic() - started
        self.assertIn("not sent", str(failure))
        self.assertGreaterEqual(took, 0.9)
        self.assertLess(took, 1.0 + 2.0)
        proxy.refuse(False)
        yield self.bus(beta).whenReady().addTimeout(HEAL_TIMEOUT, reactor)
        log.info("Publish with timeout 1 s failed after {took:.2f} s", took=took)

    @inlineCallbacks
    def test_inFlightPublishesSentAgain(self) -> Any:
        """
        Publishes waiting for their confirm when the connection is cut are
        sent again on the next connection: every one fires, a subscriber
        receives every event, and the reactor is never blocked meanwhile.
        """
        proxy = yield self.proxy()
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta", port=proxy.port)
        received = EventRecorder()
        self.events(alpha).subscribe("Burst.#", received)
        yield self.publishUntilSeen(beta, GenericEvent("Burst", "warmup", {}), received)
        watch = ReactorWatch()
        self.addCleanup(watch.stop)
        events = [GenericEvent("Burst", "beta", {"n": n}) for n in range(50)]
        published = [self.events(beta).publish(e, timeout=5) for e in events]
        proxy.cut()
        results = yield DeferredList(published, consumeErrors=True)
        failures = [r.getErrorMessage() for ok, r in results if not ok]
        self.assertEqual(failures, [])
        self.assertGreater(self.bus(beta).connects, 1)
        yield waitUntil(
            lambda: all(e in received.events for e in events), 5, "every event of the burst"
        )
        watch.stop()
        self.assertLess(watch.longest, 0.5)


def spin(seconds: float) -> int:
    """
    Hold the GIL in Python code for C{seconds} (unlike C{time.sleep}).

    @return: how many rounds it made.
    """
    rounds = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rounds += 1
    return rounds


class StatusTimingTests(FaultTestCase):
    """
    NodeStatus keeps its rhythm while plugins work in the thread pool.
    """

    def setUp(self) -> Any:
        self.proxies = []
        self.domain = DomainFixture(self, interval=1.0)

    @inlineCallbacks
    def test_intervalKeptUnderBlockingJob(self) -> Any:
        """
        While the example plugin's C{nap(5)} runs and a CPU-bound job holds
        the GIL for 5 s in the agent's thread pool, the agent's NodeStatus
        events come every 1.0 s within 10%, and each says it was less than
        0.1 s late.
        """
        agent = yield self.domain.startAgent("worker", plugins=[("hello", HelloPlugin)])
        statuses = EventRecorder()
        self.events(agent).subscribe("NodeStatus.worker", statuses)
        yield waitUntil(lambda: len(statuses.events) >= 1, 5, "a first status")
        # Start in the middle of an interval: the statuses of the next 5 s
        # are then well inside the job's time.
        yield pause(max(0.0, statuses.times[-1] + 0.5 - time.monotonic()))

        registry = agent.context.plugins.get("CommandRegistry")
        started = time.monotonic()
        napping = registry.call("nap", [5], CallContext())
        rounds = yield agent.context.workers.run(spin, 5.0)
        napped = yield napping
        ended = time.monotonic()
        self.assertEqual(napped, "worker")
        self.assertGreater(rounds, 0)

        during = [
            (t, e)
            for t, e in zip(statuses.times, statuses.events, strict=True)
            if started <= t <= ended
        ]
        self.assertGreaterEqual(len(during), 5)
        gaps = [b[0] - a[0] for a, b in zip(during, during[1:], strict=False)]
        lags = [e.lag for _, e in during]
        log.info("NodeStatus gaps {gaps}, lags {lags}", gaps=[round(g, 3) for g in gaps], lags=lags)
        for gap in gaps:
            self.assertLessEqual(abs(gap - 1.0), 0.1)
        for lag in lags:
            self.assertLess(lag, 0.1)
        sequences = [e.sequence for _, e in during]
        self.assertEqual(sequences, list(range(sequences[0], sequences[0] + len(sequences))))


#: A field table holding every type code pika can send.
PIKA_HEADERS: dict[str, Any] = {
    "string": "naïve ✓ 日本",
    "bytes": b"\x00\xff\xfe",
    "true": True,
    "false": False,
    "int32": 123456,
    "negative": -7,
    "int64": 2**40,
    "negative64": -(2**40),
    "decimal": decimal.Decimal("3.14"),
    "timestamp": datetime.datetime(2024, 5, 1, 12, 30),
    "void": None,
    "table": {"nested": {"deeper": [1, "two", None]}},
    "array": [1, -(2**40), "x", b"\x01", True, None, {"k": "v"}, [1, [2]]],
    "x-death": [
        {
            "count": 2**33,
            "reason": "rejected",
            "queue": "q",
            "time": datetime.datetime(2024, 5, 1),
            "routing-keys": ["a.b", "c"],
        }
    ],
}


def restOfTheTypes() -> bytes:
    """
    @return: a field table (without its length) of the type codes pika
        does not send: signed and unsigned 8 and 16 bits, unsigned 32 bits,
        float and double.
    """
    values = [
        (b"short-short", b"b", struct.pack(">b", -5)),
        (b"short-short-u", b"B", struct.pack(">B", 250)),
        (b"short", b"s", struct.pack(">h", -300)),
        (b"short-u", b"u", struct.pack(">H", 65000)),
        (b"long-u", b"i", struct.pack(">I", 4000000000)),
        (b"float", b"f", struct.pack(">f", 1.5)),
        (b"double", b"d", struct.pack(">d", -2.25)),
    ]
    return b"".join(bytes([len(k)]) + k + code + v for k, code, v in values)


def publishWithPika(url: str, exchange: str, routingKey: str, body: bytes) -> None:
    """
    Publish one message with pika, headers of every type (blocking: run in
    a thread).
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(
            content_type="application/json", headers=PIKA_HEADERS, delivery_mode=1
        )
        channel.basic_publish(exchange, routingKey, body, properties)
    finally:
        connection.close()


class PayloadTests(FaultTestCase):
    """
    Unusual payloads and headers reach an agent's subscription intact and
    leave its connection working.
    """

    @inlineCallbacks
    def test_nonAsciiAndLargeEvents(self) -> Any:
        """
        An event with non-ASCII text, and one of about 1 MiB of multi-byte
        characters (so that characters straddle body frames), arrive intact;
        the receiving connection is the same one afterwards.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        received = EventRecorder()
        self.events(beta).subscribe("Text.#", received)
        small = GenericEvent("Text", "alpha", {"text": "café ✓ 日本 😀"})
        yield self.publishUntilSeen(alpha, small, received)
        self.assertEqual(received.events[-1], small)

        unit = "é✓日😀 "
        perUnit = len(unit.encode("utf-8"))
        text = unit * ((1024 * 1024 - 200) // perUnit)
        large = GenericEvent("Text", "alpha", {"text": text, "n": 2})
        size = len(self.events(alpha).types.encode(large))
        self.assertGreater(size, 1024 * 1024 - 256)
        yield self.events(alpha).publish(large)
        yield waitUntil(lambda: large in received.events, 10, "the 1 MiB event")
        bus = self.bus(beta)
        self.assertTrue(bus.ready)
        self.assertEqual(bus.connects, 1)
        after = GenericEvent("Text", "alpha", {"text": "after"})
        yield self.events(alpha).publish(after)
        yield waitUntil(lambda: after in received.events, 5, "an event after the large one")

    @inlineCallbacks
    def test_exoticHeaders(self) -> Any:
        """
        Events published by pika with headers of every type pika sends
        (64-bit and negative integers, decimal, timestamp, void, byte array,
        nested tables and arrays, an C{x-death} look-alike), and one with
        the remaining type codes, reach the agent's subscriber; the agent
        keeps its connection and events go on flowing.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        received = EventRecorder()
        self.events(beta).subscribe("Odd.#", received)
        yield self.publishUntilSeen(alpha, GenericEvent("Odd", "warmup", {}), received)
        exchange = self.domain.amqp(beta).topology.eventsExchange
        bus = self.bus(beta)
        deliveries: dict[str, Delivery] = {}
        queue = uniqueName("clacks.test.odd")

        @inlineCallbacks
        def declare(channel: Any) -> Any:
            yield channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
            yield channel.queue_bind(queue=queue, exchange=exchange, routing_key="Odd.*")
            return queue

        consumer = bus.consume(
            "", lambda d: deliveries.__setitem__(d.routingKey, d), noAck=True, declare=declare
        )
        self.addCleanup(consumer.cancel)
        yield waitUntil(lambda: consumer._live is not None, 5, "the raw consumer")

        fromPika = GenericEvent("Odd", "pika", {"text": "entêtes ✓"})
        body = json.dumps(fromPika.toJSON(), ensure_ascii=False).encode("utf-8")
        yield deferToThread(publishWithPika, self.domain.brokerURL, exchange, "Odd.pika", body)
        yield waitUntil(lambda: fromPika in received.events, 5, "the event from pika")

        connection = yield self.domain.broker.connect()
        channel = yield connection.newChannel()
        rest = GenericEvent("Odd", "rest", {"text": "floats"})
        yield connection.publish(
            channel,
            exchange,
            "Odd.rest",
            json.dumps(rest.toJSON()).encode("utf-8"),
            {"content-type": "application/json", "headers": UndecodableTable(restOfTheTypes(), "")},
        )
        yield waitUntil(lambda: rest in received.events, 5, "the event with the other types")

        # The agent's own consumer decoded every header as sent.
        yield waitUntil(lambda: len(deliveries) >= 2, 5, "the raw deliveries")
        utc = datetime.UTC
        headers = dict(deliveries["Odd.pika"].headers)
        self.assertEqual(
            {k: headers[k] for k in ("string", "bytes", "true", "false", "int32", "negative")},
            {k: PIKA_HEADERS[k] for k in ("string", "bytes", "true", "false", "int32", "negative")},
        )
        self.assertEqual((headers["int64"], headers["negative64"]), (2**40, -(2**40)))
        self.assertEqual(headers["decimal"], decimal.Decimal("3.14"))
        self.assertEqual(headers["timestamp"], datetime.datetime(2024, 5, 1, 12, 30, tzinfo=utc))
        self.assertIsNone(headers["void"])
        self.assertEqual(headers["table"], {"nested": {"deeper": [1, "two", None]}})
        self.assertEqual(
            headers["array"], [1, -(2**40), "x", b"\x01", True, None, {"k": "v"}, [1, [2]]]
        )
        death = headers["x-death"][0]
        self.assertEqual((death["count"], death["routing-keys"]), (2**33, ["a.b", "c"]))
        self.assertEqual(
            dict(deliveries["Odd.rest"].headers),
            {
                "short-short": -5,
                "short-short-u": 250,
                "short": -300,
                "short-u": 65000,
                "long-u": 4000000000,
                "float": 1.5,
                "double": -2.25,
            },
        )

        self.assertTrue(bus.ready)
        self.assertEqual(bus.connects, 1)
        after = GenericEvent("Odd", "after", {})
        yield self.events(alpha).publish(after)
        yield waitUntil(lambda: after in received.events, 5, "an event afterwards")
