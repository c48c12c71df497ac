"""
Summaries of measurements, shared by the driver and every load generator
(plain Python: the nameko and aio-pika workers import it too).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from typing import Any

#: The echo argument: a 64-byte string.
PAYLOAD = "0123456789abcdef" * 4
assert len(PAYLOAD.encode()) == 64


def percentile(values: Sequence[float], q: float) -> float:
    """
    @return: the C{q}-th percentile (0..100) of C{values}, nearest rank.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def summarise(
    latencies: Sequence[float], seconds: float, cpu: float | None = None
) -> dict[str, Any]:
    """
    @param latencies: seconds per call.
    @param seconds: wall time of the whole run.
    @param cpu: CPU seconds the load generator used meanwhile.
    @return: calls, calls/s, p50/p99 latency in milliseconds (and the
        load generator's CPU microseconds per call).
    """
    n = len(latencies)
    extra = {"client_cpu_us": round(cpu / n * 1e6, 1)} if cpu is not None and n else {}
    return extra | {
        "calls": n,
        "seconds": round(seconds, 4),
        "rate": round(n / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
    }


def median(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def emit(result: dict[str, Any]) -> None:
    """
    Print the worker's result as the last line of its output, for the driver.
    """
    sys.stdout.write("BENCH-RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
