"""
JSON-RPC over HTTP end to end (L{clacks.handlers.http.rpc}): agents with
the example plugin, a users file and an ACL on the real RabbitMQ, called
with treq on their HTTP ports; ACL denials over HTTP and over AMQP; the
health endpoints.  Each test runs in a domain of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from clacks.agent.config import AgentConfig, AMQPConfig
from clacks.agent.users import UserRecord, addToken, addUser, readRecords, removeUser, writeRecords
from clacks.client.amqp import AMQPClient
from clacks.common.jsonrpc import (
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NODE_UNAVAILABLE,
    PARSE_ERROR,
    PERMISSION_DENIED,
    RPCError,
)
from clacks.handlers.amqp.rpc import ON_BEHALF_HEADER
from clacks.handlers.http.rpc import CHALLENGE
from tests.util.agents import DomainFixture, waitUntil
from tests.util.httpclient import HTTPClient, basicAuth, bearerAuth, rpcRequest
from tests.util.logs import captureLogs
from tests.util.rabbitmqctl import temporaryUser
from tests.util.rawrpc import RawRPC, connectAs, requestBody
from tests.util.secured import ROUNDS, startSecuredAgent, usersFile, waitForDomain

ALICE = basicAuth("alice", "wonderland")
BOB = basicAuth("bob", "builder")

#: Everybody may ping and ask who they are; group ops may greet and echo;
#: bob may use slowEcho; group admins may do everything.
ACL = {
    "admins": "group:admins",
    "*": "ping, whoami",
    "group:ops": "greet, echo",
    "user:bob": "slowEcho",
}


class HTTPTestCase(TestCase):
    """
    A domain of its own, a users file (alice in group ops with a token
    named C{ci}, bob in no group, root in group admins) and an HTTP client
    closed after the test.
    """

    timeout = 60

    def setUp(self) -> None:
        self.domain = DomainFixture(self)
        self.users = usersFile(
            self,
            {
                "alice": ("wonderland", ["ops"]),
                "bob": ("builder", []),
                "root": ("toor", ["admins"]),
            },
        )
        self.token = addToken(self.users, "alice", "ci")
        self.http = HTTPClient(self)

    def startAgent(self, node: str, acl: dict[str, str] | None = ACL, **kwargs: Any) -> Any:
        return startSecuredAgent(self.domain, node, self.users, acl, **kwargs)

    def port(self, agent: Any) -> int:
        return self.domain.httpPort(agent)

    def assertError(self, response: dict[str, Any], code: int, *fragments: str) -> Any:
        self.assertEqual(response.get("jsonrpc"), "2.0", response)
        self.assertNotIn("result", response)
        error = response["error"]
        self.assertEqual(error["code"], code, error)
        for fragment in fragments:
            self.assertIn(fragment, error["message"])
        return error

    def assertUnauthorized(self, reply: Any, *fragments: str) -> None:
        self.assertEqual(reply.code, 401, reply.body)
        self.assertEqual(reply.header("WWW-Authenticate"), CHALLENGE.decode())
        self.assertEqual(reply.header("Content-Type"), "application/json")
        self.assertError(reply.json, INVALID_REQUEST, *fragments)


class AuthenticationTests(HTTPTestCase):
    """
    Every HTTP call must be authenticated, with HTTP Basic or a bearer
    token of the users file.
    """

    @inlineCallbacks
    def test_refused(self) -> Any:
        """
        A call without credentials, with a wrong password, an unknown user,
        an unknown token, a malformed Basic header or an unknown scheme is
        answered 401 with the C{WWW-Authenticate} challenge (Basic and
        Bearer) and a JSON-RPC error; the command does not run.
        """
        agent = yield self.startAgent("alpha")
        port = self.port(agent)
        request = rpcRequest("greet", "x")
        for authorization in (
            None,
            basicAuth("alice", "wrong"),
            basicAuth("mallory", "wonderland"),
            bearerAuth(self.token + "x"),
            "Basic !!!not-base64",
            "Basic " + "YWxpY2U=",  # "alice" without a colon
            "Digest alice",
            "Bearer",
        ):
            reply = yield self.http.rpc(port, request, authorization)
            self.assertUnauthorized(reply, "authentication required")
        self.assertEqual(agent.context.plugins.get("hello").greeted, 0)

    @inlineCallbacks
    def test_basic(self) -> Any:
        """
        A call with HTTP Basic runs as that user: 200, a JSON body, no
        caching.
        """
        agent = yield self.startAgent("alpha")
        reply = yield self.http.rpc(self.port(agent), rpcRequest("greet", "you", id=7), ALICE)
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.header("Content-Type"), "application/json")
        self.assertEqual(reply.header("Cache-Control"), "no-store")
        self.assertEqual(
            reply.json, {"jsonrpc": "2.0", "id": 7, "result": "Hello, you, from alpha!"}
        )
        response = yield self.http.call(self.port(agent), "whoami", authorization=ALICE)
        self.assertEqual(response["result"], {"user": "alice", "node": "alpha"})

    @inlineCallbacks
    def test_token(self) -> Any:
        """
        A call with a bearer token runs as the token's user.
        """
        agent = yield self.startAgent("alpha")
        response = yield self.http.call(
            self.port(agent), "whoami", authorization=bearerAuth(self.token)
        )
        self.assertEqual(response["result"], {"user": "alice", "node": "alpha"})

    @inlineCallbacks
    def test_noUsersFile(self) -> Any:
        """
        An agent without a users file refuses every HTTP call (401), with
        credentials or without, saying it needs one.
        """
        agent = yield startSecuredAgent(self.domain, "alpha", None, ACL)
        reply = yield self.http.rpc(self.port(agent), rpcRequest("ping"), ALICE)
        self.assertUnauthorized(reply, "needs a users file")

    @inlineCallbacks
    def test_changesAtOnce(self) -> Any:
        """
        Changes of the users file take effect on the next request: after a
        password change the old (remembered) password is refused, the new
        one works and so does the token; once the user is removed, their
        password and token are refused.
        """
        agent = yield self.startAgent("alpha")
        port = self.port(agent)
        response = yield self.http.call(port, "whoami", authorization=ALICE)
        self.assertEqual(response["result"]["user"], "alice")
        addUser(self.users, "alice", "looking-glass", ["ops"], rounds=ROUNDS)
        reply = yield self.http.rpc(port, rpcRequest("whoami"), ALICE)
        self.assertUnauthorized(reply)
        response = yield self.http.call(
            port, "whoami", authorization=basicAuth("alice", "looking-glass")
        )
        self.assertEqual(response["result"]["user"], "alice")
        response = yield self.http.call(port, "whoami", authorization=bearerAuth(self.token))
        self.assertEqual(response["result"]["user"], "alice")
        removeUser(self.users, "alice")
        for authorization in (basicAuth("alice", "looking-glass"), bearerAuth(self.token)):
            reply = yield self.http.rpc(port, rpcRequest("whoami"), authorization)
            self.assertUnauthorized(reply)

    @inlineCallbacks
    def test_groupChangeAtOnce(self) -> Any:
        """
        A user put into a group may call that group's commands on the next
        request.
        """
        agent = yield self.startAgent("alpha")
        port = self.port(agent)
        response = yield self.http.call(port, "greet", "x", authorization=BOB)
        self.assertError(response, PERMISSION_DENIED)
        addUser(self.users, "bob", "builder", ["ops"], rounds=ROUNDS)
        response = yield self.http.call(port, "greet", "x", authorization=BOB)
        self.assertEqual(response["result"], "Hello, x, from alpha!")

    @inlineCallbacks
    def test_passwordRemembered(self) -> Any:
        """
        A correct password is hashed once, not at every request: five calls
        with the same password cost one bcrypt check (run off the reactor
        thread); a wrong password is checked every time.
        """
        agent = yield self.startAgent("alpha")
        store = agent.context.plugins.get("CommandRegistry").security.users
        checks: list[Callable[..., Any]] = []
        runBlocking = store._runBlocking

        def counting(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
            checks.append(f)
            d: Deferred[Any] = runBlocking(f, *args)
            return d

        store._runBlocking = counting
        port = self.port(agent)
        for _ in range(5):
            response = yield self.http.call(port, "whoami", authorization=ALICE)
            self.assertEqual(response["result"]["user"], "alice")
        self.assertEqual(len(checks), 1)
        for _ in range(2):
            reply = yield self.http.rpc(port, rpcRequest("whoami"), basicAuth("alice", "no"))
            self.assertEqual(reply.code, 401)
        self.assertEqual(len(checks), 3)


class RequestTests(HTTPTestCase):
    """
    What C{POST /rpc} takes and answers: batches, notifications, size and
    content-type limits.
    """

    @inlineCallbacks
    def test_batch(self) -> Any:
        """
        A batch is answered with one response per request that has an id,
        in order, each with its result or error; notifications run but get
        no response.
        """
        agent = yield self.startAgent("alpha")
        batch = [
            rpcRequest("greet", "a", id=1),
            rpcRequest("echo", {"x": [1, "ü"]}, id="two"),
            rpcRequest("greet", "notified", id=None),
            rpcRequest("noSuchCommand", id=3),
            rpcRequest("slowEcho", 1, 0, id=4),
            {"jsonrpc": "2.0", "id": 5},
        ]
        reply = yield self.http.rpc(self.port(agent), batch, ALICE)
        self.assertEqual(reply.code, 200)
        responses = reply.json
        self.assertEqual([r["id"] for r in responses], [1, "two", 3, 4, 5])
        self.assertEqual(responses[0]["result"], "Hello, a, from alpha!")
        self.assertEqual(responses[1]["result"], {"x": [1, "ü"]})
        self.assertError(responses[2], METHOD_NOT_FOUND, "noSuchCommand")
        self.assertError(responses[3], PERMISSION_DENIED, "slowEcho")
        self.assertError(responses[4], INVALID_REQUEST)
        self.assertEqual(agent.context.plugins.get("hello").greeted, 2)

    @inlineCallbacks
    def test_notificationsOnly(self) -> Any:
        """
        A notification, or a batch of notifications only, is answered 204
        with no body; the commands run.
        """
        agent = yield self.startAgent("alpha")
        port = self.port(agent)
        reply = yield self.http.rpc(port, rpcRequest("greet", "a", id=None), ALICE)
        self.assertEqual((reply.code, reply.body), (204, b""))
        batch = [rpcRequest("greet", "b", id=None), rpcRequest("greet", "c", id=None)]
        reply = yield self.http.rpc(port, batch, ALICE)
        self.assertEqual((reply.code, reply.body), (204, b""))
        self.assertEqual(agent.context.plugins.get("hello").greeted, 3)

    @inlineCallbacks
    def test_malformed(self) -> Any:
        """
        A body that is not JSON is answered 200 with a parse error.
        """
        agent = yield self.startAgent("alpha")
        reply = yield self.http.rpc(self.port(agent), b"{not json", ALICE)
        self.assertEqual(reply.code, 200)
        self.assertError(reply.json, PARSE_ERROR)
        self.assertIsNone(reply.json["id"])

    @inlineCallbacks
    def test_tooLarge(self) -> Any:
        """
        A request larger than the limit is answered 413, naming the limit,
        without running anything.
        """
        agent = yield self.startAgent("alpha")
        body = b'{"jsonrpc": "2.0", "method": "echo", "params": ["' + b"x" * 2_000_000 + b'"]}'
        reply = yield self.http.rpc(self.port(agent), body, ALICE)
        self.assertEqual(reply.code, 413)
        error = self.assertError(reply.json, INVALID_REQUEST, "the limit is")
        self.assertEqual(error["data"]["limit"], "maxBytes")

    @inlineCallbacks
    def test_wrongContentType(self) -> Any:
        """
        A request whose content type is not C{application/json} is
        answered 415; parameters of the JSON type are fine.
        """
        agent = yield self.startAgent("alpha")
        port = self.port(agent)
        reply = yield self.http.rpc(
            port, rpcRequest("ping"), ALICE, headers={"Content-Type": "text/plain"}
        )
        self.assertEqual(reply.code, 415)
        self.assertError(reply.json, INVALID_REQUEST, "text/plain")
        reply = yield self.http.rpc(
            port,
            rpcRequest("ping"),
            ALICE,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        self.assertEqual(reply.code, 200)
        self.assertEqual(reply.json["result"]["node"], "alpha")

    @inlineCallbacks
    def test_get(self) -> Any:
        """
        C{GET /rpc} is answered 405, allowing POST.
        """
        agent = yield self.startAgent("alpha")
        reply = yield self.http.request("GET", self.port(agent))
        self.assertEqual(reply.code, 405)
        self.assertEqual(reply.header("Allow"), "POST")


class ForwardingTests(HTTPTestCase):
    """
    C{?node=ID} and C{?all=1}: calls that run on other nodes travel over
    the bus with the caller's identity.
    """

    @inlineCallbacks
    def test_otherNode(self) -> Any:
        """
        A call to C{?node=beta} on alpha's port runs on beta, as the HTTP
        caller: beta's C{whoami} names alice.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        yield waitForDomain(self.domain, [alpha, beta])
        port = self.port(alpha)
        response = yield self.http.call(port, "greet", "you", authorization=ALICE, node="beta")
        self.assertEqual(response["result"], "Hello, you, from beta!")
        response = yield self.http.call(
            port, "whoami", authorization=bearerAuth(self.token), node="beta"
        )
        self.assertEqual(response["result"], {"user": "alice", "node": "beta"})
        hello = [a.context.plugins.get("hello") for a in (alpha, beta)]
        self.assertEqual([h.greeted for h in hello], [0, 1])

    @inlineCallbacks
    def test_allNodes(self) -> Any:
        """
        C{?all=1} runs the call on every node and answers with each node's
        result.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        yield waitForDomain(self.domain, [alpha, beta])
        response = yield self.http.call(self.port(alpha), "whoami", authorization=ALICE, all=True)
        self.assertEqual(
            response["result"],
            {
                "results": {
                    "alpha": {"user": "alice", "node": "alpha"},
                    "beta": {"user": "alice", "node": "beta"},
                },
                "errors": {},
                "missing": [],
            },
        )

    @inlineCallbacks
    def test_unknownNode(self) -> Any:
        """
        A call to a node that is not in the domain fails with
        C{NODE_UNAVAILABLE}, naming it.
        """
        alpha = yield self.startAgent("alpha")
        response = yield self.http.call(
            self.port(alpha), "ping", authorization=ALICE, node="nowhere"
        )
        self.assertError(response, NODE_UNAVAILABLE, "'nowhere'")


class ACLTests(HTTPTestCase):
    """
    The ACL is checked where a command runs, for HTTP and AMQP callers;
    denials are answered with C{PERMISSION_DENIED} (-32002) and logged with
    user, command and node.
    """

    def denials(self, events: list[Any]) -> list[tuple[str, str, str]]:
        return [
            (e["user"], e["command"], e["node"])
            for e in events
            if e.get("log_format", "").startswith("Denied: user {user} may not call")
        ]

    @inlineCallbacks
    def test_http(self) -> Any:
        """
        Over HTTP, bob may not greet (not in ops) but may call what
        everybody may and his own commands; root (group admins) may call
        everything.  The denial names user, command and node, and is
        logged with them.
        """
        agent = yield self.startAgent("alpha")
        port = self.port(agent)
        events = captureLogs(self)
        response = yield self.http.call(port, "greet", "x", authorization=BOB)
        error = self.assertError(response, PERMISSION_DENIED, "bob", "'greet'", "alpha")
        self.assertEqual(error["data"], {"user": "bob", "command": "greet", "node": "alpha"})
        self.assertEqual(self.denials(events), [("bob", "greet", "alpha")])
        response = yield self.http.call(port, "slowEcho", "y", 0, authorization=BOB)
        self.assertEqual(response["result"], "y")
        response = yield self.http.call(port, "ping", authorization=BOB)
        self.assertEqual(response["result"]["node"], "alpha")
        response = yield self.http.call(port, "fail", "on purpose", authorization=ALICE)
        self.assertError(response, PERMISSION_DENIED)
        response = yield self.http.call(port, "greet", "x", authorization=basicAuth("root", "toor"))
        self.assertEqual(response["result"], "Hello, x, from alpha!")
        self.assertEqual(agent.context.plugins.get("hello").greeted, 1)

    @inlineCallbacks
    def test_httpForwarded(self) -> Any:
        """
        A call forwarded to another node is checked there, against the
        HTTP caller: beta denies bob and logs it with its own node id.
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        yield waitForDomain(self.domain, [alpha, beta])
        events = captureLogs(self)
        response = yield self.http.call(
            self.port(alpha), "greet", "x", authorization=BOB, node="beta"
        )
        error = self.assertError(response, PERMISSION_DENIED, "bob")
        self.assertEqual(error["data"], {"user": "bob", "command": "greet", "node": "beta"})
        self.assertEqual(self.denials(events), [("bob", "greet", "beta")])

    @inlineCallbacks
    def test_amqpGuest(self) -> Any:
        """
        An AMQP caller is its broker login: C{guest}, allowed nothing but
        what everybody may, is denied C{greet} and may ping.
        """
        yield self.startAgent("alpha")
        client = AMQPClient(self.domain.brokerURL, self.domain.domain, timeout=10, reactor=reactor)
        self.addCleanup(client.stop)
        yield client.start()
        events = captureLogs(self)
        failure = yield self.assertFailure(client.call("greet", "x", node="alpha"), RPCError)
        self.assertEqual(failure.code, PERMISSION_DENIED)
        self.assertEqual(failure.data, {"user": "guest", "command": "greet", "node": "alpha"})
        self.assertEqual(self.denials(events), [("guest", "greet", "alpha")])
        pong = yield client.call("ping")
        self.assertEqual(pong["node"], "alpha")

    @inlineCallbacks
    def test_amqpUser(self) -> Any:
        """
        A broker user of its own is known to the ACL by its login, with the
        groups the users file gives it (there as a user without password):
        in group ops it may greet, but not call C{fail}, which no rule
        allows.  The header C{x-clacks-on-behalf-of} is believed from the
        agents' own login only: from this user it changes nothing.
        """
        name, password = yield temporaryUser(self)
        records = readRecords(self.users)
        records[name] = UserRecord(name, None, ("ops",))
        writeRecords(self.users, records.values())
        agent = yield self.startAgent("alpha")
        client = AMQPClient(
            f"amqp://{name}:{password}@127.0.0.1:5672/",
            self.domain.domain,
            timeout=10,
            reactor=reactor,
        )
        self.addCleanup(client.stop)
        yield client.start()
        greeting = yield client.call("greet", "x")
        self.assertEqual(greeting, "Hello, x, from alpha!")
        me = yield client.call("whoami")
        self.assertEqual(me, {"user": name, "node": "alpha"})
        events = captureLogs(self)
        failure = yield self.assertFailure(client.call("fail"), RPCError)
        self.assertEqual(failure.code, PERMISSION_DENIED)
        self.assertEqual(self.denials(events), [(name, "fail", "alpha")])
        connection = yield connectAs(self.domain.broker, name, password)
        raw = yield RawRPC.open(self.domain.broker, self.domain.domain, connection)
        reply = yield raw.request(
            requestBody("whoami"),
            properties={"user-id": name, "headers": {ON_BEHALF_HEADER: "root"}},
        )
        self.assertEqual(reply.json["result"], {"user": name, "node": "alpha"})
        reply = yield raw.request(
            requestBody("fail"),
            properties={"user-id": name, "headers": {ON_BEHALF_HEADER: "root"}},
        )
        self.assertEqual(reply.json["error"]["code"], PERMISSION_DENIED)
        self.assertEqual(agent.context.plugins.get("hello").greeted, 1)


