"""
Overload: an agent takes at most C{[agent] capacity} calls of a queue at a
time (the prefetch) and runs blocking code in C{[agent] threads} threads;
the calls beyond wait in the broker, not in the agent.  A slow blocking
command does not starve the heartbeat, the status loop, or calls that
reach the agent through its other queue.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.reliability.harness import (
    HEARTBEAT,
    AgentProcess,
    EventWatcher,
    openConnection,
    pause,
    requireReliability,
    startClients,
    writeDropins,
    writeRow,
)
from tests.util.agents import DomainFixture
from tests.util.broker import BROKER_URL, brokerAddress

CAPACITY = 4
THREADS = 2
NAPS = 16
NAP = 1.0


class Overload(TestCase):
    """
    One agent, capacity 4, two threads, 16 calls of the blocking C{nap(1)}
    (8 s of work), heartbeat 2 s.
    """

    timeout = 90

    def setUp(self) -> None:
        requireReliability()

    @inlineCallbacks
    def test_slowBlockingCommand(self) -> Generator[Deferred[Any], Any, None]:
        """
        While the naps run: the agent has at most C{capacity} of them in
        flight (the broker holds the rest), its status keeps coming on time
        (no reactor lag), its connection survives more than 3 heartbeat
        intervals, and a call to the node's own queue is answered at once.
        """
        domain = DomainFixture(self)
        domain.broker.deleteAfterwards(queue=f"{domain.domain}.commands.node.A")
        recordDir = os.path.abspath(self.mktemp())
        os.makedirs(recordDir)
        agent = AgentProcess(
            self,
            "A",
            domain.domain,
            BROKER_URL,
            recordDir,
            writeDropins(self),
            capacity=CAPACITY,
            statusInterval=0.5,
            extra=f"threads = {THREADS}",
        )
        yield agent.start()
        address = brokerAddress()
        probe = yield openConnection(self, address.host, address.port)
        channel = yield probe.newChannel()
        watcher = yield EventWatcher.open(probe, domain.domain, ["NodeStatus.A"])
        [client] = yield startClients(self, BROKER_URL, domain.domain, count=1)
        started = time.monotonic()
        naps = [client.call("nap", NAP, timeout=60) for _ in range(NAPS)]
        yield pause(0.5)
        declared = yield channel.queue_declare(queue=f"{domain.domain}.commands.any", passive=True)
        waitingInBroker = declared.message_count

        # A call to the node's own queue, and one to any node.
        latencies: dict[str, list[float]] = {"node": [], "any": []}
        for _ in range(3):
            t = time.monotonic()
            yield client.call("ping", node="A", timeout=30)
            latencies["node"].append(time.monotonic() - t)
            yield pause(0.5)
        t = time.monotonic()
        anyPing = client.call("ping", timeout=60)
        anyPing.addCallback(lambda _: latencies["any"].append(time.monotonic() - t))
        results = yield DeferredList([*naps, anyPing], consumeErrors=True)
        elapsed = time.monotonic() - started
        failed = [r for ok, r in results if not ok]
        statuses = [s for s in watcher.of("NodeStatus", "A")]
        during = statuses[1:]
        row = {
            "scenario": "overload: slow blocking command, capacity 4, 2 threads",
            "calls": NAPS + 4,
            "answered": NAPS + 4 - len(failed),
            "failedClear": len(failed),
            "lost": 0,
            "ranTwice": 0,
            "duration": round(elapsed, 1),
            "waitingInBroker": waitingInBroker,
            "maxInflight": max((s["inflight"] for s in during), default=None),
            "maxLag": max((s["lag"] for s in during), default=None),
            "nodePingSeconds": round(max(latencies["node"]), 3),
            "anyPingSeconds": round(max(latencies["any"], default=-1), 3),
            "connects": agent.connects(),
        }
        writeRow(row)
        self.assertEqual(failed, [])
        self.assertGreaterEqual(elapsed, NAPS * NAP / THREADS)
        self.assertGreater(elapsed, 3 * HEARTBEAT)
        self.assertGreaterEqual(waitingInBroker, NAPS - CAPACITY - THREADS)
        self.assertLessEqual(row["maxInflight"], CAPACITY)
        self.assertLess(row["maxLag"], 0.5)
        self.assertLess(row["nodePingSeconds"], 1.0)
        self.assertEqual(agent.connects(), 1)
        self.assertNotIn("No AMQP traffic", agent.out)
