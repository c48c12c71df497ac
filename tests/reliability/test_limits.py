"""
Input limits and poison requests, against a real C{clacks-agent} process:

  - a request over a limit (body size, nesting, parameter count, batch
    size), or not JSON, or with another content type, is refused with a
    clear error that names the limit, over AMQP and over HTTP, and counted
    in C{NodeStatus.refused};
  - a request that crashes its handler on every delivery is dead-lettered
    to C{<domain>.dead} with the reason after C{[agent] max-deliveries}
    deliveries, instead of going round forever: counted by the agent on a
    classic queue, by the broker (quorum queue, C{x-delivery-limit}) when
    the crash takes the whole agent down.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from clacks.agent.users import addUser
from tests.reliability.harness import (
    AgentProcess,
    EventWatcher,
    openConnection,
    pause,
    recordedRuns,
    requireReliability,
    waitUntil,
    writeDropins,
    writeRow,
)
from tests.util.agents import DomainFixture
from tests.util.broker import BROKER_URL, brokerAddress
from tests.util.privatebroker import freePort
from tests.util.rawrpc import RawRPC, requestBody

MiB = 1024 * 1024


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


#: Requests each agent must refuse, with the error code and the C{limit}
#: named in the error's data (or C{None}).
REFUSED = [
    ("body over 1 MiB", requestBody("echo", ["x" * MiB]), -32600, "maxBytes"),
    ("nesting over 32", requestBody("echo", [nested(40)]), -32600, "maxDepth"),
    ("65 parameters", requestBody("echo", list(range(65))), -32600, "maxParams"),
    (
        "batch of 101",
        json.dumps([json.loads(requestBody("echo", [1], id=i)) for i in range(101)]).encode(),
        -32600,
        "maxBatch",
    ),
    ("not JSON", b"{nope", -32700, None),
    ("not UTF-8", b'{"jsonrpc": "2.0", "method": "\xff", "id": 1}', -32700, None),
]


class InputLimits(TestCase):
    """
    One agent process, with HTTP; each bad request is sent over AMQP and
    over HTTP.
    """

    timeout = 90

    def setUp(self) -> None:
        requireReliability()

    @inlineCallbacks
    def test_refusedAndCounted(self) -> Generator[Deferred[Any], Any, None]:
        """
        Every bad request gets one error reply whose message says what is
        wrong and whose data names the limit; the agent counts each in
        C{NodeStatus.refused} and still serves afterwards.
        """
        domain = DomainFixture(self)
        domain.broker.deleteAfterwards(queue=f"{domain.domain}.commands.node.A")
        recordDir = os.path.abspath(self.mktemp())
        os.makedirs(recordDir)
        users = os.path.abspath(self.mktemp())
        addUser(users, "alice", "secret", rounds=4)
        port = freePort()
        agent = AgentProcess(
            self,
            "A",
            domain.domain,
            BROKER_URL,
            recordDir,
            writeDropins(self),
            statusInterval=0.5,
            listen=f"tcp:{port}:interface=127.0.0.1",
            coreExtra=f"users = {users}",
        )
        yield agent.start()
        address = brokerAddress()
        probe = yield openConnection(self, address.host, address.port)
        watcher = yield EventWatcher.open(probe, domain.domain, ["NodeStatus.A"])
        raw = yield RawRPC.open(domain.broker, domain.domain)
        pool = HTTPConnectionPool(reactor, persistent=False)

        problems = []
        cases = [*REFUSED, ("content type text/plain", requestBody("echo", [1]), -32600, None)]
        for name, body, code, limit in cases:
            properties = {"content-type": "text/plain"} if "content type" in name else {}
            reply = yield raw.request(body, properties=properties, timeout=15)
            error = reply.json.get("error") if isinstance(reply.json, dict) else None
            if isinstance(reply.json, list):
                error = reply.json[0].get("error")
            if (
                not error
                or error["code"] != code
                or (limit and (error.get("data") or {}).get("limit") != limit)
            ):
                problems.append(f"AMQP {name}: {reply.json!r:.300}")
        for name, body, code, limit in cases:
            contentType = "text/plain" if "content type" in name else "application/json"
            response = yield treq.post(
                f"http://127.0.0.1:{port}/rpc",
                data=body,
                headers={"content-type": contentType},
                auth=("alice", "secret"),
                pool=pool,
            )
            text = yield response.content()
            try:
                answer = json.loads(text)
            except ValueError:
                problems.append(f"HTTP {name}: {response.code} {text[:200]!r}")
                continue
            error = answer.get("error") if isinstance(answer, dict) else None
            if (
                not error
                or error["code"] != code
                or (limit and (error.get("data") or {}).get("limit") != limit)
            ):
                problems.append(f"HTTP {name}: {response.code} {answer!r:.300}")
        yield pool.closeCachedConnections()
        self.assertEqual(problems, [])

        expected = 2 * len(cases)
        try:
            yield waitUntil(
                lambda: any(s["refused"] >= expected for s in watcher.of("NodeStatus", "A")),
                10,
                f"NodeStatus.refused = {expected}",
            )
        finally:
            counted = max((s["refused"] for s in watcher.of("NodeStatus", "A")), default=None)
            writeRow(
                {
                    "scenario": "limits: refused requests (AMQP + HTTP)",
                    "calls": expected,
                    "answered": 0,
                    "failedClear": expected - len(problems),
                    "lost": 0,
                    "ranTwice": 0,
                    "duration": 0,
                    "refusedCounted": counted,
                }
            )
        reply = yield raw.request(requestBody("ping"), timeout=10)
        self.assertEqual(reply.json["result"]["node"], "A")


class PoisonRequests(TestCase):
    """
    A request that crashes whatever serves it.
    """

    timeout = 120

    def setUp(self) -> None:
        requireReliability()

    @inlineCallbacks
    def test_classicQueueAgentCounts(self) -> Generator[Deferred[Any], Any, None]:
        """
        On a classic queue, a request whose serving fails (here: the command
        raises C{SystemExit}, which no C{except Exception} stops) goes back
        to the queue until it failed C{max-deliveries} times on this agent,
        then lands in C{<domain>.dead} with C{x-clacks-dead-reason}.  The
        agent keeps serving.
        """
        maxDeliveries = 3
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
            maxDeliveries=maxDeliveries,
        )
        yield agent.start()
        raw = yield RawRPC.open(domain.broker, domain.domain)
        yield raw.publish(requestBody("exit", ["poison-1"]))
        dead = yield _waitDead(self, f"{domain.domain}.dead", 30)
        runs = recordedRuns(recordDir)
        headers = dead.content.properties.get("headers") or {}
        writeRow(
            {
                "scenario": "poison: handler fails every time (classic queue)",
                "calls": 1,
                "answered": 0,
                "failedClear": 0,
                "lost": 0,
                "ranTwice": int(runs["poison-1"] > 1),
                "duration": 0,
                "deliveries": runs["poison-1"],
                "deadReason": str(headers.get("x-clacks-dead-reason"))[:80],
            }
        )
        self.assertEqual(runs["poison-1"], maxDeliveries)
        self.assertIn("failed 3 times", str(headers.get("x-clacks-dead-reason")))
        self.assertIn("SystemExit", str(headers.get("x-clacks-dead-reason")))
        self.assertEqual(json.loads(dead.content.body)["method"], "exit")
        reply = yield raw.request(requestBody("ping"), timeout=10)
        self.assertEqual(reply.json["result"]["node"], "A")

    @inlineCallbacks
    def test_quorumQueueAgentDies(self) -> Generator[Deferred[Any], Any, None]:
        """
        On a quorum queue, a request that kills the agent (SIGKILL) every
        time is dead-lettered by the broker (reason C{delivery_limit}) after
        C{max-deliveries} redeliveries, however many agents it killed; the
        agent, started again, serves.
        """
        maxDeliveries = 2
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
            queueType="quorum",
            maxDeliveries=maxDeliveries,
        )
        yield agent.start()
        raw = yield RawRPC.open(domain.broker, domain.domain)
        yield raw.publish(requestBody("crash", ["poison-2"]))
        kills = 0
        while True:
            assert agent.child is not None
            result = yield agent.child.ended(timeout=20)
            self.assertEqual(result.signal, 9, result.describe())
            kills += 1
            self.assertLessEqual(kills, maxDeliveries + 1, "the request went round again")
            child = agent.spawn()
            try:
                # It takes the request again (and dies) within a second or
                # two of its start, or the request is gone.
                yield waitUntil(lambda c=child: c.result is not None, 5, "the agent to die")
            except AssertionError:
                break
        dead = yield _waitDead(self, f"{domain.domain}.dead", 10)
        runs = recordedRuns(recordDir)
        headers = dead.content.properties.get("headers") or {}
        deaths = headers.get("x-death") or [{}]
        writeRow(
            {
                "scenario": "poison: request kills the agent (quorum queue)",
                "calls": 1,
                "answered": 0,
                "failedClear": 0,
                "lost": 0,
                "ranTwice": int(runs["poison-2"] > 1),
                "duration": 0,
                "deliveries": runs["poison-2"],
                "deadReason": str(deaths[0].get("reason")),
            }
        )
        self.assertEqual(runs["poison-2"], maxDeliveries + 1)
        self.assertEqual(deaths[0].get("reason"), "delivery_limit")
        self.assertEqual(json.loads(dead.content.body)["method"], "crash")
        reply = yield raw.request(requestBody("ping"), timeout=10)
        self.assertEqual(reply.json["result"]["node"], "A")


@inlineCallbacks
def _waitDead(
    testCase: TestCase, queue: str, timeout: float, fail: bool = True
) -> Generator[Deferred[Any], Any, Any]:
    """
    @return: the first message of the dead-letter queue C{queue}, taken
        (acknowledged); C{None} if none came in C{timeout} and not C{fail}.
    """
    address = brokerAddress()
    connection = yield openConnection(testCase, address.host, address.port)
    channel = yield connection.newChannel()
    waited = 0.0
    while True:
        message = yield channel.basic_get(queue=queue, no_ack=True)
        if message is not None and getattr(message, "method", None) is not None:
            if message.method.name == "get-ok":
                return message
        if waited >= timeout:
            if fail:
                raise AssertionError(f"nothing in {queue} after {timeout} s")
            return None
        yield pause(0.2)
        waited += 0.2
