"""
The raw txAMQP request/reply loop: the ceiling the agent's RPC path is
measured against.  It uses the project's txAMQP layer
(L{clacks.handlers.amqp.compat}, i.e. txAMQP with its Python 3 fixes) and
nothing else of clacks.

    python -m bench.workers.rawamqp server QUEUE [NAME [confirms]]   # echo server
    python -m bench.workers.rawamqp client QUEUE SEQ PAR INFLIGHT [confirms]

The server consumes a durable queue (prefetch 16, like the agent's default
capacity), answers each request on the default exchange to its C{reply-to}
and acknowledges it.  The client sends the same properties as
L{clacks.client.AMQPClient} (persistent, correlation id, direct reply-to,
expiration, deadline header, user id) on one channel that also consumes
C{amq.rabbitmq.reply-to}; no publisher confirms (the ceiling).

With C{confirms}, the loop keeps the agent's delivery guarantees: the
client's channel is in confirm mode (as the agent's caller is, to know a
request reached the broker), and the server publishes each reply on a
confirm channel and acknowledges the request only once the broker
confirmed the reply (at-least-once, as the agent does).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint

from bench.stats import PAYLOAD, emit
from bench.workers.twistedload import sequential, window
from clacks.handlers.amqp.compat import AMQPClientFactory

DIRECT = "amq.rabbitmq.reply-to"
PREFETCH = 16


@inlineCallbacks
def connect(name: str) -> Any:
    factory = AMQPClientFactory(vhost="/", heartbeat=30, connectionName=name)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", 5672, timeout=10)
    connection = yield endpoint.connect(factory)
    yield connection.start("guest", "guest")
    return connection


@inlineCallbacks
def server(queue: str, name: str, confirms: bool) -> Any:
    connection = yield connect(f"bench-raw-server-{name}")
    channel = yield connection.newChannel()
    publishChannel = channel
    if confirms:
        publishChannel = yield connection.newChannel()
        yield connection.enableConfirms(publishChannel)
    yield channel.queue_declare(queue=queue, durable=True)
    consumer = yield connection.consume(channel, queue, prefetch=PREFETCH)
    print("READY", flush=True)
    while True:
        message = yield consumer.queue.get()
        properties = message.content.properties
        request = json.loads(message.content.body)
        body = json.dumps(
            {"jsonrpc": "2.0", "id": request.get("id"), "result": request["params"][0]},
            separators=(",", ":"),
        ).encode()
        confirmed = connection.publish(
            publishChannel,
            "",
            properties["reply-to"],
            body,
            {
                "content-type": "application/json",
                "correlation-id": properties.get("correlation-id", ""),
                "headers": {"x-clacks-node": name},
            },
        )
        if confirms:
            confirmed.addCallback(
                lambda _, tag=message.delivery_tag: channel.basic_ack(delivery_tag=tag)
            )
        else:
            channel.basic_ack(delivery_tag=message.delivery_tag)


@inlineCallbacks
def client(queue: str, seq: int, par: int, inFlight: int, confirms: bool) -> Any:
    connection = yield connect("bench-raw-client")
    channel = yield connection.newChannel()
    if confirms:
        yield connection.enableConfirms(channel)
    consumer = yield connection.consume(channel, DIRECT, noAck=True)
    pending: dict[str, Deferred[Any]] = {}
    spread: dict[str, int] = {}

    @inlineCallbacks
    def pump() -> Any:
        while True:
            message = yield consumer.queue.get()
            node = (message.content.properties.get("headers") or {}).get("x-clacks-node", "?")
            spread[node] = spread.get(node, 0) + 1
            d = pending.pop(message.content.properties.get("correlation-id"), None)
            if d is not None:
                d.callback(json.loads(message.content.body)["result"])

    pump()

    def call() -> Deferred[Any]:
        cid = uuid.uuid4().hex
        body = json.dumps(
            {"jsonrpc": "2.0", "method": "echo", "params": [PAYLOAD], "id": 1},
            separators=(",", ":"),
        ).encode()
        properties = {
            "content-type": "application/json",
            "content-encoding": "utf-8",
            "correlation-id": cid,
            "message-id": cid,
            "reply-to": DIRECT,
            "delivery-mode": 2,
            "expiration": "30000",
            "user-id": "guest",
            "headers": {"x-clacks-deadline": time.time() + 30},
        }
        d: Deferred[Any] = Deferred()
        pending[cid] = d
        connection.publish(channel, "", queue, body, properties)
        return d

    yield sequential(call, 50)  # warm-up
    spread.clear()
    result: dict[str, Any] = {}
    if seq:
        result["seq"] = yield sequential(call, seq)
    if par:
        result["par"] = yield window(call, par, inFlight)
    result["spread"] = spread
    emit(result)
    yield connection.closeConnection(within=2)


def main(argv: list[str]) -> None:
    mode, queue = argv[0], argv[1]
    if mode == "server":
        name = argv[2] if len(argv) > 2 else "raw"
        confirms = argv[3:4] == ["confirms"]
        task.react(lambda _: server(queue, name, confirms).addCallback(lambda _: Deferred()))
    else:
        seq, par, inFlight = (int(a) for a in argv[2:5])
        confirms = argv[5:6] == ["confirms"]
        task.react(lambda _: client(queue, seq, par, inFlight, confirms))


if __name__ == "__main__":
    main(sys.argv[1:])
