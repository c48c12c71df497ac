"""
Tests for L{clacks.agent.dispatch}: where a call runs (here, one node, all
nodes, every provider) and how the answers of several providers combine.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clacks.agent.commands import CallContext, CommandRegistry
from clacks.agent.dispatch import (
    ALL,
    ANY,
    DEFAULT_TIMEOUT,
    LOCAL,
    AllNodesResult,
    Dispatcher,
    IRemoteCaller,
    combine,
    onNode,
)
from clacks.agent.nodes import NodeDirectory
from clacks.common.components.command import CUMULATIVE, Command
from clacks.common.components.plugin import Plugin
from clacks.common.events import NodeAnnounce
from clacks.common.jsonrpc import (
    COMMAND_ERROR,
    METHOD_NOT_FOUND,
    NODE_UNAVAILABLE,
    TIMEOUT,
    Request,
    RPCError,
)
from tests.fakes.agent import agentContext
from tests.util.example import HelloPlugin

NODE_TIMEOUT = 30.0
INTERVAL = 10.0


@implementer(IRemoteCaller)
class FakeRemote:
    """
    Records the calls to other nodes and answers as scripted.

    @ivar calls: C{(node, method, timeout)} of each L{callNode}.
    @ivar allCalls: C{(method, expected, timeout)} of each L{callAll}.
    @ivar answers: per node, what L{callNode} answers: a value, an
        L{RPCError} to fail with, or a Deferred to hand back as is.  A node
        without an answer fails the test.
    @ivar allResult: what L{callAll} answers.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, float]] = []
        self.allCalls: list[tuple[str, set[str], float]] = []
        self.answers: dict[str, Any] = {}
        self.allResult = AllNodesResult({}, {}, [])

    def callNode(
        self, node: str, request: Request, context: CallContext, timeout: float
    ) -> Deferred[Any]:
        self.calls.append((node, request.method, timeout))
        answer = self.answers[node]
        if isinstance(answer, Deferred):
            return answer
        if isinstance(answer, Exception):
            return fail(answer)
        return succeed(answer)

    def callAll(
        self, request: Request, context: CallContext, expected: set[str], timeout: float
    ) -> Deferred[AllNodesResult]:
        self.allCalls.append((request.method, set(expected), timeout))
        return succeed(self.allResult)

    @property
    def nodes(self) -> list[str]:
        """
        The nodes L{callNode} was asked to reach, in order.
        """
        return [node for node, _, _ in self.calls]


class Counter(Plugin):
    """
    A CUMULATIVE command that counts its runs here.
    """

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.count = 0

    @Command(__help__="Count the runs on every node.", type=CUMULATIVE)
    def runs(self) -> int:
        self.count += 1
        return self.count


def method(name: str, type: str = "NORMAL") -> dict[str, Any]:
    return {"name": name, "type": type, "help": name}


class DispatcherTestCase(SynchronousTestCase):
    """
    Node n1 runs the example plugin and L{Counter}; the directory starts
    empty, and the dispatcher picks the last of the providers.
    """

    def setUp(self) -> None:
        self.context, self.clock, _ = agentContext(
            {"CommandRegistry": CommandRegistry, "hello": HelloPlugin, "counter": Counter}
        )
        self.registry: CommandRegistry = self.context.plugins.get("CommandRegistry")  # type: ignore[assignment]
        self.registry.collect()
        self.directory = NodeDirectory(self.clock, NODE_TIMEOUT, INTERVAL)
        self.remote = FakeRemote()
        self.chosenFrom: list[list[str]] = []
        self.dispatcher = self.makeDispatcher()
        self.addCleanup(self.assertNoTimersLeft)

    def makeDispatcher(self, directory: Any = True, remote: Any = True) -> Dispatcher:
        def choose(nodes: list[str]) -> str:
            self.chosenFrom.append(list(nodes))
            return nodes[-1]

        return Dispatcher(
            self.registry,
            "n1",
            self.directory if directory is True else directory,
            self.remote if remote is True else remote,
            self.clock,
            choose=choose,
        )

    def assertNoTimersLeft(self) -> None:
        self.directory.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def announce(self, node: str, *methods: dict[str, Any]) -> None:
        self.directory.handle(
            NodeAnnounce(
                node=node,
                incarnation="i1",
                version="0.1",
                commands=[m["name"] for m in methods],
                methods=list(methods),
                interval=INTERVAL,
            )
        )

    def kill(self, node: str, *methods: dict[str, Any]) -> None:
        """
        Make C{node} known but dead, keeping the others alive.
        """
        self.announce(node, *methods)
        self.clock.advance(NODE_TIMEOUT)
        for info in self.directory.nodes():
            if info.node != node:
                self.announce(info.node, *info.methods)

    def dispatch(self, method: str, params: Any = (), target: Any = ANY, **context: Any) -> Any:
        request = Request(method, list(params) if isinstance(params, tuple) else params, id=1)
        return self.dispatcher.dispatch(request, CallContext(**context), target)

    def result(self, method: str, params: Any = (), target: Any = ANY, **context: Any) -> Any:
        return self.successResultOf(self.dispatch(method, params, target, **context))

    def error(self, method: str, params: Any = (), target: Any = ANY, **context: Any) -> RPCError:
        d = self.dispatch(method, params, target, **context)
        error = self.failureResultOf(d, RPCError).value
        assert isinstance(error, RPCError)
        return error


