"""
Watches a domain's node lifecycle for the failure-detection scenario.

    python -m bench.workers.lifecycle DOMAIN OBSERVER NODE...

It asks agent C{OBSERVER} for C{getNodes} every 20 ms (through
L{clacks.client.AMQPClient}) and listens to C{NodeLeave.#} on the events
exchange (raw txAMQP).  Once every C{NODE} is alive in the observer's
directory it prints C{ARMED}; then it records, by node, when the observer
first showed it C{dead} and when its NodeLeave arrived (epoch seconds),
until each node is dead or has left, or 60 s.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from twisted.internet import task
from twisted.internet.defer import inlineCallbacks

from bench.stats import emit
from bench.workers.rawamqp import connect
from clacks.client import AMQPClient

URL = "amqp://guest:guest@127.0.0.1:5672/"


@inlineCallbacks
def run(reactor: Any, domain: str, observer: str, *nodes: str) -> Any:
    connection = yield connect("bench-lifecycle")
    channel = yield connection.newChannel()
    queue = f"{domain}.bench-leave"
    yield channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
    yield channel.queue_bind(queue=queue, exchange=f"{domain}.events", routing_key="NodeLeave.#")
    consumer = yield connection.consume(channel, queue, noAck=True)
    leaves: dict[str, float] = {}
    dead: dict[str, float] = {}

    @inlineCallbacks
    def pump() -> Any:
        while True:
            message = yield consumer.queue.get()
            leaves.setdefault(json.loads(message.content.body)["node"], time.time())

    pump().addErrback(lambda f: None)
    client = AMQPClient(URL, domain, timeout=10, reactor=reactor)
    yield client.start()
    armed = False
    deadline = time.time() + 90
    while time.time() < deadline:
        states = {n["node"]: n["state"] for n in (yield client.call("getNodes", node=observer))}
        now = time.time()
        if not armed:
            if all(states.get(n) == "alive" for n in nodes):
                armed = True
                print("ARMED", flush=True)
        else:
            for n in nodes:
                if states.get(n) == "dead":
                    dead.setdefault(n, now)
            if all(n in dead or n in leaves for n in nodes):
                break
        yield task.deferLater(reactor, 0.02, lambda: None)
    emit({"dead": dead, "leave": leaves})
    yield client.stop()
    yield connection.closeConnection(within=2)


def main(argv: list[str]) -> None:
    task.react(run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
