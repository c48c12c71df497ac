"""
Tests for L{clacks.client.blocking}: plain Python scripts, which run no
reactor of their own, call agents that run in the test's reactor, over the
real broker.  Each test runs in a domain of its own.
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from clacks.common.jsonrpc import COMMAND_ERROR, METHOD_NOT_FOUND, TIMEOUT
from tests.util.agents import DomainFixture, waitUntil
from tests.util.cli import UNREACHABLE_URL, runScript
from tests.util.example import HelloPlugin

HELLO = [("hello", HelloPlugin)]

CALLS = """
import json, sys
from concurrent.futures import ThreadPoolExecutor

before = "twisted.internet.reactor" in sys.modules
from clacks.client.blocking import CallError, connect

url, domain = sys.argv[1:3]
out = {"reactorOnImport": before or "twisted.internet.reactor" in sys.modules}
with connect(url, domain, timeout=10) as proxy:
    out["greet"] = proxy.greet("Ada")
    out["named"] = proxy.greet.on("web1")(name="Bob")
    out["everywhere"] = proxy.greet.everywhere()("Cy").results
    with ThreadPoolExecutor(4) as pool:
        out["threads"] = sorted(pool.map(proxy.echo, range(8)))
    for name, call in [
        ("failed", lambda: proxy.fail("boom")),
        ("unknown", lambda: proxy.nope()),
        ("timeout", lambda: proxy.slowEcho.within(0.3)("x", 1.0)),
    ]:
        try:
            call()
        except CallError as e:
            out[name] = [e.code, e.message]
try:
    proxy.greet("Ada")
except RuntimeError as e:
    out["closed"] = str(e)
print(json.dumps(out))
"""

UNREACHABLE = """
import json, sys, time
from clacks.client.blocking import ConnectionFailed, connect

started = time.monotonic()
try:
    connect(sys.argv[1], "nowhere")
except ConnectionFailed as e:
    print(json.dumps({"error": str(e), "seconds": time.monotonic() - started}))
"""


class BlockingTests(TestCase):
    """
    L{clacks.client.blocking.connect} and L{BlockingProxy}, from a child
    process.
    """

    timeout = 60

    def setUp(self) -> None:
        self.domain = DomainFixture(self)

    @inlineCallbacks
    def test_calls(self) -> Any:
        """
        From a script with no reactor: a call returns the command's result
        (by position or by name, on any node, one node, or every node), from
        several threads at once; a failed call raises L{CallError} with its
        code and message, a slow one a L{CallError} of code L{TIMEOUT}; a
        closed proxy refuses calls; the script ends normally.  Importing the
        module does not import the reactor.
        """
        agent = yield self.domain.startAgent("web1", plugins=HELLO)
        result = yield runScript(self, CALLS, self.domain.brokerURL, self.domain.domain)
        self.assertEqual(result.code, 0, result.describe())
        out = json.loads(result.out)
        self.assertEqual(
            out,
            {
                "reactorOnImport": False,
                "greet": "Hello, Ada, from web1!",
                "named": "Hello, Bob, from web1!",
                "everywhere": {"web1": "Hello, Cy, from web1!"},
                "threads": list(range(8)),
                "failed": [COMMAND_ERROR, "ValueError: boom"],
                "unknown": [METHOD_NOT_FOUND, "no node of the domain provides 'nope'"],
                "timeout": [TIMEOUT, "no answer to 'slowEcho' (any) within 0.3 s"],
                "closed": "the proxy is closed",
            },
        )
        self.assertEqual(result.err, "")
        self.flushLoggedErrors(ValueError)
        yield waitUntil(lambda: agent.context.stats.inflight == 0, 5, "the slow call to end")

    @inlineCallbacks
    def test_unreachable(self) -> Any:
        """
        Connecting to an address where no broker listens raises
        L{ConnectionFailed} at once, naming the broker without its password.
        """
        result = yield runScript(self, UNREACHABLE, UNREACHABLE_URL)
        self.assertEqual(result.code, 0, result.describe())
        out = json.loads(result.out)
        self.assertTrue(
            out["error"].startswith("cannot connect to amqp://guest@127.0.0.1:1/: "), out
        )
        self.assertIn("refused", out["error"])
        self.assertLess(out["seconds"], 5)


HTTP_CALLS = """
import json, sys

