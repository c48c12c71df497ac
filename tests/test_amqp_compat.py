"""
Tests for L{clacks.handlers.amqp.compat}: every txAMQP 0.8.2 defect it
contains, proven against the real broker through the real txAMQP
connection (plus a few wire-level tests with a scripted peer, where the
broker cannot be made to behave deterministically).

The broker tests need RabbitMQ (see L{tests.util.broker}); they are skipped
without one, except on CI where they fail.
"""

from __future__ import annotations

import datetime
import inspect
import json
import shutil
import subprocess
from collections.abc import Generator
from decimal import Decimal
from typing import Any

import pamqp.body
import pamqp.frame
import pika
import pika.spec
from pamqp import commands
from twisted.application.internet import ClientService
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from txamqp import spec as txspec
from txamqp.queue import Closed as QueueClosed

from clacks.handlers.amqp.compat import (
    PROTOCOL_HEADER,
    AMQPClientFactory,
    AMQPConnection,
    AuthenticationError,
    ChannelClosedError,
    ConnectionLostError,
    ConsumerCancelled,
    PublishNacked,
    UnknownPropertyError,
    decodeTable,
    encodeTable,
    loadSpec,
    mapProperties,
    pythonProperties,
)
from tests.util.broker import BROKER_URL, BrokerFixture, uniqueName

UTC = datetime.UTC

#: A text with characters of 1, 2 and 3 bytes in UTF-8.
NON_ASCII = "café ✓ 日本"

#: Header values of every field type, as the test sends them.
ALL_TYPES_HEADERS: dict[str, Any] = {
    "negative": -42,
    "int16": -30000,
    "uint16": 60000,
    "int32": -2_000_000_000,
    "uint32": 4_000_000_000,
    "int64": 2**62,
    "negative64": -(2**40),
    "decimal": Decimal("-3.14"),
    "text": NON_ASCII,
    "bytes": b"\x00\xff\xfebinary",
    "true": True,
    "false": False,
    "void": None,
    "timestamp": datetime.datetime(2024, 2, 29, 12, 30, 45, tzinfo=UTC),
    "array": [1, "two", None, [3], {"four": 4}],
    "nested": {"inner": {"deeper": [-1, b"x", "y"]}, "n": 0},
}


def _pikaPublish(queue: str, body: bytes, headers: dict[str, Any]) -> None:
    """
    Publish with pika (blocking: run in a thread).
    """
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        channel = connection.channel()
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=body,
            properties=pika.BasicProperties(headers=headers, correlation_id="from-pika"),
        )
    finally:
        connection.close()


def _pikaGet(queue: str) -> tuple[Any, bytes] | None:
    """
    Get one message with pika (blocking: run in a thread).

    @return: C{(properties, body)} or C{None} if the queue is empty.
    """
    connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    try:
        channel = connection.channel()
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        return None if method is None else (properties, body)
    finally:
        connection.close()


def _rabbitmqctl(*args: str, formatJSON: bool = True) -> Deferred[Any]:
    """
    Run C{rabbitmqctl} in a thread.

    @return: a Deferred firing with its JSON output, decoded, or with its
        plain text output if C{formatJSON} is false.
    """
    options = ["--formatter", "json", "-q"] if formatJSON else ["-q"]

    def run() -> Any:
        result = subprocess.run(
            ["rabbitmqctl", *args, *options],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        )
        if not formatJSON:
            return result.stdout
        return json.loads(result.stdout) if result.stdout.strip() else None

    return deferToThread(run)


# ---------------------------------------------------------------------------
# Without a broker: the spec, the codec, the property names


