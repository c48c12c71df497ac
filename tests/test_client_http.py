"""
Tests for L{clacks.client.http}: L{JSONServiceProxy} against a fake
endpoint that records what it is sent, and against agents with a users
file on the real broker, each test in a domain of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.tcp import Connection
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface.verify import verifyObject

from clacks.agent.users import addToken
from clacks.client import AuthenticationFailed as ExportedAuthenticationFailed
from clacks.client import JSONServiceProxy as ExportedProxy
from clacks.client import http
from clacks.client.http import (
    AuthenticationFailed,
    Endpoint,
    JSONServiceProxy,
    basicAuthorization,
    parseEndpoint,
)
from clacks.client.proxy import (
    AllNodesResult,
    CallError,
    ConnectionFailed,
    ICommandCaller,
    Method,
)
from clacks.common.jsonrpc import (
    COMMAND_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    NODE_UNAVAILABLE,
    TIMEOUT,
)
from tests.util.agents import DomainFixture, waitUntil
from tests.util.secured import startSecuredAgent, usersFile, waitForDomain

#: An endpoint where nothing listens: connections are refused at once.
UNREACHABLE = "http://127.0.0.1:1/rpc"

#: What the agent answers to a call with wrong or no credentials.
REFUSED = "authentication required: HTTP Basic or a bearer token"


def openConnections(ports: Iterable[int]) -> list[Connection]:
    """
    @return: the TCP connections in the reactor with an end on one of
        C{ports}.
    """
    wanted = set(ports)
    found = []
    for selectable in set(reactor.getReaders()) | set(reactor.getWriters()):
        if not isinstance(selectable, Connection):
            continue
        try:
            ends = {selectable.getHost().port, selectable.getPeer().port}
        except Exception:
            continue
        if ends & wanted:
            found.append(selectable)
    return found


class ProxyCleanup:
    """
    Closes the proxies of a test after it, then waits until both ends of
    every connection to their ports are gone, so the reactor is left clean.
    Make it in C{setUp}, after the agents' fixture (cleanups run last
    first: the proxies are closed before the agents stop).
    """

    def __init__(self, testCase: TestCase) -> None:
        self.proxies: list[JSONServiceProxy] = []
        self.ports: set[int] = set()
        testCase.addCleanup(self.close)

    def add(self, proxy: JSONServiceProxy, port: int) -> JSONServiceProxy:
        self.proxies.append(proxy)
        self.ports.add(port)
        return proxy

    @inlineCallbacks
    def close(self) -> Generator[Deferred[Any], Any, None]:
        for proxy in self.proxies:
            yield proxy.close()
        yield waitUntil(
            lambda: not openConnections(self.ports), 10, "the HTTP connections to close"
        )


class EndpointTests(SynchronousTestCase):
    """
    L{parseEndpoint}, and what L{JSONServiceProxy} takes.
    """

    def test_parse(self) -> None:
        """
        The path is C{/rpc} unless the URL gives one; user and password are
        taken out of the URL (unquoted); the query is kept.
        """
        self.assertEqual(parseEndpoint("http://h:8080"), Endpoint("http://h:8080/rpc"))
        self.assertEqual(parseEndpoint("https://h/"), Endpoint("https://h/rpc"))
        self.assertEqual(
            parseEndpoint("http://h:1/api/rpc?x=1"), Endpoint("http://h:1/api/rpc?x=1")
        )
        self.assertEqual(
            parseEndpoint("http://al%40ce:p%3Aw@[::1]:8080/rpc"),
            Endpoint("http://[::1]:8080/rpc", "al@ce", "p:w"),
        )
        self.assertNotIn("p:w", repr(parseEndpoint("http://a:p:w@h/")))

    def test_bad(self) -> None:
        """
        Anything but an C{http} or C{https} URL with a host is refused.
        """
        for url in ("amqp://h/", "http://", "h:8080", "http://h:x/", "http://h/rpc#top"):
            self.assertRaises(ValueError, parseEndpoint, url)

    def test_credentials(self) -> None:
        """
        Credentials win over those of the URL; credentials and a token
        exclude each other; the proxy's repr and URL hold no password.
        """
        proxy = JSONServiceProxy("http://u:secret@127.0.0.1:9/rpc", reactor=reactor)
        self.assertEqual(
            (proxy.url, proxy.user, proxy.identity), ("http://127.0.0.1:9/rpc", "u", "u")
        )
        self.assertNotIn("secret", repr(proxy))
        proxy = JSONServiceProxy("http://u:p@127.0.0.1:9/", ("alice", "x"), reactor=reactor)
        self.assertEqual(proxy.user, "alice")
        proxy = JSONServiceProxy("http://127.0.0.1:9/", token="t", reactor=reactor)
        self.assertEqual((proxy.user, proxy.identity), (None, "a bearer token"))
        self.assertRaises(
            ValueError, JSONServiceProxy, "http://127.0.0.1:9/", ("a", "b"), "t", reactor=reactor
        )
        self.assertRaises(ValueError, JSONServiceProxy, "amqp://127.0.0.1/", reactor=reactor)
        self.assertEqual(basicAuthorization("ü", "p:w"), "Basic w7w6cDp3")

    def test_surface(self) -> None:
        """
        The proxy is an L{ICommandCaller} with the attribute surface of
        L{clacks.client.proxy}, exported by L{clacks.client}.
        """
        proxy = JSONServiceProxy("http://127.0.0.1:9/", token="t", reactor=reactor)
        verifyObject(ICommandCaller, proxy)
        self.assertEqual(proxy.greet, Method(caller=proxy, name="greet"))
        self.assertEqual(proxy["close"], Method(caller=proxy, name="close"))
        self.assertIs(ExportedProxy, JSONServiceProxy)
        self.assertIs(ExportedAuthenticationFailed, AuthenticationFailed)
        self.assertTrue(issubclass(AuthenticationFailed, ConnectionFailed))


Answer = Callable[[dict[str, Any]], Any]


class FakeEndpoint(Resource):
    """
    A JSON-RPC endpoint that records each request (path, query, headers,
    body) and answers with C{answer(request)}: C{(code, body)}, a Deferred
    of it, or C{None} to never answer.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.answer: Answer = self.result

    @staticmethod
    def result(request: dict[str, Any]) -> tuple[int, bytes]:
        """
        Answer with C{["called", method, params]}.
        """
        call = request["json"]
        body = {
            "jsonrpc": "2.0",
            "id": call["id"],
            "result": ["called", call["method"], call["params"]],
        }
        return 200, json.dumps(body).encode()

    def render_POST(self, request: Request) -> Any:
        assert request.content is not None
        body = request.content.read()
        recorded = {
            "path": request.path.decode(),
            "args": {
                k.decode(): [v.decode() for v in vs] for k, vs in (request.args or {}).items()
            },
            "headers": {
                k.decode().lower(): v[0].decode()
                for k, v in request.requestHeaders.getAllRawHeaders()
            },
            "json": json.loads(body),
        }
        self.requests.append(recorded)
        answer = self.answer(recorded)
        if answer is None:
            return NOT_DONE_YET

        def send(answer: tuple[int, bytes]) -> None:
            if request._disconnected or request.finished:
                return
            code, content = answer
            request.setResponseCode(code)
            request.setHeader(b"content-type", b"application/json")
            request.write(content)
            request.finish()

        if isinstance(answer, Deferred):
            answer.addCallback(send)
        else:
            send(answer)
        return NOT_DONE_YET