class TargetTests(DispatcherTestCase):
    """
    ANY, LOCAL, one node and ALL.
    """

    def test_fakeRemote(self) -> None:
        """
        The fake remote caller provides L{IRemoteCaller}.
        """
        self.assertTrue(verifyObject(IRemoteCaller, self.remote))

    def test_anyLocal(self) -> None:
        """
        A command this node has runs here, even if other nodes have it.
        """
        self.announce("n2", method("greet"))
        self.assertEqual(self.result("greet", ["Ada"]), "Hello, Ada, from n1!")
        self.assertEqual(self.remote.calls, [])

    def test_anyForwarded(self) -> None:
        """
        A command this node lacks goes to one of the nodes that provide it,
        with the default timeout; dead nodes are not candidates.
        """
        self.kill("n0", method("remote"))
        self.announce("n2", method("remote"))
        self.announce("n3", method("remote"))
        self.announce("n4", method("other"))
        self.remote.answers["n3"] = "from n3"
        self.assertEqual(self.result("remote"), "from n3")
        self.assertEqual(self.chosenFrom, [["n2", "n3"]])
        self.assertEqual(self.remote.calls, [("n3", "remote", DEFAULT_TIMEOUT)])

    def test_anyDeadline(self) -> None:
        """
        A forwarded call gets the time left until the caller's deadline.
        """
        self.clock.advance(100)
        self.announce("n2", method("remote"))
        self.remote.answers["n2"] = 1
        self.result("remote", deadline=105.5)
        self.assertEqual(self.remote.calls, [("n2", "remote", 5.5)])

    def test_anyRemoteError(self) -> None:
        """
        The forwarded call's error reaches the caller as it is.
        """
        self.announce("n2", method("remote"))
        self.remote.answers["n2"] = RPCError(COMMAND_ERROR, "ValueError: no")
        self.assertEqual(self.error("remote"), RPCError(COMMAND_ERROR, "ValueError: no"))

    def test_anyNotFound(self) -> None:
        """
        A command no reachable node provides gives METHOD_NOT_FOUND.
        """
        self.kill("n9", method("ghost"))
        self.announce("n2", method("other"))
        for name in ("nope", "ghost"):
            error = self.error(name)
            self.assertEqual(error.code, METHOD_NOT_FOUND)
            self.assertEqual(error.message, f"no node of the domain provides {name!r}")
        self.assertEqual(self.remote.calls, [])

    def test_local(self) -> None:
        """
        LOCAL runs here and never forwards: a command only others have is
        not found.
        """
        self.announce("n2", method("remote"))
        self.assertEqual(self.result("greet", ["Ada"], LOCAL), "Hello, Ada, from n1!")
        self.assertEqual(self.error("remote", target=LOCAL).code, METHOD_NOT_FOUND)
        self.assertEqual(self.remote.calls, [])

    def test_onSelf(self) -> None:
        """
        A call for this node runs here.
        """
        self.assertEqual(self.result("greet", ["Ada"], onNode("n1")), "Hello, Ada, from n1!")
        self.assertEqual(self.remote.calls, [])

    def test_onOtherNode(self) -> None:
        """
        A call for another node goes there, even for a command this node
        has too.
        """
        self.announce("n2", method("greet"))
        self.remote.answers["n2"] = "Hello from n2"
        self.assertEqual(self.result("greet", ["Ada"], onNode("n2")), "Hello from n2")
        self.assertEqual(self.remote.calls, [("n2", "greet", DEFAULT_TIMEOUT)])

    def test_onUnknownNode(self) -> None:
        """
        A call for a node not in the domain gives NODE_UNAVAILABLE naming
        it, and is not sent.
        """
        error = self.error("greet", ["Ada"], onNode("zz"))
        self.assertEqual(error.code, NODE_UNAVAILABLE)
        self.assertEqual(error.message, "node 'zz' is not in the domain")
        self.assertEqual(error.data, {"node": "zz"})
        self.assertEqual(self.remote.calls, [])

    def test_onDeadNode(self) -> None:
        """
        A call for a dead node gives NODE_UNAVAILABLE, and is not sent.
        """
        self.kill("n9", method("greet"))
        error = self.error("greet", ["Ada"], onNode("n9"))
        self.assertEqual(error.code, NODE_UNAVAILABLE)
        self.assertEqual(error.message, "node 'n9' is dead")
        self.assertEqual(self.remote.calls, [])

    def test_all(self) -> None:
        """
        ALL asks the remote caller to reach every node, expecting the
        reachable ones and this node, and answers with the JSON form of
        what came back.
        """
        self.kill("n9")
        self.announce("n2")
        self.announce("n3")
        self.remote.allResult = AllNodesResult(
            results={"n1": "a", "n2": "b"},
            errors={"n3": RPCError(COMMAND_ERROR, "ValueError: x", {"type": "ValueError"})},
            missing=["n4"],
        )
        self.assertEqual(
            self.result("greet", ["Ada"], ALL, deadline=self.clock.seconds() + 7),
            {
                "results": {"n1": "a", "n2": "b"},
                "errors": {
                    "n3": {
                        "code": COMMAND_ERROR,
                        "message": "ValueError: x",
                        "data": {"type": "ValueError"},
                    }
                },
                "missing": ["n4"],
            },
        )
        self.assertEqual(self.remote.allCalls, [("greet", {"n1", "n2", "n3"}, 7.0)])


