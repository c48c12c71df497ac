# -*- test-case-name: tests.test_amqp_events -*-
"""
The event bus plugins use: C{publish(event)} and C{subscribe(pattern,
callback)}, over the domain's event exchange.

Each agent has one exclusive event queue per connection, bound once for each
distinct pattern subscribed to; events are matched to subscriptions locally.
Events are best-effort (not acknowledged): what happens while a node is
disconnected is not replayed, but subscriptions survive reconnects.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, inlineCallbacks, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clacks.common.events import Event, EventError, EventTypes, GenericEvent
from clacks.handlers.amqp.bus import Delivery
from clacks.handlers.amqp.topology import DomainTopology, topicMatches
from clacks.interfaces import IEventBus, IMessageBus, ISubscription

EventCallback = Callable[[Event | GenericEvent], Any]

JSON_CONTENT_TYPE = "application/json"


@implementer(ISubscription)
@attrs.define(eq=False)
class Subscription:
    """
    One C{subscribe()} call; L{unsubscribe} ends it.
    """

    pattern: str
    callback: EventCallback
    _bus: EventBus = attrs.field(repr=False)
    active: bool = True

    def unsubscribe(self) -> None:
        if self.active:
            self.active = False
            self._bus._remove(self)


@implementer(IEventBus)
class EventBus:
    """
    @param types: the event types this agent knows.
    @param topology: names the event exchange and queue.
    @param bus: the broker connection; C{None} for a standalone agent, whose
        events are delivered to its own subscribers only.
    @param queueSuffix: makes the event queue name unique to this agent's
        incarnation.
    @param reactor: schedules local deliveries.
    """

    log = Logger()

    def __init__(
        self,
        types: EventTypes,
        topology: DomainTopology,
        bus: IMessageBus | None,
        queueSuffix: str,
        reactor: Any,
    ) -> None:
        self.types = types
        self._topology = topology
        self._bus = bus
        self._suffix = queueSuffix
        self._reactor = reactor
        self._subscriptions: list[Subscription] = []
        self._patterns: Counter[str] = Counter()
        self._queue: str | None = None
        self._connects = 0
        self._consumer: Any = None
        self.received = 0
        self.dropped = 0

    def start(self) -> None:
        """
        Start consuming events (call once, before or after the bus starts).
        """
        if self._bus is not None and self._consumer is None:
            self._bus.observe(self._busChanged)
            self._consumer = self._bus.consume(
                "", self._received, noAck=True, declare=self._declareQueue
            )

    def _busChanged(self, ready: bool) -> None:
        if not ready:
            # The exclusive queue died with its connection.
            self._queue = None

    @inlineCallbacks
    def _declareQueue(self, channel: Any) -> Any:
        self._connects += 1
        name = self._topology.eventQueue(f"{self._suffix}.{self._connects}")
        yield channel.queue_declare(queue=name, exclusive=True, auto_delete=True)
        # Known before the bindings below, so that a subscribe() meanwhile
        # binds this queue, not the previous connection's.
        self._queue = name
        for pattern in list(self._patterns):
            yield channel.queue_bind(
                queue=name, exchange=self._topology.eventsExchange, routing_key=pattern
            )
        return name

    # Publishing

    def publish(self, event: Event | GenericEvent, timeout: float | None = None) -> Deferred[None]:
        try:
            body = self.types.encode(event)
        except EventError as e:
            return fail(e)
        if self._bus is None:
            self._reactor.callLater(0, self._dispatch, event, event.routingKey)
            return succeed(None)
        properties = {
            "content-type": JSON_CONTENT_TYPE,
            "content-encoding": "utf-8",
            "delivery-mode": 1,
            "type": event.eventType,
            "app-id": "clacks-agent",
            "timestamp": int(time.time()),
        }
        d: Deferred[None] = self._bus.publish(
            self._topology.eventsExchange, event.routingKey, body, properties, timeout=timeout
        )
        return d

    # Subscribing

    def subscribe(self, pattern: str, callback: EventCallback) -> Subscription:
        subscription = Subscription(pattern, callback, self)
        self._subscriptions.append(subscription)
        self._patterns[pattern] += 1
        if self._patterns[pattern] == 1 and self._bus is not None:
            self._bus.withChannel(lambda channel: self._bind(channel, pattern)).addErrback(
                self._bindFailed, pattern
            )
        return subscription

    def _bind(self, channel: Any, pattern: str) -> Any:
        if self._queue is None:
            return None
        return channel.queue_bind(
            queue=self._queue, exchange=self._topology.eventsExchange, routing_key=pattern
        )

    def _bindFailed(self, failure: Failure, pattern: str) -> None:
        self.log.failure(
            "Binding the event queue to {pattern} failed; it is retried on reconnect",
            failure,
            pattern=pattern,
        )

    def _remove(self, subscription: Subscription) -> None:
        self._subscriptions.remove(subscription)
        pattern = subscription.pattern
        self._patterns[pattern] -= 1
        if self._patterns[pattern] > 0:
            return
        del self._patterns[pattern]
        if self._bus is not None and self._queue is not None:
            queue = self._queue

            def unbind(channel: Any) -> Any:
                return channel.queue_unbind(
                    queue=queue, exchange=self._topology.eventsExchange, routing_key=pattern
                )

            self._bus.withChannel(unbind).addErrback(lambda f: None)

    # Receiving

    def _received(self, delivery: Delivery) -> None:
        self.received += 1
        contentType = delivery.properties.get("content-type")
        if contentType not in (None, JSON_CONTENT_TYPE):
            self._drop(delivery, f"content type {contentType!r}, expected {JSON_CONTENT_TYPE}")
            return
        try:
            event = self.types.decode(delivery.body)
        except EventError as e:
            self._drop(delivery, str(e))
            return
        if event.routingKey != delivery.routingKey:
            self._drop(
                delivery,
                f"routing key does not match the event (expected {event.routingKey})",
            )
            return
        self._dispatch(event, delivery.routingKey)

    def _drop(self, delivery: Delivery, why: str) -> None:
        self.dropped += 1
        self.log.warn(
            "Dropped a malformed event (routing key {key}, sender {sender}): {why}",
            key=delivery.routingKey,
            sender=delivery.properties.get("user-id") or delivery.properties.get("app-id"),
            why=why,
        )

    def _dispatch(self, event: Event | GenericEvent, routingKey: str) -> None:
        for subscription in list(self._subscriptions):
            if not subscription.active or not topicMatches(subscription.pattern, routingKey):
                continue
            d = maybeDeferred(subscription.callback, event)
            d.addErrback(self._subscriberFailed, subscription)

    def _subscriberFailed(self, failure: Failure, subscription: Subscription) -> None:
        self.log.failure(
            "Event subscriber {callback!r} ({pattern}) failed",
            failure,
            callback=subscription.callback,
            pattern=subscription.pattern,
        )


__all__ = ["EventBus", "Subscription"]
