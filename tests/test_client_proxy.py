"""
Tests for L{clacks.client.proxy}: the attribute and option surface with a
fake transport, and L{AMQPServiceProxy} against agents on the real broker,
each test in a domain of its own.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clacks.client import AMQPServiceProxy as ExportedProxy
from clacks.client.proxy import (
    AllNodesResult,
    AMQPServiceProxy,
    Call,
    CallError,
    CallOptions,
    ConnectionFailed,
    ICommandCaller,
    Method,
    ServiceProxy,
    allNodesResult,
)
from clacks.common.components.command import Command
from clacks.common.components.plugin import Plugin
from clacks.common.events import NodeStatus
from clacks.common.jsonrpc import (
    COMMAND_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    TIMEOUT,
)
from tests.util.agents import DomainFixture, EventRecorder, waitUntil
from tests.util.cli import UNREACHABLE_URL
from tests.util.example import HelloPlugin


@implementer(ICommandCaller)
@attrs.define
class RecordingProxy(ServiceProxy):
    """
    A transport that records its calls and answers each with
    C{("called", call)}.
    """

    calls: list[Call] = attrs.Factory(list)

    def invoke(self, call: Call) -> Any:
        self.calls.append(call)
        return ("called", call)


verifyObject(ICommandCaller, RecordingProxy())


class MethodTests(SynchronousTestCase):
    """
    L{ServiceProxy}, L{Method} and L{CallOptions}: what a call looks like
    when it reaches the transport.
    """

    def setUp(self) -> None:
        self.proxy = RecordingProxy()

    def test_attribute(self) -> None:
        """
        C{proxy.NAME(args)} hands the transport a call of C{NAME} with the
        arguments by position, to any node, with the default timeout, and
        returns what the transport returns.
        """
        result = self.proxy.greet("Ada", 1)
        call = Call("greet", ("Ada", 1), {}, CallOptions())
        self.assertEqual(result, ("called", call))
        self.assertEqual(call.params, ["Ada", 1])

    def test_named(self) -> None:
        """
        Keyword arguments become named parameters (a JSON-RPC object), even
        those named like options of the call.
        """
        self.proxy.greet(name="Ada", node="n", timeout=3)
        [call] = self.proxy.calls
        self.assertEqual(call.params, {"name": "Ada", "node": "n", "timeout": 3})
        self.assertEqual(call.options, CallOptions())

    def test_bothKinds(self) -> None:
        """
        Parameters by position and by name at once are refused before
        anything is sent.
        """
        self.assertRaises(TypeError, self.proxy.greet, "Ada", name="Ada")
        self.assertEqual(self.proxy.calls, [])

    def test_options(self) -> None:
        """
        C{on}, C{everywhere} and C{within} set the call's options, combine,
        and leave the method they were called on as it was.
        """
        greet = self.proxy.greet
        self.assertEqual(greet.on("web1").options, CallOptions(node="web1"))
        self.assertEqual(greet.everywhere().options, CallOptions(everywhere=True))
        self.assertEqual(greet.within(5).options, CallOptions(timeout=5.0))
        self.assertEqual(
            greet.on("web1").within(2.5).options, CallOptions(node="web1", timeout=2.5)
        )
        self.assertEqual(greet.options, CallOptions())
        greet.on("web2").within(1)("x")
        self.assertEqual(self.proxy.calls[0].options, CallOptions(node="web2", timeout=1.0))

    def test_badOptions(self) -> None:
        """
        One node and every node exclude each other; a node id must not be
        empty, nor a timeout zero or negative.
        """
        self.assertRaises(TypeError, lambda: self.proxy.greet.on("web1").everywhere())
        self.assertRaises(TypeError, lambda: self.proxy.greet.everywhere().on("web1"))
        self.assertRaises(ValueError, self.proxy.greet.on, "")
        self.assertRaises(ValueError, self.proxy.greet.within, 0)
        self.assertRaises(ValueError, self.proxy.greet.within, -1)

    def test_item(self) -> None:
        """
        C{proxy["NAME"]} reaches commands whose names are taken by the
        proxy's own attributes or start with an underscore; those
        underscore names are not commands as attributes.
        """
        self.assertEqual(self.proxy["invoke"], Method(caller=self.proxy, name="invoke"))
        self.proxy["_private"]()
        self.assertEqual(self.proxy.calls[0].method, "_private")
        self.assertRaises(AttributeError, getattr, self.proxy, "_private")
        self.assertRaises(KeyError, lambda: self.proxy[""])

    def test_exported(self) -> None:
        """
        The proxy is exported by L{clacks.client}.
        """
        self.assertIs(ExportedProxy, AMQPServiceProxy)


class AllNodesResultTests(SynchronousTestCase):
    """
    L{allNodesResult} reads the answer of a call to every node.
    """

    def test_errors(self) -> None:
        """
        Results are kept, errors become L{CallError}s with their code,
        message and data, and missing nodes are listed.
        """
        result = allNodesResult(
            {
                "results": {"web1": "pong"},
                "errors": {"web2": {"code": -32000, "message": "ValueError: no", "data": {"a": 1}}},
                "missing": ["web3"],
            }
        )
        self.assertEqual(result.results, {"web1": "pong"})
        self.assertEqual(result.errors, {"web2": CallError(-32000, "ValueError: no", {"a": 1})})
        self.assertEqual(result.missing, ["web3"])
        self.assertEqual(
            result.toJSON()["errors"],
            {"web2": {"code": -32000, "message": "ValueError: no", "data": {"a": 1}}},
        )

    def test_malformed(self) -> None:
        """
        Anything else is an internal error.
        """
        error = self.assertRaises(CallError, allNodesResult, ["not", "it"])
        self.assertEqual(error.code, INTERNAL_ERROR)


class Where(Plugin):
    """
    A command whose parameters are named like the options of a call.
    """

    _target_ = "where"

    @Command(__help__="Return NODE, TIMEOUT, METHOD and ALL as given.")
    def where(self, node: str, timeout: float, method: str, all: bool) -> list[Any]:
        return [node, timeout, method, all]


HELLO = [("hello", HelloPlugin), ("where", Where)]


class AMQPServiceProxyTests(TestCase):
    """
    L{AMQPServiceProxy} against agents running the example plugin on the
    real broker.
    """

    timeout = 60

    def setUp(self) -> None:
        self.domain = DomainFixture(self)

    def proxy(self, url: str | None = None, timeout: float = 10.0) -> AMQPServiceProxy:
        proxy = AMQPServiceProxy(
            url or self.domain.brokerURL, self.domain.domain, timeout=timeout, reactor=reactor
        )
        self.addCleanup(proxy.close)
        return proxy

    @inlineCallbacks
    def connected(self, *nodes: str) -> Any:
        """
        Start agents C{nodes} (default: C{web1}), wait until they know each
        other, and connect a proxy.
        """
        nodes = nodes or ("web1",)
        agents = []
        for node in nodes:
            agents.append((yield self.domain.startAgent(node, plugins=HELLO)))

        def known() -> bool:
            for agent in agents:
                directory = self.domain.directory(agent)
                for node in nodes:
                    info = directory.get(node)
                    if node != agent.context.config.core.id and (
                        info is None or "greet" not in info.commands
                    ):
                        return False
            return True

        yield waitUntil(known, 15, f"the agents to know {nodes}")
        proxy = self.proxy()
        result = yield proxy.connect()
        self.assertIs(result, proxy)
        verifyObject(ICommandCaller, proxy)
        return proxy

    @inlineCallbacks
    def test_call(self) -> Any:
        """
        C{proxy.NAME(args)} calls command C{NAME} on a node that has it, with
        the arguments by position or by name.
        """
        proxy = yield self.connected()
        self.assertEqual((yield proxy.greet("Ada")), "Hello, Ada, from web1!")
        self.assertEqual((yield proxy.greet(name="Bob")), "Hello, Bob, from web1!")
        self.assertEqual((yield proxy["echo"]({"a": [1, None]})), {"a": [1, None]})

    @inlineCallbacks
    def test_optionNames(self) -> Any:
        """
        Named parameters called C{node}, C{timeout}, C{method} and C{all}
        reach the command: they are not taken for options of the call.
        """
        proxy = yield self.connected()
        result = yield proxy.where(node="n", timeout=3, method="m", all=True)
        self.assertEqual(result, ["n", 3, "m", True])

    @inlineCallbacks
    def test_onNode(self) -> Any:
        """
        C{.on(node)} runs the call on that node, every time.
        """
        proxy = yield self.connected("web1", "web2")
        for node in ("web1", "web2", "web2", "web1"):
            self.assertEqual((yield proxy.greet.on(node)("Ada")), f"Hello, Ada, from {node}!")

    @inlineCallbacks
    def test_everywhere(self) -> Any:
        """
        C{.everywhere()} runs the call on every node and answers with an
        L{AllNodesResult}: each node's result, each node's error as a
        L{CallError}.
        """
        proxy = yield self.connected("web1", "web2")
        result = yield proxy.greet.everywhere()("Ada")
        self.assertIsInstance(result, AllNodesResult)
        self.assertEqual(
            result.results,
            {"web1": "Hello, Ada, from web1!", "web2": "Hello, Ada, from web2!"},
        )
        self.assertEqual((result.errors, result.missing), ({}, []))
        failed = yield proxy.fail.everywhere()("no")
        self.assertEqual(sorted(failed.errors), ["web1", "web2"])
        for error in failed.errors.values():
            self.assertIsInstance(error, CallError)
            self.assertEqual((error.code, error.message), (COMMAND_ERROR, "ValueError: no"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)

    @inlineCallbacks
    def test_within(self) -> Any:
        """
        C{.within(seconds)} bounds the wait: a slower command fails with a
        L{CallError} of code L{TIMEOUT}, quickly.
        """
        proxy = yield self.connected()
        started = time.monotonic()
        error = yield self.assertFailure(proxy.slowEcho.within(0.3)("x", 1.0), CallError)
        self.assertEqual(error.code, TIMEOUT)
        self.assertLess(time.monotonic() - started, 0.9)
        # Let the agent finish the call before it stops.
        yield waitUntil(
            lambda: self.domain.agents[0].context.stats.inflight == 0, 5, "the call to end"
        )

    @inlineCallbacks
    def test_errors(self) -> Any:
        """
        A failed call fails with a L{CallError} carrying the JSON-RPC code
        and message: unknown command, bad parameters, a command that
        raised.
        """
        proxy = yield self.connected()
        error = yield self.assertFailure(proxy.nope(), CallError)
        self.assertEqual(
            (error.code, error.message),
            (METHOD_NOT_FOUND, "no node of the domain provides 'nope'"),
        )
        error = yield self.assertFailure(proxy.greet(), CallError)
        self.assertEqual(error.code, INVALID_PARAMS)
        self.assertIn("'name'", error.message)
        error = yield self.assertFailure(proxy.fail("boom"), CallError)
        self.assertEqual((error.code, error.message), (COMMAND_ERROR, "ValueError: boom"))
        self.assertEqual(error.data["node"], "web1")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    @inlineCallbacks
    def test_serverProperties(self) -> Any:
        """
        The broker's properties are read from the connection, as text.
        """
        proxy = self.proxy()
        self.assertIsNone(proxy.serverProperties)
        self.assertFalse(proxy.connected)
        yield proxy.connect()
        self.assertTrue(proxy.connected)
        properties = proxy.serverProperties
        assert properties is not None
        self.assertEqual(properties["product"], "RabbitMQ")
        self.assertIsInstance(properties["version"], str)

    @inlineCallbacks
    def test_subscribe(self) -> Any:
        """
        C{subscribe(pattern, callback)} delivers the domain's events that
        match, as their event classes; a subscription made before
        connecting works as well.
        """
        yield self.domain.startAgent("web1", plugins=HELLO)
        proxy = self.proxy()
        early = EventRecorder()
        proxy.subscribe("NodeStatus.#", early)
        yield proxy.connect()
        late = EventRecorder()
        proxy.subscribe("#.web1", late)
        yield waitUntil(lambda: early.of("NodeStatus", "web1"), 10, "a NodeStatus")
        yield waitUntil(lambda: late.of("NodeStatus", "web1"), 10, "a NodeStatus")
        self.assertIsInstance(early.events[0], NodeStatus)
        self.assertEqual({e.eventType for e in early.events}, {"NodeStatus"})

    @inlineCallbacks
    def test_unreachable(self) -> Any:
        """
        With C{attempts=1}, connecting to an address where no broker
        listens fails at once with L{ConnectionFailed}, naming the broker
        (without its password) and the reason; nothing keeps retrying.
        """
        proxy = self.proxy(UNREACHABLE_URL)
        started = time.monotonic()
        error = yield self.assertFailure(proxy.connect(attempts=1), ConnectionFailed)
        self.assertLess(time.monotonic() - started, 5)
        self.assertIn("cannot connect to amqp://guest@127.0.0.1:1/", str(error))
        self.assertIn("refused", str(error))
        self.assertNotIn("guest:guest", str(error))

    @inlineCallbacks
    def test_connectTimeout(self) -> Any:
        """
        Without C{attempts}, connecting retries until its timeout, then
        fails with L{ConnectionFailed} saying so.
        """
        proxy = self.proxy(UNREACHABLE_URL)
        error = yield self.assertFailure(proxy.connect(timeout=0.5), ConnectionFailed)
        self.assertIn("no connection within 0.5 s", str(error))