class StandaloneTests(DispatcherTestCase):
    """
    Without a remote caller only this node can answer.
    """

    def setUp(self) -> None:
        super().setUp()
        self.dispatcher = self.makeDispatcher(directory=None, remote=None)

    def test_local(self) -> None:
        """
        Commands of this node run.
        """
        self.assertEqual(self.result("greet", ["Ada"]), "Hello, Ada, from n1!")
        self.assertEqual(self.result("helloNodes"), ["n1"])

    def test_remoteTargets(self) -> None:
        """
        Another node, or all nodes, give NODE_UNAVAILABLE.
        """
        for target in (onNode("n2"), ALL):
            error = self.error("greet", ["Ada"], target)
            self.assertEqual(error.code, NODE_UNAVAILABLE)
            self.assertEqual(error.message, "this agent is standalone: no other nodes to call")

    def test_unknownCommand(self) -> None:
        """
        A command this node lacks is not found.
        """
        self.assertEqual(self.error("remote").code, METHOD_NOT_FOUND)

    def test_directoryButNoRemote(self) -> None:
        """
        With other nodes in the directory but no way to reach them, a
        command only they have gives NODE_UNAVAILABLE.
        """
        self.dispatcher = self.makeDispatcher(remote=None)
        self.announce("n2", method("remote"))
        self.assertEqual(self.error("remote").code, NODE_UNAVAILABLE)


