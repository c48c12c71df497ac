# -*- test-case-name: tests.test_commands -*-
"""
The command registry: the commands of all plugins of one agent, and how to
run one of them here.

Routing a call to other nodes (any node, one node, all nodes, FIRSTRESULT
and CUMULATIVE) is L{clacks.agent.dispatch}'s job; this module runs calls
locally: it binds the parameters to the method's signature, runs it (in
the thread pool if it blocks), and turns every failure into a JSON-RPC
error.
"""

from __future__ import annotations

import inspect
import traceback
import typing
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clacks import __version__
from clacks.agent.security import Security
from clacks.common.components._discovery import describeException
from clacks.common.components.command import (
    NORMAL,
    Command,
    CommandOptions,
    CommandType,
    commandOptions,
)
from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler
from clacks.common.jsonrpc import (
    COMMAND_ERROR,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    PERMISSION_DENIED,
    RPCError,
    dumps,
)
from clacks.interfaces import IAgentContext

#: Result types that always have a JSON form (floats do not: NaN).
_ALWAYS_JSON = frozenset([str, int, bool])

#: Parameters the agent fills in; callers may not pass them.
INJECTED = ("user", "queue")


@attrs.frozen
class CallContext:
    """
    Who called, and how.

    @ivar user: the caller's verified identity (broker-validated AMQP
        C{user-id}, or the authenticated HTTP user); C{None} if anonymous.
    @ivar queue: where the call came from (a queue name, or C{"http"}).
    @ivar deadline: the caller's deadline (epoch seconds), if any.
    @ivar requestId: the request's message id, for logs.
    """

    user: str | None = None
    queue: str | None = None
    deadline: float | None = None
    requestId: str | None = None


@attrs.frozen
class CommandDescription:
    """
    One command, as C{getMethods} shows it and NodeAnnounce carries it.
    """

    name: str
    help: str
    signature: str
    parameters: tuple[str, ...]
    type: CommandType
    target: str
    plugin: str
    needsUser: bool = False
    needsQueue: bool = False
    blocking: bool = False

    def toJSON(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "help": self.help,
            "signature": self.signature,
            "parameters": list(self.parameters),
            "type": self.type.value,
            "target": self.target,
            "plugin": self.plugin,
            "needsUser": self.needsUser,
            "needsQueue": self.needsQueue,
            "blocking": self.blocking,
        }

    @classmethod
    def fromJSON(cls, value: Mapping[str, Any]) -> CommandDescription:
        return cls(
            name=str(value["name"]),
            help=str(value.get("help", "")),
            signature=str(value.get("signature", "()")),
            parameters=tuple(value.get("parameters", ())),
            type=CommandType(value.get("type", "NORMAL")),
            target=str(value.get("target", "core")),
            plugin=str(value.get("plugin", "")),
            needsUser=bool(value.get("needsUser")),
            needsQueue=bool(value.get("needsQueue")),
            blocking=bool(value.get("blocking")),
        )


@attrs.frozen
class _Entry:
    description: CommandDescription
    method: Callable[..., Any]
    signature: inspect.Signature
    #: (fewest, most) positional arguments when every parameter is a plain
    #: positional-or-keyword one; C{None} otherwise.
    arity: tuple[int, int] | None = attrs.field(default=None, eq=False)


def _arity(signature: inspect.Signature) -> tuple[int, int] | None:
    """
    @return: how many positional arguments C{signature} takes, fewest and
        most, if all its parameters are positional-or-keyword (then any
        count in between binds, by position, to C{args} as given).
    """
    parameters = list(signature.parameters.values())
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in parameters):
        return None
    required = sum(1 for p in parameters if p.default is inspect.Parameter.empty)
    return required, len(parameters)


def _publicSignature(signature: inspect.Signature, options: CommandOptions) -> inspect.Signature:
    hidden = {n for n, flag in (("user", options.needsUser), ("queue", options.needsQueue)) if flag}
    return signature.replace(
        parameters=[p for p in signature.parameters.values() if p.name not in hidden]
    )


