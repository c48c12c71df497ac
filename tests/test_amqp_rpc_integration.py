"""
JSON-RPC over AMQP end to end, on the real RabbitMQ: several agents with the
example plugin in one reactor, called by L{AMQPClient} and by hand-made
requests (L{tests.util.rawrpc}).  Each test runs in a domain of its own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from clacks.client.amqp import AMQPClient
from clacks.common.jsonrpc import (
    COMMAND_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    TIMEOUT,
    RPCError,
)
from clacks.handlers.amqp.compat import ChannelClosedError
from tests.util.agents import DomainFixture, waitUntil
from tests.util.example import HelloPlugin
from tests.util.rabbitmqctl import temporaryUser
from tests.util.rawrpc import RawRPC, connectAs, requestBody

HELLO = [("hello", HelloPlugin)]


class RPCTestCase(TestCase):
    """
    A domain of its own, clients that are stopped after the test, and ways
    to wait until the agents know each other.
    """

    timeout = 60

    def setUp(self) -> None:
        self.domain = DomainFixture(self)

    @inlineCallbacks
    def client(self, url: str | None = None, timeout: float = 10.0) -> Any:
        client = AMQPClient(
            url or self.domain.brokerURL, self.domain.domain, timeout=timeout, reactor=reactor
        )
        self.addCleanup(client.stop)
        yield client.start()
        return client

    def startAgent(self, node: str, hello: bool = True, **config: Any) -> Any:
        """
        Start agent C{node}, with the example plugin unless C{hello} is
        false.

        @param config: C{sections} (the plugin's own), C{debug}, and
            C{[agent]} settings such as C{drainTimeout}.
        """
        base = self.domain.config(node)
        sections = config.pop("sections", {})
        debug = config.pop("debug", False)
        full = attrs.evolve(
            base,
            core=attrs.evolve(base.core, debug=debug),
            agent=attrs.evolve(base.agent, **config),
            sections=sections,
        )
        return self.domain.startAgent(node, plugins=HELLO if hello else (), config=full)

    def waitForDomain(
        self, agents: Sequence[Any], nodes: Sequence[str], command: str | None = None
    ) -> Any:
        """
        Wait until every agent's directory lists every one of C{nodes}
        other than itself (having announced C{command}, if given).
        """

        def known() -> bool:
            for agent in agents:
                directory = self.domain.directory(agent)
                me = agent.context.config.core.id
                for node in nodes:
                    if node == me:
                        continue
                    info = directory.get(node)
                    if info is None or (command is not None and command not in info.commands):
                        return False
            return True

        return waitUntil(known, 15, f"the agents to know {', '.join(nodes)}")

    @staticmethod
    def taken(agent: Any) -> int:
        """
        @return: how many requests C{agent} took from its queues (an agent
            counts one as processed only once its reply is confirmed, which
            may be after the caller got it).
        """
        stats = agent.context.stats
        return int(stats.processed + stats.inflight)

    def settled(self, agent: Any) -> Any:
        """
        Wait until C{agent} has no request in flight (its replies are
        confirmed and its requests acknowledged).
        """
        return waitUntil(lambda: agent.context.stats.inflight == 0, 10, "requests to settle")

    @staticmethod
    def hello(agent: Any) -> Any:
        return agent.context.plugins.get("hello")

    def assertRPCError(self, failure: Any, code: int, *fragments: str) -> RPCError:
        error = failure.value if hasattr(failure, "value") else failure
        self.assertIsInstance(error, RPCError)
        self.assertEqual(error.code, code, f"{error.code}: {error.message}")
        for fragment in fragments:
            self.assertIn(fragment, error.message)
        return error

    def assertErrorReply(self, reply: Any, code: int, *fragments: str) -> dict[str, Any]:
        body = reply.json
        self.assertEqual(body.get("jsonrpc"), "2.0", body)
        self.assertNotIn("result", body)
        error = body["error"]
        self.assertEqual(error["code"], code, error)
        for fragment in fragments:
            self.assertIn(fragment, error["message"])
        return error


class RoutingTests(RPCTestCase):
    """
    A call goes to any node, to one named node, or to all nodes.
    """

    @inlineCallbacks
    def test_anyNodeSpread(self) -> Any:
        """
        Calls to any node are served by both agents of the domain: of 40
        C{greet} calls sent at once, each agent answers some, and every
        call is answered once.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        client = yield self.client()
        answers = yield gatherResults([client.call("greet", f"n{i}") for i in range(40)])
        self.assertEqual(len(answers), 40)
        self.assertEqual(
            {a.split(", from ")[0] for a in answers}, {f"Hello, n{i}" for i in range(40)}
        )
        byNode = {
            node: sum(a.endswith(f"from {node}!") for a in answers) for node in ("alpha", "beta")
        }
        self.assertEqual(sum(byNode.values()), 40, answers)
        self.assertGreater(byNode["alpha"], 0, byNode)
        self.assertGreater(byNode["beta"], 0, byNode)
        self.assertEqual(
            (self.hello(alpha).greeted, self.hello(beta).greeted), (byNode["alpha"], byNode["beta"])
        )

    @inlineCallbacks
    def test_namedNode(self) -> Any:
        """
        A call to one node runs there, every time.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        client = yield self.client()
        answers = yield gatherResults([client.call("greet", "you", node="beta") for _ in range(10)])
        self.assertEqual(answers, ["Hello, you, from beta!"] * 10)
        self.assertEqual((self.hello(alpha).greeted, self.hello(beta).greeted), (0, 10))
        pong = yield client.call("ping", node="alpha")
        self.assertEqual(pong["node"], "alpha")

    @inlineCallbacks
    def test_allNodes(self) -> Any:
        """
        A call to all nodes returns every node's answer by node, with no
        errors and nobody missing.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        yield self.waitForDomain([alpha, beta], ["alpha", "beta"])
        client = yield self.client()
        answer = yield client.call("ping", all=True)
        self.assertEqual(sorted(answer["results"]), ["alpha", "beta"])
        for node, pong in answer["results"].items():
            self.assertEqual(pong["node"], node)
        self.assertEqual((answer["errors"], answer["missing"]), ({}, []))
        answer = yield client.call("echo", {"x": [1, "ü"]}, all=True)
        self.assertEqual(answer["results"], {"alpha": {"x": [1, "ü"]}, "beta": {"x": [1, "ü"]}})

    @inlineCallbacks
    def test_allNodesOneStops(self) -> Any:
        """
        When a node stops while a call to all nodes runs on it, it hands
        the call back after its (short) drain timeout and leaves; the
        answer lists the others' results and names the stopped node in
        C{missing}, without waiting for the call's timeout.
        """
        nodes = ["alpha", "beta", "gamma"]
        agents = []
        for node in nodes:
            agents.append((yield self.startAgent(node, drainTimeout=0.2)))
        yield self.waitForDomain(agents, nodes)
        client = yield self.client(timeout=20)
        call = client.call("slowEcho", "x", 2, all=True)
        # One agent took the call from the shared queue and coordinates it
        # (2 calls in flight); each of the other two runs its part (1).
        stats = [a.context.stats for a in agents]
        yield waitUntil(
            lambda: sorted(s.inflight for s in stats) == [1, 1, 2], 10, "the call on every node"
        )
        victim = next(a for a in agents if a.context.stats.inflight == 1)
        name = victim.context.config.core.id
        yield self.domain.stopAgent(victim)
        self.assertEqual(victim.context.stats.requeued, 1)
        self.assertFalse(call.called)
        # (Had the coordinator waited for the stopped node until the
        # deadline, this call would have failed with TIMEOUT.)
        answer = yield call
        others = [n for n in nodes if n != name]
        self.assertEqual(
            answer, {"results": {n: "x" for n in others}, "errors": {}, "missing": [name]}
        )


class ProviderTests(RPCTestCase):
    """
    FIRSTRESULT and CUMULATIVE commands, and nodes without the plugin.
    """

    @inlineCallbacks
    def test_firstResultAndCumulative(self) -> Any:
        """
        C{findFriend} (FIRSTRESULT) answers the one node that knows the
        name, or null; C{helloNodes} (CUMULATIVE) lists every provider and
        C{greetingCount} adds their counts, wherever the call lands (a node
        without the plugin included); C{getMethods} on the node without the
        plugin lists hello's commands with their providers.
        """
        alpha = yield self.startAgent("alpha", sections={"hello": {"friends": "alice, carol"}})
        beta = yield self.startAgent("beta", sections={"hello": {"friends": "bob"}})
        gamma = yield self.startAgent("gamma", hello=False)
        agents = [alpha, beta, gamma]
        yield self.waitForDomain(agents, ["alpha", "beta"], "findFriend")
        client = yield self.client()

        def many(*args: Any, **kwargs: Any) -> Any:
            # Enough calls that every node coordinates some.
            return gatherResults([client.call(*args, **kwargs) for _ in range(12)])

        self.assertEqual(set((yield many("findFriend", "bob"))), {"beta"})
        self.assertEqual(set((yield many("findFriend", "carol"))), {"alpha"})
        self.assertEqual(set((yield many("findFriend", "nobody"))), {None})
        nodes = yield many("helloNodes")
        self.assertEqual({tuple(n) for n in nodes}, {("alpha", "beta")})

        yield gatherResults([client.call("greet", "a", node="alpha") for _ in range(3)])
        yield gatherResults([client.call("greet", "b", node="beta") for _ in range(4)])
        self.assertEqual(set((yield many("greetingCount"))), {7})

        methods = yield client.call("getMethods", node="gamma")
        byName = {m["name"]: m for m in methods}
        for command in ("greet", "echo", "whoami", "fail", "nap", "slowEcho", "findFriend"):
            self.assertEqual(byName[command]["nodes"], ["alpha", "beta"], command)
            self.assertEqual(byName[command]["plugin"], "hello")
        self.assertEqual(byName["findFriend"]["type"], "FIRSTRESULT")
        self.assertEqual(byName["greetingCount"]["type"], "CUMULATIVE")
        self.assertEqual(byName["ping"]["nodes"], ["alpha", "beta", "gamma"])
        self.assertEqual(byName["greet"]["parameters"], ["name"])
        self.assertEqual(byName["whoami"]["parameters"], [])
        filtered = yield client.call("getMethods", "Friend", node="gamma")
        self.assertEqual([m["name"] for m in filtered], ["findFriend"])

    @inlineCallbacks
    def test_forwardedToProvider(self) -> Any:
        """
        In a domain where only one agent has the plugin, calls to any node
        that the other agent takes are forwarded to the provider: all
        succeed, all are answered by the provider, and the other agent did
        take some.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta", hello=False)
        yield self.waitForDomain([beta], ["alpha"], "greet")
        client = yield self.client()
        answers = yield gatherResults([client.call("greet", f"n{i}") for i in range(30)])
        self.assertEqual(answers, [f"Hello, n{i}, from alpha!" for i in range(30)])
        self.assertEqual(self.hello(alpha).greeted, 30)
        # beta took some of the calls: it forwarded them.
        self.assertGreater(self.taken(beta), 0)


class ErrorTests(RPCTestCase):
    """
    Every error a real request can get, with its code and message; the
    agent keeps serving after all of them.
    """

    @inlineCallbacks
    def test_errors(self) -> Any:
        """
        Parse error, invalid request (batches included), method not found,
        invalid params naming the parameter, timeout (deadline passed: not
        run; caller gave up), the command's own error, wrong content type
        and oversized body are answered with their codes; a request without
        C{reply_to} is dead-lettered with its reason; then the agent still
        answers.
        """
        alpha = yield self.startAgent("alpha")
        hello = self.hello(alpha)
        client = yield self.client()
        raw = yield RawRPC.open(self.domain.broker, self.domain.domain)

        # -32700: not JSON at all.
        reply = yield raw.request(b"{this is not json")
        error = self.assertErrorReply(reply, PARSE_ERROR, "request is not valid JSON")
        self.assertIsNone(reply.json["id"])
        self.assertEqual(reply.node, "alpha")
        reply = yield raw.request(b'{"jsonrpc": "2.0", "method": "ping", "id": "\xff"}')
        self.assertErrorReply(reply, PARSE_ERROR, "not UTF-8")

        # -32600: JSON, but not a request; the id comes back when readable.
        reply = yield raw.request(b'{"jsonrpc": "1.0", "method": "ping", "id": 7}')
        self.assertErrorReply(reply, INVALID_REQUEST, "'jsonrpc' must be \"2.0\"")
        self.assertEqual(reply.json["id"], 7)
        reply = yield raw.request(b'{"jsonrpc": "2.0", "id": 8}')
        self.assertErrorReply(reply, INVALID_REQUEST, "'method' must be a non-empty string")
        reply = yield raw.request(b"[]")
        self.assertErrorReply(reply, INVALID_REQUEST, "empty batch")
        # In a batch, each bad item gets its own error; notifications none.
        batch = (
            b'[{"jsonrpc": "2.0", "method": "echo", "params": [1], "id": "a"},'
            b' {"jsonrpc": "2.0", "method": "echo", "params": "x", "id": "b"},'
            b' {"jsonrpc": "2.0", "method": "echo", "params": [2]}, 5]'
        )
        reply = yield raw.request(batch)
        first, second, third = reply.json
        self.assertEqual(first, {"jsonrpc": "2.0", "id": "a", "result": 1})
        self.assertEqual(second["id"], "b")
        self.assertEqual(second["error"]["code"], INVALID_REQUEST)
        self.assertIn("'params' must be an array or an object", second["error"]["message"])
        self.assertEqual(third["error"]["code"], INVALID_REQUEST)
        self.assertIn("a request is a JSON object, not a number", third["error"]["message"])

        # -32601: nobody provides it.
        failure = yield self.assertFailure(client.call("noSuchCommand"), RPCError)
        self.assertRPCError(failure, METHOD_NOT_FOUND, "'noSuchCommand'")
        failure = yield self.assertFailure(client.call("noSuchCommand", node="alpha"), RPCError)
        self.assertRPCError(failure, METHOD_NOT_FOUND, "no command 'noSuchCommand' on node alpha")

        # -32602: the message names the parameter.
        failure = yield self.assertFailure(client.call("greet"), RPCError)
        error = self.assertRPCError(
            failure, INVALID_PARAMS, "greet(name: str) -> str: missing a required argument: 'name'"
        )
        self.assertEqual(error.data, {"signature": "(name: str) -> str"})
        failure = yield self.assertFailure(client.call("greet", name="x", loud=True), RPCError)
        self.assertRPCError(failure, INVALID_PARAMS, "unexpected keyword argument 'loud'")
        failure = yield self.assertFailure(client.call("whoami", user="root"), RPCError)
        self.assertRPCError(failure, INVALID_PARAMS, "'user'", "set by the agent")

        # -32001: a request whose deadline passed before it started is not
        # run.
        body = requestBody("greet", ["late"])
        reply = yield raw.request(
            body, properties={"headers": {"x-clacks-deadline": time.time() - 5}}
        )
        self.assertErrorReply(reply, TIMEOUT, "deadline passed before it started; not run")
        self.assertEqual(hello.greeted, 0)
        self.assertEqual((yield client.call("greetingCount")), 0)
        # ... and a call that takes longer than the caller waits times out.
        failure = yield self.assertFailure(client.call("slowEcho", "x", 1, timeout=0.3), RPCError)
        self.assertRPCError(failure, TIMEOUT, "'slowEcho'", "0.3 s")
        # (let it finish here, so that no timer outlives the test)
        yield self.settled(alpha)

        # -32000: the command's own error, its type in data, no traceback.
        failure = yield self.assertFailure(client.call("fail", "boom"), RPCError)
        error = self.assertRPCError(failure, COMMAND_ERROR)
        self.assertEqual(error.message, "ValueError: boom")
        self.assertEqual(error.data, {"type": "ValueError", "node": "alpha"})
        self.flushLoggedErrors(ValueError)

        # Refused for its content type, or its size.
        reply = yield raw.request(requestBody("ping"), properties={"content-type": "text/plain"})
        self.assertErrorReply(reply, INVALID_REQUEST, "content type 'text/plain'")
        big = requestBody("echo", ["x" * (1024 * 1024 + 10)])
        reply = yield raw.request(big)
        error = self.assertErrorReply(
            reply, INVALID_REQUEST, f"request is {len(big)} bytes; the limit is 1048576"
        )
        self.assertEqual(error["data"], {"limit": "maxBytes", "value": 1048576})

        # No reply_to: nobody to answer, so it is dead-lettered.
        dead = yield self.deadLetters()
        correlationId = yield raw.publish(requestBody("greet", ["nobody"]), replyTo=False)
        message = yield dead(correlationId)
        headers = message.content.properties["headers"]
        self.assertEqual(headers["x-clacks-dead-reason"], "no reply_to: the agent cannot answer it")
        self.assertEqual(headers["x-clacks-dead-node"], "alpha")
        self.assertEqual(headers["x-clacks-dead-routing-key"], "any")
        self.assertEqual(message.content.body, requestBody("greet", ["nobody"]))
        self.assertEqual(raw.replies.get(correlationId), None)
        self.assertEqual(hello.greeted, 0)

        # After all that, the agent still answers.
        pong = yield client.call("ping")
        self.assertEqual(pong["node"], "alpha")
        self.assertEqual((yield client.call("greet", "still")), "Hello, still, from alpha!")

    @inlineCallbacks
    def deadLetters(self) -> Any:
        """
        Consume the domain's dead-letter queue.

        @return: a function that returns a Deferred firing with the dead
            letter whose correlation id is given, once it is there.
        """
        connection = yield self.domain.broker.connect()
        channel = yield connection.newChannel()
        queue = f"{self.domain.domain}.dead"
        consumer = yield connection.consume(channel, queue, noAck=True)
        seen: dict[str, Any] = {}

        @inlineCallbacks
        def find(correlationId: str) -> Any:
            while correlationId not in seen:
                message = yield consumer.queue.get(timeout=10)
                seen[str(message.content.properties.get("correlation-id"))] = message
            return seen[correlationId]

        return find

    @inlineCallbacks
    def test_debugTraceback(self) -> Any:
        """
        With C{[core] debug} the command error's data has the traceback too.
        """
        yield self.startAgent("alpha", debug=True)
        client = yield self.client()
        failure = yield self.assertFailure(client.call("fail"), RPCError)
        error = self.assertRPCError(failure, COMMAND_ERROR)
        self.assertEqual(error.message, "ValueError: as asked")
        self.assertEqual(error.data["type"], "ValueError")
        self.assertIn("Traceback (most recent call last)", error.data["traceback"])
        self.assertIn("raise ValueError(message)", error.data["traceback"])
        self.flushLoggedErrors(ValueError)


class IdentityTests(RPCTestCase):
    """
    C{needsUser} commands get the broker-validated login of the caller.
    """

    @inlineCallbacks
    def test_userIsBrokerLogin(self) -> Any:
        """
        C{whoami} called by a client logged in as a temporary broker user
        answers that user, also when an agent without the plugin forwards
        the call; an C{x-clacks-on-behalf-of} header from that (untrusted)
        user is ignored; a call without C{user-id} is anonymous, forwarded
        or not; a request whose C{user-id} claims another user is
        refused by the broker (channel closed with 406) and never runs.
        """
        user, password = yield temporaryUser(self)
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta", hello=False)
        yield self.waitForDomain([beta], ["alpha"], "whoami")
        address = self.domain.broker.address
        url = f"amqp://{user}:{password}@{address.host}:{address.port}/"
        client = yield self.client(url)
        answers = yield gatherResults([client.call("whoami") for _ in range(10)])
        self.assertEqual(answers, [{"user": user, "node": "alpha"}] * 10)
        self.assertGreater(self.taken(beta), 0, "no call was forwarded")

        connection = yield connectAs(self.domain.broker, user, password)
        raw = yield RawRPC.open(self.domain.broker, self.domain.domain, connection)
        reply = yield raw.request(
            requestBody("whoami"),
            routingKey="node.alpha",
            properties={"user-id": user, "headers": {"x-clacks-on-behalf-of": "root"}},
        )
        self.assertEqual(reply.json["result"], {"user": user, "node": "alpha"})
        # Without user-id the caller is anonymous, also when an agent
        # (logged in as the agents' login) forwards the call.
        taken = self.taken(beta)
        replies = yield gatherResults(
            [raw.request(requestBody("whoami", id=f"anon{i}")) for i in range(10)]
        )
        self.assertEqual(
            [r.json["result"] for r in replies], [{"user": None, "node": "alpha"}] * 10
        )
        self.assertGreater(self.taken(beta), taken, "no call was forwarded")

        forged = yield RawRPC.open(self.domain.broker, self.domain.domain, connection)
        failure = yield self.assertFailure(
            forged.publish(
                requestBody("greet", ["forged"]),
                properties={"user-id": "guest", "headers": {"x-clacks-on-behalf-of": "root"}},
            ),
            ChannelClosedError,
        )
        self.assertEqual(failure.replyCode, 406)
        self.assertIn("PRECONDITION_FAILED", str(failure))
        self.assertIn(user, str(failure))
        # The same queue serves the next greet, and only that one ran.
        self.assertEqual((yield client.call("greet", "real")), "Hello, real, from alpha!")
        self.assertEqual(self.hello(alpha).greeted, 1)

    @inlineCallbacks
    def test_replyCacheIsPerRequest(self) -> Any:
        """
        The reply cache answers only a redelivery of the same request: a
        request of another user, or another request, that reuses a message
        id is run and gets its own answer, not the cached one.
        """
        user, password = yield temporaryUser(self)
        alpha = yield self.startAgent("alpha")
        connection = yield connectAs(self.domain.broker, user, password)
        theirs = yield RawRPC.open(self.domain.broker, self.domain.domain, connection)
        mine = yield RawRPC.open(self.domain.broker, self.domain.domain)
        messageId = uuid.uuid4().hex
        body = requestBody("whoami", id=1)
        reply = yield theirs.request(body, properties={"user-id": user}, messageId=messageId)
        self.assertEqual(reply.json["result"], {"user": user, "node": "alpha"})
        yield self.settled(alpha)
        # The same body and id from another user.
        reply = yield mine.request(body, properties={"user-id": "guest"}, messageId=messageId)
        self.assertEqual(reply.json["result"], {"user": "guest", "node": "alpha"})
        # Another request of the same user with the same id.
        reply = yield theirs.request(
            requestBody("greet", ["me"], id=1), properties={"user-id": user}, messageId=messageId
        )
        self.assertEqual(reply.json["result"], "Hello, me, from alpha!")
        self.assertEqual(self.hello(alpha).greeted, 1)


class ConcurrencyTests(RPCTestCase):
    """
    Blocking commands run in threads; redeliveries are answered from the
    reply cache.
    """

    @inlineCallbacks
    def test_blockingDoesNotDelay(self) -> Any:
        """
        While C{nap 2} blocks a worker thread on an agent, C{ping} sent to
        that agent after it is answered before the nap ends.
        """
        alpha = yield self.startAgent("alpha")
        client = yield self.client()
        order: list[str] = []
        nap = client.call("nap", 2, node="alpha")
        nap.addCallback(lambda r: order.append("nap") or r)
        pong = yield client.call("ping", node="alpha")
        order.append("ping")
        self.assertEqual(pong["node"], "alpha")
        self.assertFalse(nap.called, "ping was answered only after the nap")
        self.assertEqual((yield nap), "alpha")
        self.assertEqual(order, ["ping", "nap"])
        self.assertEqual(alpha.context.workers.busy(), 0)

    @inlineCallbacks
    def test_redeliveryFromCache(self) -> Any:
        """
        The same request (same message id) delivered again is answered with
        the same reply, from the cache, without running the command again.
        """
        alpha = yield self.startAgent("alpha")
        raw = yield RawRPC.open(self.domain.broker, self.domain.domain)
        messageId = uuid.uuid4().hex
        body = requestBody("greet", ["once"], id="r1")
        first = yield raw.request(body, messageId=messageId)
        # The reply is cached once the broker confirmed it, and the
        # request acknowledged.
        yield self.settled(alpha)
        second = yield raw.request(body, messageId=messageId)
        self.assertEqual(
            first.json, {"jsonrpc": "2.0", "id": "r1", "result": "Hello, once, from alpha!"}
        )
        self.assertEqual(second.body, first.body)
        self.assertNotEqual(first.properties["correlation-id"], second.properties["correlation-id"])
        self.assertEqual(self.hello(alpha).greeted, 1)
        client = yield self.client()
        self.assertEqual((yield client.call("greetingCount")), 1)
        self.assertEqual(len(raw.replies), 2)
        self.assertEqual([len(r) for r in raw.replies.values()], [1, 1])