before = "twisted.internet.reactor" in sys.modules
from clacks.client.blocking import (
    AuthenticationFailed, CallError, ConnectionFailed, connectHTTP,
)

url, token = sys.argv[1:3]
out = {"reactorOnImport": before or "twisted.internet.reactor" in sys.modules}
with connectHTTP(url, ("alice", "wonderland"), timeout=10) as proxy:
    out["domain"] = proxy.domain
    out["greet"] = proxy.greet("Ada")
    out["named"] = proxy.greet.on("web1")(name="Bob")
    out["everywhere"] = proxy.whoami.everywhere()().results
    for name, call in [
        ("failed", lambda: proxy.fail("boom")),
        ("timeout", lambda: proxy.slowEcho.within(0.3)("x", 0.6)),
    ]:
        try:
            call()
        except CallError as e:
            out[name] = [e.code, e.message]
with connectHTTP(url, token=token) as proxy:
    out["token"] = proxy.whoami()
for name, connect in [
    ("refused", lambda: connectHTTP(url, ("alice", "wrong"))),
    ("unreachable", lambda: connectHTTP("http://127.0.0.1:1/rpc", token="t")),
]:
    try:
        connect()
    except ConnectionFailed as e:
        out[name] = [type(e).__name__, str(e)]
print(json.dumps(out))
"""


class BlockingHTTPTests(TestCase):
    """
    L{clacks.client.blocking.connectHTTP}, from a child process, against an
    agent with a users file.
    """

    timeout = 60

    def setUp(self) -> None:
        self.domain = DomainFixture(self)

    @inlineCallbacks
    def test_calls(self) -> Any:
        """
        From a script with no reactor, over HTTP with a password or a
        token: results, errors with their codes, timeouts; a wrong password
        raises L{AuthenticationFailed} and an endpoint where nothing
        listens L{ConnectionFailed} when connecting.
        """
        from clacks.agent.users import addToken
        from tests.util.secured import startSecuredAgent, usersFile

        users = usersFile(self, {"alice": ("wonderland", [])})
        token = addToken(users, "alice", "ci")
        agent = yield startSecuredAgent(self.domain, "web1", users, objects=False)
        url = f"http://127.0.0.1:{self.domain.httpPort(agent)}/rpc"
        result = yield runScript(self, HTTP_CALLS, url, token)
        ended = time.monotonic()
        self.assertEqual(result.code, 0, result.describe())
        out = json.loads(result.out)
        refused = out.pop("refused")
        unreachable = out.pop("unreachable")
        self.assertEqual(
            out,
            {
                "reactorOnImport": False,
                "domain": None,
                "greet": "Hello, Ada, from web1!",
                "named": "Hello, Bob, from web1!",
                "everywhere": {"web1": {"user": "alice", "node": "web1"}},
                "failed": [COMMAND_ERROR, "ValueError: boom"],
                "timeout": [TIMEOUT, "no answer to 'slowEcho' (any) within 0.3 s"],
                "token": {"user": "alice", "node": "web1"},
            },
        )
        self.assertEqual(
            refused,
            [
                "AuthenticationFailed",
                f"authentication refused by {url} for alice: "
                "authentication required: HTTP Basic or a bearer token",
            ],
        )
        self.assertEqual(unreachable[0], "ConnectionFailed")
        self.assertIn("refused", unreachable[1])
        self.assertEqual(result.err, "")
        self.flushLoggedErrors(ValueError)
        # The agent still runs the slow call (over HTTP it is not counted in
        # flight): let it end before the agent stops.
        yield waitUntil(lambda: time.monotonic() - ended > 0.6, 5, "the slow call to end")