class SpecTests(SynchronousTestCase):
    """
    The AMQP 0-9-1 definition shipped as package data (defect 1: txAMQP
    ships none).
    """

    def test_loadedOnceFromPackageData(self) -> None:
        """
        L{loadSpec} loads the 0-9-1 definition from the package and caches
        it.
        """
        spec = loadSpec()
        self.assertIs(loadSpec(), spec)
        self.assertEqual((spec.major, spec.minor), (0, 9))

    def test_matchesPika(self) -> None:
        """
        Every method of the generated definition has the ids, field order
        and synchronous flag of pika's own (independently generated)
        definition, and every method pika knows (but the removed C{access}
        class) is there: the connection, channel, exchange, queue, basic,
        tx and confirm classes, including RabbitMQ's extensions.
        """
        spec = loadSpec()
        # pika's names for the fields 0-9-1 calls reserved-N, no-wait, ...
        renames = {
            "ticket": "reserved_1",
            "nowait": "no_wait",
            "global_qos": "global_",
            "exchange_type": "type",
            "capabilities": "reserved_1",
            "insist": "reserved_2",
            "known_hosts": "reserved_1",
            "out_of_band": "reserved_1",
            "channel_id": "reserved_1",
            "cluster_id": "reserved_1",
        }
        seen = set()
        for pikaClass in vars(pika.spec).values():
            if not (
                inspect.isclass(pikaClass) and isinstance(getattr(pikaClass, "INDEX", None), int)
            ):
                continue
            for pikaMethod in vars(pikaClass).values():
                if not (
                    inspect.isclass(pikaMethod)
                    and issubclass(pikaMethod, pika.spec.amqp_object.Method)
                ):
                    continue
                classId, methodId = pikaMethod.INDEX >> 16, pikaMethod.INDEX & 0xFFFF
                if classId == 30:  # access: removed in 0-9-1
                    continue
                method = spec.classes.byid[classId].methods.byid[methodId]
                pikaFields = list(inspect.signature(pikaMethod.__init__).parameters)[1:]
                self.assertEqual(
                    [txspec.pythonize(field.name) for field in method.fields],
                    [renames.get(name, name) for name in pikaFields],
                    pikaMethod.NAME,
                )
                synchronous = pikaMethod.synchronous.fget(None)
                self.assertEqual(method.synchronous, synchronous, pikaMethod.NAME)
                seen.add((classId, methodId))
        ours = {(klass.id, method.id) for klass in spec.classes for method in klass.methods}
        self.assertEqual(ours, seen)
        for name in (
            "confirm.select",
            "confirm.select-ok",
            "basic.nack",
            "exchange.bind",
            "exchange.unbind-ok",
            "connection.blocked",
            "connection.unblocked",
        ):
            self.assertIsNotNone(spec.parse_method(name))
        declare = spec.parse_method("exchange.declare")
        self.assertIn("auto-delete", declare.fields.byname)
        self.assertIn("internal", declare.fields.byname)

    def test_contentMethodsAndProperties(self) -> None:
        """
        publish, return, deliver and get-ok carry content, and the basic
        class has all 14 content properties, in wire order.
        """
        spec = loadSpec()
        self.assertEqual(
            {(k.name, m.name) for k in spec.classes for m in k.methods if m.content},
            {("basic", "publish"), ("basic", "return"), ("basic", "deliver"), ("basic", "get-ok")},
        )
        self.assertEqual(
            [field.name for field in spec.classes.byname["basic"].fields],
            [
                "content-type",
                "content-encoding",
                "headers",
                "delivery-mode",
                "priority",
                "correlation-id",
                "reply-to",
                "expiration",
                "message-id",
                "timestamp",
                "type",
                "user-id",
                "app-id",
                "cluster-id",
            ],
        )


class TableCodecTests(SynchronousTestCase):
    """
    Field tables (defect 6): every AMQP 0-9-1 field type is encoded and
    decoded.
    """

    def test_roundTrip(self) -> None:
        """
        Every type the codec sends comes back equal: integers of every
        size and sign, double, decimal, strings, bytes, booleans, void,
        timestamps, arrays and nested tables.
        """
        table = dict(ALL_TYPES_HEADERS, double=-2.718281828459045)
        self.assertEqual(decodeTable(encodeTable(table)), table)

    def test_decodeEveryTypeCode(self) -> None:
        """
        Type codes other peers send and this codec does not (unsigned
        octet C{B}, C{L} 64-bit, 32-bit float C{f}, long string with
        invalid UTF-8) are decoded too.
        """
        entries = [
            (b"B", b"\xff", 255),
            (b"L", (-5).to_bytes(8, "big", signed=True), -5),
            (b"f", b"\x3f\xc0\x00\x00", 1.5),
            (b"S", b"\x00\x00\x00\x02\xff\xfe", b"\xff\xfe"),
            (b"V", b"", None),
        ]
        data = b""
        expected = {}
        for index, (code, value, decoded) in enumerate(entries):
            key = f"k{index}".encode()
            data += bytes([len(key)]) + key + code + value
            expected[key.decode()] = decoded
        self.assertEqual(decodeTable(len(data).to_bytes(4, "big") + data), expected)

    def test_unsupportedValue(self) -> None:
        """
        A value of no AMQP type raises a TypeError that names the key.
        """
        error = self.assertRaises(TypeError, encodeTable, {"bad": object()})
        self.assertIn("'bad'", str(error))


