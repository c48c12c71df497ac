"""
Helpers for tests that talk to a real AMQP broker (RabbitMQ).

The broker is the one at C{CLACKS_TEST_AMQP_URL} (by default the local
RabbitMQ, C{amqp://guest:guest@127.0.0.1:5672/}).  When it is not
reachable, broker tests are skipped, except on CI (C{CI=true}), where they
fail: a CI run without its broker must not look green.

Typical use::

    class MyTests(TestCase):
        def setUp(self):
            self.broker = BrokerFixture(self)

        @inlineCallbacks
        def test_something(self):
            connection = yield self.broker.connect()
            channel = yield connection.newChannel()
            queue = self.broker.queueName()
            yield channel.queue_declare(queue=queue)
            ...

Every queue and exchange named through the fixture is deleted after the
test, and every connection it opened is closed cleanly, so the reactor is
left clean.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Generator
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import FailTest, SkipTest, TestCase

from clacks.handlers.amqp.compat import AMQPClientFactory, AMQPConnection, AMQPError

#: The broker the tests use.
BROKER_URL = os.environ.get("CLACKS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

#: Prefix of every queue and exchange the tests create.
NAME_PREFIX = "clacks.test"


@attrs.frozen
class BrokerAddress:
    """
    Where the test broker is, and how to log in.
    """

    host: str
    port: int
    username: str
    password: str
    vhost: str

    @classmethod
    def fromURL(cls, url: str) -> BrokerAddress:
        """
        Parse an C{amqp://user:password@host:port/vhost} URL (the vhost is
        percent-encoded: C{%2F} is C{/}; an empty path means C{/}).
        """
        parts = urlsplit(url)
        if parts.scheme != "amqp":
            raise ValueError(f"not an amqp:// URL: {url!r}")
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5672,
            username=unquote(parts.username or "guest"),
            password=unquote(parts.password or "guest"),
            vhost=vhost,
        )


def brokerAddress() -> BrokerAddress:
    """
    @return: the address of the test broker (from L{BROKER_URL}).
    """
    return BrokerAddress.fromURL(BROKER_URL)


def brokerReachable(address: BrokerAddress | None = None, timeout: float = 2.0) -> bool:
    """
    @return: whether a TCP connection to the broker can be made.
    """
    address = address or brokerAddress()
    try:
        with socket.create_connection((address.host, address.port), timeout=timeout):
            return True
    except OSError:
        return False


def requireBroker(testcase: TestCase | None = None) -> BrokerAddress:
    """
    Make sure the test broker is reachable.

    @return: its address.
    @raise SkipTest: if it is not, outside CI.
    @raise FailTest: if it is not and C{CI=true}.
    """
    address = brokerAddress()
    if brokerReachable(address):
        return address
    message = (
        f"no AMQP broker reachable at {address.host}:{address.port} "
        "(set CLACKS_TEST_AMQP_URL, or start RabbitMQ)"
    )
    if os.environ.get("CI", "").lower() == "true":
        if testcase is not None:
            testcase.fail(f"{message}; broker tests must run on CI")
        raise FailTest(f"{message}; broker tests must run on CI")
    raise SkipTest(message)


def uniqueName(prefix: str) -> str:
    """
    @return: C{prefix} with a random suffix, so that tests running in
        parallel (C{trial -j}, several machines on one broker) never share
        a queue or an exchange.
    """
    return f"{prefix}.{secrets.token_hex(6)}"


class BrokerFixture:
    """
    The broker side of one test: connections to close and names to delete
    after it.  Creating it checks the broker (see L{requireBroker}) and
    registers the cleanup on C{testcase}.

    @ivar address: the broker's L{BrokerAddress}.
    @ivar connections: the connections opened by L{connect}.
    """

    def __init__(self, testcase: TestCase) -> None:
        self.testcase = testcase
        self.address = requireBroker(testcase)
        self.connections: list[AMQPConnection] = []
        self._queues: list[str] = []
        self._exchanges: list[str] = []
        testcase.addCleanup(self._cleanUp)

    def queueName(self, prefix: str = "queue") -> str:
        """
        @return: a unique queue name, deleted after the test.
        """
        name = uniqueName(f"{NAME_PREFIX}.{prefix}")
        self._queues.append(name)
        return name

    def exchangeName(self, prefix: str = "exchange") -> str:
        """
        @return: a unique exchange name, deleted after the test.
        """
        name = uniqueName(f"{NAME_PREFIX}.{prefix}")
        self._exchanges.append(name)
        return name

    def deleteAfterwards(self, queue: str | None = None, exchange: str | None = None) -> None:
        """
        Delete this queue and/or exchange after the test (for names not
        made by L{queueName} and L{exchangeName}).
        """
        if queue is not None:
            self._queues.append(queue)
        if exchange is not None:
            self._exchanges.append(exchange)

    @inlineCallbacks
    def connect(
        self,
        connectionName: str | None = None,
        heartbeat: int = 30,
        start: bool = True,
    ) -> Generator[Deferred[Any], Any, AMQPConnection]:
        """
        Connect an L{AMQPConnection} to the broker, on the global reactor,
        and open the virtual host (unless C{start} is false).  It is closed
        cleanly after the test.
        """
        from twisted.internet import reactor

        factory = AMQPClientFactory(
            vhost=self.address.vhost,
            heartbeat=heartbeat,
            connectionName=connectionName or uniqueName("clacks-test"),
        )
        endpoint = TCP4ClientEndpoint(reactor, self.address.host, self.address.port, timeout=5)
        connection = yield endpoint.connect(factory)
        self.connections.append(connection)
        if start:
            d = connection.start(self.address.username, self.address.password)
            yield d.addTimeout(10, reactor)
        return connection

    @inlineCallbacks
    def _cleanUp(self) -> Generator[Deferred[Any], Any, None]:
        try:
            if self._queues or self._exchanges:
                yield self._deleteAll()
        finally:
            for connection in self.connections:
                yield connection.closeConnection(within=2)

    @inlineCallbacks
    def _deleteAll(self) -> Generator[Deferred[Any], Any, None]:
        connection = yield self.connect(connectionName="clacks-test-cleanup", heartbeat=0)
        channel = yield connection.newChannel()
        for kind, names in (("queue", self._queues), ("exchange", self._exchanges)):
            for name in names:
                try:
                    if kind == "queue":
                        yield channel.queue_delete(queue=name)
                    else:
                        yield channel.exchange_delete(exchange=name)
                except AMQPError:
                    channel = yield connection.newChannel()
        self._queues = []
        self._exchanges = []


__all__ = [
    "BROKER_URL",
    "BrokerAddress",
    "BrokerFixture",
    "brokerAddress",
    "brokerReachable",
    "requireBroker",
    "uniqueName",
]
