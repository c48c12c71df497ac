"""
HTTP keep-alive load generator on Twisted (treq, persistent connections):
the bench's fallback when C{wrk} is not installed.

    python -m bench.workers.httpload URL TOKEN CONNECTIONS SECONDS
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import treq
from twisted.internet import task
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.web.client import HTTPConnectionPool

from bench.stats import PAYLOAD, emit, summarise


@inlineCallbacks
def run(reactor: Any, url: str, token: str, connections: int, seconds: float) -> Any:
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = connections
    headers = {b"Content-Type": [b"application/json"]}
    if token != "-":
        headers[b"Authorization"] = [b"Bearer " + token.encode()]
    body = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": [PAYLOAD], "id": 1}).encode()
    latencies: list[float] = []
    errors = [0]
    end = time.perf_counter() + seconds

    @inlineCallbacks
    def worker() -> Any:
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            response = yield treq.post(url, data=body, headers=headers, pool=pool)
            content = yield response.content()
            if response.code != 200 or json.loads(content).get("result") != PAYLOAD:
                errors[0] += 1
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    yield gatherResults([worker() for _ in range(connections)])
    result = summarise(latencies, time.perf_counter() - start)
    result["errors"] = errors[0]
    yield pool.closeCachedConnections()
    emit({"http": result})


def main(argv: list[str]) -> None:
    task.react(run, [argv[0], argv[1], int(argv[2]), float(argv[3])])


if __name__ == "__main__":
    main(sys.argv[1:])
