# -*- test-case-name: tests.test_client_proxy -*-
"""
A minimal JSON-RPC-over-AMQP client for clacks domains.

    client = AMQPClient("amqp://guest:guest@127.0.0.1/", "org.clacks")
    yield client.start()
    nodes = yield client.call("getNodes")
    yield client.call("echo", "hi", node="web1")       # that node
    everyone = yield client.call("ping", all=True)      # every node
    yield client.stop()
"""

from __future__ import annotations

import socket
import uuid
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred

from clacks._reactor import maybeGlobalReactor
from clacks.agent.config import AMQPConfig, parseBrokerURL
from clacks.common.jsonrpc import Request, RPCError
from clacks.handlers.amqp.bus import AMQPBus
from clacks.handlers.amqp.rpc import TARGET_HEADER, RPCCaller
from clacks.handlers.amqp.topology import ANY_NODE_KEY, nodeKey

#: A failed call: code, message and data as the agent sent them.
CallError = RPCError


def _unwrap(response: Any) -> Any:
    if response.error is not None:
        raise response.error
    return response.result


class AMQPClient:
    """
    Calls commands of a clacks domain over AMQP.

    @param url: the broker, C{amqp://user:password@host:port/vhost}; the
        user is the caller's identity for commands that need it.
    @param domain: the domain (C{core.domain} of its agents).
    @param timeout: default seconds a call may take.
    @param reactor: the reactor; the global one by default.
    """

    def __init__(
        self,
        url: str,
        domain: str,
        timeout: float = 30.0,
        reactor: Any = None,
        connectionName: str | None = None,
        reconnect: bool = True,
    ) -> None:
        reactor = maybeGlobalReactor(reactor)
        self._reactor = reactor
        self.domain = domain
        self.timeout = timeout
        broker = parseBrokerURL(url)
        name = connectionName or f"clacks-client@{socket.gethostname()}:{uuid.uuid4().hex[:6]}"
        config = AMQPConfig(
            url=broker,
            heartbeat=30,
            publishTimeout=timeout,
            reconnectInitial=0.2,
            reconnectMax=5.0 if reconnect else 0.2,
        )
        self.bus = AMQPBus(reactor, broker, config, topology=None, connectionName=name)
        self._caller = RPCCaller(self.bus, f"{domain}.commands", reactor)

    @inlineCallbacks
    def start(self, timeout: float | None = None) -> Any:
        """
        Connect; fires when the client can call.

        @raise twisted.internet.defer.TimeoutError: if the broker could not
            be reached within C{timeout} (default: the client's timeout).
        """
        self._caller.start()
        self.bus.start()
        yield self.bus.whenReady().addTimeout(timeout or self.timeout, self._reactor)

    @inlineCallbacks
    def stop(self) -> Any:
        self._caller.stop()
        yield self.bus.stop()

    def call(
        self,
        method: str,
        *args: Any,
        node: str | None = None,
        all: bool = False,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Deferred[Any]:
        """
        Call C{method} with positional C{args} or keyword C{kwargs} (not
        both).

        @param node: run on this node only.
        @param all: run on every node; the result is C{{"results": {node:
            result}, "errors": {node: error}, "missing": [nodes that did not
            answer in time]}}.
        @param timeout: seconds to wait for the answer.
        @return: a Deferred with the result, or failing with L{CallError}.
        """
        if args and kwargs:
            raise TypeError("pass the parameters by position or by name, not both")
        return self.callWithParams(
            method, dict(kwargs) if kwargs else list(args), node=node, all=all, timeout=timeout
        )

    def callWithParams(
        self,
        method: str,
        params: list[Any] | dict[str, Any],
        node: str | None = None,
        all: bool = False,
        timeout: float | None = None,
    ) -> Deferred[Any]:
        """
        Call C{method} with C{params} given as they go on the wire: a list
        (by position) or a dict (by name).  Unlike L{call}, parameters
        named C{node}, C{all}, C{timeout} or C{method} can be passed.

        @see: L{call} for C{node}, C{all} and C{timeout}.
        @return: a Deferred with the result, or failing with L{CallError}.
        """
        if node is not None and all:
            raise TypeError("node= and all=True exclude each other")
        request = Request(method=method, params=params, id=1)
        routingKey = nodeKey(node) if node is not None else ANY_NODE_KEY
        headers = {TARGET_HEADER: "all"} if all else {}

        d: Deferred[Any] = maybeDeferred(
            self._caller.call, routingKey, request, timeout or self.timeout, headers
        )
        return d.addCallback(_unwrap)


__all__ = ["AMQPClient", "CallError"]