class LoadTests(HTTPTestCase):
    """
    Many HTTP calls at once.
    """

    @inlineCallbacks
    def test_concurrent(self) -> Any:
        """
        200 calls sent at once on as many connections all succeed, each
        with its own answer.
        """
        agent = yield self.startAgent("alpha")
        port = self.port(agent)
        self.http.pool.maxPersistentPerHost = 200
        # One call first, so the password is verified once, not 200 times.
        yield self.http.call(port, "ping", authorization=ALICE)
        started = time.monotonic()
        replies = yield gatherResults(
            [self.http.rpc(port, rpcRequest("echo", i, id=i), ALICE) for i in range(200)]
        )
        elapsed = time.monotonic() - started
        ok = [r for r in replies if r.code == 200 and r.json.get("result") == r.json.get("id")]
        self.assertEqual(len(ok), 200, [(r.code, r.body[:200]) for r in replies if r not in ok])
        self.assertEqual(sorted(r.json["id"] for r in replies), list(range(200)))
        self.assertLess(elapsed, 20)
        Logger().info("200 concurrent HTTP calls took {elapsed:.3f} s", elapsed=elapsed)


class HealthTests(TestCase):
    """
    C{/health/live} and C{/health/ready}.
    """

    timeout = 30

    def setUp(self) -> None:
        self.domain = DomainFixture(self)
        self.http = HTTPClient(self)

    @inlineCallbacks
    def test_connected(self) -> Any:
        """
        An agent whose bus is connected is live and ready, and says so with
        its node id; no credentials are needed.
        """
        agent = yield self.domain.startAgent("alpha")
        port = self.domain.httpPort(agent)
        live = yield self.http.request("GET", port, "/health/live")
        self.assertEqual((live.code, live.json), (200, {"live": True}))
        ready = yield self.http.request("GET", port, "/health/ready")
        self.assertEqual(ready.code, 200)
        self.assertEqual(
            {k: ready.json.get(k) for k in ("ready", "node", "bus", "failedPlugins")},
            {"ready": True, "node": "alpha", "bus": "connected", "failedPlugins": []},
        )

    @inlineCallbacks
    def test_standalone(self) -> Any:
        """
        A standalone agent (no broker URL) is ready, its bus
        C{standalone}.
        """
        base = self.domain.config("solo")
        config: AgentConfig = AgentConfig(
            core=base.core, amqp=AMQPConfig(url=None), http=base.http, agent=base.agent
        )
        agent = yield self.domain.startAgent("solo", config=config, waitReady=False)
        handler = agent.context.plugins.get("HTTPHandler")
        yield waitUntil(lambda: handler.port is not None, 5, "the HTTP port")
        ready = yield self.http.request("GET", self.domain.httpPort(agent), "/health/ready")
        self.assertEqual(ready.code, 200)
        self.assertEqual(ready.json["bus"], "standalone")
        self.assertTrue(ready.json["ready"])
