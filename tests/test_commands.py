"""
Tests for L{clacks.agent.commands}: collecting the commands of the agent's
plugins, running them here, and the built-in commands.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from clacks import __version__
from clacks.agent.commands import CallContext, CommandDescription, CommandRegistry
from clacks.agent.nodes import NodeDirectory, NodeDirectoryPlugin
from clacks.common.components.command import CUMULATIVE, FIRSTRESULT, Command, CommandType
from clacks.common.components.plugin import Plugin
from clacks.common.components.registry import PluginFailure
from clacks.common.events import NodeAnnounce, NodeStatus
from clacks.common.jsonrpc import (
    COMMAND_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    PERMISSION_DENIED,
    RPCError,
)
from clacks.interfaces import IWorkerPool
from tests.fakes.agent import agentContext
from tests.util.example import HelloPlugin

#: The built-in commands of the registry itself.
BUILTINS = ["getCommandSchema", "getMethods", "getNodes", "ping"]

HELLO = [
    "echo",
    "fail",
    "findFriend",
    "greet",
    "greetingCount",
    "helloNodes",
    "nap",
    "slowEcho",
    "whoami",
]


class Inherited:
    """
    A base class (not a plugin) whose command its plugin subclasses get.
    """

    @Command(__help__="A command defined in a base class.")
    def inherited(self) -> str:
        return "inherited"


class Tools(Inherited, Plugin):
    """
    Commands with injected parameters, renamed, and failing in every way.
    """

    _target_ = "tools"

    @Command(__help__="Add A and B.")
    def add(self, a: int, b: int = 0) -> int:
        return a + b

    @Command(__help__="Sign TEXT with the caller's name.", needsUser=True)
    def sign(self, user: str | None, text: str) -> str:
        return f"{text} -- {user}"

    @Command(__help__="Where the call came from.", needsQueue=True)
    def origin(self, queue: str | None) -> str | None:
        return queue

    @Command(__help__="Refuse with an error of the command's choosing.")
    def deny(self) -> None:
        raise RPCError(PERMISSION_DENIED, "not you", {"why": "test"})

    @Command(__help__="Fail KeyError after a second.")
    def failLater(self) -> Deferred[None]:
        def fail() -> None:
            raise KeyError("gone")

        return deferLater(self.context.reactor, 1, fail)

    @Command(__help__="Fail in the thread pool.", blocking=True)
    def failBlocking(self) -> None:
        raise OSError("disk on fire")

    @Command(__help__="Return a set, which has no JSON form.")
    def badResult(self) -> Any:
        return {1, 2}

    @Command(__help__="Known to callers by another name.", name="renamed")
    def internalName(self) -> str:
        return "renamed"


class NoHelp(Plugin):
    """
    Commands without help, to be refused.
    """

    @Command()
    def quiet(self) -> None:
        pass

    @Command(__help__="   ")
    def blank(self) -> None:
        pass


class Clash(Plugin):
    """
    A command whose name another plugin took first.
    """

    @Command(__help__="Another greet.")
    def greet(self, name: str) -> str:
        return name


class NoUserParameter(Plugin):
    """
    A command that asks for the user but takes no C{user} parameter.
    """

    @Command(__help__="Wants the user, takes none.", needsUser=True)
    def anonymous(self) -> None:
        pass


class PosesAsUser(Plugin):
    """
    A command with a C{user} parameter but without C{needsUser}: a caller
    could set it.
    """

    @Command(__help__="Trusts a caller-set user.")
    def impersonate(self, user: str) -> str:
        return user


class Shadowed(Plugin):
    """
    A plugin that hides its own command behind an instance attribute.
    """

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.status = "fine"

    @Command(__help__="Say how the plugin is.")
    def status(self) -> str:
        return "status"


class RegistryTestCase(SynchronousTestCase):
    """
    Builds an agent with the command registry, the node directory, the
    example plugin and L{Tools}.
    """

    plugins: dict[str, Any] = {
        "CommandRegistry": CommandRegistry,
        "NodeDirectory": NodeDirectoryPlugin,
        "hello": HelloPlugin,
        "tools": Tools,
    }
    debug = False

    def setUp(self) -> None:
        self.context, self.clock, self.workers = agentContext(self.plugins, debug=self.debug)
        self.registry: CommandRegistry = self.context.plugins.get("CommandRegistry")  # type: ignore[assignment]
        self.registry.collect()
        self.addCleanup(self.assertNoTimersLeft)

    def assertNoTimersLeft(self) -> None:
        if "NodeDirectory" in self.context.plugins:
            self.context.plugins.get("NodeDirectory").stop()  # type: ignore[attr-defined]
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @property
    def directory(self) -> NodeDirectory:
        return self.context.plugins.get("NodeDirectory").directory  # type: ignore[attr-defined]

    def call(self, name: str, params: Any = (), context: CallContext | None = None) -> Any:
        """
        @return: the result of calling C{name} here, which must be ready.
        """
        if isinstance(params, tuple):
            params = list(params)
        return self.successResultOf(self.registry.call(name, params, context or CallContext()))

    def callError(
        self, name: str, params: Any = (), context: CallContext | None = None
    ) -> RPCError:
        """
        @return: the L{RPCError} calling C{name} here fails with at once.
        """
        if isinstance(params, tuple):
            params = list(params)
        d = self.registry.call(name, params, context or CallContext())
        error = self.failureResultOf(d, RPCError).value
        assert isinstance(error, RPCError)
        return error


class CollectTests(RegistryTestCase):
    """
    The registry collects every C{@Command} method of every plugin, refusing
    those that break the rules with a message saying what to fix.
    """

    plugins = {
        **RegistryTestCase.plugins,
        "nohelp": NoHelp,
        "clash": Clash,
        "nouser": NoUserParameter,
        "poser": PosesAsUser,
        "shadowed": Shadowed,
    }

    def test_workerPoolFake(self) -> None:
        """
        The fake worker pool provides L{IWorkerPool}.
        """
        self.assertTrue(verifyObject(IWorkerPool, self.workers))

    def test_allPlugins(self) -> None:
        """
        The registry has its own built-ins, the example plugin's commands,
        an inherited command and a renamed one, and none of the refused.
        """
        self.assertEqual(
            self.registry.commandNames(),
            sorted(
                BUILTINS
                + HELLO
                + [
                    "add",
                    "badResult",
                    "deny",
                    "failBlocking",
                    "failLater",
                    "inherited",
                    "origin",
                    "renamed",
                    "sign",
                ]
            ),
        )
        self.assertNotIn("internalName", self.registry)
        self.assertEqual(self.call("inherited"), "inherited")
        self.assertEqual(self.call("renamed"), "renamed")

    def test_description(self) -> None:
        """
        A command's description names its plugin and target and shows the
        signature the caller sees; injected parameters are hidden.
        """
        greet = self.registry.describe("greet")
        self.assertEqual(
            greet,
            CommandDescription(
                name="greet",
                help="Greet NAME, from the node that answers.",
                signature="(name: str) -> str",
                parameters=("name",),
                type=CommandType.NORMAL,
                target="hello",
                plugin="hello",
            ),
        )
        sign = self.registry.describe("sign")
        assert sign is not None
        self.assertEqual((sign.parameters, sign.needsUser), (("text",), True))
        self.assertEqual(sign.signature, "(text: str) -> str")
        ping = self.registry.describe("ping")
        assert ping is not None
        self.assertEqual((ping.plugin, ping.target), ("CommandRegistry", "core"))
        self.assertIsNone(self.registry.describe("nope"))

    def test_descriptionJSON(self) -> None:
        """
        A description survives its JSON form (as NodeAnnounce carries it).
        """
        for description in self.registry.descriptions():
            self.assertEqual(CommandDescription.fromJSON(description.toJSON()), description)

    def test_noHelpRefused(self) -> None:
        """
        A command without help, or with only blanks, is not registered;
        each is listed among the plugin failures, naming the command and
        the plugin and saying how to fix it.
        """
        self.assertNotIn("quiet", self.registry)
        self.assertNotIn("blank", self.registry)
        failures = [f for f in self.context.plugins.failures if f.name == "nohelp"]
        self.assertEqual(
            failures,
            [
                PluginFailure(
                    "nohelp",
                    "register",
                    "command 'blank' of plugin nohelp has no help: "
                    'give it @Command(__help__="what it does")',
                    "added directly",
                ),
                PluginFailure(
                    "nohelp",
                    "register",
                    "command 'quiet' of plugin nohelp has no help: "
                    'give it @Command(__help__="what it does")',
                    "added directly",
                ),
            ],
        )

    def test_clashRefused(self) -> None:
        """
        A command whose name an earlier plugin took is refused; the first
        stays, and the failure names both plugins and the way out.
        """
        self.assertEqual(self.call("greet", ["Ada"]), "Hello, Ada, from n1!")
        [failure] = [f for f in self.context.plugins.failures if f.name == "clash"]
        self.assertEqual(failure.stage, "register")
        self.assertEqual(
            failure.error,
            "command 'greet' of plugin clash clashes with the command of plugin hello; "
            "rename one of them with @Command(name=...)",
        )

    def test_needsUserWithoutParameterRefused(self) -> None:
        """
        A command with C{needsUser} but no C{user} parameter is refused.
        """
        self.assertNotIn("anonymous", self.registry)
        [failure] = [f for f in self.context.plugins.failures if f.name == "nouser"]
        self.assertEqual(
            failure.error, "command 'anonymous' of plugin nouser needs a parameter named 'user'"
        )

    def test_reservedParameterRefused(self) -> None:
        """
        A command with a parameter named C{user} that is not filled in by
        the agent (no C{needsUser}) is refused: callers could pose as
        anyone through it.
        """
        self.assertNotIn("impersonate", self.registry)
        [failure] = [f for f in self.context.plugins.failures if f.name == "poser"]
        self.assertIn("only the agent may set", failure.error)

    def test_shadowedRefused(self) -> None:
        """
        A command hidden by an instance attribute of the same name is
        refused, saying so; the plugins collected after it (C{tools}) still
        get their commands.
        """
        self.assertNotIn("status", self.registry)
        [failure] = [f for f in self.context.plugins.failures if f.name == "shadowed"]
        self.assertEqual(
            failure.error,
            "command 'status' of plugin shadowed is hidden by an instance attribute of the "
            "same name (str); rename one of them",
        )
        self.assertEqual(self.call("add", [1, 2]), 3)

    def test_collectOnce(self) -> None:
        """
        Collecting again (C{serve} after an explicit C{collect}) neither
        duplicates nor refuses anything more.
        """
        before = list(self.context.plugins.failures)
        self.registry.collect()
        self.registry.serve()
        self.assertEqual(self.context.plugins.failures, before)
        self.assertEqual(len(before), 6)


class CallTests(RegistryTestCase):
    """
    L{CommandRegistry.call} binds the parameters, injects the caller's
    identity and origin, and runs the command.
    """

    def test_positional(self) -> None:
        """
        Parameters may be passed by position.
        """
        self.assertEqual(self.call("add", [2, 3]), 5)
        self.assertEqual(self.call("add", [2]), 2)

    def test_named(self) -> None:
        """
        Parameters may be passed by name.
        """
        self.assertEqual(self.call("add", {"b": 3, "a": 2}), 5)
        self.assertEqual(self.call("greet", {"name": "Ada"}), "Hello, Ada, from n1!")

    def assertInvalidParams(self, name: str, params: Any, fragment: str) -> RPCError:
        error = self.callError(name, params)
        self.assertEqual(error.code, INVALID_PARAMS)
        self.assertIn(fragment, error.message)
        return error

    def test_missingParameter(self) -> None:
        """
        A missing parameter gives INVALID_PARAMS naming it, with the
        command's signature.
        """
        error = self.assertInvalidParams("greet", [], "missing a required argument: 'name'")
        self.assertTrue(error.message.startswith("greet(name: str) -> str: "), error.message)
        self.assertEqual(error.data, {"signature": "(name: str) -> str"})
        self.assertInvalidParams("add", {"b": 1}, "'a'")

    def test_extraParameter(self) -> None:
        """
        Too many positional parameters give INVALID_PARAMS.
        """
        self.assertInvalidParams("greet", ["Ada", "Bob"], "too many positional arguments")

    def test_unknownParameter(self) -> None:
        """
        An unknown named parameter gives INVALID_PARAMS naming it.
        """
        self.assertInvalidParams("greet", {"name": "Ada", "title": "Dr"}, "'title'")

    def test_needsUser(self) -> None:
        """
        A C{needsUser} command gets the caller's identity from the call
        context, whether the other parameters come by position or by name,
        and wherever C{user} is in its signature.
        """
        alice = CallContext(user="alice")
        self.assertEqual(self.call("whoami", [], alice), {"user": "alice", "node": "n1"})
        self.assertEqual(self.call("whoami", {}), {"user": None, "node": "n1"})
        self.assertEqual(self.call("sign", ["hi"], alice), "hi -- alice")
        self.assertEqual(self.call("sign", {"text": "hi"}, alice), "hi -- alice")

    def test_callerMayNotSetUser(self) -> None:
        """
        A caller cannot pass C{user} to a C{needsUser} command, by name or
        by an extra position.
        """
        alice = CallContext(user="alice")
        error = self.callError("whoami", {"user": "mallory"}, alice)
        self.assertEqual(error.code, INVALID_PARAMS)
        self.assertEqual(error.message, "parameter 'user' is set by the agent, not the caller")
        error = self.callError("sign", ["hi", "mallory"], alice)
        self.assertEqual(error.code, INVALID_PARAMS)
        self.assertIn("too many positional arguments", error.message)

    def test_needsQueue(self) -> None:
        """
        A C{needsQueue} command gets where the call came from; the caller
        cannot set it.
        """
        self.assertEqual(self.call("origin", [], CallContext(queue="q.shared")), "q.shared")
        error = self.callError("origin", {"queue": "elsewhere"}, CallContext(queue="q"))
        self.assertEqual(error.code, INVALID_PARAMS)
        self.assertIn("'queue'", error.message)

    def test_blocking(self) -> None:
        """
        A C{blocking} command runs through the worker pool; others do not.
        """
        self.assertEqual(self.call("greet", ["Ada"]), "Hello, Ada, from n1!")
        self.assertEqual(self.workers.jobs, [])
        self.assertEqual(self.call("nap", [0]), "n1")
        [job] = self.workers.jobs
        self.assertEqual(job, self.context.plugins.get("hello").nap)  # type: ignore[attr-defined]

    def test_deferred(self) -> None:
        """
        A command that returns a Deferred answers when it fires.
        """
        d = self.registry.call("slowEcho", ["v", 5], CallContext())
        self.assertNoResult(d)
        self.clock.advance(5)
        self.assertEqual(self.successResultOf(d), "v")

    def test_methodNotFound(self) -> None:
        """
        An unknown command gives METHOD_NOT_FOUND naming it and the node.
        """
        error = self.callError("nope")
        self.assertEqual(error.code, METHOD_NOT_FOUND)
        self.assertEqual(error.message, "no command 'nope' on node n1")


class ErrorTests(RegistryTestCase):
    """
    What a command raises reaches the caller as COMMAND_ERROR, without the
    traceback; the traceback goes to the log.
    """

    def assertCommandError(self, error: RPCError, message: str, type: str) -> None:
        self.assertEqual(error.code, COMMAND_ERROR)
        self.assertEqual(error.message, message)
        self.assertEqual(error.data["type"], type)
        self.assertEqual(error.data["node"], "n1")

    def test_raises(self) -> None:
        """
        A command raising ValueError gives C{"ValueError: message"} with the
        type in C{data} and no traceback; the error is logged.
        """
        error = self.callError("fail", ["boom"])
        self.assertCommandError(error, "ValueError: boom", "ValueError")
        self.assertNotIn("traceback", error.data)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_deferredFails(self) -> None:
        """
        A Deferred that fails is a command error too.
        """
        d = self.registry.call("failLater", [], CallContext())
        self.clock.advance(1)
        error = self.failureResultOf(d, RPCError).value
        assert isinstance(error, RPCError)
        self.assertCommandError(error, "KeyError: 'gone'", "KeyError")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_blockingFails(self) -> None:
        """
        A blocking command that raises in the pool is a command error too.
        """
        error = self.callError("failBlocking")
        self.assertCommandError(error, "OSError: disk on fire", "OSError")
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_rpcErrorPassesThrough(self) -> None:
        """
        A command raising an L{RPCError} answers with exactly that error,
        and nothing is logged as a failure.
        """
        error = self.callError("deny")
        self.assertEqual(error, RPCError(PERMISSION_DENIED, "not you", {"why": "test"}))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_noJSONForm(self) -> None:
        """
        A result that has no JSON form (a set, NaN) gives INTERNAL_ERROR
        naming the command.
        """
        error = self.callError("badResult")
        self.assertEqual(error.code, INTERNAL_ERROR)
        self.assertIn("command 'badResult' returned a value with no JSON form", error.message)
        error = self.callError("echo", [float("nan")])
        self.assertEqual(error.code, INTERNAL_ERROR)


class DebugErrorTests(RegistryTestCase):
    """
    With C{[core] debug}, command errors carry the traceback.
    """

    debug = True

    def test_traceback(self) -> None:
        """
        The traceback is in C{data.traceback}, down to the line that raised.
        """
        error = self.callError("fail", ["boom"])
        self.assertEqual(error.code, COMMAND_ERROR)
        self.assertIn("raise ValueError(message)", error.data["traceback"])
        self.assertIn("ValueError: boom", error.data["traceback"])
        self.flushLoggedErrors(ValueError)


def methodJSON(name: str, help: str, type: str = "NORMAL") -> dict[str, Any]:
    """
    @return: a command description as another node announces it.
    """
    return {
        "name": name,
        "help": help,
        "signature": "()",
        "parameters": [],
        "type": type,
        "target": "remote",
        "plugin": "remote",
        "needsUser": False,
        "needsQueue": False,
        "blocking": False,
    }


class BuiltinTests(RegistryTestCase):
    """
    The built-in commands C{ping}, C{getMethods}, C{getNodes} and
    C{getCommandSchema}.
    """

    def announce(self, node: str, methods: list[dict[str, Any]]) -> None:
        self.directory.handle(
            NodeAnnounce(
                node=node,
                incarnation="i1",
                version="0.1",
                commands=[m["name"] for m in methods],
                methods=methods,
                interval=10.0,
            )
        )

    def test_ping(self) -> None:
        """
        C{ping} answers with the node id, the clock's time and the version.
        """
        self.clock.advance(12.5)
        self.assertEqual(self.call("ping"), {"node": "n1", "time": 12.5, "version": __version__})

    def populate(self) -> None:
        """
        Node n2 provides C{greet} (as n1 does) and C{remoteOnly}; node n9
        provided C{ghostOnly} and C{greet} but died.
        """
        self.announce(
            "n2",
            [
                methodJSON("greet", "n2's idea of greet"),
                methodJSON("remoteOnly", "Only on n2.", "CUMULATIVE"),
            ],
        )
        self.announce("n9", [methodJSON("ghostOnly", "Died."), methodJSON("greet", "n9 greet")])
        self.clock.advance(20)
        self.directory.handle(NodeStatus(node="n2", incarnation="i1", sequence=1, interval=10))
        self.clock.advance(12)  # n9 is dead (30 s without events), n2 alive

    def test_getMethods(self) -> None:
        """
        C{getMethods} lists this node's commands and those other nodes
        announced, each with its providers; a command is described by this
        node if it has it; dead nodes are left out.
        """
        self.populate()
        methods = {m["name"]: m for m in self.call("getMethods")}
        self.assertEqual(
            sorted(methods), sorted(BUILTINS + HELLO + list(self.localTools()) + ["remoteOnly"])
        )
        self.assertEqual(methods["greet"]["nodes"], ["n1", "n2"])
        self.assertEqual(methods["greet"]["help"], "Greet NAME, from the node that answers.")
        self.assertEqual(methods["greet"]["plugin"], "hello")
        self.assertEqual(
            methods["remoteOnly"],
            {**methodJSON("remoteOnly", "Only on n2.", "CUMULATIVE"), "nodes": ["n2"]},
        )
        self.assertEqual(methods["ping"]["nodes"], ["n1"])

    def localTools(self) -> list[str]:
        return [
            "add",
            "badResult",
            "deny",
            "failBlocking",
            "failLater",
            "inherited",
            "origin",
            "renamed",
            "sign",
        ]

    def test_getMethodsPattern(self) -> None:
        """
        With a pattern, only the commands whose name contains it are
        listed, local and remote alike.
        """
        self.populate()
        self.assertEqual([m["name"] for m in self.call("getMethods", ["Only"])], ["remoteOnly"])
        self.assertEqual(
            [m["name"] for m in self.call("getMethods", {"pattern": "get"})],
            ["getCommandSchema", "getMethods", "getNodes"],
        )
        self.assertEqual(self.call("getMethods", ["nothing like it"]), [])

    def test_getNodes(self) -> None:
        """
        C{getNodes} lists the nodes of the directory, dead ones included,
        with their state and commands, and this node even before its own
        announce came back.
        """
        self.populate()
        nodes = self.call("getNodes")
        self.assertEqual(
            [(n["node"], n["state"]) for n in nodes],
            [("n1", "alive"), ("n2", "alive"), ("n9", "dead")],
        )
        self.assertEqual(nodes[1]["commands"], ["greet", "remoteOnly"])
        self.assertEqual(nodes[2]["commands"], ["ghostOnly", "greet"])
        self.assertIn("ping", nodes[0]["commands"])

    def test_getCommandSchema(self) -> None:
        """
        C{getCommandSchema} is an OpenRPC 1.2.6 document with one method per
        command of this node; parameters and results get a schema from
        their annotations, and parameters with defaults are optional.
        """
        schema = self.call("getCommandSchema")
        self.assertEqual(schema["openrpc"], "1.2.6")
        self.assertEqual(schema["info"], {"title": "clacks-agent n1", "version": __version__})
        methods = {m["name"]: m for m in schema["methods"]}
        self.assertEqual(list(methods), self.registry.commandNames())
        self.assertEqual(
            methods["greet"],
            {
                "name": "greet",
                "description": "Greet NAME, from the node that answers.",
                "paramStructure": "either",
                "params": [{"name": "name", "required": True, "schema": {"type": "string"}}],
                "result": {"name": "result", "schema": {"type": "string"}},
                "x-clacks-type": "NORMAL",
                "x-clacks-target": "hello",
            },
        )
        self.assertEqual(
            methods["add"]["params"],
            [
                {"name": "a", "required": True, "schema": {"type": "integer"}},
                {"name": "b", "required": False, "schema": {"type": "integer"}},
            ],
        )
        self.assertEqual(methods["echo"]["params"][0]["schema"], {})
        self.assertEqual(methods["whoami"]["params"], [])
        self.assertEqual(methods["whoami"]["result"]["schema"], {"type": "object"})
        self.assertEqual([p["name"] for p in methods["sign"]["params"]], ["text"])
        self.assertEqual(
            methods["findFriend"]["result"]["schema"],
            {"anyOf": [{"type": "string"}, {"type": "null"}]},
        )
        self.assertEqual(methods["findFriend"]["x-clacks-type"], "FIRSTRESULT")
        self.assertEqual(
            methods["getMethods"]["params"][0]["schema"],
            {"anyOf": [{"type": "string"}, {"type": "null"}]},
        )
        self.assertEqual(
            methods["helloNodes"]["result"]["schema"],
            {"type": "array", "items": {"type": "string"}},
        )


class NoDirectoryTests(RegistryTestCase):
    """
    Without a node directory the built-ins know only this node.
    """

    plugins = {"CommandRegistry": CommandRegistry, "hello": HelloPlugin}

    def test_getNodes(self) -> None:
        """
        C{getNodes} lists this node alone, alive, with its commands.
        """
        self.assertEqual(
            self.call("getNodes"),
            [{"node": "n1", "state": "alive", "commands": sorted(BUILTINS + HELLO)}],
        )

    def test_getMethods(self) -> None:
        """
        C{getMethods} lists this node's commands, provided by this node.
        """
        methods = self.call("getMethods")
        self.assertEqual([m["name"] for m in methods], sorted(BUILTINS + HELLO))
        self.assertEqual({tuple(m["nodes"]) for m in methods}, {("n1",)})


class CommandTypeTests(SynchronousTestCase):
    """
    C{@Command} records the command's type, given as the enum or its name.
    """

    def test_typeByName(self) -> None:
        """
        A type given as a string, in any case, is the enum member.
        """
        from clacks.common.components.command import commandOptions

        @Command(__help__="x", type="cumulative")
        def f() -> None:
            pass

        options = commandOptions(f)
        assert options is not None
        self.assertIs(options.type, CUMULATIVE)
        self.assertIsNot(options.type, FIRSTRESULT)
        self.assertRaises(ValueError, Command, __help__="x", type="sometimes")
