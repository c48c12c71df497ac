# -*- test-case-name: tests.test_registry -*-
"""
The seams of clacks-agent, as C{zope.interface} interfaces.

Every implementation in the project says C{@implementer(...)} for one of
these, so that tests (and embedders) can swap any seam for a fake.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface

from clacks.common.handler import IInterfaceHandler


class IPlugin(Interface):
    """
    A loaded plugin: one instance per agent, created with the agent's
    L{IAgentContext}.
    """

    context = Attribute("The L{IAgentContext} the plugin was created with.")


class IPluginFactory(Interface):
    """
    Something that makes an L{IPlugin}: in practice a subclass of
    L{clacks.common.components.plugin.Plugin}, whose metaclass declares this.
    """

    _priority_ = Attribute("int: lower starts first; ties are broken by plugin name.")
    _target_ = Attribute("str: the command namespace of the plugin's commands.")
    __name__ = Attribute("str: the class name, used as the name of drop-ins.")

    def __call__(context: IAgentContext) -> IPlugin:
        """
        Create the plugin for one agent.

        @param context: the agent that loads the plugin.
        @return: the plugin instance.
        """


class IAgentContext(Interface):
    """
    What a plugin is handed by the agent that loads it.  Nothing in it is
    process-global: several agents may run in one process.
    """

    config = Attribute("The L{clacks.agent.config.AgentConfig} of the agent.")
    plugins = Attribute("The agent's L{clacks.common.components.registry.PluginRegistry}.")
    objects = Attribute("The agent's L{clacks.common.components.objects.ObjectRegistry}.")
    reactor = Attribute(
        "The reactor the agent runs on; provides at least IReactorTime, "
        "IReactorTCP and IReactorThreads (tests hand in a Clock-based fake)."
    )
    workers = Attribute("The agent's bounded L{IWorkerPool} for blocking code.")
    stats = Attribute("The agent's L{clacks.agent.context.AgentStats} counters.")

    def status() -> dict[str, Any]:
        """
        @return: a JSON-ready snapshot of the agent's own state (plugins that
            failed, calls in flight, ...), used by status events and health.
        """


class IWorkerPool(Interface):
    """
    A bounded pool of threads for blocking plugin code, so that the reactor
    thread stays free for heartbeats and status events.
    """

    size = Attribute("int: the number of worker threads.")

    def run(f: Any, *args: Any, **kwargs: Any) -> Any:
        """
        Run C{f(*args, **kwargs)} in a worker thread.

        @return: a Deferred firing in the reactor thread with the result, or
            failing with the exception C{f} raised.
        """

    def busy() -> int:
        """
        @return: how many workers are running a job right now.
        """


class IMessageBus(Interface):
    """
    A connection to the message broker that survives reconnects: setups and
    consumers registered once are re-established on every connect.
    """

    ready = Attribute("bool: connected, topology declared, consumers open.")

    def whenReady() -> Any:
        """
        @return: a Deferred that fires when the bus is (or becomes) ready.
        """

    def observe(observer: Any) -> Any:
        """
        Call C{observer(ready: bool)} on every connect and disconnect.

        @return: a function that stops the notifications.
        """

    def addSetup(setup: Any) -> Any:
        """
        Run C{setup(connection, channel)} on every connect before the bus is
        ready: declare queues, bind them.

        @return: a Deferred that fires when it ran (now, if connected).
        """

    def consume(
        queue: str,
        callback: Any,
        noAck: bool = False,
        prefetch: Any = None,
        declare: Any = None,
    ) -> Any:
        """
        Consume C{queue} now and after every reconnect, calling
        C{callback(delivery)} for each message.

        @param declare: called with a channel on every connect; returns (or
            fires with) the name of the queue to consume, for queues that
            are new on every connection.
        @return: a handle whose C{cancel()} stops it.
        """

    def withChannel(fn: Any) -> Any:
        """
        If connected, run C{fn(channel)} now (bind or unbind a queue);
        otherwise do nothing: setups run again on the next connect.

        @return: a Deferred with C{fn}'s result.
        """

    def publish(
        exchange: str,
        routingKey: str,
        body: bytes,
        properties: Any = None,
        timeout: Any = None,
        mandatory: bool = False,
    ) -> Any:
        """
        Publish C{body}; wait for the connection if needed, within
        C{timeout}.

        @return: a Deferred that fires on the broker's confirm, or fails with
            a clear error; a message is never dropped silently.
        """


class ISubscription(Interface):
    """
    A subscription to events; see L{IEventBus.subscribe}.
    """

    pattern = Attribute("str: the routing-key pattern subscribed to.")

    def unsubscribe() -> None:
        """
        Stop delivering events to this subscription.
        """


class IEventBus(Interface):
    """
    Events for plugins: publish them, subscribe to them.
    """

    def publish(event: Any, timeout: Any = None) -> Any:
        """
        Validate C{event} against its schema and publish it.

        @return: a Deferred that fires when the broker confirmed it.
        @raise clacks.common.events.EventError: if the event is invalid.
        """

    def subscribe(pattern: str, callback: Any) -> ISubscription:
        """
        Call C{callback(event)} for every event whose routing key
        (C{<Event>.<node>}) matches the topic C{pattern} (C{*} one word,
        C{#} any number), from now on and across reconnects.  Events that
        fail validation are logged and dropped, never handed over.
        """


__all__ = [
    "IAgentContext",
    "IEventBus",
    "IMessageBus",
    "ISubscription",
    "IInterfaceHandler",
    "IPlugin",
    "IPluginFactory",
    "IWorkerPool",
]
