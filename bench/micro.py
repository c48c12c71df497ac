"""
In-process micro-benchmark of the agent's RPC path without the broker:
the command server (request delivery to reply publish) and the caller
(request publish to reply), with a fake bus whose publishes are confirmed
at once.  It shows what clacks itself costs per call, apart from the AMQP
codec and the broker.

    python -m bench.micro [CALLS] [--profile]
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from bench.stats import PAYLOAD


class FakeBus:
    """
    Publishes into a list, confirmed at once.
    """

    login = "guest"
    ready = True

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes, dict[str, Any]]] = []
        self.replyHandler: Any = None

    def publish(
        self, exchange: str, key: str, body: bytes, properties: Any = None, **kw: Any
    ) -> Deferred[None]:
        self.published.append((exchange, key, body, dict(properties or {})))
        return succeed(None)

    def consume(self, *a: Any, **kw: Any) -> Any:
        return None

    def observe(self, observer: Any) -> Any:
        return lambda: None

    def setReplyHandler(self, handler: Any) -> None:
        self.replyHandler = handler


def _delivery(body: bytes, properties: dict[str, Any], tag: int) -> Any:
    from clacks.handlers.amqp.bus import Delivery

    return Delivery(
        body=body,
        properties=properties,
        exchange="bench.commands",
        routingKey="any",
        redelivered=False,
        deliveryTag=tag,
        ack=lambda: None,
        reject=lambda requeue: None,
    )


def server(calls: int, users: str | None) -> float:
    """
    @return: microseconds per call through L{CommandServer}.
    """
    from clacks_hello.plugin import HelloPlugin

    from clacks.agent.commands import CommandRegistry
    from clacks.agent.config import CoreConfig, defaultConfig
    from clacks.agent.dispatch import Dispatcher
    from clacks.handlers.amqp.rpc import CommandServer, requestProperties
    from clacks.handlers.amqp.topology import DomainTopology
    from tests.fakes.agent import agentContext

    config = defaultConfig(core=CoreConfig(id="n1", domain="bench", users=users))
    context, clock, _ = agentContext(
        {"CommandRegistry": CommandRegistry, "hello": HelloPlugin}, config=config
    )
    clock.advance(time.time())
    registry = context.plugins.get("CommandRegistry")
    registry.collect()
    dispatcher = Dispatcher(registry, "n1", None, None, clock)
    bus = FakeBus()
    server = CommandServer(context, bus, DomainTopology("bench", "n1"), dispatcher, capacity=16)
    body = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": [PAYLOAD], "id": 1}).encode()
    deliveries = []
    for i in range(calls):
        properties = requestProperties(f"{i:032x}", time.time() + 30, 30, {})
        properties["user-id"] = "guest"
        deliveries.append(_delivery(body, properties, i))
    start = time.process_time()
    for delivery in deliveries:
        server._received(delivery, shared=True)
    elapsed = time.process_time() - start
    assert len(bus.published) == calls, len(bus.published)
    assert json.loads(bus.published[-1][2])["result"] == PAYLOAD
    return elapsed / calls * 1e6


def caller(calls: int) -> float:
    """
    @return: microseconds per call through L{RPCCaller} (publish, reply).
    """
    from clacks.common.jsonrpc import Request
    from clacks.handlers.amqp.rpc import RPCCaller

    clock = Clock()
    clock.advance(time.time())
    bus = FakeBus()
    rpc = RPCCaller(bus, "bench.commands", clock)
    rpc.start()
    reply = json.dumps({"jsonrpc": "2.0", "id": 1, "result": PAYLOAD}).encode()
    request = Request(method="echo", params=[PAYLOAD], id=1)
    results = []
    start = time.process_time()
    for i in range(calls):
        d = rpc.call("any", request, 30.0)
        d.addCallback(results.append)
        properties = bus.published[-1][3]
        bus.replyHandler(_delivery(reply, {"correlation-id": properties["correlation-id"]}, i))
    elapsed = time.process_time() - start
    assert len(results) == calls
    return elapsed / calls * 1e6


def main(argv: list[str]) -> None:
    from bench.agents import helloPlugin

    sys.path.insert(0, helloPlugin())
    calls = int(argv[0]) if argv and argv[0].isdigit() else 20000
    profile = "--profile" in argv
    with tempfile.TemporaryDirectory() as tmp:
        from clacks.agent.users import addUser

        users = os.path.join(tmp, "users")
        addUser(users, "bench", "bench", rounds=4)
        server(1000, users)
        caller(1000)
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        # best of several batches: the machine is shared, the minimum is
        # the cost of the code
        batch = max(1, calls // 10)
        s = min(server(batch, users) for _ in range(10))
        c = min(caller(batch) for _ in range(10))
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    print(
        f"command server: {s:.1f} us/call; caller: {c:.1f} us/call "
        "(no broker, no AMQP codec; best of 10 batches)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