class PropertyNameTests(SynchronousTestCase):
    """
    Message property names (defect 5: txAMQP silently drops
    C{correlation_id}).
    """

    def test_pythonNames(self) -> None:
        """
        Python-style names map to the specification's names; spec names
        pass through; C{None} values are left out.
        """
        self.assertEqual(
            mapProperties(
                {
                    "correlation_id": "c",
                    "reply-to": "r",
                    "content_type": "text/plain",
                    "delivery_mode": 2,
                    "message_type": "t",
                    "app_id": None,
                }
            ),
            {
                "correlation-id": "c",
                "reply-to": "r",
                "content-type": "text/plain",
                "delivery-mode": 2,
                "type": "t",
            },
        )
        self.assertEqual(
            pythonProperties({"correlation-id": "c", "type": "t"}),
            {"correlation_id": "c", "type": "t"},
        )

    def test_unknownName(self) -> None:
        """
        An unknown name raises L{UnknownPropertyError} naming it.
        """
        error = self.assertRaises(UnknownPropertyError, mapProperties, {"correlationId": "x"})
        self.assertIn("'correlationId'", str(error))
        self.assertIn("correlation_id", str(error))

    def test_twice(self) -> None:
        """
        One property under two names is an error.
        """
        self.assertRaises(ValueError, mapProperties, {"reply_to": "a", "reply-to": "b"})


class ScriptedPeerTests(SynchronousTestCase):
    """
    The connection against a scripted peer on a L{StringTransport}: frames
    it receives are made by pamqp, frames it sends are parsed by pamqp.
    """

    def setUp(self) -> None:
        self.connection = AMQPConnection(heartbeat=0, connectionName="scripted")
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        self.addCleanup(self.connection.connectionLost, Failure(ConnectionDone()))
        self.assertEqual(self.transport.value(), PROTOCOL_HEADER)
        self.transport.clear()
        self.channel = self.connection._channel(1)

    def receive(self, *frames: Any) -> None:
        for frame in frames:
            self.connection.dataReceived(pamqp.frame.marshal(frame, 1))

    def sent(self) -> list[Any]:
        data = self.transport.value()
        self.transport.clear()
        frames = []
        while data:
            consumed, _, frame = pamqp.frame.unmarshal(data)
            frames.append(frame)
            data = data[consumed:]
        return frames

    def test_multipleAckAndNack(self) -> None:
        """
        On a confirm channel, a C{basic.ack} with C{multiple} confirms every
        publish up to its tag, and a C{basic.nack} fails its publish with
        L{PublishNacked}.
        """
        enabled = self.connection.enableConfirms(self.channel)
        self.assertIsInstance(self.sent()[0], commands.Confirm.Select)
        self.receive(commands.Confirm.SelectOk())
        self.successResultOf(enabled)
        published = [
            self.connection.publish(self.channel, "ex", "key", b"%d" % i) for i in range(4)
        ]
        self.receive(commands.Basic.Ack(delivery_tag=2, multiple=True))
        self.successResultOf(published[0])
        self.successResultOf(published[1])
        self.assertNoResult(published[2])
        self.receive(commands.Basic.Nack(delivery_tag=4, multiple=True))
        for d in published[2:]:
            self.assertIn("exchange 'ex'", str(self.failureResultOf(d, PublishNacked).value))

    def test_publishedFrames(self) -> None:
        """
        A published message is sent as pamqp (an independent codec) reads
        it: properties with Python-style names, field table headers of
        every type, a UTF-8 body split into frames of the negotiated size.
        """
        self.connection.frameMax = 4096
        body = NON_ASCII.encode() * 1000
        self.connection.publish(
            self.channel,
            "ex",
            "key",
            body,
            {"headers": ALL_TYPES_HEADERS, "correlation_id": NON_ASCII, "delivery_mode": 2},
        )
        method, header, *bodies = self.sent()
        self.assertEqual((method.exchange, method.routing_key), ("ex", "key"))
        self.assertEqual(header.body_size, len(body))
        self.assertEqual(header.properties.correlation_id, NON_ASCII)
        self.assertEqual(header.properties.delivery_mode, 2)
        self.assertEqual(header.properties.headers["nested"], ALL_TYPES_HEADERS["nested"])
        self.assertEqual(header.properties.headers["int64"], 2**62)
        self.assertEqual(b"".join(frame.value for frame in bodies), body)
        self.assertTrue(all(len(frame.value) <= 4096 - 8 for frame in bodies))

    def test_badHeaderDoesNotStopTheWriter(self) -> None:
        """
        A header value of no AMQP type raises TypeError when publishing and
        nothing is sent; the connection keeps sending afterwards (txAMQP's
        writer died).
        """
        self.assertRaises(
            TypeError,
            self.connection.publish,
            self.channel,
            "",
            "q",
            b"x",
            {"headers": {"bad": object()}},
        )
        self.assertEqual(self.transport.value(), b"")
        self.connection.publish(self.channel, "", "q", b"x")
        self.assertEqual(len(self.sent()), 3)

    def test_undecodableHeaders(self) -> None:
        """
        A delivery whose headers table cannot be decoded is still
        delivered, with empty headers, and the connection keeps working.
        """
        queue = self.connection._queueFor("tag")
        deliver = commands.Basic.Deliver(
            consumer_tag="tag", delivery_tag=1, exchange="", routing_key="q"
        )
        self.receive(deliver)
        bad = b"\x00\x00\x00\x05\x01kZ!!"  # unknown type code Z
        header = b"\x00\x3c\x00\x00" + (3).to_bytes(8, "big") + b"\x20\x00" + bad
        self.connection.dataReceived(
            b"\x02\x00\x01" + len(header).to_bytes(4, "big") + header + b"\xce"
        )
        self.receive(pamqp.body.ContentBody(b"abc"))
        message = self.successResultOf(queue.get())
        self.assertEqual(message.content.body, b"abc")
        self.assertEqual(message.content.properties["headers"], {})
        self.assertEqual(self.flushLoggedErrors(), [])


