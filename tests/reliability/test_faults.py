"""
1,000 calls in flight from two clients to two agents (real C{clacks-agent}
processes) while a fault strikes: an agent is killed, its connection is
cut, its network goes silent past the heartbeat timeout, the broker
restarts.  Every accepted call must be answered (lost = 0); the figures go
to the results table.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.reliability.harness import (
    HEARTBEAT,
    AgentProcess,
    Load,
    openConnection,
    pause,
    recordedRuns,
    requireReliability,
    startClients,
    waitQueuesEmpty,
    waitUntil,
    writeDropins,
    writeRow,
)
from tests.util.agents import DomainFixture
from tests.util.broker import BROKER_URL, NAME_PREFIX, brokerAddress, uniqueName
from tests.util.privatebroker import PrivateBroker
from tests.util.proxy import FaultProxy

#: Calls of each scenario, and how long each runs on its agent.
CALLS = 1000
CALL_SECONDS = 0.1
#: Prefetch of each agent (per queue): at most this many calls of the
#: shared queue are in flight on one agent.
CAPACITY = 16
#: The fault strikes once this many calls were answered.
STRIKE_AFTER = 300


class FaultScenarios(TestCase):
    """
    Each test: agents A and B serve the shared queue of a domain of their
    own; two clients put 1,000 calls in flight; once 300 are answered, a
    fault strikes (A, or the broker).  The test waits for every call to
    settle, then counts.
    """

    timeout = 150

    def setUp(self) -> None:
        requireReliability()
        self.recordDir = os.path.abspath(self.mktemp())
        os.makedirs(self.recordDir)
        self.dropins = writeDropins(self)

    def agent(self, node: str, domain: str, url: str, **settings: Any) -> AgentProcess:
        settings.setdefault("capacity", CAPACITY)
        return AgentProcess(self, node, domain, url, self.recordDir, self.dropins, **settings)

    @inlineCallbacks
    def scenario(
        self,
        name: str,
        domain: str,
        agentURLs: tuple[str, str],
        clientURL: str,
        probe: Callable[[], Deferred[Any]],
        strike: Callable[[AgentProcess, AgentProcess], Deferred[Any]],
        maxRanTwice: int,
    ) -> Generator[Deferred[Any], Any, dict[str, Any]]:
        """
        Run one scenario and report it.

        @param probe: opens a connection to the broker of the domain.
        @param strike: the fault, given agents A and B.
        @param maxRanTwice: how many calls may have run twice besides those
            the clients sent again after a reconnect of their own: the calls
            in flight on the agents that lost their connection.
        """
        a = self.agent("A", domain, agentURLs[0])
        b = self.agent("B", domain, agentURLs[1])
        yield a.start()
        yield b.start()
        clients = yield startClients(self, clientURL, domain)
        load = Load(clients)
        load.fire(CALLS, CALL_SECONDS)
        yield waitUntil(lambda: load.answered >= STRIKE_AFTER, 60, f"{STRIKE_AFTER} answers")
        inFlight = CALLS - load.settled
        yield strike(a, b)
        yield load.waitSettled()
        connection = yield probe()
        yield waitQueuesEmpty(connection, [f"{domain}.commands.any"])
        # A redelivered copy still being served would run once more.
        yield pause(1.0)
        runs = recordedRuns(self.recordDir)
        row = load.figures(
            name,
            runs,
            inFlightAtStrike=inFlight,
            answeredFromCache=sum(x.out.count("was answered before") for x in (a, b)),
        )
        writeRow(row)
        self.assertEqual(row["lost"], 0, row)
        self.assertEqual(
            row["answered"] + row["failedClear"] + row["lost"], row["calls"], "unsettled calls"
        )
        self.assertEqual(row["neverRan"], 0, row)
        # A call sent again after the client's reconnect runs a second time
        # when its first copy, still queued, went to the other agent.
        self.assertLessEqual(row["ranTwice"], maxRanTwice + row["resent"], row)
        return row

    def sharedDomain(self) -> DomainFixture:
        domain = DomainFixture(self)
        for node in ("A", "B"):
            domain.broker.deleteAfterwards(queue=f"{domain.domain}.commands.node.{node}")
        return domain

    def sharedProbe(self) -> Deferred[Any]:
        address = brokerAddress()
        return openConnection(self, address.host, address.port)

    @inlineCallbacks
    def test_agentKilled(self) -> Generator[Deferred[Any], Any, None]:
        """
        Agent A is killed (SIGKILL) with calls in flight: the broker hands
        its unacknowledged calls to B, which answers them.  Only those may
        have run twice.
        """
        domain = self.sharedDomain()

        @inlineCallbacks
        def strike(a: AgentProcess, b: AgentProcess) -> Generator[Deferred[Any], Any, None]:
            a.signal("KILL")
            assert a.child is not None
            result = yield a.child.ended(timeout=10)
            self.assertEqual(result.signal, 9)

        yield self.scenario(
            "(a) one agent SIGKILLed",
            domain.domain,
            (BROKER_URL, BROKER_URL),
            BROKER_URL,
            self.sharedProbe,
            strike,
            maxRanTwice=CAPACITY,
        )

    @inlineCallbacks
    def test_connectionCut(self) -> Generator[Deferred[Any], Any, None]:
        """
        A's connection is cut (RST on both sides): the broker requeues A's
        unacknowledged calls, A reconnects at once and serves again; the
        replies of the calls A finished meanwhile are published on the new
        connection.
        """
        domain = self.sharedDomain()
        address = brokerAddress()
        proxy = FaultProxy(reactor, address.host, address.port)
        port = yield proxy.start()
        self.addCleanup(proxy.stop)
        proxied = f"amqp://{address.username}:{address.password}@127.0.0.1:{port}/"

        @inlineCallbacks
        def strike(a: AgentProcess, b: AgentProcess) -> Generator[Deferred[Any], Any, None]:
            before = a.connects()
            proxy.cut()
            yield waitUntil(lambda: a.connects() > before, 20, "A to reconnect")

        yield self.scenario(
            "(b) agent connection cut",
            domain.domain,
            (proxied, BROKER_URL),
            BROKER_URL,
            self.sharedProbe,
            strike,
            maxRanTwice=CAPACITY,
        )

    @inlineCallbacks
    def test_blackholed(self) -> Generator[Deferred[Any], Any, None]:
        """
        A's network goes silent (no FIN, no RST) past the heartbeat
        timeout: the broker gives up on A and hands its calls to B; A gives
        up on the broker, and reconnects once the network is back.
        """
        domain = self.sharedDomain()
        address = brokerAddress()
        proxy = FaultProxy(reactor, address.host, address.port)
        port = yield proxy.start()
        self.addCleanup(proxy.stop)
        proxied = f"amqp://{address.username}:{address.password}@127.0.0.1:{port}/"

        @inlineCallbacks
        def strike(a: AgentProcess, b: AgentProcess) -> Generator[Deferred[Any], Any, None]:
            before = a.connects()
            proxy.blackhole()
            # txAMQP gives up after 3 silent heartbeat intervals.
            yield a.waitFor("No AMQP traffic from the broker", timeout=6 * HEARTBEAT + 10)
            proxy.passThrough()
            yield waitUntil(lambda: a.connects() > before, 30, "A to reconnect")

        yield self.scenario(
            "(c) agent network blackholed past heartbeat",
            domain.domain,
            (proxied, BROKER_URL),
            BROKER_URL,
            self.sharedProbe,
            strike,
            maxRanTwice=CAPACITY,
        )

    @inlineCallbacks
    def test_brokerRestart(self) -> Generator[Deferred[Any], Any, None]:
        """
        The broker restarts with calls in flight: persistent requests in
        the durable queue survive; agents and clients reconnect; clients
        send again the calls whose replies the restart swallowed (same
        message id, so an agent that ran one answers from its reply cache).
        """
        broker = PrivateBroker(self.mktemp())
        self.addCleanup(broker.cleanup)
        yield broker.start()
        domain = uniqueName(f"{NAME_PREFIX}.domain")

        def probe() -> Deferred[Any]:
            assert broker.port is not None
            return openConnection(self, "127.0.0.1", broker.port)

        @inlineCallbacks
        def strike(a: AgentProcess, b: AgentProcess) -> Generator[Deferred[Any], Any, None]:
            before = (a.connects(), b.connects())
            yield broker.restart()
            yield waitUntil(
                lambda: a.connects() > before[0] and b.connects() > before[1],
                30,
                "both agents to reconnect",
            )

        yield self.scenario(
            "(d) broker restarted",
            domain,
            (broker.url, broker.url),
            broker.url,
            probe,
            strike,
            # Both agents lose their connection.
            maxRanTwice=2 * CAPACITY,
        )
