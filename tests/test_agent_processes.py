"""
Real C{clacks-agent} processes on the real RabbitMQ: what happens to calls
and to the domain when an agent is killed or terminated.

The agents load the example plugin as a drop-in (a subclass of
C{HelloPlugin} in C{clacks/plugins/hello_dropin.py} on their path).
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from clacks.agent.nodes import ChangeKind
from tests.util.agents import DomainFixture, waitUntil
from tests.util.configs import writeConfigDir
from tests.util.example import EXAMPLE_DIR
from tests.util.processes import agentCommand, childEnvironment, spawn, writeDropin
from tests.util.rawrpc import RawRPC, requestBody

HELLO_DROPIN = """\
from clacks_hello.plugin import HelloPlugin as _Base


class Hello(_Base):
    pass
"""

AGENT_CONFIG = """\
[core]
id = {node}
domain = {domain}
[amqp]
url = {url}
reconnect-initial = 0.1
reconnect-max = 0.5
[http]
listen = none
[agent]
status-interval = 0.5
drain-timeout = 1
"""


class AgentProcessTests(TestCase):
    """
    Agents as child processes, in a domain of their own.
    """

    timeout = 60

    def setUp(self) -> None:
        self.domain = DomainFixture(self)
        self.dropins = writeDropin(self.mktemp(), "hello_dropin", HELLO_DROPIN)

    @inlineCallbacks
    def startAgent(self, node: str) -> Any:
        """
        Start C{clacks-agent} as node C{node} of the test domain, with the
        example plugin, and wait until it serves (connected, topology
        declared, consumers started).

        @return: the L{Child}.
        """
        self.domain.broker.deleteAfterwards(queue=f"{self.domain.domain}.commands.node.{node}")
        config = writeConfigDir(
            self.mktemp(),
            textwrap.dedent(
                AGENT_CONFIG.format(node=node, domain=self.domain.domain, url=self.domain.brokerURL)
            ),
        )
        child = spawn(
            self,
            agentCommand("-c", config),
            env=childEnvironment([self.dropins, EXAMPLE_DIR]),
        )
        yield child.waitFor(
            rf"Connected to \S+: topology of {self.domain.domain} declared", timeout=30
        )
        self.assertIn("Loaded plugin Hello (priority 20, plugin)", child.out)
        return child

    def pause(self, seconds: float) -> Deferred[None]:
        return deferLater(reactor, seconds, lambda: None)

    @inlineCallbacks
    def test_killedMidCall(self) -> Any:
        """
        An agent killed (SIGKILL) while it runs a call never acknowledged
        it: the broker hands the call to the other agent, which answers it,
        and the caller gets exactly one answer.
        """
        a = yield self.startAgent("A")
        raw = yield RawRPC.open(self.domain.broker, self.domain.domain)
        probe = yield self.domain.broker.connect()
        channel = yield probe.newChannel()
        shared = f"{self.domain.domain}.commands.any"

        correlationId = yield raw.publish(requestBody("slowEcho", ["x", 4], id="k1"))

        @inlineCallbacks
        def taken() -> Any:
            # The request is confirmed, so it is in the queue or delivered.
            while True:
                declared = yield channel.queue_declare(queue=shared, passive=True)
                if declared.message_count == 0:
                    return declared.consumer_count
                yield self.pause(0.05)

        consumers = yield taken().addTimeout(10, reactor)
        self.assertEqual(consumers, 1)
        b = yield self.startAgent("B")
        self.assertEqual(raw.replies.get(correlationId), None, "A answered before it was killed")
        a.signal("KILL")
        killed = yield a.ended()
        self.assertEqual(killed.signal, 9, killed.describe())

        [reply] = yield raw.waitReplies(correlationId, 1, timeout=20)
        self.assertEqual(reply.json, {"jsonrpc": "2.0", "id": "k1", "result": "x"})
        self.assertEqual(reply.node, "B")
        # No second answer comes (A is dead, B answered once).
        yield self.pause(2)
        self.assertEqual(len(raw.replies[correlationId]), 1)
        self.assertEqual(len(raw.replies), 1)
        self.assertIsNone(b.result)

    @inlineCallbacks
    def test_sigterm(self) -> Any:
        """
        SIGTERM stops a subprocess agent with exit status 0; it says so with
        NodeLeave, which another agent's directory and an event
        subscription of our own both see.
        """
        alpha = yield self.domain.startAgent("alpha")
        directory = self.domain.directory(alpha)
        changes: list[Any] = []
        directory.observe(changes.append)

        connection = yield self.domain.broker.connect()
        channel = yield connection.newChannel()
        queue = self.domain.broker.queueName("events")
        yield channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
        yield channel.queue_bind(
            queue=queue, exchange=f"{self.domain.domain}.events", routing_key="NodeLeave.#"
        )
        consumer = yield connection.consume(channel, queue, noAck=True)

        child = yield self.startAgent("sub")
        yield waitUntil(lambda: directory.get("sub") is not None, 15, "sub to join")
        incarnation = directory.get("sub").incarnation
        child.signal("TERM")
        result = yield child.ended(timeout=30)
        self.assertEqual(result.code, 0, result.describe())
        self.assertIn("Received SIGTERM, shutting down.", result.out)
        self.assertIn("clacks-agent stopped: node sub", result.out)
        self.assertNotIn("Traceback", result.out + result.err)

        yield waitUntil(
            lambda: any(c.kind is ChangeKind.leave and c.node.node == "sub" for c in changes),
            10,
            "alpha to see sub leave",
        )
        self.assertIsNone(directory.get("sub"))
        message = yield consumer.queue.get(timeout=10)
        self.assertEqual(message.routing_key, "NodeLeave.sub")
        leave = json.loads(message.content.body)
        self.assertEqual(
            (leave["event"], leave["node"], leave["incarnation"], leave["reason"]),
            ("NodeLeave", "sub", incarnation, "shutdown"),
        )


__all__ = ["AgentProcessTests"]