class FirstResultTests(DispatcherTestCase):
    """
    A FIRSTRESULT command asks every provider; the first non-null answer
    wins.
    """

    def setUp(self) -> None:
        super().setUp()
        self.announce("n2", method("lookup", "FIRSTRESULT"), method("findFriend", "FIRSTRESULT"))
        self.announce("n3", method("lookup", "FIRSTRESULT"), method("findFriend", "FIRSTRESULT"))
        self.d2: Deferred[Any] = Deferred()
        self.d3: Deferred[Any] = Deferred()
        self.remote.answers.update(n2=self.d2, n3=self.d3)

    def test_everyProviderAsked(self) -> None:
        """
        Every provider, this node included, is asked; until one answers
        non-null there is no result.
        """
        d = self.dispatch("findFriend", ["ada"])
        self.assertEqual(sorted(self.remote.nodes), ["n2", "n3"])
        self.assertNoResult(d)

    def test_firstNonNullAfterNull(self) -> None:
        """
        A non-null answer that comes after null ones wins.
        """
        d = self.dispatch("findFriend", ["ada"])  # n1 answers null at once
        self.d2.callback(None)
        self.assertNoResult(d)
        self.d3.callback("n3")
        self.assertEqual(self.successResultOf(d), "n3")

    def test_firstNonNullWins(self) -> None:
        """
        The first non-null answer wins over later ones.
        """
        results: list[Any] = []
        self.dispatch("findFriend", ["ada"]).addCallback(results.append)
        self.d3.callback("n3")
        self.d2.callback("n2")
        self.assertEqual(results, ["n3"])

    def test_allNull(self) -> None:
        """
        If every provider answers null, the result is null.
        """
        d = self.dispatch("findFriend", ["ada"])
        self.d2.callback(None)
        self.d3.callback(None)
        self.assertIsNone(self.successResultOf(d))

    def test_remoteOnlyType(self) -> None:
        """
        The type of a command this node lacks comes from what its
        providers announced: a remote FIRSTRESULT command asks them all.
        """
        d = self.dispatch("lookup")
        self.assertEqual(sorted(self.remote.nodes), ["n2", "n3"])
        self.assertEqual(self.chosenFrom, [])
        self.d2.callback("found")
        self.assertEqual(self.successResultOf(d), "found")

    def test_errorsIgnoredIfAnswered(self) -> None:
        """
        Errors of some providers do not matter when another answered, even
        with null.
        """
        d = self.dispatch("lookup")
        self.d2.errback(RPCError(COMMAND_ERROR, "n2 broke"))
        self.assertNoResult(d)
        self.d3.callback(None)
        self.assertIsNone(self.successResultOf(d))

    def test_allFail(self) -> None:
        """
        If every provider fails, the call fails with the first error.
        """
        d = self.dispatch("lookup")
        self.d3.errback(RPCError(COMMAND_ERROR, "n3 broke"))
        self.assertNoResult(d)
        self.d2.errback(RPCError(COMMAND_ERROR, "n2 broke"))
        self.assertEqual(self.failureResultOf(d, RPCError).value.message, "n3 broke")


class CumulativeTests(DispatcherTestCase):
    """
    A CUMULATIVE command asks every provider and combines the answers.
    """

    def test_listsJoined(self) -> None:
        """
        Lists are joined, in node order, this node included.
        """
        self.announce("n2", method("helloNodes", "CUMULATIVE"))
        self.announce("n3", method("helloNodes", "CUMULATIVE"))
        self.remote.answers.update(n2=["n2"], n3=["n3a", "n3b"])
        self.assertEqual(self.result("helloNodes"), ["n1", "n2", "n3a", "n3b"])

    def test_numbersAdded(self) -> None:
        """
        Numbers are added.
        """
        self.announce("n2", method("runs", "CUMULATIVE"))
        self.remote.answers["n2"] = 41
        self.assertEqual(self.result("runs"), 42)

    def test_dictsMergedNullsDropped(self) -> None:
        """
        Objects are merged, later nodes winning; null answers are left out.
        """
        for node in ("n2", "n3", "n4"):
            self.announce(node, method("stats", "CUMULATIVE"))
        self.remote.answers.update(n2={"a": 1, "b": 1}, n3=None, n4={"b": 2})
        self.assertEqual(self.result("stats"), {"a": 1, "b": 2})

    def test_mixedAsList(self) -> None:
        """
        Answers of different kinds come back as a list of them.
        """
        for node in ("n2", "n3"):
            self.announce(node, method("stats", "CUMULATIVE"))
        self.remote.answers.update(n2={"a": 1}, n3=[1])
        self.assertEqual(self.result("stats"), [{"a": 1}, [1]])

    def test_someFail(self) -> None:
        """
        Providers that fail are left out when others answered.
        """
        for node in ("n2", "n3"):
            self.announce(node, method("helloNodes", "CUMULATIVE"))
        self.remote.answers.update(n2=RPCError(COMMAND_ERROR, "broke"), n3=["n3"])
        self.assertEqual(self.result("helloNodes"), ["n1", "n3"])

    def test_allFail(self) -> None:
        """
        If every provider fails, the call fails with the error of the first
        provider.
        """
        for node in ("n2", "n3"):
            self.announce(node, method("stats", "CUMULATIVE"))
        self.remote.answers.update(
            n2=RPCError(COMMAND_ERROR, "n2 broke"), n3=RPCError(COMMAND_ERROR, "n3 broke")
        )
        self.assertEqual(self.error("stats").message, "n2 broke")