class FakeEndpointTests(TestCase):
    """
    What L{JSONServiceProxy} sends, and how it takes answers that are not
    a command's result, against L{FakeEndpoint}.
    """

    timeout = 20

    def setUp(self) -> None:
        self.endpoint = FakeEndpoint()
        self.listening = reactor.listenTCP(0, Site(self.endpoint), interface="127.0.0.1")
        self.addCleanup(self.listening.stopListening)
        self.port = self.listening.getHost().port
        self.cleanup = ProxyCleanup(self)
        self.proxy = self.makeProxy(("ünï", "pw"))

    def makeProxy(self, credentials: Any = None, **kwargs: Any) -> JSONServiceProxy:
        proxy = JSONServiceProxy(
            f"http://127.0.0.1:{self.port}", credentials, reactor=reactor, timeout=5, **kwargs
        )
        return self.cleanup.add(proxy, self.port)

    @inlineCallbacks
    def test_request(self) -> Any:
        """
        A call is a C{POST} of a JSON-RPC request to C{/rpc}: parameters by
        position or by name; C{?node=ID} for one node, C{?all=1} for every
        node; the call's timeout in C{x-clacks-timeout}; HTTP Basic (UTF-8)
        or a bearer token.  The calls share one persistent connection.
        """
        result = yield self.proxy.greet.on("web1").within(2.5)("Ada", 1)
        self.assertEqual(result, ["called", "greet", ["Ada", 1]])
        [request] = self.endpoint.requests
        self.assertEqual((request["path"], request["args"]), ("/rpc", {"node": ["web1"]}))
        self.assertEqual(request["json"]["jsonrpc"], "2.0")
        headers = request["headers"]
        self.assertEqual(headers["authorization"], basicAuthorization("ünï", "pw"))
        self.assertEqual(headers["x-clacks-timeout"], "2.5")
        self.assertEqual(headers["content-type"], "application/json")
        yield self.proxy.greet(name="Ada")
        self.assertEqual(self.endpoint.requests[-1]["json"]["params"], {"name": "Ada"})
        self.assertEqual(self.endpoint.requests[-1]["args"], {})
        self.assertEqual(self.endpoint.requests[-1]["headers"]["x-clacks-timeout"], "5")
        self.endpoint.answer = lambda request: (
            200,
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": request["json"]["id"],
                    "result": {
                        "results": {"a": 1},
                        "errors": {"b": {"code": -32000, "message": "E: no"}},
                        "missing": ["c"],
                    },
                }
            ).encode(),
        )
        everywhere = yield self.proxy.ping.everywhere()()
        self.assertEqual(
            everywhere, AllNodesResult({"a": 1}, {"b": CallError(-32000, "E: no")}, ["c"])
        )
        self.assertEqual(self.endpoint.requests[-1]["args"], {"all": ["1"]})
        self.assertEqual(len(openConnections([self.port])), 2, "one connection, two ends")
        self.endpoint.answer = self.endpoint.result
        yield self.makeProxy(token="tok").ping()
        self.assertEqual(self.endpoint.requests[-1]["headers"]["authorization"], "Bearer tok")

    @inlineCallbacks
    def test_timeout(self) -> Any:
        """
        With no answer within the call's timeout, the call fails with
        L{TIMEOUT} at the timeout.  A call to every node waits a little
        longer, for the agent's answer that names the missing nodes.
        """
        self.endpoint.answer = lambda request: None
        started = time.monotonic()
        error = yield self.assertFailure(self.proxy.nap.within(0.2)(5), CallError)
        self.assertEqual(
            (error.code, error.message, error.data),
            (TIMEOUT, "no answer to 'nap' (any) within 0.2 s", {"timeout": 0.2}),
        )
        self.assertLess(time.monotonic() - started, 1.5)
        error = yield self.assertFailure(self.proxy.nap.on("web1").within(0.1)(5), CallError)
        self.assertEqual(error.message, "no answer to 'nap' (node.web1) within 0.1 s")
        self.patch(http, "EVERYWHERE_GRACE", 0.5)

        def late(request: dict[str, Any]) -> Deferred[tuple[int, bytes]]:
            body = {
                "jsonrpc": "2.0",
                "id": request["json"]["id"],
                "result": {"results": {}, "errors": {}, "missing": ["web1"]},
            }
            return deferLater(reactor, 0.3, lambda: (200, json.dumps(body).encode()))

        self.endpoint.answer = late
        result = yield self.proxy.nap.everywhere().within(0.1)(5)
        self.assertEqual(result.missing, ["web1"])

    @inlineCallbacks
    def test_notAnEndpoint(self) -> Any:
        """
        An answer that is not a JSON-RPC response is L{ConnectionFailed}
        (with an error status: not a clacks endpoint) or an
        L{INTERNAL_ERROR}; an error status with a JSON-RPC error (413, 415)
        is that error.
        """
        self.endpoint.answer = lambda request: (404, b"<html>No Such Resource</html>")
        error = yield self.assertFailure(self.proxy.ping(), ConnectionFailed)
        self.assertEqual(
            str(error),
            f"http://127.0.0.1:{self.port}/rpc answered HTTP 404 Not Found: "
            "not a clacks JSON-RPC endpoint",
        )
        self.endpoint.answer = lambda request: (200, b"[]")
        error = yield self.assertFailure(self.proxy.ping(), CallError)
        self.assertEqual(error.code, INTERNAL_ERROR)
        tooLarge = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "big"}}
        self.endpoint.answer = lambda request: (413, json.dumps(tooLarge).encode())
        error = yield self.assertFailure(self.proxy.echo("x"), CallError)
        self.assertEqual((error.code, error.message), (INVALID_REQUEST, "big"))

    @inlineCallbacks
    def test_close(self) -> Any:
        """
        Closing the proxy cancels the calls in flight and closes its
        connections; later calls fail with C{RuntimeError}.
        """
        yield self.proxy.ping()
        self.assertTrue(openConnections([self.port]))
        self.endpoint.answer = lambda request: None
        waiting = self.proxy.nap(5)
        yield waitUntil(lambda: len(self.endpoint.requests) == 2, 5, "the second request")
        yield self.proxy.close()
        yield self.assertFailure(waiting, CancelledError)
        yield self.assertFailure(self.proxy.ping(), RuntimeError)
        yield waitUntil(lambda: not openConnections([self.port]), 5, "the connections to close")


