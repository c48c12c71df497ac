"""
SIGTERM during load: the agent drains (NodeStatus marked draining, consumers
cancelled, calls in flight finished up to C{[agent] drain-timeout}, the rest
handed back to the broker), says how many calls it served and handed back
(NodeLeave), closes its connection and exits 0; every accepted call is
answered, by it or by the other agent.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.reliability.harness import (
    AgentProcess,
    EventWatcher,
    Load,
    openConnection,
    pause,
    recordedBy,
    recordedRuns,
    requireReliability,
    startClients,
    waitQueuesEmpty,
    waitUntil,
    writeDropins,
    writeRow,
)
from tests.util.agents import DomainFixture
from tests.util.broker import BROKER_URL, brokerAddress

CALLS = 1000
#: Most calls are short; every 50th runs for LONG seconds, longer than the
#: drain timeout, so that some are still running when the agent gives up.
SHORT = 0.1
LONG = 2.5
DRAIN_TIMEOUT = 1.0


def duration(index: int) -> float:
    return LONG if index % 50 == 25 else SHORT


class SigtermDuringLoad(TestCase):
    """
    Agents A and B serve a load of 1,000 calls; A gets SIGTERM once 300 are
    answered.
    """

    timeout = 120

    def setUp(self) -> None:
        requireReliability()

    @inlineCallbacks
    def test_sigtermDuringLoad(self) -> Generator[Deferred[Any], Any, None]:
        """
        A publishes NodeStatus with C{draining} true, stops taking calls,
        finishes the short ones, hands the long ones back (B runs them) and
        publishes NodeLeave with C{served} = the calls it answered and
        C{requeued} = the calls it handed back; it exits 0 within the drain
        timeout (plus start-up slack).  No call is lost; only the handed
        back ones ran twice.
        """
        domain = DomainFixture(self)
        for node in ("A", "B"):
            domain.broker.deleteAfterwards(queue=f"{domain.domain}.commands.node.{node}")
        recordDir = os.path.abspath(self.mktemp())
        os.makedirs(recordDir)
        dropins = writeDropins(self)
        address = brokerAddress()
        probe = yield openConnection(self, address.host, address.port)
        a = AgentProcess(
            self, "A", domain.domain, BROKER_URL, recordDir, dropins, drainTimeout=DRAIN_TIMEOUT
        )
        b = AgentProcess(self, "B", domain.domain, BROKER_URL, recordDir, dropins)
        yield a.start()
        yield b.start()
        watcher = yield EventWatcher.open(probe, domain.domain, ["NodeStatus.A", "NodeLeave.A"])
        clients = yield startClients(self, BROKER_URL, domain.domain)
        load = Load(clients)
        load.fire(CALLS, duration)
        yield waitUntil(lambda: load.answered >= 300, 60, "300 answers")
        # Strike while a long call started on A less than half a second
        # ago: it cannot finish within the drain timeout.
        long = {c.callId for i, c in enumerate(load.calls.values()) if duration(i) == LONG}
        # Long calls A started before we look: of unknown age.
        seen = {c: 0.0 for c in recordedBy(recordDir).get("A", {}) if c in long}

        def longCallJustStarted() -> bool:
            now = time.monotonic()
            for callId in recordedBy(recordDir).get("A", {}):
                if callId in long:
                    seen.setdefault(callId, now)
            return any(now - t < 0.5 and load.calls[c].outcome is None for c, t in seen.items())

        yield waitUntil(longCallJustStarted, 30, "a long call to start on A")
        inFlight = CALLS - load.settled
        a.signal("TERM")
        assert a.child is not None
        result = yield a.child.ended(timeout=DRAIN_TIMEOUT + 15)
        yield load.waitSettled()
        yield waitQueuesEmpty(probe, [f"{domain.domain}.commands.any"])
        yield pause(1.0)

        self.assertEqual(result.code, 0, result.describe())
        out = result.out + result.err
        self.assertNotIn("Traceback", out)
        self.assertNotIn("Closing the AMQP connection failed", out)
        self.assertIn("clacks-agent stopped: node A", out)
        handedBack = re.search(r"Handed (\d+) unfinished call\(s\) back to the broker", out)
        requeued = int(handedBack.group(1)) if handedBack else 0

        yield waitUntil(lambda: watcher.of("NodeLeave", "A"), 10, "A's NodeLeave")
        [leave] = watcher.of("NodeLeave", "A")
        statuses = watcher.of("NodeStatus", "A")
        draining = [s for s in statuses if s["draining"]]
        self.assertTrue(draining, "no NodeStatus with draining=true before NodeLeave")
        self.assertEqual(leave["reason"], "shutdown")
        self.assertEqual(leave["requeued"], requeued)
        self.assertGreater(requeued, 0, "no long call was still running at the drain timeout")
        self.assertEqual(leave["served"], load.answeredBy("A"))

        runs = recordedRuns(recordDir)
        byNode = recordedBy(recordDir)
        row = load.figures(
            "(2) SIGTERM one agent during load",
            runs,
            inFlightAtStrike=inFlight,
            requeued=requeued,
            servedByA=leave["served"],
            exitCode=result.code,
        )
        writeRow(row)
        self.assertEqual(row["lost"], 0, row)
        self.assertEqual(row["answered"], CALLS, row)
        # The calls A handed back had started on A: they ran again on B.
        twice = {c for c, n in runs.items() if n > 1}
        self.assertEqual(len(twice), requeued, row)
        self.assertTrue(all(byNode["B"][c] == 1 for c in twice), row)


class SigtermSilentNetwork(TestCase):
    """
    SIGTERM while the agent's network is silent (no FIN, no RST, and a
    heartbeat too long to notice it): the agent cannot drain over the bus,
    but it still stops, within a bound, with status 0; the calls it held
    are served by the other agent once the broker learns it is gone.
    """

    timeout = 120

    def setUp(self) -> None:
        requireReliability()

    @inlineCallbacks
    def test_sigtermSilentNetwork(self) -> Generator[Deferred[Any], Any, None]:
        """
        Every step of the stop is bounded (the draining status by the
        status interval, consumer cancel and drain together by the drain
        timeout, NodeLeave and the connection close by 5 s each), so the
        agent exits 0 within their sum; no call is lost.
        """
        from twisted.internet import reactor

        from tests.util.proxy import FaultProxy

        domain = DomainFixture(self)
        for node in ("A", "B"):
            domain.broker.deleteAfterwards(queue=f"{domain.domain}.commands.node.{node}")
        recordDir = os.path.abspath(self.mktemp())
        os.makedirs(recordDir)
        dropins = writeDropins(self)
        address = brokerAddress()
        proxy = FaultProxy(reactor, address.host, address.port)
        port = yield proxy.start()
        self.addCleanup(proxy.stop)
        statusInterval = 1.0
        a = AgentProcess(
            self,
            "A",
            domain.domain,
            f"amqp://guest:guest@127.0.0.1:{port}/",
            recordDir,
            dropins,
            heartbeat=30,
            drainTimeout=DRAIN_TIMEOUT,
            statusInterval=statusInterval,
        )
        b = AgentProcess(self, "B", domain.domain, BROKER_URL, recordDir, dropins)
        yield a.start()
        yield b.start()
        clients = yield startClients(self, BROKER_URL, domain.domain)
        load = Load(clients)
        load.fire(200, 0.5)
        yield waitUntil(
            lambda: len(recordedBy(recordDir).get("A", {})) >= 20, 30, "A to take calls"
        )
        proxy.blackhole()
        started = time.monotonic()
        a.signal("TERM")
        assert a.child is not None
        result = yield a.child.ended(timeout=60)
        stopped = time.monotonic() - started
        # The partition ends: the broker learns A is gone and requeues.
        proxy.passThrough()
        yield load.waitSettled()
        yield pause(1.0)
        bound = statusInterval + DRAIN_TIMEOUT + 5 + 5 + 3
        row = load.figures(
            "(2b) SIGTERM one agent, network silent",
            recordedRuns(recordDir),
            exitCode=result.code,
            stopSeconds=round(stopped, 1),
        )
        writeRow(row)
        self.assertEqual(result.code, 0, result.describe())
        self.assertLess(stopped, bound, a.out[-3000:])
        self.assertEqual(row["lost"], 0, row)
        self.assertEqual(row["answered"], 200, row)
