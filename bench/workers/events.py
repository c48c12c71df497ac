"""
Event fan-out workers on raw txAMQP (the project's compat layer).

    python -m bench.workers.events publish DOMAIN COUNT EVENT
    python -m bench.workers.events subscribe DOMAIN NAME COUNT EVENT

The publisher sends C{COUNT} C{EVENT} events (the agents' event format:
JSON, routing key C{EVENT.<node>}) on the domain's events exchange, with
publisher confirms, 500 unconfirmed at most.  The raw subscriber is the
baseline of an agent: an exclusive queue bound to C{EVENT.#}, no-ack, each
body decoded as JSON; it stops after C{COUNT} events (or 20 s without
any).  The agents subscribe to C{BenchEvent.#} (see
C{bench/plugins/bench_probe.py}); the raw rounds publish another event
name, so that idle agents do not take events (and CPU) from them.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import inlineCallbacks

from bench.stats import PAYLOAD, emit
from bench.workers.rawamqp import connect

WINDOW = 500


@inlineCallbacks
def publish(reactor: Any, domain: str, count: int, event: str) -> Any:
    connection = yield connect("bench-events-publisher")
    channel = yield connection.newChannel()
    yield connection.enableConfirms(channel)
    exchange = f"{domain}.events"
    yield channel.exchange_declare(exchange=exchange, type="topic", durable=True)
    properties = {
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "delivery-mode": 1,
        "type": event,
        "app-id": "bench",
    }
    start = time.time()
    outstanding: list[Any] = []
    for i in range(count):
        body = json.dumps(
            {"event": event, "node": "publisher", "seq": i, "data": PAYLOAD},
            separators=(",", ":"),
        ).encode()
        outstanding.append(
            connection.publish(channel, exchange, f"{event}.publisher", body, properties)
        )
        if len(outstanding) >= WINDOW:
            yield outstanding.pop(0)
    yield defer.gatherResults(outstanding)
    end = time.time()
    emit({"start": start, "end": end, "published": count})
    yield connection.closeConnection(within=2)


@inlineCallbacks
def subscribe(reactor: Any, domain: str, name: str, count: int, event: str) -> Any:
    connection = yield connect(f"bench-events-{name}")
    channel = yield connection.newChannel()
    queue = f"{domain}.bench-sub.{name}"
    yield channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
    yield channel.queue_bind(queue=queue, exchange=f"{domain}.events", routing_key=f"{event}.#")
    consumer = yield connection.consume(channel, queue, noAck=True)
    print("READY", flush=True)
    received = 0
    first = last = None
    while received < count:
        try:
            message = yield consumer.queue.get(timeout=20)
        except Exception:
            break
        json.loads(message.content.body)
        last = time.time()
        if first is None:
            first = last
        received += 1
    emit({"events": received, "first": first, "last": last})
    yield connection.closeConnection(within=2)


def main(argv: list[str]) -> None:
    if argv[0] == "publish":
        task.react(publish, [argv[1], int(argv[2]), argv[3]])
    else:
        task.react(subscribe, [argv[1], argv[2], int(argv[3]), argv[4]])


if __name__ == "__main__":
    main(sys.argv[1:])
