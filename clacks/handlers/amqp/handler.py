# -*- test-case-name: tests.test_amqp_handler -*-
"""
The AMQP interface handler: the agent's connection to its domain's bus.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet.defer import inlineCallbacks
from zope.interface import implementer

from clacks.agent.dispatch import Dispatcher
from clacks.common.components.plugin import Plugin
from clacks.common.events import EventTypes
from clacks.common.handler import IInterfaceHandler
from clacks.handlers.amqp.bus import AMQPBus
from clacks.handlers.amqp.eventbus import EventBus
from clacks.handlers.amqp.lifecycle import NodeLifecycle
from clacks.handlers.amqp.rpc import (
    BusRemoteCaller,
    CommandServer,
    RPCCaller,
    forgetOnNodeChange,
)
from clacks.handlers.amqp.topology import DomainTopology
from clacks.interfaces import IAgentContext


@implementer(IInterfaceHandler)
class AMQPHandler(Plugin):
    """
    Keeps the agent's bus connection (see L{AMQPBus}), offers plugins the
    L{EventBus} as C{events}, and publishes the node's lifecycle events.

    Without C{[amqp] url} the agent is standalone: there is no connection,
    events reach local subscribers only, and the handler is always ready.

    @ivar bus: the connection, or C{None} when standalone.
    @ivar events: the event bus for plugins.
    @ivar lifecycle: NodeAnnounce / NodeStatus / NodeLeave.
    @ivar incarnation: new at every start of the agent.
    """

    _priority_ = 10

    def __init__(self, context: IAgentContext, endpoint: Any = None) -> None:
        super().__init__(context)
        config = context.config
        self.incarnation = uuid.uuid4().hex
        self.topology = DomainTopology(
            domain=config.core.domain,
            node=config.core.id,
            queueType=config.amqp.queueType,
            maxDeliveries=config.agent.maxDeliveries,
        )
        self.bus: AMQPBus | None = None
        if config.amqp.url is not None:
            self.bus = AMQPBus(
                context.reactor,
                config.amqp.url,
                config.amqp,
                self.topology,
                connectionName=config.amqp.connectionName or config.core.id,
                endpoint=endpoint,
            )
        self.events = EventBus(
            EventTypes(), self.topology, self.bus, self.incarnation[:8], context.reactor
        )
        self.lifecycle = NodeLifecycle(
            context, self.events, self.bus, self.incarnation, commands=self._commands
        )
        self._stopWatchingNodes: list[Any] = []
        self.caller: RPCCaller | None = None
        self.server: CommandServer | None = None
        self.dispatcher: Dispatcher | None = None
        if self.bus is not None:
            self.caller = RPCCaller(self.bus, self.topology.commandsExchange, context.reactor)

    @property
    def ready(self) -> bool:
        """
        Whether the bus is usable: connected with its topology declared, or
        standalone.
        """
        return self.bus is None or self.bus.ready

    def _commands(self) -> list[dict[str, Any]]:
        plugins = self.context.plugins
        if "CommandRegistry" in plugins:
            return [d.toJSON() for d in plugins.get("CommandRegistry").descriptions()]
        return []

    def serve(self) -> None:
        plugins = self.context.plugins
        directory = plugins.get("NodeDirectory").directory if "NodeDirectory" in plugins else None
        if directory is not None:
            self._stopWatchingNodes.append(directory.observe(self._nodeChanged))
        if "CommandRegistry" in plugins:
            registry = plugins.get("CommandRegistry")
            registry.collect()
            remote = BusRemoteCaller(self.caller) if self.caller is not None else None
            self.dispatcher = Dispatcher(
                registry, self.context.config.core.id, directory, remote, self.context.reactor
            )
            if self.bus is not None:
                self.server = CommandServer(
                    self.context,
                    self.bus,
                    self.topology,
                    self.dispatcher,
                    capacity=self.context.config.agent.capacity,
                    maxDeliveries=self.context.config.agent.maxDeliveries,
                )
                self.server.start()
        else:
            self.log.warn("No CommandRegistry plugin: this agent serves no commands")
        if self.caller is not None:
            self.caller.start()
            if directory is not None:
                self._stopWatchingNodes.append(directory.observe(forgetOnNodeChange(self.caller)))
        self.events.start()
        if self.bus is not None:
            self.bus.start()
        self.lifecycle.start()

    def _nodeChanged(self, change: Any) -> None:
        if change.kind.value in ("join", "restart"):
            self.lifecycle.nodeJoined(change.node.node)

    @inlineCallbacks
    def stop(self) -> Any:
        """
        Leave the domain cleanly: announce draining, let calls in flight
        finish (up to C{[agent] drain-timeout}) and hand back the rest,
        publish NodeLeave, close the connection.
        """
        for stopWatching in self._stopWatchingNodes:
            stopWatching()
        self._stopWatchingNodes = []
        stats = self.context.stats
        if self.server is not None:
            stats.draining = True
            if self.bus is not None and self.bus.ready:
                yield self.lifecycle.publishStatus()
            yield self.server.stop(self.context.config.agent.drainTimeout)
        yield self.lifecycle.stop()
        if self.caller is not None:
            self.caller.stop()
        if self.bus is not None:
            yield self.bus.stop()


__all__ = ["AMQPHandler"]