# ---------------------------------------------------------------------------
# Against the broker


class BrokerTestCase(TestCase):
    """
    Base of the tests against the real broker.
    """

    timeout = 30

    def setUp(self) -> None:
        self.broker = BrokerFixture(self)

    @inlineCallbacks
    def connectWithChannel(
        self, confirms: bool = False, **kwargs: Any
    ) -> Generator[Deferred[Any], Any, tuple[AMQPConnection, Any]]:
        connection = yield self.broker.connect(**kwargs)
        channel = yield connection.newChannel()
        if confirms:
            yield connection.enableConfirms(channel)
        return connection, channel

    @inlineCallbacks
    def declareQueue(
        self, channel: Any, prefix: str = "queue", **arguments: Any
    ) -> Generator[Deferred[Any], Any, str]:
        name = self.broker.queueName(prefix)
        yield channel.queue_declare(queue=name, arguments=arguments)
        return name

    @inlineCallbacks
    def getMessage(
        self, channel: Any, queue: str, noAck: bool = True, within: float = 5
    ) -> Generator[Deferred[Any], Any, Any]:
        """
        C{basic.get} until a message comes (dead-lettering is asynchronous).
        """
        deadline = reactor.seconds() + within
        while True:
            reply = yield channel.basic_get(queue=queue, no_ack=noAck)
            if reply.method.name == "get-ok":
                return reply
            if reactor.seconds() > deadline:
                self.fail(f"no message in {queue} after {within} s")
            yield deferLater(reactor, 0.02, lambda: None)

    @inlineCallbacks
    def assertStillWorks(self, connection: AMQPConnection) -> Generator[Deferred[Any], Any, None]:
        """
        The connection still publishes and gets messages.
        """
        channel = yield connection.newChannel()
        yield connection.enableConfirms(channel)
        queue = yield self.declareQueue(channel, "check")
        yield connection.publish(channel, "", queue, b"still working")
        reply = yield self.getMessage(channel, queue)
        self.assertEqual(reply.content.body, b"still working")


