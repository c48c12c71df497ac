"""
Load loops on Twisted: sequential calls, and a window of calls in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks

from bench.stats import summarise

Call = Callable[[], Deferred[Any]]


@inlineCallbacks
def sequential(call: Call, n: int) -> Any:
    """
    Make C{n} calls one after the other.

    @return: a Deferred with L{summarise}'s dict.
    """
    latencies = []
    clock = time.perf_counter
    start, cpu = clock(), time.process_time()
    for _ in range(n):
        t0 = clock()
        yield call()
        latencies.append(clock() - t0)
    return summarise(latencies, clock() - start, time.process_time() - cpu)


def window(call: Call, n: int, inFlight: int) -> Deferred[dict[str, Any]]:
    """
    Make C{n} calls with C{inFlight} of them outstanding at any time (each
    answer starts the next call).

    @return: a Deferred with L{summarise}'s dict; failing with the first
        call's error.
    """
    clock = time.perf_counter
    latencies: list[float] = []
    done: Deferred[dict[str, Any]] = Deferred()
    state = {"started": 0, "finished": 0}
    start, cpu = clock(), time.process_time()

    def launch() -> None:
        state["started"] += 1
        t0 = clock()
        d = call()

        def ok(_: Any) -> None:
            latencies.append(clock() - t0)
            state["finished"] += 1
            if done.called:
                return
            if state["started"] < n:
                launch()
            elif state["finished"] == n:
                done.callback(summarise(latencies, clock() - start, time.process_time() - cpu))

        def failed(failure: Any) -> None:
            if not done.called:
                done.errback(failure)

        d.addCallbacks(ok, failed)

    for _ in range(min(inFlight, n)):
        launch()
    return done
