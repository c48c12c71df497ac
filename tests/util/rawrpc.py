"""
Hand-made JSON-RPC requests over a raw AMQP connection, for tests that
need what L{clacks.client.amqp.AMQPClient} will not send: bodies that are
not JSON, wrong content types, missing C{reply-to}, past deadlines, the
same message id twice, forged C{user-id}s.

The requests are published on a confirm channel that also consumes
RabbitMQ's direct reply-to (C{amq.rabbitmq.reply-to}, no-ack), so the
replies come back on that channel; every reply is kept, by correlation id,
so a test can count them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Generator, Mapping
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from txamqp.queue import Closed as QueueClosed

from clacks.common.jsonrpc import JSON_CONTENT_TYPE
from clacks.handlers.amqp.compat import (
    AMQPClientFactory,
    AMQPConnection,
    ChannelClosedError,
    ConnectionLostError,
)
from tests.util.broker import BrokerFixture, uniqueName

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


@attrs.frozen
class Reply:
    """
    A reply as it arrived.

    @ivar body: the raw body.
    @ivar properties: its AMQP properties (spec names: C{correlation-id},
        C{headers}, ...).
    """

    body: bytes
    properties: Mapping[str, Any]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.properties.get("headers") or {}

    @property
    def node(self) -> Any:
        """The node that answered (its C{x-clacks-node} header)."""
        return self.headers.get("x-clacks-node")


def requestBody(method: str, params: Any = (), id: Any = 1) -> bytes:
    """
    @return: a JSON-RPC 2.0 request body.
    """
    params = list(params) if isinstance(params, tuple) else params
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": id}).encode()


@inlineCallbacks
def connectAs(
    broker: BrokerFixture, username: str, password: str
) -> Generator[Deferred[Any], Any, AMQPConnection]:
    """
    Open a connection to the test broker as C{username}; it is closed after
    the test with the fixture's other connections.
    """
    factory = AMQPClientFactory(
        vhost=broker.address.vhost, heartbeat=30, connectionName=uniqueName("clacks-test-raw")
    )
    endpoint = TCP4ClientEndpoint(reactor, broker.address.host, broker.address.port, timeout=5)
    connection = yield endpoint.connect(factory)
    broker.connections.append(connection)
    yield connection.start(username, password).addTimeout(10, reactor)
    return connection


class RawRPC:
    """
    Publishes hand-made requests to a domain's commands exchange and keeps
    every reply.

    @ivar replies: the replies received, by correlation id, in order.
    """

    def __init__(self, connection: AMQPConnection, channel: Any, exchange: str) -> None:
        self.connection = connection
        self.channel = channel
        self.exchange = exchange
        self.replies: dict[str, list[Reply]] = {}
        self._waiting: list[tuple[str, int, Deferred[list[Reply]]]] = []

    @classmethod
    @inlineCallbacks
    def open(
        cls, broker: BrokerFixture, domain: str, connection: AMQPConnection | None = None
    ) -> Generator[Deferred[Any], Any, RawRPC]:
        """
        Open a channel (on C{connection}, or a new connection of C{broker})
        consuming direct reply-to, in confirm mode.
        """
        if connection is None:
            connection = yield broker.connect()
        channel = yield connection.newChannel()
        yield connection.enableConfirms(channel)
        consumer = yield connection.consume(channel, DIRECT_REPLY_TO, noAck=True)
        raw = cls(connection, channel, f"{domain}.commands")
        raw._pump(consumer)
        return raw

    @inlineCallbacks
    def _pump(self, consumer: Any) -> Generator[Deferred[Any], Any, None]:
        while True:
            try:
                message = yield consumer.queue.get()
            except (QueueClosed, CancelledError, ConnectionLostError, ChannelClosedError):
                return
            properties = dict(message.content.properties)
            reply = Reply(message.content.body, properties)
            correlationId = str(properties.get("correlation-id"))
            self.replies.setdefault(correlationId, []).append(reply)
            self._check()

    def _check(self) -> None:
        for item in list(self._waiting):
            correlationId, count, d = item
            got = self.replies.get(correlationId, [])
            if len(got) >= count:
                self._waiting.remove(item)
                d.callback(list(got))

    def publish(
        self,
        body: bytes,
        routingKey: str = "any",
        properties: Mapping[str, Any] | None = None,
        replyTo: bool = True,
        correlationId: str | None = None,
        messageId: str | None = None,
    ) -> Deferred[str]:
        """
        Publish a request: JSON content type, a new correlation id (also
        the message id unless C{messageId} is given), reply-to direct
        reply-to unless C{replyTo} is false; C{properties} override.

        @return: a Deferred firing with the correlation id once the broker
            confirmed the message (failing if it refused it).
        """
        correlationId = correlationId or uuid.uuid4().hex
        props: dict[str, Any] = {
            "content-type": JSON_CONTENT_TYPE,
            "correlation-id": correlationId,
            "message-id": messageId or correlationId,
        }
        if replyTo:
            props["reply-to"] = DIRECT_REPLY_TO
        props.update(properties or {})
        d = self.connection.publish(self.channel, self.exchange, routingKey, body, props)
        return d.addCallback(lambda _: correlationId)

    def waitReplies(
        self, correlationId: str, count: int = 1, timeout: float = 10.0
    ) -> Deferred[list[Reply]]:
        """
        @return: a Deferred firing with the replies to C{correlationId} once
            there are C{count} of them; failing with C{TimeoutError} after
            C{timeout} seconds.
        """
        d: Deferred[list[Reply]] = Deferred()
        item = (correlationId, count, d)
        self._waiting.append(item)
        self._check()
        if d.called:
            return d

        def forget(result: Any, timeout: float) -> Any:
            if item in self._waiting:
                self._waiting.remove(item)
            return result

        return d.addTimeout(timeout, reactor, onTimeoutCancel=forget)

    @inlineCallbacks
    def request(
        self, body: bytes, routingKey: str = "any", timeout: float = 10.0, **kwargs: Any
    ) -> Generator[Deferred[Any], Any, Reply]:
        """
        Publish a request (see L{publish}) and wait for its first reply.
        """
        correlationId = yield self.publish(body, routingKey, **kwargs)
        replies = yield self.waitReplies(correlationId, 1, timeout)
        return replies[0]


__all__ = ["DIRECT_REPLY_TO", "RawRPC", "Reply", "connectAs", "requestBody"]
