# -*- test-case-name: tests.test_client_proxy -*-
"""
Calling a clacks domain as if its commands were methods of a Python
object.

    proxy = AMQPServiceProxy("amqp://guest:guest@127.0.0.1/", "org.clacks")
    yield proxy.connect()
    yield proxy.greet("Ada")                     # any node that has it
    yield proxy.greet(name="Ada")                # parameters by name
    yield proxy.greet.on("web1")("Ada")          # that node only
    yield proxy.ping.everywhere()()              # every node: AllNodesResult
    yield proxy.nap.within(5)(1)                 # answer within 5 s
    yield proxy.greet.on("web1").within(5)("Ada")
    yield proxy["close"]()                       # a command named like an attribute
    yield proxy.close()

Every call returns a L{Deferred} that fires with the command's result or
fails with L{CallError} (its C{code} is one of L{clacks.common.jsonrpc}'s
error codes; L{clacks.common.jsonrpc.TIMEOUT} when no answer came in time).

The attribute and option surface (L{ServiceProxy}, L{Method},
L{CallOptions}, L{Call}) knows nothing of AMQP: a transport is a
L{ServiceProxy} subclass with an L{ICommandCaller.invoke} method.
L{AMQPServiceProxy} is the AMQP one, L{clacks.client.blocking.BlockingProxy}
drives it from code without a reactor.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import Interface, implementer

from clacks._reactor import maybeGlobalReactor
from clacks.agent.config import BrokerURL, parseBrokerURL
from clacks.agent.dispatch import AllNodesResult
from clacks.client.amqp import AMQPClient, CallError
from clacks.common.components._discovery import describeException
from clacks.common.events import Event, EventTypes, GenericEvent
from clacks.common.jsonrpc import INTERNAL_ERROR
from clacks.handlers.amqp.eventbus import EventBus, Subscription
from clacks.handlers.amqp.topology import DomainTopology


class ConnectionFailed(Exception):
    """
    The broker could not be reached, or refused the connection.  C{str()}
    is one line naming the broker (without password) and the reason.
    """


@attrs.frozen
class CallOptions:
    """
    Where a call goes and how long it may take.

    @ivar node: run on this node only; C{None} for any node that provides
        the command.
    @ivar everywhere: run on every node of the domain.
    @ivar timeout: seconds to wait for the answer; C{None} for the
        proxy's default.
    """

    node: str | None = None
    everywhere: bool = False
    timeout: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.node is not None and self.everywhere:
            raise TypeError("a call goes to one node or to every node, not both")
        if self.node is not None and not self.node:
            raise ValueError("the node id is empty")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(
                f"the timeout must be a positive number of seconds, not {self.timeout!r}"
            )


@attrs.frozen
class Call:
    """
    One call of a command, as a transport receives it.

    @ivar method: the command's name.
    @ivar args: positional parameters (empty if C{kwargs} are given).
    @ivar kwargs: named parameters (empty if C{args} are given).
    @ivar options: where it goes, how long it may take.
    """

    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    options: CallOptions = CallOptions()

    @property
    def params(self) -> list[Any] | dict[str, Any]:
        """
        The JSON-RPC C{params}: an object when called with names, else an
        array.
        """
        return dict(self.kwargs) if self.kwargs else list(self.args)


class ICommandCaller(Interface):
    """
    A transport that runs calls of a domain's commands.
    """

    def invoke(call: Call) -> Any:
        """
        Run C{call}.

        @return: the result, or a Deferred of it, as the transport does;
            a call with C{options.everywhere} gives an L{AllNodesResult}.
        @raise CallError: (or fail with it) if the call failed.
        """


@attrs.frozen
class Method:
    """
    A command of the domain, ready to be called: C{method(*args)} or
    C{method(**kwargs)} runs it through the proxy it came from.

    L{on}, L{everywhere} and L{within} return a copy with that option set;
    they combine (C{method.on("web1").within(5)}).
    """

    _caller: ICommandCaller = attrs.field(alias="caller")
    name: str
    options: CallOptions = CallOptions()

    def on(self, node: str) -> Method:
        """
        @return: this method, run on node C{node} only.
        @raise TypeError: if it is set to run everywhere.
        """
        return attrs.evolve(self, options=attrs.evolve(self.options, node=node))

    def everywhere(self) -> Method:
        """
        @return: this method, run on every node of the domain; its result
            is an L{AllNodesResult} (results, errors and missing nodes).
        @raise TypeError: if it is set to run on one node.
        """
        return attrs.evolve(self, options=attrs.evolve(self.options, everywhere=True))

    def within(self, seconds: float) -> Method:
        """
        @return: this method, waiting C{seconds} at most for the answer.
        """
        return attrs.evolve(self, options=attrs.evolve(self.options, timeout=float(seconds)))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """
        Run the command with positional C{args} or named C{kwargs} (not
        both).

        @raise TypeError: if both are given.
        """
        if args and kwargs:
            raise TypeError(f"{self.name}(): pass the parameters by position or by name, not both")
        return self._caller.invoke(Call(self.name, tuple(args), dict(kwargs), self.options))


@implementer(ICommandCaller)
class ServiceProxy:
    """
    The attribute surface shared by the transports: C{proxy.NAME} and
    C{proxy["NAME"]} are the L{Method} C{NAME}.  Names of the proxy's own
    attributes (C{close}, C{connect}, ...) and names starting with C{_}
    are only reachable with C{proxy["NAME"]}.

    Subclasses implement L{ICommandCaller.invoke}.
    """

    def __getattr__(self, name: str) -> Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return Method(caller=self, name=name)

    def __getitem__(self, name: str) -> Method:
        if not isinstance(name, str) or not name:
            raise KeyError(name)
        return Method(caller=self, name=name)

    def invoke(self, call: Call) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement invoke()")


def allNodesResult(value: Any) -> AllNodesResult:
    """
    @return: the answer of a call to every node (C{{"results", "errors",
        "missing"}} on the wire), with its errors as L{CallError}s.
    @raise CallError: L{clacks.common.jsonrpc.INTERNAL_ERROR} if C{value}
        does not have that form.
    """
    if not isinstance(value, Mapping) or not isinstance(value.get("results", {}), Mapping):
        raise CallError(INTERNAL_ERROR, f"not the answer of a call to all nodes: {value!r}")
    errors: dict[str, CallError] = {}
    for node, error in dict(value.get("errors") or {}).items():
        if isinstance(error, Mapping):
            errors[node] = CallError(
                int(error.get("code", INTERNAL_ERROR)),
                str(error.get("message", "")),
                error.get("data"),
            )
        else:
            errors[node] = CallError(INTERNAL_ERROR, str(error))
    return AllNodesResult(
        results=dict(value.get("results") or {}),
        errors=errors,
        missing=list(value.get("missing") or []),
    )


def _plain(value: Any) -> Any:
    """
    @return: C{value} (an AMQP field value) with bytes decoded, so that it
        has a JSON form.
    """
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


EventCallback = Callable[[Event | GenericEvent], Any]


@implementer(ICommandCaller)
class AMQPServiceProxy(ServiceProxy):
    """
    A domain's commands over AMQP, as methods returning Deferreds; see the
    module's documentation.  It wraps an L{AMQPClient}.

    @param url: the broker, C{amqp://user:password@host:port/vhost}.
    @param domain: the domain (C{core.domain} of its agents).
    @param timeout: default seconds a call may take (and L{connect}).
    @param reactor: the reactor; the global one by default.
    @param connectionName: the name the broker shows for the connection.
    @raise ValueError: if C{url} is not an AMQP URL.

    @ivar client: the L{AMQPClient} calls go through.
    @ivar url: the broker, parsed (L{BrokerURL.redacted} for messages).
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        domain: str,
        timeout: float = 30.0,
        reactor: Any = None,
        connectionName: str | None = None,
    ) -> None:
        reactor = maybeGlobalReactor(reactor)
        self._reactor = reactor
        self.url: BrokerURL = parseBrokerURL(url)
        self.client = AMQPClient(
            url, domain, timeout=timeout, reactor=reactor, connectionName=connectionName
        )
        self._events: EventBus | None = None

    @property
    def domain(self) -> str:
        return self.client.domain

    @property
    def timeout(self) -> float:
        return self.client.timeout

    @property
    def connectionName(self) -> str:
        return str(self.client.bus._connectionName)

    @property
    def connected(self) -> bool:
        """
        Whether the connection is up (it comes back by itself when lost).
        """
        return bool(self.client.bus.ready)

    def _connection(self) -> Any:
        # The bus keeps its connection private; the proxy only reads it.
        return self.client.bus._connection

    @property
    def serverProperties(self) -> dict[str, Any] | None:
        """
        The broker's properties (C{product}, C{version}, C{platform},
        C{cluster_name}, C{capabilities}, ...) from the current connection,
        as JSON-ready values; C{None} while disconnected.
        """
        connection = self._connection()
        properties = getattr(connection, "serverProperties", None)
        if properties is None:
            return None
        plain: dict[str, Any] = _plain(properties)
        return plain

    # Lifecycle

    @inlineCallbacks
    def connect(self, timeout: float | None = None, attempts: int | None = None) -> Any:
        """
        Connect to the broker.

        @param timeout: seconds it may take; by default the proxy's timeout.
        @param attempts: give up after this many failed attempts in a row
            (refused, unreachable, login refused); C{None} to keep trying
            until C{timeout}.
        @return: a Deferred firing with the proxy once calls can be made.
        @raise ConnectionFailed: if it could not connect; the proxy is then
            closed (nothing keeps retrying).
        """
        timeout = timeout or self.timeout
        started = self.client.start(timeout)
        try:
            if attempts is not None:
                # The bus's ClientService counts the failed attempts.
                service = self.client.bus._service
                assert service is not None
                yield service.whenConnected(failAfterFailures=attempts).addTimeout(
                    timeout, self._reactor
                )
            yield started
        except Exception as e:
            started.addErrback(lambda f: None)
            started.cancel()
            # whenConnected() fails from inside the ClientService's state
            # machine, which must not be stopped reentrantly: close on the
            # next turn of the reactor.
            yield deferLater(self._reactor, 0, lambda: None)
            yield self.close()
            if isinstance(e, CancelledError):
                # Our caller cancelled connecting: not a failure to report.
                raise
            if isinstance(e, TimeoutError):
                why = f"no connection within {timeout:g} s"
            else:
                why = describeException(e)
            raise ConnectionFailed(f"cannot connect to {self.url.redacted()}: {why}") from e
        return self

    @inlineCallbacks
    def close(self) -> Any:
        """
        Close the connection cleanly; calls still waiting fail.

        @return: a Deferred firing when it is closed.
        """
        yield self.client.stop()

    # Commands

    def invoke(self, call: Call) -> Deferred[Any]:
        """
        Run C{call} over AMQP.

        @return: a Deferred firing with the result (an L{AllNodesResult}
            for a call to every node), or failing with L{CallError}.
        """
        options = call.options
        d = self.client.callWithParams(
            call.method,
            call.params,
            node=options.node,
            all=options.everywhere,
            timeout=options.timeout,
        )
        if options.everywhere:
            d.addCallback(allNodesResult)
        return d

    # Events

    def subscribe(self, pattern: str, callback: EventCallback) -> Subscription:
        """
        Call C{callback(event)} for every event of the domain whose routing
        key (C{<Event>.<node>}) matches the topic C{pattern} (C{#} for all),
        from the time the subscription is bound on, across reconnects.
        Known event types arrive as their classes (L{NodeStatus}, ...),
        others as L{GenericEvent}.

        Subscribing before L{connect} binds on connecting; the events
        exchange of the domain is declared if no agent did yet.

        @return: the subscription; C{unsubscribe()} ends it.
        """
        return self._eventBus().subscribe(pattern, callback)

    def _eventBus(self) -> EventBus:
        if self._events is None:
            tag = uuid.uuid4().hex[:8]
            topology = DomainTopology(self.domain, "clacks-client")
            bus = self.client.bus
            events = EventBus(EventTypes(), topology, bus, tag, self._reactor)

            def declareExchange(connection: Any, channel: Any) -> Any:
                return channel.exchange_declare(
                    exchange=topology.eventsExchange, type="topic", durable=True
                )

            d = bus.addSetup(declareExchange)
            d.addCallback(lambda _: events.start())
            d.addErrback(lambda f: self.log.failure("Declaring the events exchange failed", f))
            self._events = events
        return self._events


__all__ = [
    "AMQPServiceProxy",
    "AllNodesResult",
    "Call",
    "CallError",
    "CallOptions",
    "ConnectionFailed",
    "ICommandCaller",
    "Method",
    "ServiceProxy",
    "allNodesResult",
]
