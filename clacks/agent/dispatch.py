# -*- test-case-name: tests.test_dispatch -*-
"""
Where a call runs: here, on one other node, on every node, or on every
provider of a FIRSTRESULT or CUMULATIVE command.

The L{Dispatcher} is transport-neutral: the AMQP command server and the
HTTP handler both hand it parsed requests; it runs them locally through the
L{CommandRegistry} or remotely through an L{IRemoteCaller}.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface

from clacks.agent.commands import CallContext, CommandRegistry
from clacks.common.components.command import CommandType
from clacks.common.jsonrpc import (
    METHOD_NOT_FOUND,
    NODE_UNAVAILABLE,
    TIMEOUT,
    Request,
    RPCError,
)

#: Seconds a call may take when the caller set no deadline.
DEFAULT_TIMEOUT = 30.0


@attrs.frozen
class Target:
    """
    Where a call should run.

    @ivar kind: C{"any"} (one node that provides the command), C{"local"}
        (this node, no forwarding), C{"node"} (the node named C{node}) or
        C{"all"} (every node of the domain).
    """

    kind: str
    node: str | None = None


ANY = Target("any")
LOCAL = Target("local")
ALL = Target("all")


def onNode(node: str) -> Target:
    return Target("node", node)


@attrs.frozen
class AllNodesResult:
    """
    The answer of a call to all nodes.

    @ivar results: each answering node's result.
    @ivar errors: each failing node's error.
    @ivar missing: the nodes that were expected but did not answer in time.
    """

    results: dict[str, Any]
    errors: dict[str, RPCError]
    missing: list[str]

    def toJSON(self) -> dict[str, Any]:
        return {
            "results": self.results,
            "errors": {node: e.toJSON() for node, e in self.errors.items()},
            "missing": self.missing,
        }


class IRemoteCaller(Interface):
    """
    Runs calls on other nodes of the domain (over the bus).
    """

    def callNode(node: str, request: Request, context: CallContext, timeout: float) -> Any:
        """
        Run C{request} on C{node}, there and nowhere else.

        @return: a Deferred with the result, or failing with an L{RPCError}
            (L{TIMEOUT} if no answer came in time).
        """

    def callAll(request: Request, context: CallContext, expected: set[str], timeout: float) -> Any:
        """
        Run C{request} on every node.

        @param expected: the nodes that should answer; the call ends when
            all of them did, or at the timeout.
        @return: a Deferred with an L{AllNodesResult}.
        """


def combine(results: list[Any]) -> Any:
    """
    The answer of a CUMULATIVE command from its providers' answers: lists
    are concatenated, objects merged (in node order), numbers added;
    C{null} answers are left out; anything else is returned as a list.
    """
    values = [r for r in results if r is not None]
    if not values:
        return None
    if all(isinstance(v, list) for v in values):
        return [item for v in values for item in v]
    if all(isinstance(v, dict) for v in values):
        merged: dict[str, Any] = {}
        for v in values:
            merged.update(v)
        return merged
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return sum(values)
    return values


class Dispatcher:
    """
    @param registry: runs commands here.
    @param node: this node's id.
    @param directory: the domain's node directory (C{None}: only this node).
    @param remote: reaches other nodes (C{None}: standalone).
    @param clock: for deadlines.
    """

    log = Logger()

    def __init__(
        self,
        registry: CommandRegistry,
        node: str,
        directory: Any,
        remote: IRemoteCaller | None,
        clock: Any,
        choose: Callable[[list[str]], str] = random.choice,
    ) -> None:
        self.registry = registry
        self.node = node
        self._directory = directory
        self._remote = remote
        self._clock = clock
        self._choose = choose

    def _timeout(self, context: CallContext) -> float:
        if context.deadline is None:
            return DEFAULT_TIMEOUT
        # Deadlines are wall-clock epoch seconds; the reactor's seconds()
        # is time.time() (a Clock in tests).
        remaining = context.deadline - self._clock.seconds()
        if remaining <= 0:
            raise RPCError(TIMEOUT, "the call's deadline passed before it could be forwarded")
        return remaining

    def _providers(self, method: str) -> list[str]:
        nodes = set(self._directory.providers(method)) if self._directory is not None else set()
        if method in self.registry:
            nodes.add(self.node)
        else:
            nodes.discard(self.node)
        return sorted(nodes)

    def _type(self, method: str) -> CommandType:
        description = self.registry.describe(method)
        if description is not None:
            return description.type
        if self._directory is not None:
            for info in self._directory.reachable():
                for m in info.methods:
                    if m.get("name") == method:
                        try:
                            return CommandType(m.get("type", "NORMAL"))
                        except ValueError:
                            return CommandType.NORMAL
        return CommandType.NORMAL

    def dispatch(
        self, request: Request, context: CallContext, target: Target = ANY
    ) -> Deferred[Any]:
        """
        Run C{request} where C{target} says.

        @return: a Deferred with the JSON-ready result, or failing with an
            L{RPCError}.
        """
        return maybeDeferred(self._dispatch, request, context, target)

    def _dispatch(self, request: Request, context: CallContext, target: Target) -> Any:
        if target.kind == "local" or (target.kind == "node" and target.node == self.node):
            return self.registry.call(request.method, request.params, context)
        if target.kind == "node":
            return self._onNode(str(target.node), request, context)
        if target.kind == "all":
            return self._onAll(request, context).addCallback(AllNodesResult.toJSON)
        kind = self._type(request.method)
        if kind is CommandType.NORMAL:
            return self._onAny(request, context)
        return self._onProviders(request, context, kind)

    def _needRemote(self) -> IRemoteCaller:
        if self._remote is None:
            raise RPCError(NODE_UNAVAILABLE, "this agent is standalone: no other nodes to call")
        return self._remote

    def _onNode(self, node: str, request: Request, context: CallContext) -> Deferred[Any]:
        if self._directory is not None:
            info = self._directory.get(node)
            if info is None or info.state.value == "dead":
                raise RPCError(
                    NODE_UNAVAILABLE,
                    f"node {node!r} is {'dead' if info else 'not in the domain'}",
                    {"node": node},
                )
        result: Deferred[Any] = self._needRemote().callNode(
            node, request, context, self._timeout(context)
        )
        return result

    def _onAll(self, request: Request, context: CallContext) -> Deferred[AllNodesResult]:
        expected = {i.node for i in self._directory.reachable()} if self._directory else set()
        expected.add(self.node)
        result: Deferred[AllNodesResult] = self._needRemote().callAll(
            request, context, expected, self._timeout(context)
        )
        return result

    def _onAny(self, request: Request, context: CallContext) -> Any:
        if request.method in self.registry:
            return self.registry.call(request.method, request.params, context)
        providers = self._providers(request.method)
        if not providers:
            raise RPCError(METHOD_NOT_FOUND, f"no node of the domain provides {request.method!r}")
        return self._onNode(self._choose(providers), request, context)

    @inlineCallbacks
    def _onProviders(self, request: Request, context: CallContext, kind: CommandType) -> Any:
        providers = self._providers(request.method)
        if not providers:
            raise RPCError(METHOD_NOT_FOUND, f"no node of the domain provides {request.method!r}")
        if any(node != self.node for node in providers):
            # Refuse before any provider starts (this node's included), not
            # halfway through the list with some calls already running.
            self._needRemote()
            self._timeout(context)
        calls = [
            self.registry.call(request.method, request.params, context)
            if node == self.node
            else self._onNode(node, request, context)
            for node in providers
        ]
        if kind is CommandType.FIRSTRESULT:
            return (yield _firstNonNull(calls))
        outcomes = yield DeferredList(calls, consumeErrors=True)
        results = [value for ok, value in outcomes if ok]
        if not results:
            raise outcomes[0][1].value
        return combine(results)


def _firstNonNull(calls: list[Deferred[Any]]) -> Deferred[Any]:
    """
    @return: a Deferred with the first non-null result of C{calls}; C{None}
        if none is non-null but some answered; the first error if all
        failed.
    """
    done: Deferred[Any] = Deferred()
    errors: list[Failure] = []
    answered = 0
    left = len(calls)

    def settle() -> None:
        if done.called or left:
            return
        if answered or not errors:
            done.callback(None)
        else:
            done.errback(errors[0])

    def ok(result: Any) -> None:
        nonlocal left, answered
        left -= 1
        answered += 1
        if result is not None and not done.called:
            done.callback(result)
        settle()

    def failed(failure: Failure) -> None:
        nonlocal left
        left -= 1
        errors.append(failure)
        settle()

    for call in calls:
        call.addCallbacks(ok, failed)
    return done


__all__ = [
    "ALL",
    "ANY",
    "AllNodesResult",
    "DEFAULT_TIMEOUT",
    "Dispatcher",
    "IRemoteCaller",
    "LOCAL",
    "Target",
    "combine",
    "onNode",
]
