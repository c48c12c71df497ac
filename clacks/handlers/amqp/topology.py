# -*- test-case-name: tests.test_amqp_topology -*-
"""
The AMQP topology of a domain: its exchanges, queues and routing keys.

All names derive from C{core.domain} and the node id, so every agent of a
domain declares the same exchanges and shared queue, and each its own
queues.  See C{docs/protocol.md}.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import inlineCallbacks

#: Routing key of calls any node of the domain may serve.
ANY_NODE_KEY = "any"
#: Routing key of calls every node of the domain serves.
ALL_NODES_KEY = "all"
#: Dead-lettered messages kept at most (the oldest are dropped beyond).
DEAD_QUEUE_MAX_LENGTH = 10000
#: How long an unused per-node queue outlives its node (milliseconds).
NODE_QUEUE_EXPIRES_MS = 3600 * 1000


def nodeKey(node: str) -> str:
    """
    @return: the routing key of calls for C{node} alone.
    """
    return f"node.{node}"


@attrs.frozen
class DomainTopology:
    """
    Names of one domain's AMQP objects, from one node's point of view.

    @ivar domain: the domain (C{core.domain}).
    @ivar node: this node's id (C{core.id}).
    @ivar queueType: C{classic} or C{quorum}, for the shared command queue.
    """

    domain: str
    node: str
    queueType: str = "classic"
    maxDeliveries: int = 5

    @property
    def eventsExchange(self) -> str:
        """Topic exchange of events; routing key C{<Event>.<node>}."""
        return f"{self.domain}.events"

    @property
    def commandsExchange(self) -> str:
        """Topic exchange of command calls."""
        return f"{self.domain}.commands"

    @property
    def deadExchange(self) -> str:
        """Topic exchange of messages the agent could not serve."""
        return f"{self.domain}.dead"

    @property
    def deadQueue(self) -> str:
        """Durable, bounded queue where dead-lettered messages wait for an operator."""
        return f"{self.domain}.dead"

    @property
    def sharedQueue(self) -> str:
        """Durable queue of calls any node may serve (competing consumers)."""
        return f"{self.domain}.commands.any"

    @property
    def nodeQueue(self) -> str:
        """This node's own queue: calls for it alone and calls for all."""
        return f"{self.domain}.commands.node.{self.node}"

    def eventQueue(self, suffix: str) -> str:
        """
        @return: the name of this node's exclusive event queue for one
            connection.
        """
        return f"{self.domain}.events.{self.node}.{suffix}"

    def sharedQueueArguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-queue-type": self.queueType,
            "x-dead-letter-exchange": self.deadExchange,
        }
        if self.queueType == "quorum":
            # The broker counts deliveries on quorum queues, across agents
            # and crashes: a request that kills every agent that takes it is
            # dead-lettered (reason delivery_limit) instead of going round.
            arguments["x-delivery-limit"] = self.maxDeliveries
        return arguments

    def nodeQueueArguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "classic",
            "x-expires": NODE_QUEUE_EXPIRES_MS,
            "x-dead-letter-exchange": self.deadExchange,
        }

    @inlineCallbacks
    def declare(self, channel: Any) -> Any:
        """
        Declare the exchanges and command queues on C{channel}.  Declaring
        is idempotent, so every agent does it at every (re)connect.
        """
        for exchange in (self.eventsExchange, self.commandsExchange, self.deadExchange):
            yield channel.exchange_declare(exchange=exchange, type="topic", durable=True)
        yield channel.queue_declare(
            queue=self.deadQueue,
            durable=True,
            arguments={"x-queue-type": "classic", "x-max-length": DEAD_QUEUE_MAX_LENGTH},
        )
        yield channel.queue_bind(queue=self.deadQueue, exchange=self.deadExchange, routing_key="#")
        yield channel.queue_declare(
            queue=self.sharedQueue, durable=True, arguments=self.sharedQueueArguments()
        )
        yield channel.queue_bind(
            queue=self.sharedQueue, exchange=self.commandsExchange, routing_key=ANY_NODE_KEY
        )
        yield channel.queue_declare(
            queue=self.nodeQueue, durable=True, arguments=self.nodeQueueArguments()
        )
        for key in (nodeKey(self.node), ALL_NODES_KEY):
            yield channel.queue_bind(
                queue=self.nodeQueue, exchange=self.commandsExchange, routing_key=key
            )


def topicMatches(pattern: str, routingKey: str) -> bool:
    """
    @return: whether C{routingKey} matches the topic C{pattern} as RabbitMQ
        matches it: words split on C{.}, C{*} is one word, C{#} is zero or
        more words.
    """
    return _match(pattern.split("."), routingKey.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    # Iterative matcher with backtracking over '#': linear in practice.
    p = w = 0
    star_p = star_w = -1
    while w < len(words):
        if p < len(pattern) and pattern[p] == "#":
            star_p, star_w = p, w
            p += 1
        elif p < len(pattern) and (pattern[p] == "*" or pattern[p] == words[w]):
            p += 1
            w += 1
        elif star_p != -1:
            p = star_p + 1
            star_w += 1
            w = star_w
        else:
            return False
    while p < len(pattern) and pattern[p] == "#":
        p += 1
    return p == len(pattern)


__all__ = [
    "ALL_NODES_KEY",
    "ANY_NODE_KEY",
    "DomainTopology",
    "NODE_QUEUE_EXPIRES_MS",
    "nodeKey",
    "topicMatches",
]
