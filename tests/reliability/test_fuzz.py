"""
Fuzzing.

  - Property tests (hypothesis) of the three parsers that take outside
    input: the JSON-RPC request parser, the event decoder and the config
    loader.  Whatever the input, each returns a value or raises its own
    documented error; nothing else escapes.  These run in the normal test
    suite too (a few seconds); C{make reliability} runs more examples.
  - A foreign client (pika) sends random bodies, content types, properties
    and header tables of every AMQP field type to a real agent's command
    queues for C{CLACKS_FUZZ_SECONDS} (default 30) seconds: the agent must
    still serve afterwards, and its resident memory must not have grown by
    more than 10% from the half-way point to the end (after a warm-up that
    fills the reply cache to its byte bound: the first half lets the rest
    of its bounded state settle).
"""

from __future__ import annotations

import datetime
import decimal
import json
import os
import random
import string
import struct
import tempfile
import threading
import time
from collections.abc import Generator
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from clacks.agent.config import AgentConfig, ConfigError, loadConfig
from clacks.common.events import Event, EventError, EventTypes, GenericEvent
from clacks.common.jsonrpc import (
    ERROR_NAMES,
    Limits,
    Parsed,
    Request,
    RPCError,
    dumps,
    errorResponse,
    parseRequests,
    parseResponse,
)
from tests.reliability.harness import (
    ENABLED,
    AgentProcess,
    openConnection,
    pause,
    requireReliability,
    startClients,
    waitQueuesEmpty,
    writeDropins,
    writeRow,
)
from tests.util.agents import DomainFixture
from tests.util.broker import BROKER_URL, brokerAddress

#: Examples per property: more when the reliability suite runs.
EXAMPLES = 300 if ENABLED else 50
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Seconds the foreign client fuzzes the agent.
FUZZ_SECONDS = float(os.environ.get("CLACKS_FUZZ_SECONDS", "30"))

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=40,
)
request_ids = st.none() | st.integers() | st.text(max_size=10) | st.floats() | st.booleans()
requests = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]) | json_scalars,
        "method": st.sampled_from(["echo", "ping", ""]) | json_values,
        "params": json_values,
        "id": request_ids,
        "extra": json_values,
    },
)
small = Limits(maxBytes=200, maxDepth=3, maxParams=2, maxBatch=2)


def _checkParsed(testCase: SynchronousTestCase, parsed: Parsed) -> None:
    testCase.assertIsInstance(parsed, Parsed)
    testCase.assertTrue(parsed.items)
    for item in parsed.items:
        if isinstance(item, RPCError):
            testCase.assertIn(item.code, ERROR_NAMES)
            testCase.assertIsInstance(item.message, str)
            dumps(errorResponse(item.id, item))
        else:
            testCase.assertIsInstance(item, Request)
            dumps(item.toJSON())


class RequestParserFuzz(SynchronousTestCase):
    """
    L{parseRequests} never raises, whatever the body: it returns calls and
    errors that can be answered (their JSON form exists).
    """

    @FUZZ
    @given(st.binary(max_size=3000))
    @example(b"[" * 100_000)
    @example(b'{"a":' * 50_000)
    @example(b"\xff\xfe")
    @example(b'"\\ud800"')
    def test_bytes(self, body: bytes) -> None:
        _checkParsed(self, parseRequests(body))
        _checkParsed(self, parseRequests(body, small))

    @FUZZ
    @given(requests | st.lists(requests, max_size=5) | json_values)
    def test_shapes(self, value: Any) -> None:
        body = json.dumps(value).encode()
        _checkParsed(self, parseRequests(body))
        _checkParsed(self, parseRequests(body, small))
        _checkParsed(self, parseRequests(body.decode()))

    @FUZZ
    @given(st.binary(max_size=2000) | json_values.map(lambda v: json.dumps(v).encode()))
    def test_responses(self, body: bytes) -> None:
        """
        L{parseResponse} (the caller's side) raises L{RPCError} or nothing.
        """
        try:
            parseResponse(body)
        except RPCError as e:
            self.assertIn(e.code, ERROR_NAMES)


