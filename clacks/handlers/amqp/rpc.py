# -*- test-case-name: tests.test_amqp_rpc -*-
"""
JSON-RPC over AMQP: the agent's command server, and the caller that sends
requests and matches replies (used by the agent to reach other nodes, and
by L{clacks.client}).

A request is published on the domain's commands exchange with routing key
C{any}, C{node.<id>} or C{all}; the reply goes to its C{reply-to} (RabbitMQ's
direct reply-to) with its C{correlation-id}.  See C{docs/protocol.md}.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    TimeoutError,
    inlineCallbacks,
    succeed,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clacks.agent.commands import CallContext
from clacks.agent.dispatch import ALL, ANY, LOCAL, AllNodesResult, Dispatcher, IRemoteCaller
from clacks.common.components._discovery import describeException
from clacks.common.jsonrpc import (
    DEFAULT_LIMITS,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    JSON_CONTENT_TYPE,
    NODE_UNAVAILABLE,
    TIMEOUT,
    Limits,
    Request,
    Response,
    RPCError,
    dumps,
    encodeResponses,
    errorResponse,
    parseRequests,
    parseResponse,
    resultResponse,
)
from clacks.handlers.amqp.bus import AMQPBus, Delivery
from clacks.handlers.amqp.topology import ALL_NODES_KEY, DomainTopology, nodeKey

DEADLINE_HEADER = "x-clacks-deadline"
TARGET_HEADER = "x-clacks-target"
ON_BEHALF_HEADER = "x-clacks-on-behalf-of"
NODE_HEADER = "x-clacks-node"
DEAD_REASON_HEADER = "x-clacks-dead-reason"
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class ReplyCache:
    """
    Replies already sent, by request message id, for a while: a request
    redelivered after its reply went out is answered from here instead of
    running again.

    @param clock: for expiry.
    @param ttl: seconds a reply is kept.
    @param size: replies kept at most (the oldest go first).
    @param maxBytes: bytes of replies kept at most (the oldest go first):
        replies may be big (up to a request's worth and more), and any
        caller can send requests, so the count alone does not bound memory.
    """

    def __init__(
        self,
        clock: Any,
        ttl: float = 300.0,
        size: int = 10000,
        maxBytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._clock = clock
        self._ttl = ttl
        self._size = size
        self._maxBytes = maxBytes
        self._bytes = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    @property
    def totalBytes(self) -> int:
        """
        The size of the replies kept.
        """
        return self._bytes

    def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, body = entry
        if expires < self._clock.seconds():
            del self._entries[key]
            self._bytes -= len(body)
            return None
        return body

    def put(self, key: str, body: bytes) -> None:
        now = self._clock.seconds()
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        self._entries[key] = (now + self._ttl, body)
        self._bytes += len(body)
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if (
                len(self._entries) <= self._size
                and self._bytes <= self._maxBytes
                and oldest[0] >= now
            ):
                break
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)


def requestProperties(
    correlationId: str, deadline: float, timeout: float, headers: dict[str, Any]
) -> dict[str, Any]:
    return {
        "content-type": JSON_CONTENT_TYPE,
        "content-encoding": "utf-8",
        "correlation-id": correlationId,
        "message-id": correlationId,
        "reply-to": DIRECT_REPLY_TO,
        "delivery-mode": 2,
        # The broker drops a request nobody took before its deadline.
        "expiration": str(max(1, int(timeout * 1000))),
        "headers": {DEADLINE_HEADER: deadline, **headers},
    }


@attrs.define(eq=False)
class _Pending:
    done: Deferred[Any]
    expected: set[str] | None = None
    replies: dict[str, Response] = attrs.Factory(dict)
    routingKey: str = ""
    body: bytes = b""
    properties: dict[str, Any] = attrs.Factory(dict)
    deadline: float = 0.0
    #: The broker confirmed the request: it is in a queue.
    confirmed: bool = False
    resent: int = 0


class RPCCaller:
    """
    Sends requests over a bus and hands back their replies.

    @param bus: publishes on its direct reply-to channel.
    @param exchange: the domain's commands exchange.
    @param clock: for timeouts and deadlines (wall clock).
    """

    log = Logger()

    def __init__(self, bus: AMQPBus, exchange: str, clock: Any) -> None:
        self._bus = bus
        self._exchange = exchange
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._stopObserving: Callable[[], None] | None = None

    def start(self) -> None:
        self._bus.setReplyHandler(self._received)
        self._stopObserving = self._bus.observe(self._busChanged)

    def stop(self) -> None:
        if self._stopObserving is not None:
            self._stopObserving()
            self._stopObserving = None
        for pending in list(self._pending.values()):
            if not pending.done.called:
                pending.done.cancel()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _send(
        self,
        routingKey: str,
        request: Request,
        timeout: float,
        headers: dict[str, Any],
        pending: _Pending,
    ) -> str:
        correlationId = uuid.uuid4().hex
        body = dumps(request.toJSON())
        deadline = self._clock.seconds() + timeout
        properties = requestProperties(correlationId, deadline, timeout, headers)
        properties["user-id"] = self._bus.login
        pending.routingKey, pending.body, pending.properties = routingKey, body, properties
        pending.deadline = deadline
        self._pending[correlationId] = pending

        def forget(result: Any) -> Any:
            self._pending.pop(correlationId, None)
            return result

        pending.done.addBoth(forget)
        published = self._bus.publish(
            self._exchange, routingKey, body, properties, timeout=timeout, via="rpc"
        )

        def sent(result: Any) -> None:
            pending.confirmed = True

        def notSent(failure: Failure) -> None:
            if not pending.done.called:
                assert failure.value is not None
                pending.done.errback(
                    RPCError(
                        NODE_UNAVAILABLE,
                        f"request not sent: {describeException(failure.value)}",
                    )
                )

        published.addCallbacks(sent, notSent)
        return correlationId

    def _busChanged(self, ready: bool) -> None:
        if ready:
            self._resend()

    def _resend(self) -> None:
        """
        The connection came back: the replies of requests sent before were
        addressed to the old connection's reply-to and are lost.  Send every
        unanswered request again, with the same message id, so that an agent
        that already ran it answers from its reply cache.  (Requests not yet
        confirmed are being re-published by the bus itself.)
        """
        now = self._clock.seconds()
        for pending in list(self._pending.values()):
            if pending.done.called or not pending.confirmed or pending.deadline <= now:
                continue
            pending.resent += 1
            remaining = pending.deadline - now
            properties = dict(pending.properties)
            properties["expiration"] = str(max(1, int(remaining * 1000)))
            self.log.info(
                "Sending request {id} again after a reconnect",
                id=properties.get("message-id"),
            )
            self._bus.publish(
                self._exchange,
                pending.routingKey,
                pending.body,
                properties,
                timeout=remaining,
                via="rpc",
            ).addErrback(lambda f: None)

    def call(
        self,
        routingKey: str,
        request: Request,
        timeout: float,
        headers: dict[str, Any] | None = None,
    ) -> Deferred[Response]:
        """
        Send C{request} and wait for one reply.

        @return: a Deferred with the L{Response}; failing with an
            L{RPCError} (L{TIMEOUT}) if none came within C{timeout}.
        """
        pending = _Pending(Deferred())
        self._send(routingKey, request, timeout, dict(headers or {}), pending)
        return self._bounded(pending.done, timeout, routingKey, request.method)

    def gather(
        self,
        routingKey: str,
        request: Request,
        timeout: float,
        expected: set[str],
        headers: dict[str, Any] | None = None,
    ) -> tuple[str, Deferred[dict[str, Response]]]:
        """
        Send C{request} to many nodes and collect their replies until every
        node in C{expected} answered (see L{forgetNode}) or C{timeout}.

        @return: the correlation id, and a Deferred with the replies by node
            (possibly fewer than expected).
        """
        pending = _Pending(Deferred(), expected=set(expected))
        correlationId = self._send(routingKey, request, timeout, dict(headers or {}), pending)
        done: Deferred[dict[str, Response]] = Deferred()

        def expire() -> None:
            if not pending.done.called:
                pending.done.callback(None)

        timer = self._clock.callLater(timeout, expire)

        def finish(result: Any) -> None:
            # Replies gathered so far are the answer, whatever ended it.
            if timer.active():
                timer.cancel()
            if not done.called:
                done.callback(dict(pending.replies))

        pending.done.addBoth(finish)
        if not expected:
            pending.done.callback(None)
        return correlationId, done

    def forgetNode(self, node: str) -> None:
        """
        C{node} left or died: stop waiting for its replies.
        """
        for pending in list(self._pending.values()):
            if pending.expected is not None and node in pending.expected:
                pending.expected.discard(node)
                self._checkComplete(pending)

    def _checkComplete(self, pending: _Pending) -> None:
        if pending.expected is not None and pending.expected <= set(pending.replies):
            if not pending.done.called:
                pending.done.callback(None)

    def _bounded(
        self, d: Deferred[Response], timeout: float, routingKey: str, method: str
    ) -> Deferred[Response]:
        def timedOut(failure: Failure) -> Failure:
            if failure.check(TimeoutError):
                raise RPCError(
                    TIMEOUT,
                    f"no answer to {method!r} ({routingKey}) within {timeout:g} s",
                    {"timeout": timeout},
                )
            return failure

        return d.addTimeout(timeout, self._clock).addErrback(timedOut)

    def _received(self, delivery: Delivery) -> None:
        correlationId = delivery.properties.get("correlation-id")
        pending = self._pending.get(str(correlationId))
        if pending is None or pending.done.called:
            self.log.debug("Late or unknown reply {cid} dropped", cid=correlationId)
            return
        try:
            response = parseResponse(delivery.body)
        except RPCError as e:
            self.log.warn(
                "Malformed reply {cid} from {node} dropped: {error}",
                cid=correlationId,
                node=delivery.headers.get(NODE_HEADER),
                error=e.message,
            )
            return
        if pending.expected is None:
            pending.done.callback(response)
            return
        node = str(delivery.headers.get(NODE_HEADER, "?"))
        pending.replies[node] = response
        self._checkComplete(pending)


@implementer(IRemoteCaller)
class BusRemoteCaller:
    """
    The dispatcher's way to other nodes: requests over the bus, with the
    caller's identity passed along.
    """

    def __init__(self, caller: RPCCaller) -> None:
        self._caller = caller

    def _headers(self, context: CallContext) -> dict[str, Any]:
        # Always set, empty for an anonymous caller: without it the next
        # node would take the call for one of the agents' own.
        return {ON_BEHALF_HEADER: context.user or ""}

    @inlineCallbacks
    def callNode(self, node: str, request: Request, context: CallContext, timeout: float) -> Any:
        response = yield self._caller.call(nodeKey(node), request, timeout, self._headers(context))
        if response.error is not None:
            raise response.error
        return response.result

    @inlineCallbacks
    def callAll(
        self, request: Request, context: CallContext, expected: set[str], timeout: float
    ) -> Any:
        _, done = self._caller.gather(
            ALL_NODES_KEY, request, timeout, expected, self._headers(context)
        )
        replies = yield done
        results = {n: r.result for n, r in replies.items() if r.error is None}
        errors = {n: r.error for n, r in replies.items() if r.error is not None}
        missing = sorted(expected - set(replies))
        return AllNodesResult(results, errors, missing)


class CommandServer:
    """
    Serves the calls of the domain's shared queue (any node) and of this
    node's own queue (this node, and all nodes).

    Delivery is at-least-once: a request is acknowledged only after its
    reply was published and confirmed; a redelivered one whose reply went
    out already is answered from the L{ReplyCache}.  Prefetch is the
    agent's capacity, so a busy agent leaves calls to the others.

    @param trustedUsers: logins whose C{x-clacks-on-behalf-of} header is
        believed (the agents' own login): a forwarded call keeps its
        caller's identity.
    @param maxDeliveries: a request whose serving fails this many times is
        dead-lettered instead of requeued again.
    """

    log = Logger()

    def __init__(
        self,
        context: Any,
        bus: AMQPBus,
        topology: DomainTopology,
        dispatcher: Dispatcher,
        capacity: int,
        limits: Limits = DEFAULT_LIMITS,
        cache: ReplyCache | None = None,
        trustedUsers: frozenset[str] | None = None,
        maxDeliveries: int = 5,
    ) -> None:
        self._context = context
        self._bus = bus
        self._topology = topology
        self._dispatcher = dispatcher
        self._capacity = capacity
        self._limits = limits
        self._clock = context.reactor
        self.cache = cache if cache is not None else ReplyCache(self._clock)
        self._trusted = trustedUsers if trustedUsers is not None else frozenset({bus.login})
        self._consumers: list[Any] = []
        self._inflight: dict[int, tuple[Delivery, Deferred[Any]]] = {}
        self._abandoned: set[int] = set()
        self._idle: list[Deferred[None]] = []
        self.refused = 0
        self._maxDeliveries = maxDeliveries
        self._deliveries: OrderedDict[str, int] = OrderedDict()

    @property
    def node(self) -> str:
        return str(self._context.config.core.id)

    def _countRefused(self) -> None:
        self.refused += 1
        self._context.stats.refused += 1

    def start(self) -> None:
        self._consumers = [
            self._bus.consume(
                self._topology.sharedQueue,
                lambda d: self._received(d, shared=True),
                prefetch=self._capacity,
            ),
            self._bus.consume(
                self._topology.nodeQueue,
                lambda d: self._received(d, shared=False),
                prefetch=self._capacity,
            ),
        ]

    @inlineCallbacks
    def stop(self, drainTimeout: float) -> Any:
        """
        Stop taking calls (cancel the consumers), let those in flight finish
        for up to C{drainTimeout} seconds, then hand the rest back to the
        broker (rejected with requeue) so another node serves them.

        The whole drain is bounded by C{drainTimeout}: waiting for the
        broker to confirm the cancels too (it may never answer, over a
        silent network), though for at least a second.

        @return: a Deferred firing with how many calls were handed back.
        """
        deadline = self._clock.seconds() + drainTimeout
        consumers, self._consumers = self._consumers, []
        cancelled = DeferredList([consumer.cancel() for consumer in consumers])
        try:
            yield cancelled.addTimeout(max(drainTimeout, 1.0), self._clock)
        except (TimeoutError, CancelledError):
            pass
        if self._inflight:
            remaining = max(0.0, deadline - self._clock.seconds())
            self.log.info(
                "Draining {count} call(s) for up to {timeout:.3g} s",
                count=len(self._inflight),
                timeout=remaining,
            )
            idle: Deferred[None] = Deferred()
            self._idle.append(idle)
            try:
                yield idle.addTimeout(remaining, self._clock)
            except (TimeoutError, CancelledError):
                pass
            if idle in self._idle:
                self._idle.remove(idle)
        requeued = 0
        for key, (delivery, _) in list(self._inflight.items()):
            self._abandoned.add(key)
            delivery.reject(True)
            requeued += 1
        if requeued:
            self.log.warn("Handed {count} unfinished call(s) back to the broker", count=requeued)
        self._context.stats.requeued += requeued
        return requeued

    def _received(self, delivery: Delivery, shared: bool) -> Deferred[Any]:
        key = id(delivery)
        stats = self._context.stats
        stats.inflight += 1
        d = self._serve(delivery, shared, key)
        self._inflight[key] = (delivery, d)

        def done(result: Any) -> None:
            stats.inflight -= 1
            stats.processed += 1
            self._inflight.pop(key, None)
            self._abandoned.discard(key)
            if not self._inflight:
                idle, self._idle = self._idle, []
                for waiter in idle:
                    waiter.callback(None)
            abandoned = key in self._abandoned
            self._abandoned.discard(key)
            if isinstance(result, Failure):
                if not abandoned:
                    self._failed(delivery, result)
            else:
                self._deliveries.pop(self._messageKey(delivery), None)

        d.addBoth(done)
        return succeed(None)

    @staticmethod
    def _messageKey(delivery: Delivery) -> str:
        properties = delivery.properties
        key = properties.get("message-id") or properties.get("correlation-id")
        return str(key) if key else hashlib.sha256(delivery.body).hexdigest()

    def _deliveryCount(self, delivery: Delivery) -> int:
        """
        @return: how many times this request was delivered, this time
            included: the broker's count on quorum queues, our own (in
            memory, per agent) on classic ones.
        """
        brokerCount = delivery.headers.get("x-delivery-count")
        if isinstance(brokerCount, int) and not isinstance(brokerCount, bool):
            return brokerCount + 1
        key = self._messageKey(delivery)
        count = self._deliveries.pop(key, 0) + 1
        self._deliveries[key] = count
        while len(self._deliveries) > 10000:
            self._deliveries.popitem(last=False)
        return count

    def _failed(self, delivery: Delivery, failure: Failure) -> None:
        """
        Serving C{delivery} failed unexpectedly: put it back for another
        try, or, after C{maxDeliveries} tries, dead-letter it so it cannot
        go round forever.
        """
        count = self._deliveryCount(delivery)
        assert failure.value is not None
        error = describeException(failure.value)
        if count < self._maxDeliveries:
            self.log.failure(
                "Serving a request from {queue} failed (delivery {count} of at most {most}); "
                "it goes back to the queue",
                failure,
                queue=delivery.routingKey,
                count=count,
                most=self._maxDeliveries,
            )
            delivery.reject(True)
            return
        self.log.failure(
            "Serving a request from {queue} failed {count} times; dead-lettering it",
            failure,
            queue=delivery.routingKey,
            count=count,
        )
        self._deliveries.pop(self._messageKey(delivery), None)
        reason = f"serving it failed {count} times; last error: {error}"
        d = self._deadLetter(delivery, reason)
        d.addCallbacks(lambda _: delivery.ack(), lambda _: delivery.reject(True))

    def _target(self, delivery: Delivery, shared: bool) -> Any:
        if not shared:
            return LOCAL
        return ALL if delivery.headers.get(TARGET_HEADER) == "all" else ANY

    def _context_for(self, delivery: Delivery, shared: bool) -> CallContext:
        properties = delivery.properties
        user = properties.get("user-id")
        if ON_BEHALF_HEADER in delivery.headers and user in self._trusted:
            user = delivery.headers[ON_BEHALF_HEADER] or None
        deadline = delivery.headers.get(DEADLINE_HEADER)
        return CallContext(
            user=str(user) if user else None,
            queue=self._topology.sharedQueue if shared else self._topology.nodeQueue,
            deadline=float(deadline) if isinstance(deadline, int | float) else None,
            requestId=properties.get("message-id") or properties.get("correlation-id"),
        )

    @staticmethod
    def _cacheKey(delivery: Delivery, requestId: Any) -> str:
        # Only a redelivery of the very same request may be answered from
        # the cache: same (broker-validated) sender, id and body.  Keyed by
        # the id alone, anyone reusing an id would get another's reply.
        user = delivery.properties.get("user-id") or ""
        digest = hashlib.sha256(delivery.body).hexdigest()
        return f"{user}\0{requestId}\0{digest}"

    @inlineCallbacks
    def _serve(self, delivery: Delivery, shared: bool, key: int) -> Any:
        properties = delivery.properties
        replyTo = properties.get("reply-to")
        requestId = properties.get("message-id") or properties.get("correlation-id")
        if not replyTo:
            yield self._deadLetter(delivery, "no reply_to: the agent cannot answer it")
            delivery.ack()
            return
        cacheKey = self._cacheKey(delivery, requestId) if requestId else None
        cached = self.cache.get(cacheKey) if cacheKey else None
        if cached is not None:
            self.log.info("Request {id} was answered before: sending the same reply", id=requestId)
            yield self._reply(delivery, cached)
            delivery.ack()
            return
        body = yield self._answer(delivery, shared)
        if key in self._abandoned:
            return
        if body is not None:
            # Cached before it is sent: a redelivery that races the ack
            # (say, after a reconnect) is answered, not run again.
            if cacheKey is not None:
                self.cache.put(cacheKey, body)
            yield self._reply(delivery, body)
        if key not in self._abandoned:
            delivery.ack()

    @inlineCallbacks
    def _answer(self, delivery: Delivery, shared: bool) -> Any:
        contentType = delivery.properties.get("content-type")
        mediaType = str(contentType or "").split(";")[0].strip().lower()
        if mediaType not in ("", JSON_CONTENT_TYPE):
            self._countRefused()
            return dumps(
                errorResponse(
                    None,
                    RPCError(
                        INVALID_REQUEST,
                        f"content type {contentType!r}: requests are {JSON_CONTENT_TYPE}",
                    ),
                )
            )
        parsed = parseRequests(delivery.body, self._limits)
        context = self._context_for(delivery, shared)
        expired = context.deadline is not None and context.deadline < self._clock.seconds()
        target = self._target(delivery, shared)
        responses = []
        for item in parsed.items:
            if isinstance(item, RPCError):
                self._countRefused()
                self.log.warn(
                    "Refused a request from {user} on {queue}: {error}",
                    user=context.user,
                    queue=context.queue,
                    error=item.message,
                )
                responses.append(errorResponse(item.id, item))
                continue
            if expired:
                self.log.info(
                    "Request {id} ({method}) expired before it started; not run",
                    id=context.requestId,
                    method=item.method,
                )
                error = RPCError(TIMEOUT, "the call's deadline passed before it started; not run")
                if not item.notification:
                    responses.append(errorResponse(item.id, error))
                continue
            try:
                result = yield self._dispatcher.dispatch(item, context, target)
            except RPCError as e:
                if not item.notification:
                    responses.append(errorResponse(item.id, e))
                continue
            except Exception as e:
                self.log.failure("Dispatching {method} failed", method=item.method)
                if not item.notification:
                    error = RPCError(INTERNAL_ERROR, describeException(e))
                    responses.append(errorResponse(item.id, error))
                continue
            if not item.notification:
                responses.append(resultResponse(item.id, result))
        if not responses:
            return None
        return encodeResponses(responses, parsed.batch)

    def _reply(self, delivery: Delivery, body: bytes) -> Deferred[Any]:
        properties = {
            "content-type": JSON_CONTENT_TYPE,
            "content-encoding": "utf-8",
            "correlation-id": delivery.properties.get("correlation-id") or "",
            "delivery-mode": 1,
            "headers": {NODE_HEADER: self.node},
        }
        replyTo = str(delivery.properties["reply-to"])
        d: Deferred[Any] = self._bus.publish("", replyTo, body, properties)
        return d

    def _deadLetter(self, delivery: Delivery, reason: str) -> Deferred[Any]:
        self._countRefused()
        self.log.warn(
            "Dead-lettered a request from {user} ({key}): {reason}",
            user=delivery.properties.get("user-id"),
            key=delivery.routingKey,
            reason=reason,
        )
        properties = {
            k: v for k, v in delivery.properties.items() if k not in ("headers", "user-id")
        }
        headers = dict(delivery.headers)
        headers.update(
            {
                DEAD_REASON_HEADER: reason,
                "x-clacks-dead-node": self.node,
                "x-clacks-dead-routing-key": delivery.routingKey,
                "x-clacks-dead-user": delivery.properties.get("user-id") or "",
            }
        )
        properties["headers"] = headers
        d: Deferred[Any] = self._bus.publish(
            self._topology.deadExchange, delivery.routingKey, delivery.body, properties
        )
        return d


def forgetOnNodeChange(caller: RPCCaller) -> Callable[[Any], None]:
    """
    @return: a node-directory observer that stops L{RPCCaller.gather}s from
        waiting for nodes that left or died.
    """

    def observe(change: Any) -> None:
        if change.kind.value in ("leave", "dead"):
            caller.forgetNode(change.node.node)

    return observe


__all__ = [
    "BusRemoteCaller",
    "CommandServer",
    "DEADLINE_HEADER",
    "DIRECT_REPLY_TO",
    "NODE_HEADER",
    "ON_BEHALF_HEADER",
    "RPCCaller",
    "ReplyCache",
    "TARGET_HEADER",
    "forgetOnNodeChange",
    "requestProperties",
]
