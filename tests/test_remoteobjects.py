"""
Tests for L{clacks.agent.remoteobjects}: opening objects, using them
through the object commands, their owners, idle expiry (with a L{Clock}),
and, on the real broker, references used through another node.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from clacks.agent.commands import CallContext, CommandRegistry
from clacks.agent.config import AgentSettings, CoreConfig, defaultConfig
from clacks.agent.remoteobjects import ObjectManager
from clacks.client.amqp import AMQPClient
from clacks.common.handler import IInterfaceHandler
from clacks.common.jsonrpc import (
    COMMAND_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    NODE_UNAVAILABLE,
    PERMISSION_DENIED,
    RPCError,
)
from tests.fakes.agent import agentContext
from tests.util.agents import DomainFixture, waitUntil
from tests.util.example import EXAMPLE_DIR  # noqa: F401 (puts clacks_hello on the path)
from tests.util.httpclient import HTTPClient, basicAuth
from tests.util.logs import captureLogs
from tests.util.secured import startSecuredAgent, usersFile, waitForDomain

from clacks_hello.objects import HelloGreeting  # isort: skip

#: Seconds an unused object stays open in the unit tests.
TIMEOUT = 60.0

ALICE = CallContext(user="alice")
BOB = CallContext(user="bob")


class Counter:
    """
    An object class with state, a method, a failing method and a C{close}
    hook.

    @ivar _closed: how many times C{close} was called (private, so not a
        property callers see).
    """

    instances: list[Counter] = []
    failClose = False

    def __init__(self, value: int = 0) -> None:
        self.value = value
        self._closed = 0
        Counter.instances.append(self)

    def increment(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def explode(self) -> None:
        raise ValueError("boom")

    def close(self) -> None:
        self._closed += 1
        if self.failClose:
            raise RuntimeError("cannot close")


class ObjectManagerTests(SynchronousTestCase):
    """
    The object commands run through an agent's command registry, on a
    L{Clock}, without a bus.
    """

    def setUp(self) -> None:
        Counter.instances = []
        config = defaultConfig(
            core=CoreConfig(id="n1", domain="test"), agent=AgentSettings(objectTimeout=TIMEOUT)
        )
        context, self.clock, _ = agentContext(
            {"CommandRegistry": CommandRegistry, "ObjectManager": ObjectManager}, config=config
        )
        context.objects.register("HelloGreeting", HelloGreeting)
        context.objects.register("Counter", Counter)
        registry: Any = context.plugins.get("CommandRegistry")
        registry.collect()
        self.registry = registry
        self.manager: Any = context.plugins.get("ObjectManager")
        self.addCleanup(self.assertNoTimers)

    def assertNoTimers(self) -> None:
        self.manager.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def call(self, context: CallContext, name: str, *params: Any) -> Any:
        return self.successResultOf(self.registry.call(name, list(params), context))

    def fail_(self, context: CallContext, code: int, name: str, *params: Any) -> RPCError:
        error = self.failureResultOf(self.registry.call(name, list(params), context), RPCError)
        assert isinstance(error.value, RPCError)
        self.assertEqual(error.value.code, code, error.value.message)
        return error.value

    def open(self, context: CallContext = ALICE, oid: str = "HelloGreeting", *args: Any) -> str:
        ref: str = self.call(context, "openObject", oid, *(args or ("ada",)))["ref"]
        return ref

    def test_interface(self) -> None:
        """
        The object manager is an interface handler.
        """
        self.assertTrue(verifyObject(IInterfaceHandler, self.manager))

    def test_listObjectOIDs(self) -> None:
        """
        C{listObjectOIDs} lists the OIDs of the registered classes.
        """
        self.assertEqual(self.call(ALICE, "listObjectOIDs"), ["Counter", "HelloGreeting"])

    def test_open(self) -> None:
        """
        C{openObject} creates an instance with the given arguments and
        answers with a reference C{node/id} and the object's public
        properties and methods.
        """
        opened = self.call(ALICE, "openObject", "HelloGreeting", "ada")
        node, _, oid = opened["ref"].partition("/")
        self.assertEqual((node, len(oid)), ("n1", 32))
        self.assertEqual(
            {k: v for k, v in opened.items() if k != "ref"},
            {
                "oid": "HelloGreeting",
                "node": "n1",
                "properties": ["name", "text"],
                "methods": ["render"],
            },
        )
        self.assertEqual(self.manager.openCount, 1)
        self.assertNotEqual(self.open(), opened["ref"])

    def test_openErrors(self) -> None:
        """
        An unknown OID (and no other node to ask) is C{METHOD_NOT_FOUND};
        arguments the class does not take are C{INVALID_PARAMS} naming the
        OID.  Nothing is left open.
        """
        self.fail_(ALICE, METHOD_NOT_FOUND, "openObject", "Nothing")
        error = self.fail_(ALICE, INVALID_PARAMS, "openObject", "HelloGreeting")
        self.assertIn("HelloGreeting", error.message)
        self.assertEqual(self.manager.openCount, 0)

    def test_anonymousRefused(self) -> None:
        """
        A caller without an identity cannot open objects: every other
        anonymous caller could use them.
        """
        error = self.fail_(CallContext(), PERMISSION_DENIED, "openObject", "HelloGreeting", "x")
        self.assertIn("authenticated caller", error.message)
        self.assertEqual(self.manager.openCount, 0)

    def test_closeNotAMethod(self) -> None:
        """
        An object's own C{close} is not offered as a method: closing goes
        through C{closeObject}, which also releases the reference.
        """
        ref = self.open(ALICE, "Counter", 1)
        self.fail_(ALICE, METHOD_NOT_FOUND, "dispatchObjectMethod", ref, "close")
        self.assertEqual(self.manager.openCount, 1)

    def test_use(self) -> None:
        """
        The owner reads and sets properties and calls methods; methods may
        return Deferreds.
        """
        ref = self.open()
        self.assertEqual(self.call(ALICE, "getObjectProperty", ref, "name"), "ada")
        self.assertIsNone(self.call(ALICE, "setObjectProperty", ref, "text", "Howdy"))
        self.assertEqual(self.call(ALICE, "getObjectProperty", ref, "text"), "Howdy")
        self.assertEqual(self.call(ALICE, "dispatchObjectMethod", ref, "render"), "Howdy, ada!")
        counter = self.open(ALICE, "Counter", 40)
        self.assertEqual(self.call(ALICE, "dispatchObjectMethod", counter, "increment", 2), 42)

    def test_close(self) -> None:
        """
        C{closeObject} closes the object (calling its C{close}); the
        reference is no longer usable.
        """
        ref = self.open(ALICE, "Counter", 1)
        self.assertIsNone(self.call(ALICE, "closeObject", ref))
        self.assertEqual(Counter.instances[0]._closed, 1)
        self.assertEqual(self.manager.openCount, 0)
        error = self.fail_(ALICE, INVALID_PARAMS, "getObjectProperty", ref, "value")
        self.assertIn("no open object", error.message)
        self.fail_(ALICE, INVALID_PARAMS, "closeObject", ref)

    def test_methodFails(self) -> None:
        """
        A method that raises is a command error with the exception's type;
        the object stays open.
        """
        ref = self.open(ALICE, "Counter", 0)
        error = self.fail_(ALICE, COMMAND_ERROR, "dispatchObjectMethod", ref, "explode")
        self.assertIn("boom", error.message)
        self.assertEqual(error.data["type"], "ValueError")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.manager.openCount, 1)

    def test_otherUser(self) -> None:
        """
        Another user (or an anonymous caller) may not use or close the
        object: C{PERMISSION_DENIED}, logged with user, reference, owner and
        node.  The object is unchanged and still open.
        """
        ref = self.open()
        events = captureLogs(self)
        for context in (BOB, CallContext()):
            for name, params in (
                ("getObjectProperty", (ref, "name")),
                ("setObjectProperty", (ref, "name", "eve")),
                ("dispatchObjectMethod", (ref, "render")),
                ("closeObject", (ref,)),
            ):
                error = self.fail_(context, PERMISSION_DENIED, name, *params)
                self.assertIn("belongs to another user", error.message)
        denials = [
            (e["user"], e["ref"], e["owner"], e["node"])
            for e in events
            if e.get("log_format", "").startswith("Denied: user {user} used object")
        ]
        self.assertEqual(
            denials, [("bob", ref, "alice", "n1")] * 4 + [(None, ref, "alice", "n1")] * 4
        )
        self.assertEqual(self.call(ALICE, "getObjectProperty", ref, "name"), "ada")

    def test_unknownNames(self) -> None:
        """
        Only public attributes are reachable: unknown or private names,
        methods as properties and properties as methods are refused.
        """
        ref = self.open()
        for name in ("nope", "_secret", "__class__", "render"):
            self.fail_(ALICE, INVALID_PARAMS, "getObjectProperty", ref, name)
            self.fail_(ALICE, INVALID_PARAMS, "setObjectProperty", ref, name, 1)
        for name in ("nope", "__init__", "name"):
            self.fail_(ALICE, METHOD_NOT_FOUND, "dispatchObjectMethod", ref, name)

    def test_badReference(self) -> None:
        """
        A reference that is not C{node/id} is C{INVALID_PARAMS}.
        """
        for ref in ("nonsense", 42, None):
            error = self.fail_(ALICE, INVALID_PARAMS, "getObjectProperty", ref, "name")
            self.assertIn("is not an object reference", error.message)

    def test_otherNodeWithoutBus(self) -> None:
        """
        A reference held by another node cannot be used without a bus:
        C{NODE_UNAVAILABLE}.
        """
        error = self.fail_(ALICE, NODE_UNAVAILABLE, "getObjectProperty", "n2/abc", "name")
        self.assertIn("'n2'", error.message)

    def test_expiry(self) -> None:
        """
        An object unused for C{[agent] object-timeout} seconds is closed
        (its C{close} called, the closing logged); each use starts the
        time again.
        """
        ref = self.open(ALICE, "Counter", 0)
        events = captureLogs(self)
        self.clock.advance(TIMEOUT - 1)
        self.call(ALICE, "dispatchObjectMethod", ref, "increment")
        self.clock.advance(TIMEOUT - 1)
        self.assertEqual(self.call(ALICE, "getObjectProperty", ref, "value"), 1)
        self.clock.advance(TIMEOUT - 1)
        self.assertEqual(self.manager.openCount, 1)
        self.clock.advance(1)
        self.assertEqual(self.manager.openCount, 0)
        self.assertEqual(Counter.instances[0]._closed, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(
            any(e.get("why") == "idle for too long" and e.get("ref") == ref for e in events)
        )
        self.fail_(ALICE, INVALID_PARAMS, "getObjectProperty", ref, "value")

    def test_deniedUseDoesNotExtend(self) -> None:
        """
        Refused calls of another user do not keep the object open.
        """
        ref = self.open()
        self.clock.advance(TIMEOUT - 1)
        self.fail_(BOB, PERMISSION_DENIED, "getObjectProperty", ref, "name")
        self.clock.advance(1)
        self.assertEqual(self.manager.openCount, 0)

    def test_stop(self) -> None:
        """
        Stopping the agent closes every open object and cancels their
        timers.
        """
        self.open(ALICE, "Counter", 0)
        self.open(BOB, "Counter", 0)
        self.manager.stop()
        self.assertEqual(self.manager.openCount, 0)
        self.assertEqual([c._closed for c in Counter.instances], [1, 1])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeFails(self) -> None:
        """
        An object whose C{close} raises is closed all the same; the error is
        logged.
        """
        ref = self.open(ALICE, "Counter", 0)
        Counter.instances[0].failClose = True
        self.assertIsNone(self.call(ALICE, "closeObject", ref))
        self.assertEqual(self.manager.openCount, 0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


#: Everybody may use the object commands (a pattern); nobody anything else.
ACL = {"*": "*Object*, ping"}


class DomainTests(TestCase):
    """
    Remote objects in a domain on the real broker: alpha provides
    C{HelloGreeting}, beta does not; a reference works through either.
    """

    timeout = 60

    def setUp(self) -> None:
        self.domain = DomainFixture(self)
        self.users = usersFile(self, {"alice": ("wonderland", []), "bob": ("builder", [])})
        self.http = HTTPClient(self)

    @inlineCallbacks
    def startDomain(self, **agent: Any) -> Any:
        alpha = yield startSecuredAgent(self.domain, "alpha", self.users, ACL, **agent)
        beta = yield startSecuredAgent(self.domain, "beta", self.users, ACL, objects=False)
        yield waitForDomain(self.domain, [alpha, beta])
        return alpha, beta

    @inlineCallbacks
    def call(self, agent: Any, user: str, method: str, *params: Any) -> Any:
        password = {"alice": "wonderland", "bob": "builder"}[user]
        response = yield self.http.call(
            self.domain.httpPort(agent), method, *params, authorization=basicAuth(user, password)
        )
        return response

    @inlineCallbacks
    def test_throughOtherNode(self) -> Any:
        """
        An object opened on alpha is used through beta's HTTP port: beta
        forwards every call to alpha, the holder, as the caller; another
        user is refused there; closing it through beta closes it on alpha.
        """
        alpha, beta = yield self.startDomain()
        opened = yield self.call(alpha, "alice", "openObject", "HelloGreeting", "ada")
        ref = opened["result"]["ref"]
        self.assertTrue(ref.startswith("alpha/"), ref)
        response = yield self.call(beta, "alice", "getObjectProperty", ref, "name")
        self.assertEqual(response["result"], "ada")
        response = yield self.call(beta, "alice", "setObjectProperty", ref, "text", "Howdy")
        self.assertIsNone(response["result"])
        response = yield self.call(beta, "alice", "dispatchObjectMethod", ref, "render")
        self.assertEqual(response["result"], "Howdy, ada!")
        response = yield self.call(beta, "bob", "getObjectProperty", ref, "name")
        self.assertEqual(response["error"]["code"], PERMISSION_DENIED, response)
        manager = alpha.context.plugins.get("ObjectManager")
        self.assertEqual(manager.openCount, 1)
        response = yield self.call(beta, "alice", "closeObject", ref)
        self.assertIsNone(response["result"])
        self.assertEqual(manager.openCount, 0)
        response = yield self.call(beta, "alice", "getObjectProperty", ref, "name")
        self.assertEqual(response["error"]["code"], INVALID_PARAMS, response)

    @inlineCallbacks
    def test_openedThroughOtherNode(self) -> Any:
        """
        Beta, which lacks the class, lists it among the domain's OIDs and
        opens it on alpha, which provides it.
        """
        alpha, beta = yield self.startDomain()
        response = yield self.call(beta, "alice", "listObjectOIDs")
        self.assertEqual(response["result"], ["HelloGreeting"])
        response = yield self.call(beta, "alice", "openObject", "HelloGreeting", "bea")
        ref = response["result"]["ref"]
        self.assertTrue(ref.startswith("alpha/"), ref)
        self.assertEqual(alpha.context.plugins.get("ObjectManager").openCount, 1)
        self.assertEqual(beta.context.plugins.get("ObjectManager").openCount, 0)

    @inlineCallbacks
    def test_amqpNodeTargeted(self) -> Any:
        """
        An AMQP caller opens an object on alpha and reads it with calls
        sent to beta's own queue (C{node="beta"}).
        """
        yield self.startDomain()
        client = AMQPClient(self.domain.brokerURL, self.domain.domain, timeout=10, reactor=reactor)
        self.addCleanup(client.stop)
        yield client.start()
        opened = yield client.call("openObject", "HelloGreeting", "cy", node="alpha")
        name = yield client.call("getObjectProperty", opened["ref"], "name", node="beta")
        self.assertEqual(name, "cy")
        rendered = yield client.call("dispatchObjectMethod", opened["ref"], "render", node="beta")
        self.assertEqual(rendered, "Hello, cy!")

    @inlineCallbacks
    def test_expiry(self) -> Any:
        """
        With a short C{object-timeout}, an unused object is closed on its
        own; its reference then names no open object.
        """
        alpha, beta = yield self.startDomain(objectTimeout=0.5)
        opened = yield self.call(alpha, "alice", "openObject", "HelloGreeting", "ada")
        self.assertTrue(opened["result"]["ref"].startswith("alpha/"), opened)
        manager = alpha.context.plugins.get("ObjectManager")
        yield waitUntil(lambda: manager.openCount == 0, 5, "the object to expire")
        response = yield self.call(
            beta, "alice", "getObjectProperty", opened["result"]["ref"], "name"
        )
        self.assertEqual(response["error"]["code"], INVALID_PARAMS, response)
        self.assertIn("no open object", response["error"]["message"])
