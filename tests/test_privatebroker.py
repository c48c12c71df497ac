"""
Tests for L{tests.util.privatebroker}: a private RabbitMQ node that can be
stopped and restarted beside the shared one, and closing connections from
the broker's side.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from typing import Any

import pika
import pika.exceptions
import psutil
from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, TestCase

from tests.util.privatebroker import (
    RABBITMQ_BIN,
    PrivateBroker,
    brokerAnswers,
    closeBrokerConnections,
    closeConnectionByPeerPort,
)

reactor: Any = globalReactor
log = Logger()

SHARED_URL = "amqp://guest:guest@127.0.0.1:5672/"

_connecting = threading.Lock()
"""
Held while a thread connects and looks for its new local port, so that two
connections opened at once do not take each other's port.
"""


def _localPorts(brokerPort: int) -> set[int]:
    """
    @return: the local ports of this process's TCP connections to
        C{brokerPort}.
    """
    return {
        c.laddr.port
        for c in psutil.Process().net_connections("tcp")
        if c.raddr and c.raddr.port == brokerPort and c.status == psutil.CONN_ESTABLISHED
    }


class HeldConnection:
    """
    A pika connection, held open in a thread until the broker closes it (or
    until L{release}).

    @ivar opened: fires with the connection's local port once it is open.
    @ivar result: fires with C{(reply_code, reply_text)} of the broker's
        close, or C{(0, "released")}.
    """

    def __init__(self, url: str, name: str) -> None:
        self.opened: Deferred[int] = Deferred()
        self._release = threading.Event()
        self.result: Deferred[tuple[int, str]] = deferToThread(self._hold, url, name)
        self.result.addErrback(self._failed)

    def _failed(self, failure: Any) -> Any:
        if not self.opened.called:
            self.opened.errback(failure)
        return failure

    def _hold(self, url: str, name: str) -> tuple[int, str]:
        params = pika.URLParameters(url)
        params.client_properties = {"connection_name": name}
        with _connecting:
            before = _localPorts(params.port)
            connection = pika.BlockingConnection(params)
            (port,) = _localPorts(params.port) - before
        try:
            reactor.callFromThread(self.opened.callback, port)
            deadline = time.monotonic() + 60
            while not self._release.is_set() and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.1)
        except pika.exceptions.ConnectionClosedByBroker as e:
            return (e.reply_code, e.reply_text)
        connection.close()
        return (0, "released")

    def release(self) -> Deferred[tuple[int, str]]:
        """
        Close the connection (if the broker did not) and wait for the thread.
        """
        self._release.set()
        return self.result


def _publishDurable(url: str, queue: str, body: bytes) -> None:
    """
    Declare a durable queue and publish a persistent message to it (pika,
    blocking: run in a thread).
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True)
        channel.basic_publish(
            "", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True
        )
    finally:
        connection.close()


def _getOne(url: str, queue: str) -> bytes | None:
    """
    Get one message from an existing queue (pika, blocking: run in a thread).
    """
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, passive=True)
        _, _, body = channel.basic_get(queue, auto_ack=True)
        return body
    finally:
        connection.close()


class PrivateBrokerTests(TestCase):
    """
    Tests for L{PrivateBroker} on the machine's RabbitMQ installation.
    """

    timeout = 240

    def setUp(self) -> None:
        server = os.path.join(RABBITMQ_BIN, "rabbitmq-server")
        if not os.access(server, os.X_OK):
            raise SkipTest(f"RabbitMQ is not installed here: no {server}")

    def hold(self, url: str, name: str) -> HeldConnection:
        """
        Open a L{HeldConnection}, released at the end of the test.
        """
        held = HeldConnection(url, name)
        self.addCleanup(lambda: held.release().addErrback(lambda _: None))
        return held

    @inlineCallbacks
    def test_startRestartCleanup(self) -> Any:
        """
        A private broker starts on a port of its own, answers AMQP, keeps its
        port and its durable data across a restart, can close a client's
        connection by its port, and is gone after L{PrivateBroker.cleanup};
        the shared broker on 5672 is left alone throughout.
        """
        sharedBefore = yield brokerAnswers(port=5672)
        broker = PrivateBroker(self.mktemp())
        self.addCleanup(self._assertGone, broker)
        self.addCleanup(broker.cleanup)

        yield broker.start()
        port = broker.port
        self.assertIsInstance(port, int)
        self.assertNotEqual(port, 5672)
        self.assertTrue(broker.nodename.startswith("clackstest-"))
        self.assertTrue(broker.nodename.endswith("@localhost"))
        self.assertEqual(broker.url, f"amqp://guest:guest@127.0.0.1:{port}/")
        self.assertTrue((yield brokerAnswers(port=port)))
        out = yield broker.rabbitmqctl("list_queues", "-q", "--no-table-headers", "name")
        self.assertEqual(out.strip(), b"")

        queue = "clackstest-durable"
        yield deferToThread(_publishDurable, broker.url, queue, b"survives restart")

        held = self.hold(broker.url, "clackstest-victim")
        clientPort = yield held.opened
        closed = yield broker.closeConnectionByPeerPort(clientPort, "by peer port")
        self.assertEqual([c.peerPort for c in closed], [clientPort])
        self.assertEqual((yield held.result), (320, "CONNECTION_FORCED - by peer port"))

        yield broker.restart()
        self.assertEqual(broker.port, port)
        self.assertTrue((yield brokerAnswers(port=port)))
        body = yield deferToThread(_getOne, broker.url, queue)
        self.assertEqual(body, b"survives restart")

        if sharedBefore:
            self.assertTrue((yield brokerAnswers(port=5672)), "the shared broker is down")
        log.info("private broker timings: {timings}", timings=broker.timings)

    def _assertGone(self, broker: PrivateBroker) -> Deferred[None]:
        """
        After L{PrivateBroker.cleanup}: no process, no port, no directory.
        """
        self.assertFalse(broker.running)
        self.assertEqual(broker._nodePids(), [])
        self.assertFalse(os.path.exists(broker.baseDir))
        return brokerAnswers(port=broker.port).addCallback(self.assertFalse)

    @inlineCallbacks
    def test_closeSharedConnections(self) -> Any:
        """
        On the shared node, L{closeBrokerConnections} closes the connections
        whose client-provided name has the prefix, and only those;
        L{closeConnectionByPeerPort} closes the one with that client port.
        """
        if not (yield brokerAnswers(port=5672)):
            raise SkipTest("the shared broker does not answer on 127.0.0.1:5672")
        token = secrets.token_hex(4)
        prefix = f"clackstest-close-{token}"
        victim = self.hold(SHARED_URL, f"{prefix}-victim")
        bystander = self.hold(SHARED_URL, f"clackstest-keep-{token}")
        yield victim.opened
        bystanderPort = yield bystander.opened

        closed = yield closeBrokerConnections(prefix, reason="by prefix")
        self.assertEqual([c.connectionName for c in closed], [f"{prefix}-victim"])
        self.assertEqual((yield victim.result), (320, "CONNECTION_FORCED - by prefix"))
        self.assertFalse(bystander.result.called)

        closed = yield closeConnectionByPeerPort(bystanderPort, reason="by port")
        self.assertEqual([c.peerPort for c in closed], [bystanderPort])
        self.assertEqual((yield bystander.result), (320, "CONNECTION_FORCED - by port"))

        closed = yield closeConnectionByPeerPort(bystanderPort)
        self.assertEqual(closed, [])