def _schema(annotation: Any) -> dict[str, Any]:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return {}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if annotation in simple:
        return {"type": simple[annotation]}
    if annotation is type(None):
        return {"type": "null"}
    if origin in (list, tuple) or annotation in (list, tuple):
        return {"type": "array", "items": _schema(args[0]) if args else {}}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if args and (origin is typing.Union or str(origin) == "<class 'types.UnionType'>"):
        return {"anyOf": [_schema(a) for a in args]}
    return {}


@implementer(IInterfaceHandler)
class CommandRegistry(Plugin):
    """
    Collects the C{@Command} methods of every plugin when the agent starts
    and runs them.  It is a plugin itself (priority 0, so it starts first)
    and provides the built-in commands C{ping}, C{getMethods}, C{getNodes}
    and C{getCommandSchema}.

    A command without C{__help__}, or with the name of a command another
    plugin already provides, is refused: logged with what to fix and listed
    among the failed plugins.
    """

    _priority_ = 0
    log = Logger()

    def __init__(self, context: IAgentContext) -> None:
        super().__init__(context)
        self._commands: dict[str, _Entry] = {}
        self._collected = False
        self.security = Security(context.config, context.reactor, context.workers.run)

    # Collection

    def serve(self) -> None:
        self.collect()

    def stop(self) -> None:
        pass

    def collect(self) -> None:
        """
        Register the commands of every plugin the agent loaded (once).
        """
        if self._collected:
            return
        self._collected = True
        for pluginName, plugin in self.context.plugins:
            self.addPlugin(pluginName, plugin)

    def addPlugin(self, pluginName: str, plugin: Any) -> None:
        """
        Register the C{@Command} methods of C{plugin}.
        """
        for attribute in sorted(dir(type(plugin))):
            options = commandOptions(getattr(type(plugin), attribute, None))
            if options is None:
                continue
            target = getattr(plugin, "_target_", "core")
            method = getattr(plugin, attribute)
            if not callable(method):
                # The instance set an attribute of the command's name.
                self._refuse(
                    pluginName,
                    f"command {attribute!r} of plugin {pluginName} is hidden by an instance "
                    f"attribute of the same name ({type(method).__name__}); rename one of them",
                )
                continue
            self.add(method, options, pluginName, target)

    def add(
        self,
        method: Callable[..., Any],
        options: CommandOptions,
        pluginName: str,
        target: str = "core",
    ) -> None:
        name = options.name or method.__name__
        where = f"command {name!r} of plugin {pluginName}"
        if not options.help or not options.help.strip():
            self._refuse(
                pluginName, f'{where} has no help: give it @Command(__help__="what it does")'
            )
            return
        existing = self._commands.get(name)
        if existing is not None:
            self._refuse(
                pluginName,
                f"{where} clashes with the command of plugin {existing.description.plugin}; "
                "rename one of them with @Command(name=...)",
            )
            return
        try:
            signature = inspect.signature(method, eval_str=True)
        except Exception:
            # Annotations that cannot be resolved only cost the schema.
            signature = inspect.signature(method)
        missing = [
            p
            for p, flag in (("user", options.needsUser), ("queue", options.needsQueue))
            if flag and p not in signature.parameters
        ]
        if missing:
            self._refuse(pluginName, f"{where} needs a parameter named {missing[0]!r}")
            return
        reserved = [
            p
            for p, flag in (("user", options.needsUser), ("queue", options.needsQueue))
            if not flag and p in signature.parameters
        ]
        if reserved:
            # Otherwise a caller could set it and pose as someone else.
            self._refuse(
                pluginName,
                f"{where} has a parameter named {reserved[0]!r}, which only the agent may "
                f"set: use @Command(needs{reserved[0].capitalize()}=True) or rename it",
            )
            return
        public = _publicSignature(signature, options)
        description = CommandDescription(
            name=name,
            help=options.help.strip(),
            signature=str(public),
            parameters=tuple(public.parameters),
            type=options.type,
            target=target,
            plugin=pluginName,
            needsUser=options.needsUser,
            needsQueue=options.needsQueue,
            blocking=options.blocking,
        )
        self._commands[name] = _Entry(description, method, signature, _arity(signature))

    def _refuse(self, pluginName: str, error: str) -> None:
        self.context.plugins.reportProblem(pluginName, "register", error)

    # Catalogue

    def commandNames(self) -> list[str]:
        return sorted(self._commands)

    def descriptions(self) -> list[CommandDescription]:
        return [self._commands[n].description for n in sorted(self._commands)]

    def describe(self, name: str) -> CommandDescription | None:
        entry = self._commands.get(name)
        return entry.description if entry else None

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    # Running

    def call(
        self, name: str, params: list[Any] | dict[str, Any], context: CallContext
    ) -> Deferred[Any]:
        """
        Run command C{name} here.

        @return: a Deferred with the JSON-ready result, or failing with an
            L{RPCError}: method not found, invalid params (naming the
            parameter), or the command's own error.
        """
        return maybeDeferred(self._call, name, params, context)

    def _call(self, name: str, params: Any, context: CallContext) -> Deferred[Any]:
        # Every call comes through here: plain callbacks, no generator.
        entry = self._commands.get(name)
        if entry is None:
            raise RPCError(METHOD_NOT_FOUND, f"no command {name!r} on node {self._node}")
        description = entry.description
        if not self.security.allows(context.user, name):
            raise RPCError(
                PERMISSION_DENIED,
                f"user {context.user or '(anonymous)'} may not call {name!r} (ACL of node "
                f"{self._node})",
                {"user": context.user, "command": name, "node": self._node},
            )
        args, kwargs = self._bind(entry, params, context)
        if description.blocking:
            d: Deferred[Any] = self.context.workers.run(entry.method, *args, **kwargs)
        else:
            d = maybeDeferred(entry.method, *args, **kwargs)
        return d.addCallbacks(
            self._checkResult,
            self._commandFailed,
            callbackArgs=(name,),
            errbackArgs=(name, context),
        )

    def _commandFailed(self, failure: Failure, name: str, context: CallContext) -> Any:
        try:
            failure.raiseException()
        except RPCError:
            raise
        except Exception as e:
            self.log.failure(
                "Command {command} failed (user {user}, request {request})",
                command=name,
                user=context.user,
                request=context.requestId,
            )
            data: dict[str, Any] = {"type": type(e).__name__, "node": self._node}
            if self.context.config.core.debug:
                data["traceback"] = traceback.format_exc()
            raise RPCError(COMMAND_ERROR, describeException(e), data) from None

    def _checkResult(self, result: Any, name: str) -> Any:
        if result is None or type(result) in _ALWAYS_JSON:
            return result
        try:
            dumps(result)
        except (TypeError, ValueError) as e:
            self.log.error(
                "Command {command} returned a value with no JSON form: {error}",
                command=name,
                error=describeException(e),
            )
            raise RPCError(
                INTERNAL_ERROR, f"command {name!r} returned a value with no JSON form: {e}"
            ) from None
        return result

    def _bind(
        self, entry: _Entry, params: Any, context: CallContext
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        description = entry.description
        injected: dict[str, Any] = {}
        if description.needsUser:
            injected["user"] = context.user
        if description.needsQueue:
            injected["queue"] = context.queue
        if isinstance(params, dict):
            clash = sorted(set(params) & set(injected))
            if clash:
                raise RPCError(
                    INVALID_PARAMS, f"parameter {clash[0]!r} is set by the agent, not the caller"
                )
        try:
            if not injected and not isinstance(params, dict):
                # The common case, on every call's path: positional
                # parameters of a plain signature bind as they are (what
                # Signature.bind would return, without its cost); anything
                # else, or a wrong count (for the message), is bound.
                arity = entry.arity
                if arity is not None and arity[0] <= len(params) <= arity[1]:
                    return tuple(params), {}
                bound = entry.signature.bind(*params)
                return bound.args, bound.kwargs
            if isinstance(params, dict):
                args: tuple[Any, ...] = ()
                kwargs = {**params, **injected}
            else:
                # Positional params fill the parameters the caller sees; the
                # injected ones take their own places, wherever they are in
                # the method's signature (C{def f(self, user, name)}).
                public = entry.signature.replace(
                    parameters=[
                        p for p in entry.signature.parameters.values() if p.name not in injected
                    ]
                )
                bound = entry.signature.bind_partial()
                bound.arguments.update(public.bind(*params).arguments)
                bound.arguments.update(injected)
                args, kwargs = bound.args, bound.kwargs
            entry.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise RPCError(
                INVALID_PARAMS,
                f"{description.name}{description.signature}: {e}",
                {"signature": description.signature},
            ) from None
        return args, kwargs

    @property
    def _node(self) -> str:
        return self.context.config.core.id

    # Built-in commands

    def _directory(self) -> Any:
        plugins = self.context.plugins
        return plugins.get("NodeDirectory").directory if "NodeDirectory" in plugins else None

    @Command(__help__="Answer with this node's id and clock: is the agent alive?")
    def ping(self) -> dict[str, Any]:
        return {"node": self._node, "time": self.context.reactor.seconds(), "version": __version__}

    @Command(
        __help__="List the commands of every node of the domain, optionally those whose "
        "name contains PATTERN: name, signature, help, type, target and providing nodes."
    )
    def getMethods(self, pattern: str | None = None) -> list[dict[str, Any]]:
        catalogue: dict[str, dict[str, Any]] = {}
        providers: dict[str, set[str]] = {}
        directory = self._directory()
        remote = directory.nodes() if directory is not None else []
        for info in remote:
            if info.state.value == "dead":
                continue
            for method in info.methods:
                catalogue.setdefault(method["name"], dict(method))
            for name in info.commands:
                providers.setdefault(name, set()).add(info.node)
        for description in self.descriptions():
            catalogue[description.name] = description.toJSON()
            providers.setdefault(description.name, set()).add(self._node)
        result = []
        for name in sorted(catalogue):
            if pattern and pattern not in name:
                continue
            entry = dict(catalogue[name])
            entry["nodes"] = sorted(providers.get(name, ()))
            result.append(entry)
        return result

    @Command(__help__="List the nodes of the domain with their state, load and commands.")
    def getNodes(self) -> list[dict[str, Any]]:
        directory = self._directory()
        if directory is None:
            return [{"node": self._node, "state": "alive", "commands": self.commandNames()}]
        nodes = [info.asDict() for info in directory.nodes()]
        if not any(n["node"] == self._node for n in nodes):
            # Our own announce has not come back yet (or we are standalone).
            nodes.append({"node": self._node, "state": "alive", "commands": self.commandNames()})
        return sorted(nodes, key=lambda n: str(n["node"]))

    @Command(__help__="Describe every command of this node as an OpenRPC document.")
    def getCommandSchema(self) -> dict[str, Any]:
        methods = []
        for name in self.commandNames():
            entry = self._commands[name]
            description = entry.description
            public = [entry.signature.parameters[p] for p in description.parameters]
            methods.append(
                {
                    "name": name,
                    "description": description.help,
                    "paramStructure": "either",
                    "params": [
                        {
                            "name": p.name,
                            "required": p.default is inspect.Parameter.empty
                            and p.kind
                            not in (
                                inspect.Parameter.VAR_POSITIONAL,
                                inspect.Parameter.VAR_KEYWORD,
                            ),
                            "schema": _schema(p.annotation),
                        }
                        for p in public
                    ],
                    "result": {
                        "name": "result",
                        "schema": _schema(entry.signature.return_annotation),
                    },
                    "x-clacks-type": description.type.value,
                    "x-clacks-target": description.target,
                }
            )
        return {
            "openrpc": "1.2.6",
            "info": {"title": f"clacks-agent {self._node}", "version": __version__},
            "methods": methods,
        }


__all__ = ["CallContext", "CommandDescription", "CommandRegistry", "INJECTED", "NORMAL"]