class EventDecoderFuzz(SynchronousTestCase):
    """
    L{EventTypes.decode} returns an event or raises L{EventError}; a decoded
    event encodes again (or raises L{EventError}).
    """

    types = EventTypes()

    def _check(self, data: bytes) -> None:
        try:
            event = self.types.decode(data)
        except EventError:
            return
        self.assertIsInstance(event, Event | GenericEvent)
        try:
            self.types.encode(event)
        except EventError:
            pass

    @FUZZ
    @given(st.binary(max_size=3000))
    @example(b"[" * 100_000)
    @example(b'{"event": "NodeStatus", "node": "x", "sequence": 1e400}')
    def test_bytes(self, data: bytes) -> None:
        self._check(data)

    @FUZZ
    @given(
        st.fixed_dictionaries(
            {},
            optional={
                "event": st.sampled_from(["NodeAnnounce", "NodeStatus", "NodeLeave"]) | json_values,
                "node": st.text(max_size=10) | json_values,
                "incarnation": st.text(max_size=10) | json_values,
                "sequence": json_values,
                "interval": json_values,
                "commands": json_values,
                "methods": json_values,
                "failedPlugins": json_values,
                "refused": json_values,
                "served": json_values,
                "version": json_values,
            },
        )
    )
    def test_shapes(self, body: dict[str, Any]) -> None:
        self._check(json.dumps(body).encode())


keys = {
    "core": ["id", "domain", "strict-plugins", "debug", "users"],
    "amqp": [
        "url",
        "heartbeat",
        "connection-name",
        "cafile",
        "certfile",
        "keyfile",
        "reconnect-initial",
        "reconnect-max",
        "queue-type",
        "publish-timeout",
    ],
    "http": ["listen", "path"],
    "agent": [
        "status-interval",
        "node-timeout",
        "threads",
        "drain-timeout",
        "capacity",
        "object-timeout",
        "max-deliveries",
    ],
    "acl": ["admins", "*", "user:alice", "group:ops", "bogus"],
}
values = st.sampled_from(
    [
        "",
        "0",
        "-1",
        "1e400",
        "nan",
        "inf",
        "true",
        "maybe",
        "amqp://u:p@h:99999/",
        "amqps://[::1",
        "amqp://",
        "tcp:8080",
        "/etc/passwd",
        "/nonexistent",
        "user:",
        "group:x, *",
        "quorum",
        "/rpc",
        "x\x00y",
    ]
) | st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"), max_size=40)
lines = st.one_of(
    st.tuples(st.sampled_from(sorted(keys)), st.nothing()).map(lambda t: f"[{t[0]}]"),
    st.sampled_from(sorted(keys)).map(lambda s: f"[{s}]"),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"), max_size=15).map(
        lambda s: f"[{s}]"
    ),
    st.tuples(
        st.sampled_from(sorted({k for ks in keys.values() for k in ks})) | st.text(max_size=10),
        values,
    ).map(lambda kv: f"{kv[0]} = {kv[1]}"),
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n\r"), max_size=30),
)


