# -*- test-case-name: tests.test_amqp_bus -*-
"""
One resilient AMQP connection: reconnects with backoff, re-declares the
topology, re-opens consumers, and publishes with publisher confirms.

The connection is a L{ClientService}; L{AMQPBus._prepare} runs on every new
connection before it is used: authenticate, open channels, declare the
topology, run the registered setups, start the consumers.  Only then is the
bus ready.  Whoever holds a consumer or setup handle keeps it across
reconnects without doing anything.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from automat import NoTransition
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    TimeoutError,
    inlineCallbacks,
    maybeDeferred,
    succeed,
)
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from txamqp.queue import Closed as QueueClosed
from zope.interface import implementer

from clacks.agent.config import AMQPConfig, BrokerURL
from clacks.common.components._discovery import describeException
from clacks.handlers.amqp.compat import (
    AMQPClientFactory,
    ChannelClosedError,
    ConnectionLostError,
    ConsumerCancelled,
    PublishNacked,
    loadSpec,
)
from clacks.handlers.amqp.topology import DomainTopology
from clacks.interfaces import IMessageBus

#: Seconds the AMQP handshake (login, vhost) may take.
CONNECT_TIMEOUT = 15.0
#: Seconds a consumer's cancel waits for the broker's cancel-ok: a silent
#: connection never answers, and stopping the agent must not wait for it.
CANCEL_TIMEOUT = 5.0


class BusUnavailable(Exception):
    """
    The message could not be handed to the broker in time; it was not sent
    (or its confirm never came).  The message says for how long and why.
    """


@attrs.frozen
class Delivery:
    """
    A message received by a consumer.

    @ivar body: the body, as bytes.
    @ivar properties: the content properties (spec names: C{content-type},
        C{reply-to}, C{headers}, ...).
    @ivar ack: acknowledge it (no-op for no-ack consumers, or if the
        connection it came on is gone: the broker redelivers it then).
    @ivar reject: reject it; C{requeue=True} puts it back for another
        consumer.
    """

    body: bytes
    properties: Mapping[str, Any]
    exchange: str
    routingKey: str
    redelivered: bool
    deliveryTag: int
    ack: Callable[[], None] = attrs.field(repr=False)
    reject: Callable[[bool], None] = attrs.field(repr=False)

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.properties.get("headers") or {}


Setup = Callable[[Any, Any], Any]
MessageCallback = Callable[[Delivery], Any]


@attrs.define(eq=False)
class ConsumerHandle:
    """
    A consumer that the bus keeps open across reconnects; L{cancel} stops
    it for good.
    """

    _bus: AMQPBus
    queue: str
    callback: MessageCallback
    noAck: bool
    prefetch: int | None
    declare: Callable[[Any], Any] | None = None
    _live: Any = None

    def cancel(self) -> Deferred[None]:
        self._bus._consumers.discard(self)
        live, self._live = self._live, None
        if live is None:
            return succeed(None)
        d = maybeDeferred(live.cancel).addTimeout(CANCEL_TIMEOUT, self._bus._reactor)
        return d.addErrback(lambda f: None)


def makeEndpoint(reactor: Any, url: BrokerURL, config: AMQPConfig) -> IStreamClientEndpoint:
    """
    @return: the endpoint for C{url}: TCP, wrapped in TLS for C{amqps://}
        with the server's certificate verified against C{config.cafile} (or
        the platform's trust store) and the client certificate, if any.
    """
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, url.host, url.port, timeout=10)
    if not url.tls:
        return endpoint
    from twisted.internet import ssl

    trustRoot: Any
    if config.cafile:
        with open(config.cafile, "rb") as f:
            pems = f.read()
        certificates = [
            ssl.Certificate.loadPEM(b"-----BEGIN CERTIFICATE-----" + chunk)
            for chunk in pems.split(b"-----BEGIN CERTIFICATE-----")[1:]
        ]
        trustRoot = ssl.trustRootFromCertificates(certificates)
    else:
        trustRoot = ssl.platformTrust()
    clientCertificate = None
    if config.certfile and config.keyfile:
        with open(config.certfile, "rb") as c, open(config.keyfile, "rb") as k:
            clientCertificate = ssl.PrivateCertificate.loadPEM(c.read() + b"\n" + k.read())
    options = ssl.optionsForClientTLS(
        url.host, trustRoot=trustRoot, clientCertificate=clientCertificate
    )
    return wrapClientTLS(options, endpoint)


class _LossGuard:
    """
    The protocol that L{_AcceptedLossEndpoint} puts around the one
    L{ClientService} built: forwards everything, and drops the service's
    C{NoTransition} when told of the loss of a connection it never accepted.
    """

    def __init__(self, wrapped: IProtocol) -> None:
        self.wrapped = wrapped

    def makeConnection(self, transport: Any) -> None:
        self.wrapped.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.wrapped.dataReceived(data)

    def connectionLost(self, reason: Failure) -> None:
        try:
            self.wrapped.connectionLost(reason)
        except NoTransition:
            AMQPBus.log.debug("Lost a connection that was never ready: {why}", why=reason.value)

    def logPrefix(self) -> str:
        return str(getattr(self.wrapped, "logPrefix", lambda: "AMQP")())


class _LossGuardFactory:
    def __init__(self, factory: IProtocolFactory) -> None:
        self._factory = factory

    def buildProtocol(self, addr: Any) -> _LossGuard | None:
        protocol = self._factory.buildProtocol(addr)
        return None if protocol is None else _LossGuard(protocol)

    def doStart(self) -> None:
        self._factory.doStart()

    def doStop(self) -> None:
        self._factory.doStop()


@implementer(IStreamClientEndpoint)
class _AcceptedLossEndpoint:
    """
    Works around a defect of L{ClientService} (Twisted 26.10, and trunk):
    it has no transition for the loss of a connection it did not accept,
    one that C{prepareConnection} rejected or that was still being prepared
    when it was lost or when the service stopped.  Such a loss raises
    automat's C{NoTransition} out of C{connectionLost}: an unhandled error
    in the log at every failed handshake (network cut or broker restarting
    mid-handshake, login refused, stop while reconnecting).  The service has
    moved on by then (it waits to retry, or has stopped), so the
    notification can be dropped; the loss of an accepted connection is
    reported as usual.
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        def unwrap(guard: Any) -> IProtocol:
            return guard.wrapped

        factory: Any = _LossGuardFactory(protocolFactory)
        return self._endpoint.connect(factory).addCallback(unwrap)


@implementer(IMessageBus)
class AMQPBus:
    """
    The agent's connection to the broker.

    @param reactor: provides IReactorTime and IReactorTCP.
    @param url: the broker.
    @param config: the C{[amqp]} settings.
    @param topology: declared on every connect; C{None} for a client that
        only calls (it must not declare the domain's queues).
    @param connectionName: shown by the broker for this connection.
    @param endpoint: overrides the endpoint made from C{url} (tests use it to
        go through a fault-injecting proxy).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        url: BrokerURL,
        config: AMQPConfig,
        topology: DomainTopology | None,
        connectionName: str,
        endpoint: IStreamClientEndpoint | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._reactor = reactor
        self._url = url
        self._config = config
        self.topology = topology
        self._connectionName = connectionName
        self._endpoint = endpoint if endpoint is not None else makeEndpoint(reactor, url, config)
        self._jitter = jitter
        self._service: ClientService | None = None
        self._connection: Any = None
        self._publishChannel: Any = None
        self._consumeChannel: Any = None
        self._setupChannel: Any = None
        self._replyChannel: Any = None
        self._replyHandler: MessageCallback | None = None
        self._replyConsumer: Any = None
        self._setups: list[Setup] = []
        self._consumers: set[ConsumerHandle] = set()
        self._readyWaiters: list[Deferred[None]] = []
        self._observers: list[Callable[[bool], object]] = []
        self._reconsuming: set[Any] = set()
        self._stopping = False
        self.connects = 0

    # State

    @property
    def login(self) -> str:
        """
        The user this bus logs in as: the broker-validated C{user-id} of
        everything it publishes.
        """
        return self._url.username

    @property
    def ready(self) -> bool:
        return self._connection is not None

    def whenReady(self) -> Deferred[None]:
        if self.ready:
            return succeed(None)
        d: Deferred[None] = Deferred(lambda d: self._readyWaiters.remove(d))
        self._readyWaiters.append(d)
        return d

    def observe(self, observer: Callable[[bool], object]) -> Callable[[], None]:
        self._observers.append(observer)
        return lambda: self._observers.remove(observer) if observer in self._observers else None

    def _notify(self, ready: bool) -> None:
        for observer in list(self._observers):
            try:
                observer(ready)
            except Exception:
                self.log.failure("Bus observer {observer!r} failed", observer=observer)

    # Lifecycle

    def start(self) -> None:
        config = self._config
        policy = backoffPolicy(
            initialDelay=config.reconnectInitial,
            maxDelay=config.reconnectMax,
            factor=2.0,
            jitter=self._jitter,
        )
        factory = AMQPClientFactory(
            spec=loadSpec(),
            vhost=self._url.vhost,
            heartbeat=int(config.heartbeat),
            connectionName=self._connectionName,
            clock=self._reactor,
        )
        self._service = ClientService(
            _AcceptedLossEndpoint(self._endpoint),
            factory,
            retryPolicy=policy,
            clock=self._reactor,
            prepareConnection=self._prepare,
        )
        self.log.info(
            "Connecting to {url} as {name}",
            url=self._url.redacted(),
            name=self._connectionName,
        )
        self._service.startService()

    @inlineCallbacks
    def stop(self) -> Any:
        """
        Close the connection cleanly (connection.close, then the socket) and
        stop reconnecting.
        """
        self._stopping = True
        self._cancelReconsuming()
        for waiter in self._readyWaiters[:]:
            waiter.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                yield connection.closeConnection(within=5)
            except Exception:
                self.log.failure("Closing the AMQP connection failed")
        if self._service is not None:
            yield self._service.stopService()
            self._service = None

    # Connection preparation

    @inlineCallbacks
    def _prepare(self, connection: Any) -> Any:
        try:
            yield self._setUp(connection)
        except Exception as e:
            self.log.error(
                "Preparing the connection to {url} failed: {error}; retrying",
                url=self._url.redacted(),
                error=describeException(e),
            )
            # ClientService does not close a connection it rejects.
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abortConnection()
            raise
        if self._stopping:
            connection.transport.abortConnection()
            return
        self._connection = connection
        self.connects += 1
        connection.whenDisconnected().addBoth(self._lost, connection)
        self.log.info(
            "Connected to {url}: topology of {domain} declared, {consumers} consumer(s)",
            url=self._url.redacted(),
            domain=self.topology.domain if self.topology else "(none)",
            consumers=len(self._consumers),
        )
        waiters, self._readyWaiters = self._readyWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._notify(True)

    @inlineCallbacks
    def _setUp(self, connection: Any) -> Any:
        yield connection.start(self._url.username, self._url.password).addTimeout(
            CONNECT_TIMEOUT, self._reactor
        )
        publish = yield connection.newChannel()
        yield connection.enableConfirms(publish)
        consume = yield connection.newChannel()
        setup = yield connection.newChannel()
        if self.topology is not None:
            yield self.topology.declare(setup)
        for fn in list(self._setups):
            yield fn(connection, setup)
        self._publishChannel = publish
        self._consumeChannel = consume
        self._setupChannel = setup
        if self._replyHandler is not None:
            yield self._openReplyChannel(connection)
        for handle in list(self._consumers):
            yield self._startConsumer(connection, handle)

    def _lost(self, reason: Any, connection: Any) -> None:
        if self._connection is not connection:
            return
        self._connection = None
        self._publishChannel = self._consumeChannel = self._setupChannel = None
        self._replyChannel = self._replyConsumer = None
        for handle in self._consumers:
            handle._live = None
        self._cancelReconsuming()
        if not self._stopping:
            # whenDisconnected() fires with the exception itself.
            why = reason.getErrorMessage() if isinstance(reason, Failure) else str(reason)
            self.log.warn(
                "Lost the connection to {url} ({why}); reconnecting",
                url=self._url.redacted(),
                why=why,
            )
        self._notify(False)

    # Direct reply-to

    def setReplyHandler(self, handler: MessageCallback) -> None:
        """
        Receive replies to requests published with C{via="rpc"} and
        C{reply-to: amq.rabbitmq.reply-to} (RabbitMQ's direct reply-to: no
        reply queue to declare).  The channel is reopened on every connect.
        """
        self._replyHandler = handler
        if self._connection is not None and self._replyChannel is None:
            self._openReplyChannel(self._connection).addErrback(
                lambda f: self.log.failure("Opening the reply channel failed", f)
            )

    @inlineCallbacks
    def _openReplyChannel(self, connection: Any) -> Any:
        channel = yield connection.newChannel()
        yield connection.enableConfirms(channel)
        consumer = yield connection.consume(channel, "amq.rabbitmq.reply-to", noAck=True)
        self._replyChannel, self._replyConsumer = channel, consumer
        assert self._replyHandler is not None
        handle = ConsumerHandle(self, "amq.rabbitmq.reply-to", self._replyHandler, True, None)
        self._pump(channel, consumer, handle)

    # Setups and consumers

    def addSetup(self, setup: Setup) -> Deferred[None]:
        """
        Run C{setup(connection, channel)} on every connect, before the bus is
        ready (to declare queues and bindings).  If connected, it runs now.
        """
        self._setups.append(setup)
        if self._connection is None:
            return succeed(None)
        return maybeDeferred(setup, self._connection, self._setupChannel)

    def withChannel(self, fn: Callable[[Any], Any]) -> Deferred[Any]:
        """
        If connected, run C{fn(channel)} now on the setup channel (to bind or
        unbind a queue); otherwise do nothing, as the setups will run on the
        next connect.
        """
        if self._setupChannel is None:
            return succeed(None)
        return maybeDeferred(fn, self._setupChannel)

    def removeSetup(self, setup: Setup) -> None:
        if setup in self._setups:
            self._setups.remove(setup)

    def consume(
        self,
        queue: str,
        callback: MessageCallback,
        noAck: bool = False,
        prefetch: int | None = None,
        declare: Callable[[Any], Any] | None = None,
    ) -> ConsumerHandle:
        """
        Consume C{queue}, now and after every reconnect, calling
        C{callback(delivery)} for each message.  A callback that raises is
        logged; the message is then rejected (requeued) unless no-ack.

        @param declare: if given, called with a channel on every connect
            before consuming; its result (or Deferred result) is the queue
            name to consume, for queues that are new on each connection.
        """
        handle = ConsumerHandle(self, queue, callback, noAck, prefetch, declare)
        self._consumers.add(handle)
        if self._connection is not None:
            self._startConsumer(self._connection, handle).addErrback(
                lambda f: self.log.failure("Consuming {queue} failed", f, queue=queue)
            )
        return handle

    @inlineCallbacks
    def _startConsumer(self, connection: Any, handle: ConsumerHandle) -> Any:
        channel = self._consumeChannel
        if handle.declare is not None:
            handle.queue = yield handle.declare(self._setupChannel)
        if handle.prefetch:
            yield channel.basic_qos(prefetch_count=handle.prefetch)
        consumer = yield connection.consume(channel, handle.queue, noAck=handle.noAck)
        handle._live = consumer
        consumer.cancelled.addCallback(self._consumerEnded, connection, handle, consumer)
        self._pump(channel, consumer, handle)

    def _consumerEnded(
        self, reason: Exception | None, connection: Any, handle: ConsumerHandle, consumer: Any
    ) -> None:
        """
        A consumer stopped.  If the broker cancelled it (its queue was
        deleted, or the queue's process crashed and restarted) while the
        connection lives on, consume the queue again: nothing else would,
        the agent would stay connected and ready but deaf to that queue.
        """
        if not isinstance(reason, ConsumerCancelled):
            # We cancelled it, or its channel or connection went (the
            # reconnect starts every consumer again).
            return
        if self._stopping or handle not in self._consumers or handle._live is not consumer:
            return
        handle._live = None
        self.log.warn(
            "The broker cancelled the consumer of {queue}; consuming it again",
            queue=handle.queue,
        )
        self._reconsume(connection, handle, 0)

    def _reconsume(self, connection: Any, handle: ConsumerHandle, attempt: int) -> None:
        delay = min(self._config.reconnectInitial * 2**attempt, self._config.reconnectMax)

        @inlineCallbacks
        def again() -> Any:
            self._reconsuming.discard(call)
            if connection is not self._connection or handle not in self._consumers:
                return
            if handle._live is not None:
                return
            try:
                if self.topology is not None:
                    # The queue may be gone: declare it (idempotent) again.
                    yield self.topology.declare(self._setupChannel)
                yield self._startConsumer(connection, handle)
            except Exception as e:
                self.log.warn(
                    "Consuming {queue} again failed: {error}; retrying",
                    queue=handle.queue,
                    error=describeException(e),
                )
                if connection is self._connection and not self._stopping:
                    self._reconsume(connection, handle, attempt + 1)

        call = self._reactor.callLater(delay, again)
        self._reconsuming.add(call)

    def _cancelReconsuming(self) -> None:
        calls, self._reconsuming = self._reconsuming, set()
        for call in calls:
            if call.active():
                call.cancel()

    @inlineCallbacks
    def _pump(self, channel: Any, consumer: Any, handle: ConsumerHandle) -> Any:
        while True:
            try:
                message = yield consumer.queue.get()
            except (QueueClosed, CancelledError, ConnectionLostError, ChannelClosedError):
                return
            except Exception:
                self.log.failure("Consumer of {queue} stopped", queue=handle.queue)
                return
            self._deliver(channel, message, handle)

    def _deliver(self, channel: Any, message: Any, handle: ConsumerHandle) -> None:
        tag = message.delivery_tag

        def ack() -> None:
            if not handle.noAck and not channel.closed:
                channel.basic_ack(delivery_tag=tag)

        def reject(requeue: bool) -> None:
            if not handle.noAck and not channel.closed:
                channel.basic_reject(delivery_tag=tag, requeue=requeue)

        delivery = Delivery(
            body=message.content.body,
            properties=dict(message.content.properties),
            exchange=message.exchange,
            routingKey=message.routing_key,
            redelivered=bool(message.redelivered),
            deliveryTag=tag,
            ack=ack,
            reject=reject,
        )
        d = maybeDeferred(handle.callback, delivery)

        def failed(failure: Failure) -> None:
            self.log.failure(
                "Handling a message from {queue} failed; it goes back to the queue",
                failure,
                queue=handle.queue,
            )
            reject(True)

        d.addErrback(failed)

    # Publishing

    @inlineCallbacks
    def publish(
        self,
        exchange: str,
        routingKey: str,
        body: bytes,
        properties: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        mandatory: bool = False,
        via: str = "publish",
    ) -> Any:
        """
        Publish and wait for the broker's confirm.

        C{via="rpc"} publishes on the direct reply-to channel (see
        L{setReplyHandler}), as requests that expect replies must.

        While disconnected, waits for the connection; a publish whose
        connection drops before its confirm is sent again on the next one
        (at-least-once).  Both are bounded by C{timeout} (default
        C{[amqp] publish-timeout}).

        @raise BusUnavailable: if it could not be confirmed in time.
        @raise PublishNacked: if the broker refused it.
        """
        if not isinstance(body, bytes):
            raise TypeError(f"message bodies are bytes, not {type(body).__name__}")
        if timeout is None:
            timeout = self._config.publishTimeout
        deadline = self._reactor.seconds() + timeout
        attempts = 0
        while True:
            remaining = deadline - self._reactor.seconds()
            if self._stopping and not self.ready:
                raise BusUnavailable("the bus is stopping; message not sent")
            if remaining <= 0:
                raise BusUnavailable(
                    f"no broker connection for {timeout:g} s ({self._url.redacted()}); "
                    f"message to {exchange or '(default)'}/{routingKey} not sent"
                )
            if not self.ready:
                try:
                    yield self.whenReady().addTimeout(remaining, self._reactor)
                except (TimeoutError, CancelledError):
                    continue
            attempts += 1
            connection = self._connection
            channel = self._replyChannel if via == "rpc" else self._publishChannel
            if channel is None:
                raise BusUnavailable(f"no {via!r} channel: call setReplyHandler() first")
            d = connection.publish(
                channel, exchange, routingKey, body, dict(properties or {}), mandatory=mandatory
            )
            try:
                yield d.addTimeout(max(deadline - self._reactor.seconds(), 0.001), self._reactor)
            except PublishNacked:
                raise
            except TimeoutError:
                raise BusUnavailable(
                    f"the broker did not confirm the message to {exchange}/{routingKey} "
                    f"within {timeout:g} s"
                ) from None
            except ChannelClosedError as e:
                if connection is self._connection:
                    # A channel error (e.g. no such exchange) is the caller's:
                    # reopen the channel for the others, report it.
                    yield self._reopenPublishChannel(connection, via)
                    raise BusUnavailable(f"the broker refused the message: {e}") from None
                continue
            except ConnectionLostError as e:
                if connection is self._connection:
                    # The connection failed its channels before the bus saw
                    # the socket close (that comes later, or later in this
                    # very connectionLost): forget it now, or this loop would
                    # publish on its closed channel again and again until
                    # the deadline, blocking the reactor, instead of waiting
                    # for the next connection.
                    self._lost(e, connection)
                continue
            if attempts > 1:
                self.log.info(
                    "Message to {exchange}/{key} confirmed after {attempts} attempts",
                    exchange=exchange,
                    key=routingKey,
                    attempts=attempts,
                )
            return

    @inlineCallbacks
    def _reopenPublishChannel(self, connection: Any, via: str) -> Any:
        if via == "rpc":
            yield self._openReplyChannel(connection)
            return
        channel = yield connection.newChannel()
        yield connection.enableConfirms(channel)
        if connection is self._connection:
            self._publishChannel = channel


__all__ = ["AMQPBus", "BusUnavailable", "ConsumerHandle", "Delivery", "makeEndpoint"]
