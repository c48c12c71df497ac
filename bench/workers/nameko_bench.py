"""
nameko 2.14 RPC (eventlet), in the bench's nameko virtualenv.

    python nameko_bench.py server SERVICE        # runs the service
    python nameko_bench.py client SERVICE SEQ PAR INFLIGHT

This file is run by the nameko virtualenv's Python, with the repository
root on C{PYTHONPATH} (for L{bench.stats} only).
"""

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402
import time  # noqa: E402

from nameko.rpc import rpc  # noqa: E402

from bench.stats import PAYLOAD, emit, summarise  # noqa: E402

CONFIG = {"AMQP_URI": "amqp://guest:guest@127.0.0.1:5672/"}
SERVICE = sys.argv[2] if len(sys.argv) > 2 else "bench"


class BenchService:
    name = SERVICE

    @rpc
    def echo(self, value):
        return value


def server():
    from nameko.runners import ServiceRunner

    runner = ServiceRunner(CONFIG)
    runner.add_service(BenchService)
    runner.start()
    print("READY", flush=True)
    runner.wait()


def client(seq, par, inFlight):
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy(CONFIG) as proxy:
        service = getattr(proxy, SERVICE)

        def sequential(n):
            latencies = []
            start = time.perf_counter()
            for _ in range(n):
                t0 = time.perf_counter()
                assert service.echo(PAYLOAD) == PAYLOAD
                latencies.append(time.perf_counter() - t0)
            return summarise(latencies, time.perf_counter() - start)

        def window(n):
            # a window of calls in flight, answers collected oldest first
            latencies = []
            outstanding = []
            start = time.perf_counter()
            sent = 0
            while sent < n or outstanding:
                while sent < n and len(outstanding) < inFlight:
                    outstanding.append((time.perf_counter(), service.echo.call_async(PAYLOAD)))
                    sent += 1
                t0, reply = outstanding.pop(0)
                assert reply.result() == PAYLOAD
                latencies.append(time.perf_counter() - t0)
            return summarise(latencies, time.perf_counter() - start)

        sequential(50)
        result = {}
        if seq:
            result["seq"] = sequential(seq)
        if par:
            result["par"] = window(par)
        emit(result)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server()
    else:
        client(*(int(a) for a in sys.argv[3:6]))