class ConfigLoaderFuzz(SynchronousTestCase):
    """
    L{loadConfig} returns a configuration or raises L{ConfigError}, for any
    file (any lines, any bytes).
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp()

    def tearDown(self) -> None:
        import shutil

        shutil.rmtree(self.directory, ignore_errors=True)

    def _load(self, data: bytes) -> None:
        path = os.path.join(self.directory, "config")
        with open(path, "wb") as f:
            f.write(data)
        try:
            config = loadConfig(path)
        except ConfigError as e:
            self.assertTrue(str(e))
            return
        self.assertIsInstance(config, AgentConfig)

    @FUZZ
    @given(st.lists(lines, max_size=20))
    @example(["[core]", "id = a", "[DEFAULT]", "node-timeout = 1"])
    @example(["[agent]", "status-interval = 5", "[DEFAULT]", "node-timeout = 1"])
    def test_lines(self, text: list[str]) -> None:
        self._load("\n".join(text).encode("utf-8"))

    @FUZZ
    @given(st.binary(max_size=500))
    def test_bytes(self, data: bytes) -> None:
        self._load(data)


# The foreign client


#: Commands the fuzzer may call by name (those that do not block, sleep long,
#: kill the agent or open objects): and random names.
SAFE_METHODS = [
    "echo",
    "greet",
    "ping",
    "getMethods",
    "getNodes",
    "getCommandSchema",
    "whoami",
    "fail",
    "findFriend",
    "helloNodes",
    "greetingCount",
    "listObjectOIDs",
]
SPECIAL_HEADERS = [
    "x-clacks-deadline",
    "x-clacks-target",
    "x-clacks-on-behalf-of",
    "x-delivery-count",
    "x-death",
    "x-clacks-node",
]


class ForeignFuzzer:
    """
    Random requests from a pika client, in a thread.

    @ivar sent: messages published.
    @ivar replies: replies received.
    @ivar channelErrors: channels the broker closed (bad user id or
        expiration: the broker's own checks).
    """

    def __init__(self, url: str, domain: str, seed: int, seconds: float) -> None:
        self.url = url
        self.domain = domain
        self.rng = random.Random(seed)
        self.seconds = seconds
        self.sent = 0
        self.replies = 0
        self.channelErrors = 0
        self.encodeErrors = 0
        self.stop = threading.Event()

    def text(self, size: int = 12) -> str:
        alphabet = string.printable + "éß€😀\u200b"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, size)))

    def value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth > 3 or r < 0.55:
            return self.rng.choice(
                [
                    self.rng.randint(-(2**63), 2**63 - 1),
                    self.rng.randint(-(2**31), 2**31),
                    self.rng.random() * 10 ** self.rng.randint(-5, 20),
                    Float32(self.rng.random()),
                    decimal.Decimal(self.rng.randint(-(10**6), 10**6)).scaleb(-3),
                    self.text(),
                    self.text().encode("utf-8"),
                    self.rng.random() < 0.5,
                    None,
                    datetime.datetime(2020, 1, 1) + datetime.timedelta(seconds=self.rng.random()),
                ]
            )
        if r < 0.8:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {self.text(8): self.value(depth + 1) for _ in range(self.rng.randint(0, 4))}

    def headers(self) -> dict[str, Any] | None:
        if self.rng.random() < 0.2:
            return None
        headers = {self.text(10): self.value() for _ in range(self.rng.randint(0, 5))}
        for key in SPECIAL_HEADERS:
            if self.rng.random() < 0.15:
                headers[key] = self.value()
        if self.rng.random() < 0.6:
            headers["x-clacks-deadline"] = time.time() + self.rng.choice([30, 30, -5])
        return headers

    def jsonValue(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth > 4 or r < 0.6:
            return self.rng.choice(
                [None, True, 1, -(2**70), 1.5, self.text(), "", 0, "\ud800"[:0] + self.text()]
            )
        if r < 0.8:
            return [self.jsonValue(depth + 1) for _ in range(self.rng.randint(0, 4))]
        return {self.text(6): self.jsonValue(depth + 1) for _ in range(self.rng.randint(0, 4))}

    def request(self) -> dict[str, Any]:
        method = self.rng.choice(SAFE_METHODS) if self.rng.random() < 0.85 else self.text()
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if self.rng.random() < 0.9:
            body["params"] = (
                [self.jsonValue() for _ in range(self.rng.randint(0, 3))]
                if self.rng.random() < 0.7
                else {self.text(6): self.jsonValue() for _ in range(self.rng.randint(0, 3))}
            )
        if self.rng.random() < 0.9:
            body["id"] = self.rng.choice([self.rng.randint(0, 10**6), self.text(), None])
        if self.rng.random() < 0.05:
            body[self.text(5)] = 1
        return body

    def body(self) -> bytes:
        r = self.rng.random()
        if r < 0.1:
            return bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(0, 2000)))
        if r < 0.15:
            return json.dumps(self.jsonValue()).encode()
        if r < 0.2:
            return json.dumps([self.request() for _ in range(self.rng.randint(0, 5))]).encode()
        if r < 0.22:
            return b"[" * self.rng.randint(30, 5000) + b"]" * self.rng.randint(0, 10)
        if r < 0.25:
            # Big, valid: an echo of up to 900 KB, answered in full.
            size = self.rng.randint(100_000, 900_000)
            return json.dumps(
                {"jsonrpc": "2.0", "method": "echo", "params": ["x" * size], "id": 1}
            ).encode()
        if r < 0.26:
            return b"x" * (1024 * 1024 + self.rng.randint(1, 1000))
        return json.dumps(self.request()).encode("utf-8", "surrogatepass")

    def properties(self, replyQueue: str) -> Any:
        import pika

        rng = self.rng
        headers = self.headers()
        # The broker closes the channel on a non-numeric expiration or a
        # user id that is not the login: rarely, to keep the rate up.
        expiration = rng.choice([None] * 12 + ["60000", "0", self.text(5)])
        if expiration is not None and headers:
            # A request that expires in the queue is dead-lettered by the
            # broker, and a malformed x-death header then crashes RabbitMQ
            # 3.10's queue process (for good, if the request is
            # persistent): a broker bug the agent cannot prevent, shown by
            # BrokerCancelsConsumer and PoisonedDeadLettering.
            headers.pop("x-death", None)
        return pika.BasicProperties(
            content_type=rng.choice(
                [None, "application/json", "application/json", "", self.text(20)]
            ),
            content_encoding=rng.choice([None, "utf-8", self.text(8)]),
            headers=headers,
            delivery_mode=rng.choice([None, 1, 2]),
            priority=rng.choice([None, 0, 9]),
            correlation_id=rng.choice([None, self.text(30), "fixed"]),
            reply_to=rng.choice(
                [
                    "amq.rabbitmq.reply-to",
                    "amq.rabbitmq.reply-to",
                    replyQueue,
                    None,
                    self.text(20),
                    "amq.rabbitmq.reply-to.bogus",
                ]
            ),
            expiration=expiration,
            message_id=rng.choice([None, self.text(30), "fixed-id"]),
            timestamp=rng.choice([None, rng.randint(0, 2**32)]),
            type=rng.choice([None, self.text(10)]),
            user_id=rng.choice([None] * 9 + ["guest"] * 9 + ["nobody"]),
            app_id=rng.choice([None, self.text(10)]),
        )

    def run(self) -> None:
        import pika.data

        original = pika.data.encode_value
        pika.data.encode_value = _encodeValue(original)  # type: ignore[assignment]
        try:
            self._run()
        finally:
            pika.data.encode_value = original  # type: ignore[assignment]

    def _run(self) -> None:
        import pika
        import pika.exceptions

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        exchange = f"{self.domain}.commands"
        deadline = time.monotonic() + self.seconds

        def onReply(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            self.replies += 1

        def openChannel() -> tuple[Any, str]:
            channel = connection.channel()
            channel.confirm_delivery()
            declared = channel.queue_declare(
                "", exclusive=True, auto_delete=True, arguments={"x-max-length": 50}
            )
            channel.basic_consume("amq.rabbitmq.reply-to", onReply, auto_ack=True)
            return channel, declared.method.queue

        channel, replyQueue = openChannel()
        try:
            while time.monotonic() < deadline and not self.stop.is_set():
                key = self.rng.choice(["any"] * 7 + ["node.A"] * 2 + ["all", self.text(8)])
                try:
                    properties = self.properties(replyQueue)
                    body = self.body()
                except Exception:
                    self.encodeErrors += 1
                    continue
                try:
                    channel.basic_publish(exchange, key, body, properties)
                    self.sent += 1
                except (
                    pika.exceptions.ChannelClosedByBroker,
                    pika.exceptions.ChannelWrongStateError,
                ):
                    self.channelErrors += 1
                    channel, replyQueue = openChannel()
                except (pika.exceptions.UnroutableError, pika.exceptions.NackError):
                    self.sent += 1
                except (
                    ValueError,
                    TypeError,
                    OverflowError,
                    AssertionError,
                    pika.exceptions.UnsupportedAMQPFieldException,
                ):
                    # pika cannot encode this one (e.g. an int beyond 64 bits).
                    self.encodeErrors += 1
                    if not channel.is_open:
                        channel, replyQueue = openChannel()
                connection.process_data_events(time_limit=0)
        finally:
            connection.close()


class Float32(float):
    """
    A float sent as a 32-bit field (C{f}).
    """


def _encodeValue(original: Any) -> Any:
    """
    @return: pika's field encoder, plus the types it lacks: floats (C{d},
        and C{f} for L{Float32}), which RabbitMQ and other clients send.
    """

    def encode(pieces: list[bytes], value: Any) -> int:
        if isinstance(value, Float32):
            pieces.append(struct.pack(">cf", b"f", value))
            return 5
        if isinstance(value, float):
            # (RabbitMQ 3.10 closes the connection on a NaN: not sent.)
            pieces.append(struct.pack(">cd", b"d", value))
            return 9
        result: int = original(pieces, value)
        return result

    return encode


class ForeignClientFuzz(TestCase):
    """
    A pika client throws random requests at a real agent's queues.
    """

    timeout = FUZZ_SECONDS + 120

    def setUp(self) -> None:
        requireReliability()

    @inlineCallbacks
    def test_randomRequests(self) -> Generator[Deferred[Any], Any, None]:
        """
        After C{CLACKS_FUZZ_SECONDS} of random messages the agent answers
        calls to any node and to itself, has not reconnected, and its RSS
        grew by at most 10% in the second half.
        """
        domain = DomainFixture(self)
        domain.broker.deleteAfterwards(queue=f"{domain.domain}.commands.node.A")
        recordDir = os.path.abspath(self.mktemp())
        os.makedirs(recordDir)
        agent = AgentProcess(self, "A", domain.domain, BROKER_URL, recordDir, writeDropins(self))
        yield agent.start()
        [client] = yield startClients(self, BROKER_URL, domain.domain, count=1)
        # Warm-up: fill the reply cache up to its byte bound (16 MiB) with
        # big replies, as the fuzzer would sooner or later.
        for i in range(40):
            yield client.call("echo", "x" * 500_000 + str(i), timeout=30)
        seed = int(os.environ.get("CLACKS_FUZZ_SEED") or random.randrange(2**32))
        fuzzer = ForeignFuzzer(BROKER_URL, domain.domain, seed, FUZZ_SECONDS)
        started = time.monotonic()
        done = deferToThread(fuzzer.run)
        self.addCleanup(lambda: fuzzer.stop.set())
        samples: list[tuple[float, int]] = []
        while not done.called:
            samples.append((time.monotonic() - started, agent.rss()))
            yield pause(0.5)
        yield done
        address = brokerAddress()
        probe = yield openConnection(self, address.host, address.port)
        shared = f"{domain.domain}.commands.any"
        yield waitQueuesEmpty(probe, [shared, f"{domain.domain}.commands.node.A"], timeout=60)
        drained = time.monotonic() - started
        anyAnswer = yield client.call("echo", "still here", timeout=30)
        nodeAnswer = yield client.call("ping", node="A", timeout=30)
        yield pause(1.0)
        end = agent.rss()
        # From half-way on: the other bounded state (10,000 replies,
        # delivery counts, the allocator's arenas) has had time to settle.
        warm = [rss for t, rss in samples if t >= FUZZ_SECONDS / 2]
        baseline = warm[0] if warm else samples[0][1]
        growth = (end - baseline) / baseline
        out = agent.out
        row = {
            "scenario": f"fuzz: foreign client, {FUZZ_SECONDS:g} s of random messages",
            "calls": fuzzer.sent,
            "answered": fuzzer.replies,
            "failedClear": 0,
            "lost": 0,
            "ranTwice": 0,
            "duration": round(drained, 1),
            "seed": seed,
            "channelErrors": fuzzer.channelErrors,
            "rssStartMB": round(samples[0][1] / 2**20, 1),
            "rssBaselineMB": round(baseline / 2**20, 1),
            "rssEndMB": round(end / 2**20, 1),
            "rssPeakMB": round(max(rss for _, rss in samples) / 2**20, 1),
            "rssGrowth": round(growth, 3),
            "tracebacks": out.count("Traceback"),
            "connects": agent.connects(),
        }
        writeRow(row)
        self.assertEqual(anyAnswer, "still here")
        self.assertEqual(nodeAnswer["node"], "A")
        self.assertEqual(agent.connects(), 1, "the agent lost its connection")
        self.assertIsNone(agent.child.result if agent.child else None)
        self.assertLessEqual(growth, 0.10, row)
        self.assertGreater(fuzzer.sent, 100)


class BrokerCancelsConsumer(TestCase):
    """
    What the foreign client found: one message can make the broker cancel
    the agent's consumer.
    """

    timeout = 60

    def setUp(self) -> None:
        requireReliability()

    @inlineCallbacks
    def test_queueProcessCrash(self) -> Generator[Deferred[Any], Any, None]:
        """
        A request that expires at once and carries a malformed C{x-death}
        header makes RabbitMQ 3.10's dead-lettering crash the shared
        queue's process; the queue restarts and the broker cancels its
        consumers (C{basic.cancel}).  The agent, still connected, consumes
        the queue again and answers the next call to any node.
        """
        from tests.util.rawrpc import RawRPC, requestBody

        domain = DomainFixture(self)
        domain.broker.deleteAfterwards(queue=f"{domain.domain}.commands.node.A")
        recordDir = os.path.abspath(self.mktemp())
        os.makedirs(recordDir)
        agent = AgentProcess(self, "A", domain.domain, BROKER_URL, recordDir, writeDropins(self))
        yield agent.start()
        raw = yield RawRPC.open(domain.broker, domain.domain)
        # Keep the agent busy (capacity 16) so that the request expires in
        # the queue: the broker dead-letters it.
        for i in range(16):
            yield raw.publish(requestBody("slowEcho", [i, 2]))
        yield raw.publish(
            requestBody("ping"), properties={"expiration": "0", "headers": {"x-death": [1.5]}}
        )
        try:
            yield agent.waitFor("The broker cancelled consumer", timeout=5)
        except Exception:
            raise SkipTest("this broker does not crash the queue on such a message") from None
        reply = yield raw.request(requestBody("echo", ["after"]), timeout=15)
        self.assertEqual(reply.json["result"], "after")
        self.assertIn("consuming it again", agent.out)
        self.assertEqual(agent.connects(), 1)


class PoisonedDeadLettering(TestCase):
    """
    The same message, persistent: RabbitMQ 3.10 crashes the queue again
    each time it recovers it, until the queue is dead for good; every
    operation on it then closes the connection (541 INTERNAL_ERROR), so the
    agents cannot even declare their topology and stay offline.  The agent
    cannot prevent it (see C{docs/reliability.md}); this test shows it on a
    private broker and is expected to fail until the broker (or the
    topology) changes.
    """

    timeout = 90
    todo = (
        "RabbitMQ 3.10 dead-lettering crashes on a client's malformed x-death header; "
        "a persistent one kills the command queue for good (docs/reliability.md)"
    )

    def setUp(self) -> None:
        requireReliability()

    @inlineCallbacks
    def test_persistentMalformedXDeath(self) -> Generator[Deferred[Any], Any, None]:
        """
        After one persistent request that expires with a malformed
        C{x-death} header, the agent still answers calls to any node.
        """
        from clacks.handlers.amqp.compat import PublishNacked
        from tests.util.privatebroker import PrivateBroker
        from tests.util.rawrpc import RawRPC, requestBody

        broker = PrivateBroker(self.mktemp())
        self.addCleanup(broker.cleanup)
        yield broker.start()
        assert broker.port is not None
        recordDir = os.path.abspath(self.mktemp())
        os.makedirs(recordDir)
        domain = "clacks.test.deadletter"
        agent = AgentProcess(self, "A", domain, broker.url, recordDir, writeDropins(self))
        yield agent.start()
        connection = yield openConnection(self, "127.0.0.1", broker.port)
        raw = yield RawRPC.open(None, domain, connection=connection)  # type: ignore[arg-type]
        for i in range(16):
            yield raw.publish(requestBody("slowEcho", [i, 2]))
        try:
            yield raw.publish(
                requestBody("ping"),
                properties={"expiration": "500", "delivery-mode": 2, "headers": {"x-death": [1.5]}},
            )
        except PublishNacked:
            # The queue crashed while it stored the message.
            pass
        yield agent.waitFor("The broker cancelled consumer", timeout=10)
        # The queue restarts, recovers the request, crashes again...
        yield pause(5.0)
        [client] = yield startClients(self, broker.url, domain, count=1)
        answer = yield client.call("echo", "after", timeout=20)
        self.assertEqual(answer, "after")
        self.assertEqual(agent.connects(), 1)