class BodyTests(BrokerTestCase):
    """
    Bodies are bytes, counted in bytes (defect 4).
    """

    @inlineCallbacks
    def test_nonASCIIAndMultiFrameBodies(self) -> Generator[Deferred[Any], Any, None]:
        """
        A non-ASCII body and a 1 MiB body (8 frames) published and consumed
        arrive byte-identical, as C{bytes}; so does an empty body; and the
        connection keeps working.
        """
        connection, channel = yield self.connectWithChannel(confirms=True)
        queue = yield self.declareQueue(channel)
        bodies = [NON_ASCII.encode(), bytes(range(256)) * 4096, b""]
        for body in bodies:
            yield connection.publish(channel, "", queue, body)
        consumer = yield connection.consume(channel, queue, noAck=True)
        for body in bodies:
            message = yield consumer.queue.get(timeout=5)
            self.assertIsInstance(message.content.body, bytes)
            self.assertEqual(message.content.body, body)
        yield consumer.cancel()
        yield self.assertStillWorks(connection)

    @inlineCallbacks
    def test_getLargeBody(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{basic.get} (a reply with content) returns a multi-frame non-ASCII
        body intact.
        """
        connection, channel = yield self.connectWithChannel(confirms=True)
        queue = yield self.declareQueue(channel)
        body = NON_ASCII.encode() * 100_000
        yield connection.publish(channel, "", queue, body)
        reply = yield self.getMessage(channel, queue)
        self.assertEqual(reply.content.body, body)

    @inlineCallbacks
    def test_strBodyRefused(self) -> Generator[Deferred[Any], Any, None]:
        """
        Publishing a C{str} body raises TypeError and sends nothing: the
        connection stays usable.
        """
        connection, channel = yield self.connectWithChannel()
        error = self.assertRaises(TypeError, connection.publish, channel, "", "q", NON_ASCII)
        self.assertIn("bytes", str(error))
        yield self.assertStillWorks(connection)


class HeaderTableTests(BrokerTestCase):
    """
    Header tables of every field type, to and from a foreign client
    (defect 6).
    """

    @inlineCallbacks
    def test_fromPika(self) -> Generator[Deferred[Any], Any, None]:
        """
        A message published by pika with headers of every type pika can
        send (negative and 64-bit ints, decimal, strings, bytes, booleans,
        void, timestamp, arrays, nested tables) is decoded equal by our
        consumer, and the connection keeps working.
        """
        connection, channel = yield self.connectWithChannel()
        queue = yield self.declareQueue(channel)
        yield deferToThread(_pikaPublish, queue, b"from pika", ALL_TYPES_HEADERS)
        consumer = yield connection.consume(channel, queue, noAck=True)
        message = yield consumer.queue.get(timeout=5)
        properties = message.content.properties
        self.assertEqual(properties["headers"], ALL_TYPES_HEADERS)
        self.assertEqual(properties["correlation-id"], "from-pika")
        yield self.assertStillWorks(connection)

    @inlineCallbacks
    def test_toPika(self) -> Generator[Deferred[Any], Any, None]:
        """
        Headers of every type published by us are read back equal by pika.
        A double is sent as a double; pika 1.4 truncates doubles to int
        when decoding, which the comparison allows for.
        """
        connection, channel = yield self.connectWithChannel(confirms=True)
        queue = yield self.declareQueue(channel)
        headers = dict(ALL_TYPES_HEADERS, double=2.75)
        yield connection.publish(channel, "", queue, b"to pika", {"headers": headers})
        result = yield deferToThread(_pikaGet, queue)
        self.assertIsNotNone(result)
        properties, body = result
        self.assertEqual(body, b"to pika")
        self.assertEqual(properties.headers, dict(ALL_TYPES_HEADERS, double=2))

    @inlineCallbacks
    def test_xDeath(self) -> Generator[Deferred[Any], Any, None]:
        """
        The C{x-death} header RabbitMQ adds to a dead-lettered message (an
        array of tables with a 64-bit count, a timestamp and an array of
        routing keys) is decoded.
        """
        connection, channel = yield self.connectWithChannel(confirms=True)
        deadLetters = yield self.declareQueue(channel, "dead")
        queue = yield self.declareQueue(
            channel,
            **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": deadLetters},
        )
        yield connection.publish(channel, "", queue, b"doomed")
        reply = yield self.getMessage(channel, queue, noAck=False)
        yield channel.basic_reject(delivery_tag=reply.delivery_tag, requeue=False)
        dead = yield self.getMessage(channel, deadLetters)
        self.assertEqual(dead.content.body, b"doomed")
        [death] = dead.content.properties["headers"]["x-death"]
        self.assertEqual(death["count"], 1)
        self.assertEqual(death["reason"], "rejected")
        self.assertEqual(death["queue"], queue)
        self.assertEqual(death["routing-keys"], [queue])
        self.assertIsInstance(death["time"], datetime.datetime)
        yield self.assertStillWorks(connection)

    @inlineCallbacks
    def test_methodArguments(self) -> Generator[Deferred[Any], Any, None]:
        """
        Method C{arguments} tables use the same codec: integer arguments of
        any width are accepted by the broker (a message TTL of 0 expires
        the message at once).
        """
        connection, channel = yield self.connectWithChannel(confirms=True)
        queue = yield self.declareQueue(
            channel, **{"x-message-ttl": 0, "x-max-length": 100_000, "x-expires": 2**31 - 1}
        )
        yield connection.publish(channel, "", queue, b"expired")
        reply = yield channel.basic_get(queue=queue, no_ack=True)
        self.assertEqual(reply.method.name, "get-empty")


class NoWaitTests(BrokerTestCase):
    """
    C{no_wait=True} does not hang (defect 3).
    """

    @inlineCallbacks
    def test_noWait(self) -> Generator[Deferred[Any], Any, None]:
        """
        Declares, binds and deletes with C{no_wait=True} return at once,
        and a following synchronous method gets its own reply.
        """
        connection, channel = yield self.connectWithChannel()
        queue = self.broker.queueName()
        exchange = self.broker.exchangeName()
        results = yield gatherResults(
            [
                channel.exchange_declare(exchange=exchange, type="fanout", no_wait=True),
                channel.queue_declare(queue=queue, no_wait=True),
                channel.queue_bind(queue=queue, exchange=exchange, no_wait=True),
            ]
        )
        self.assertEqual(results, [None, None, None])
        reply = yield channel.queue_declare(queue=queue, passive=True)
        self.assertEqual((reply.queue, reply.message_count), (queue, 0))
        yield channel.queue_purge(queue=queue, no_wait=True)
        yield channel.queue_delete(queue=queue, no_wait=True)
        yield self.assertStillWorks(connection)


class ConfirmTests(BrokerTestCase):
    """
    Publisher confirms (defect 7).
    """

    @inlineCallbacks
    def test_ackedAndManyInFlight(self) -> Generator[Deferred[Any], Any, None]:
        """
        On a confirm channel each publish fires once the broker acks it,
        also with hundreds in flight (the broker then acks several at once
        with C{multiple}, see L{ScriptedPeerTests.test_multipleAckAndNack});
        on a plain channel it fires right away.
        """
        connection, channel = yield self.connectWithChannel(confirms=True)
        queue = yield self.declareQueue(channel)
        published = [connection.publish(channel, "", queue, b"%d" % i) for i in range(500)]
        self.assertNoResult(published[-1])
        results = yield gatherResults(published)
        self.assertEqual(results, [None] * 500)
        self.assertEqual(channel._unconfirmed, {})
        reply = yield channel.queue_declare(queue=queue, passive=True)
        self.assertEqual(reply.message_count, 500)
        plain = yield connection.newChannel()
        self.successResultOf(connection.publish(plain, "", queue, b"unconfirmed"))

    @inlineCallbacks
    def test_nacked(self) -> Generator[Deferred[Any], Any, None]:
        """
        A publish the broker refuses (a full queue with
        C{x-overflow: reject-publish}) fails with L{PublishNacked}; the
        channel stays open.
        """
        connection, channel = yield self.connectWithChannel(confirms=True)
        queue = yield self.declareQueue(
            channel, **{"x-max-length": 1, "x-overflow": "reject-publish"}
        )
        first = connection.publish(channel, "", queue, b"fits")
        second = connection.publish(channel, "", queue, b"does not fit")
        yield first
        yield self.assertFailure(second, PublishNacked)
        self.assertFalse(channel.closed)
        yield connection.publish(channel, "", "", b"unroutable but acked")

    @inlineCallbacks
    def test_noSuchExchange(self) -> Generator[Deferred[Any], Any, None]:
        """
        A publish to a missing exchange fails with L{ChannelClosedError}
        carrying the broker's 404 and naming the exchange; so do the other
        publishes in flight on that channel.
        """
        connection, channel = yield self.connectWithChannel(confirms=True)
        missing = self.broker.exchangeName("missing")
        first = connection.publish(channel, missing, "key", b"lost")
        second = connection.publish(channel, missing, "key", b"lost too")
        error = yield self.assertFailure(first, ChannelClosedError)
        self.assertEqual(error.replyCode, 404)
        self.assertIn(missing, str(error))
        yield self.assertFailure(second, ChannelClosedError)
        yield self.assertStillWorks(connection)


class ConsumerTests(BrokerTestCase):
    """
    Consumers are told when the broker cancels them, and their queues are
    dropped (defect 8).
    """

    @inlineCallbacks
    def test_brokerCancel(self) -> Generator[Deferred[Any], Any, None]:
        """
        Deleting a consumed queue makes the broker send C{basic.cancel}:
        C{consumer.cancelled} fires with L{ConsumerCancelled}, pending
        gets fail with C{Closed}, the local queue is dropped, and the
        connection and the channel stay usable.
        """
        connection, channel = yield self.connectWithChannel()
        queue = yield self.declareQueue(channel)
        consumer = yield connection.consume(channel, queue, prefetch=10)
        pending = consumer.queue.get()
        other = yield connection.newChannel()
        yield other.queue_delete(queue=queue)
        reason = yield consumer.cancelled
        self.assertIsInstance(reason, ConsumerCancelled)
        yield self.assertFailure(pending, QueueClosed)
        self.assertFalse(consumer.active)
        self.assertNotIn(consumer.tag, connection.queues)
        self.assertFalse(channel.closed)
        yield channel.queue_declare(queue=queue)
        yield self.assertStillWorks(connection)

    @inlineCallbacks
    def test_clientCancel(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{consumer.cancel()} cancels on the broker, closes and drops the
        local queue, and fires C{cancelled} with C{None}; messages
        delivered before can still be read.
        """
        connection, channel = yield self.connectWithChannel(confirms=True)
        queue = yield self.declareQueue(channel)
        yield connection.publish(channel, "", queue, b"before")
        consumer = yield connection.consume(channel, queue, noAck=True)
        while not consumer.queue.pending:
            yield deferLater(reactor, 0.01, lambda: None)
        yield consumer.cancel()
        self.assertIsNone((yield consumer.cancelled))
        self.assertNotIn(consumer.tag, connection.queues)
        message = yield consumer.queue.get(timeout=5)
        self.assertEqual(message.content.body, b"before")
        yield self.assertFailure(consumer.queue.get(), QueueClosed)
        reply = yield channel.queue_declare(queue=queue, passive=True)
        self.assertEqual(reply.consumer_count, 0)


class ChannelStateTests(BrokerTestCase):
    """
    Channel close state (defect 9).
    """

    @inlineCallbacks
    def test_closedByBroker(self) -> Generator[Deferred[Any], Any, None]:
        """
        After a channel error, the channel is marked closed, calls on it
        fail at once with L{ChannelClosedError}, and C{newChannel()} gives a
        fresh, working channel with a new id.
        """
        connection, channel = yield self.connectWithChannel()
        missing = self.broker.queueName("missing")
        error = yield self.assertFailure(
            channel.queue_declare(queue=missing, passive=True), ChannelClosedError
        )
        self.assertEqual(error.replyCode, 404)
        self.assertIn("queue.declare", str(error))
        self.assertTrue(channel.closed)
        self.assertNotIn(channel.id, connection.channels)
        yield self.assertFailure(channel.queue_declare(queue=missing), ChannelClosedError)
        fresh = yield connection.newChannel()
        self.assertNotEqual(fresh.id, channel.id)
        yield fresh.queue_declare(queue=missing)

    @inlineCallbacks
    def test_closedByClient(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{channel_close()} marks the channel closed locally and frees its id.
        """
        connection, channel = yield self.connectWithChannel()
        yield channel.channel_close()
        self.assertTrue(channel.closed)
        self.assertNotIn(channel.id, connection.channels)
        yield self.assertFailure(channel.queue_declare(queue=""), ChannelClosedError)
        fresh = yield connection.newChannel()
        self.assertNotEqual(fresh.id, channel.id)


class ConnectionTests(BrokerTestCase):
    """
    Connecting, client properties, closing.
    """

    @inlineCallbacks
    def test_clientProperties(self) -> Generator[Deferred[Any], Any, None]:
        """
        The broker sees the connection name, product, version, platform and
        capabilities the client announced; the heartbeat is negotiated.
        """
        if shutil.which("rabbitmqctl") is None or self.broker.address.host not in (
            "127.0.0.1",
            "localhost",
        ):
            self.skipTest("needs rabbitmqctl on the broker's machine")
        name = self.broker.queueName("connection-name")
        connection = yield self.broker.connect(connectionName=name)
        self.assertEqual(connection.heartbeatInterval, 30)
        listing = yield _rabbitmqctl("list_connections", "client_properties")
        mine = [
            {key: value for key, _, value in entry["client_properties"]}
            for entry in listing
            if ["connection_name", "longstr", name] in entry["client_properties"]
        ]
        self.assertEqual(len(mine), 1)
        self.assertEqual(mine[0]["product"], "clacks-agent")
        self.assertIn("Twisted", mine[0]["platform"])
        capabilities = {key: value for key, _, value in mine[0]["capabilities"]}
        self.assertEqual(
            capabilities,
            {
                "publisher_confirms": True,
                "consumer_cancel_notify": True,
                "basic.nack": True,
                "exchange_exchange_bindings": True,
                "connection.blocked": True,
                "authentication_failure_close": True,
            },
        )

    @inlineCallbacks
    def test_heartbeats(self) -> Generator[Deferred[Any], Any, None]:
        """
        A 1 s heartbeat is negotiated, and an idle connection survives 4 s:
        heartbeat frames flow both ways (without ours, the broker drops the
        connection after 3 s).
        """
        connection = yield self.broker.connect(heartbeat=1)
        self.assertEqual(connection.heartbeatInterval, 1)
        disconnected = connection.whenDisconnected()
        yield deferLater(reactor, 4, lambda: None)
        self.assertNoResult(disconnected)
        yield self.assertStillWorks(connection)

    @inlineCallbacks
    def test_clientService(self) -> Generator[Deferred[Any], Any, None]:
        """
        L{AMQPClientFactory} works as the factory of a C{ClientService}: the
        connection it hands out starts, opens channels and closes cleanly.
        """
        address = self.broker.address
        factory = AMQPClientFactory(
            vhost=address.vhost, connectionName=uniqueName("clacks-test-service")
        )
        endpoint = TCP4ClientEndpoint(reactor, address.host, address.port, timeout=5)
        service = ClientService(endpoint, factory)
        service.startService()
        # (Twisted 26's ClientService refuses a stopService() run from
        # within another one, as trial would when the test ends inside it)
        self.addCleanup(lambda: service.stopService() if service.running else None)
        connection = yield service.whenConnected()
        yield connection.start(address.username, address.password)
        channel = yield connection.newChannel()
        reply = yield channel.queue_declare(queue="", exclusive=True)
        self.assertTrue(reply.queue)
        yield connection.closeConnection()
        yield service.stopService()

    @inlineCallbacks
    def test_badCredentials(self) -> Generator[Deferred[Any], Any, None]:
        """
        A refused login fails L{AMQPConnection.start} with
        L{AuthenticationError}, and the connection is closed.
        """
        connection = yield self.broker.connect(start=False)
        error = yield self.assertFailure(
            connection.start(self.broker.address.username, "not the password"),
            AuthenticationError,
        )
        self.assertIn("refused the login", str(error))
        yield connection.whenDisconnected()

    @inlineCallbacks
    def test_amqplainAndPropertyNames(self) -> Generator[Deferred[Any], Any, None]:
        """
        AMQPLAIN login works; properties given with Python-style names reach
        the consumer, and an unknown property name is refused.
        """
        connection = yield self.broker.connect(start=False)
        yield connection.start(
            self.broker.address.username, self.broker.address.password, mechanism="AMQPLAIN"
        )
        channel = yield connection.newChannel()
        yield connection.enableConfirms(channel)
        queue = yield self.declareQueue(channel)
        self.assertRaises(
            UnknownPropertyError,
            connection.publish,
            channel,
            "",
            queue,
            b"x",
            {"correlationId": "c"},
        )
        now = datetime.datetime(2025, 1, 1, tzinfo=UTC)
        sent = {
            "correlation_id": "corr-1",
            "reply_to": "replies",
            "content_type": "application/json",
            "content_encoding": "utf-8",
            "delivery_mode": 2,
            "priority": 3,
            "expiration": "60000",
            "message_id": NON_ASCII,
            "timestamp": now,
            "message_type": "event",
            "user_id": self.broker.address.username,
            "app_id": "clacks",
        }
        yield connection.publish(channel, "", queue, b"{}", sent)
        reply = yield self.getMessage(channel, queue)
        received = pythonProperties(reply.content.properties)
        self.assertEqual(received.pop("timestamp"), int(now.timestamp()))
        self.assertEqual(received.pop("type"), "event")
        del sent["timestamp"], sent["message_type"]
        self.assertEqual(received, sent)

    @inlineCallbacks
    def test_closeConnection(self) -> Generator[Deferred[Any], Any, None]:
        """
        C{closeConnection()} closes cleanly and fires once the socket is
        gone; pending gets fail with C{Closed}, consumers report
        L{ConnectionLostError}, and the connection refuses new channels.
        """
        connection, channel = yield self.connectWithChannel()
        queue = yield self.declareQueue(channel)
        consumer = yield connection.consume(channel, queue)
        pending = consumer.queue.get()
        disconnected = connection.whenDisconnected()
        yield connection.closeConnection()
        self.assertIsInstance((yield disconnected), ConnectionDone)
        yield self.assertFailure(pending, QueueClosed)
        self.assertIsInstance((yield consumer.cancelled), ConnectionLostError)
        yield self.assertFailure(connection.newChannel(), ConnectionLostError)
        yield connection.closeConnection()

    @inlineCallbacks
    def test_closedByBroker(self) -> Generator[Deferred[Any], Any, None]:
        """
        When the broker closes the connection (C{320 CONNECTION_FORCED}),
        pending confirms fail with L{ConnectionLostError} giving the reply
        code, and C{whenDisconnected()} fires.
        """
        if shutil.which("rabbitmqctl") is None or self.broker.address.host not in (
            "127.0.0.1",
            "localhost",
        ):
            self.skipTest("needs rabbitmqctl on the broker's machine")
        name = self.broker.queueName("forced")
        connection = yield self.broker.connect(connectionName=name)
        channel = yield connection.newChannel()
        consumer = yield connection.consume(channel, "amq.rabbitmq.reply-to", noAck=True)
        # close_connection wants the pid as the plain text listing shows it
        listing = yield _rabbitmqctl(
            "list_connections",
            "pid",
            "client_properties",
            "--no-table-headers",
            formatJSON=False,
        )
        [pid] = [
            line.split("\t")[0]
            for line in listing.splitlines()
            if f'{{"connection_name","{name}"}}' in line
        ]
        disconnected = connection.whenDisconnected()
        yield _rabbitmqctl("close_connection", pid, "test", formatJSON=False)
        yield disconnected
        reason = yield consumer.cancelled
        self.assertIsInstance(reason, ConnectionLostError)
        self.assertEqual(reason.replyCode, 320)