class DeadlineTests(DispatcherTestCase):
    """
    A call whose deadline passed is not forwarded.
    """

    def setUp(self) -> None:
        super().setUp()
        self.clock.advance(1000)
        self.announce("n2", method("remote"), method("runs", "CUMULATIVE"))
        self.remote.answers["n2"] = "answer"

    def assertTimeout(self, method: str, target: Any = ANY) -> None:
        error = self.error(method, [], target, deadline=999.0)
        self.assertEqual(error.code, TIMEOUT)
        self.assertEqual(error.message, "the call's deadline passed before it could be forwarded")
        self.assertEqual(self.remote.calls, [])
        self.assertEqual(self.remote.allCalls, [])

    def test_any(self) -> None:
        """
        A call to forward to any provider times out.
        """
        self.assertTimeout("remote")

    def test_onNode(self) -> None:
        """
        A call for another node times out.
        """
        self.assertTimeout("remote", onNode("n2"))

    def test_all(self) -> None:
        """
        A call for all nodes times out.
        """
        self.assertTimeout("remote", ALL)

    def test_exactlyNow(self) -> None:
        """
        A deadline that is now has passed too.
        """
        error = self.error("remote", deadline=1000.0)
        self.assertEqual(error.code, TIMEOUT)

    def test_providersNotStarted(self) -> None:
        """
        A CUMULATIVE call times out before any provider runs, this node's
        included.
        """
        self.assertTimeout("runs")
        self.assertEqual(self.context.plugins.get("counter").count, 0)  # type: ignore[attr-defined]


class CombineTests(SynchronousTestCase):
    """
    L{combine} merges the answers of the providers of a CUMULATIVE command.
    """

    def test_nothing(self) -> None:
        """
        No answers, or only nulls, give null.
        """
        self.assertIsNone(combine([]))
        self.assertIsNone(combine([None, None]))

    def test_lists(self) -> None:
        """
        Lists are concatenated in order, nulls left out.
        """
        self.assertEqual(combine([[1, 2], None, [], [3]]), [1, 2, 3])

    def test_dicts(self) -> None:
        """
        Objects are merged; a later answer wins a shared key.
        """
        self.assertEqual(combine([{"a": 1, "b": 1}, {"b": 2}, None]), {"a": 1, "b": 2})

    def test_numbers(self) -> None:
        """
        Numbers, integer or not, are added.
        """
        self.assertEqual(combine([1, 2, None, 3]), 6)
        self.assertEqual(combine([1, 0.5]), 1.5)

    def test_booleansNotAdded(self) -> None:
        """
        Booleans are not numbers here: they come back as a list.
        """
        self.assertEqual(combine([True, True]), [True, True])
        self.assertEqual(combine([1, True]), [1, True])

    def test_mixed(self) -> None:
        """
        Answers of different kinds, or strings, come back as a list.
        """
        self.assertEqual(combine([[1], {"a": 1}, 2, None]), [[1], {"a": 1}, 2])
        self.assertEqual(combine(["a", "b"]), ["a", "b"])

    def test_single(self) -> None:
        """
        A single answer keeps its own form.
        """
        self.assertEqual(combine([None, [1]]), [1])
        self.assertEqual(combine([{"a": 1}]), {"a": 1})
        self.assertEqual(combine([5]), 5)
