"""
Load generator for a real clacks agent, through L{clacks.client.AMQPClient}.

    python -m bench.workers.clacksclient DOMAIN SEQ PAR INFLIGHT [METHOD]
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import inlineCallbacks

from bench.stats import PAYLOAD, emit
from bench.workers.twistedload import sequential, window
from clacks.client import AMQPClient

URL = "amqp://guest:guest@127.0.0.1:5672/"


@inlineCallbacks
def run(reactor: Any, domain: str, seq: int, par: int, inFlight: int) -> Any:
    client = AMQPClient(URL, domain, timeout=60, reactor=reactor)
    yield client.start()

    def call() -> Any:
        return client.call("echo", PAYLOAD)

    value = yield call()
    assert value == PAYLOAD, value
    yield sequential(call, 50)  # warm-up
    result = {}
    if seq:
        result["seq"] = yield sequential(call, seq)
    if par:
        result["par"] = yield window(call, par, inFlight)
    emit(result)
    yield client.stop()


def main(argv: list[str]) -> None:
    domain = argv[0]
    seq, par, inFlight = (int(a) for a in argv[1:4])
    task.react(run, [domain, seq, par, inFlight])


if __name__ == "__main__":
    main(sys.argv[1:])
