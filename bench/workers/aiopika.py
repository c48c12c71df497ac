"""
aio-pika request/reply (asyncio), confirms off: a baseline.

    python -m bench.workers.aiopika server QUEUE
    python -m bench.workers.aiopika client QUEUE SEQ PAR INFLIGHT

Same wire behaviour as L{bench.workers.rawamqp}: durable queue, prefetch
16, persistent requests, direct reply-to.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any

import aio_pika

from bench.stats import PAYLOAD, emit, summarise

URL = "amqp://guest:guest@127.0.0.1:5672/"
DIRECT = "amq.rabbitmq.reply-to"


async def server(queueName: str) -> None:
    connection = await aio_pika.connect(URL)
    channel = await connection.channel(publisher_confirms=False)
    await channel.set_qos(prefetch_count=16)
    queue = await channel.declare_queue(queueName, durable=True)
    exchange = channel.default_exchange

    async def onMessage(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        request = json.loads(message.body)
        body = json.dumps(
            {"jsonrpc": "2.0", "id": request.get("id"), "result": request["params"][0]},
            separators=(",", ":"),
        ).encode()
        await exchange.publish(
            aio_pika.Message(
                body, content_type="application/json", correlation_id=message.correlation_id
            ),
            routing_key=message.reply_to,
        )
        await message.ack()

    await queue.consume(onMessage)
    print("READY", flush=True)
    await asyncio.Future()


async def client(queueName: str, seq: int, par: int, inFlight: int) -> None:
    connection = await aio_pika.connect(URL)
    channel = await connection.channel(publisher_confirms=False)
    replies = await channel.get_queue(DIRECT, ensure=False)
    pending: dict[str, asyncio.Future[Any]] = {}

    async def onReply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(json.loads(message.body)["result"])

    await replies.consume(onReply, no_ack=True)
    exchange = channel.default_exchange

    async def call() -> Any:
        cid = uuid.uuid4().hex
        body = json.dumps(
            {"jsonrpc": "2.0", "method": "echo", "params": [PAYLOAD], "id": 1},
            separators=(",", ":"),
        ).encode()
        future = asyncio.get_running_loop().create_future()
        pending[cid] = future
        await exchange.publish(
            aio_pika.Message(
                body,
                content_type="application/json",
                content_encoding="utf-8",
                correlation_id=cid,
                message_id=cid,
                reply_to=DIRECT,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                expiration=30,
                user_id="guest",
                headers={"x-clacks-deadline": time.time() + 30},
            ),
            routing_key=queueName,
        )
        return await future

    async def sequential(n: int) -> dict[str, Any]:
        latencies = []
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)
        return summarise(latencies, time.perf_counter() - start)

    async def window(n: int) -> dict[str, Any]:
        latencies: list[float] = []
        remaining = [n]

        async def worker() -> None:
            while remaining[0] > 0:
                remaining[0] -= 1
                t0 = time.perf_counter()
                await call()
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(inFlight, n))))
        return summarise(latencies, time.perf_counter() - start)

    await sequential(50)
    result = {}
    if seq:
        result["seq"] = await sequential(seq)
    if par:
        result["par"] = await window(par)
    emit(result)
    await connection.close()


def main(argv: list[str]) -> None:
    if argv[0] == "server":
        asyncio.run(server(argv[1]))
    else:
        asyncio.run(client(argv[1], *(int(a) for a in argv[2:5])))


if __name__ == "__main__":
    main(sys.argv[1:])