class AgentTests(TestCase):
    """
    L{JSONServiceProxy} against agents with a users file (alice, with a
    token; no ACL) on the real broker.
    """

    timeout = 60

    def setUp(self) -> None:
        self.domain = DomainFixture(self)
        self.users = usersFile(self, {"alice": ("wonderland", ["ops"])})
        self.token = addToken(self.users, "alice", "ci")
        self.cleanup = ProxyCleanup(self)

    def startAgent(self, node: str) -> Deferred[Any]:
        d: Deferred[Any] = startSecuredAgent(self.domain, node, self.users, objects=False)
        return d

    def proxy(self, agent: Any, credentials: Any = ("alice", "wonderland"), **kwargs: Any) -> Any:
        port = self.domain.httpPort(agent)
        proxy = JSONServiceProxy(
            f"http://127.0.0.1:{port}/rpc", credentials, reactor=reactor, timeout=10, **kwargs
        )
        return self.cleanup.add(proxy, port)

    @inlineCallbacks
    def test_calls(self) -> Any:
        """
        With HTTP Basic or a token, calls run as alice: by position or by
        name, on any node, on one node (forwarded by the agent), or on
        every node (an L{AllNodesResult}, with each node's error).
        """
        alpha = yield self.startAgent("alpha")
        beta = yield self.startAgent("beta")
        yield waitForDomain(self.domain, [alpha, beta])
        proxy = self.proxy(alpha)
        self.assertEqual((yield proxy.greet("Ada")), "Hello, Ada, from alpha!")
        self.assertEqual((yield proxy.greet(name="Bob")), "Hello, Bob, from alpha!")
        self.assertEqual((yield proxy.greet.on("beta")("Cy")), "Hello, Cy, from beta!")
        withToken = self.proxy(alpha, None, token=self.token)
        self.assertEqual((yield withToken.whoami()), {"user": "alice", "node": "alpha"})
        self.assertEqual(
            (yield withToken.whoami.on("beta").within(5)()), {"user": "alice", "node": "beta"}
        )
        port = self.domain.httpPort(alpha)
        inURL = JSONServiceProxy(f"http://alice:wonderland@127.0.0.1:{port}", reactor=reactor)
        self.cleanup.add(inURL, port)
        self.assertIs((yield inURL.connect()), inURL)
        self.assertEqual((yield inURL.whoami())["user"], "alice")
        everywhere = yield proxy.whoami.everywhere()()
        self.assertEqual(
            everywhere,
            AllNodesResult(
                {
                    "alpha": {"user": "alice", "node": "alpha"},
                    "beta": {"user": "alice", "node": "beta"},
                },
                {},
                [],
            ),
        )
        failed = yield proxy.fail.everywhere()("no")
        self.assertEqual((failed.results, failed.missing), ({}, []))
        self.assertEqual(
            {node: (e.code, e.message) for node, e in failed.errors.items()},
            {node: (COMMAND_ERROR, "ValueError: no") for node in ("alpha", "beta")},
        )
        self.flushLoggedErrors(ValueError)

    @inlineCallbacks
    def test_errors(self) -> Any:
        """
        JSON-RPC errors fail the call with L{CallError} and their code; a
        slow call fails with L{TIMEOUT} at its timeout.
        """
        agent = yield self.startAgent("alpha")
        proxy = self.proxy(agent)
        cases = [
            (proxy.nope(), METHOD_NOT_FOUND, "no node of the domain provides 'nope'"),
            (proxy.fail("boom"), COMMAND_ERROR, "ValueError: boom"),
            (
                proxy.greet("a", "b"),
                INVALID_PARAMS,
                "greet(name: str) -> str: too many positional arguments",
            ),
            (proxy.ping.on("nowhere")(), NODE_UNAVAILABLE, "node 'nowhere' is not in the domain"),
        ]
        for call, code, message in cases:
            error = yield self.assertFailure(call, CallError)
            self.assertEqual((error.code, error.message), (code, message))
        self.flushLoggedErrors(ValueError)
        started = time.monotonic()
        error = yield self.assertFailure(proxy.slowEcho.within(0.2)("x", 0.7), CallError)
        self.assertEqual(
            (error.code, error.message), (TIMEOUT, "no answer to 'slowEcho' (any) within 0.2 s")
        )
        self.assertLess(time.monotonic() - started, 0.6)
        # The agent still runs it (a call over HTTP is not counted in flight).
        yield waitUntil(lambda: time.monotonic() - started > 0.8, 5, "the slow call to end")

    @inlineCallbacks
    def test_refused(self) -> Any:
        """
        A wrong password, an unknown token or no credentials fail with
        L{AuthenticationFailed} (a L{ConnectionFailed}), one line naming
        the endpoint, who tried, and the agent's reason; nothing runs.
        C{connect()} says so at once.
        """
        agent = yield self.startAgent("alpha")
        url = f"http://127.0.0.1:{self.domain.httpPort(agent)}/rpc"
        cases = [
            (self.proxy(agent, ("alice", "wrong")), "alice"),
            (self.proxy(agent, None, token=self.token + "x"), "a bearer token"),
            (self.proxy(agent, None), "no credentials"),
        ]
        for proxy, who in cases:
            error = yield self.assertFailure(proxy.greet("x"), AuthenticationFailed)
            self.assertEqual(str(error), f"authentication refused by {url} for {who}: {REFUSED}")
        yield self.assertFailure(cases[0][0].connect(), AuthenticationFailed)
        self.assertEqual(agent.context.plugins.get("hello").greeted, 0)

    @inlineCallbacks
    def test_unreachable(self) -> Any:
        """
        An endpoint where nothing listens fails the call with
        L{ConnectionFailed} at once, naming it and why.
        """
        proxy = JSONServiceProxy(UNREACHABLE, ("alice", "x"), reactor=reactor)
        self.addCleanup(proxy.close)
        started = time.monotonic()
        error = yield self.assertFailure(proxy.ping(), ConnectionFailed)
        self.assertNotIsInstance(error, AuthenticationFailed)
        self.assertTrue(str(error).startswith(f"cannot connect to {UNREACHABLE}: "), str(error))
        self.assertIn("refused", str(error))
        self.assertLess(time.monotonic() - started, 5)
        yield self.assertFailure(proxy.connect(), ConnectionFailed)
