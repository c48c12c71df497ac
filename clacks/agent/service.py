# -*- test-case-name: tests.test_service -*-
"""
The agent's service tree: a L{MultiService} with one child per interface
handler.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.metadata import EntryPoint
from types import ModuleType
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from clacks import __version__
from clacks._reactor import maybeGlobalReactor
from clacks.agent.config import AgentConfig
from clacks.agent.context import AgentContext
from clacks.agent.workers import WorkerPool
from clacks.common.components.objects import ObjectRegistry
from clacks.common.components.registry import PluginError, PluginRegistry
from clacks.common.handler import IInterfaceHandler

#: Seconds a handler's C{stop()} may take beyond the drain timeout before the
#: agent gives up on it and stops the next one.
STOP_GRACE = 5.0


class HandlerService(Service):
    """
    Runs one interface handler: C{startService} calls its C{serve()},
    C{stopService} its C{stop()}.  A handler that fails is reported to the
    plugin registry; it does not take the agent down unless the agent is
    strict, in which case L{AgentService.fatal} is called.
    """

    log = Logger()

    def __init__(self, name: str, handler: IInterfaceHandler, agent: AgentService) -> None:
        self.setName(name)
        self.pluginName = name
        self.handler = handler
        self._agent = agent

    def startService(self) -> Deferred[None]:
        Service.startService(self)
        self.log.info("Starting interface handler {name}", name=self.name)
        d: Deferred[Any] = maybeDeferred(self.handler.serve)
        d.addErrback(self._failed, "serve")
        return d

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        self.log.info("Stopping interface handler {name}", name=self.name)
        d: Deferred[Any] = maybeDeferred(self.handler.stop)
        timeout = self._agent.context.config.agent.drainTimeout + STOP_GRACE
        d.addTimeout(timeout, self._agent.context.reactor)
        d.addErrback(self._failed, "stop")
        return d

    def _failed(self, failure: Failure, stage: str) -> None:
        try:
            self._agent.context.plugins.recordFailure(self.pluginName, stage, failure)
        except PluginError as e:
            self._agent.fatal(str(e))


class AgentService(MultiService):
    """
    One agent: its interface handlers as children, started in priority order
    and stopped one after the other in reverse order, then its worker pool.

    @ivar context: what the agent hands its plugins.
    @ivar fatalError: why the agent gave up, if it did (strict plugins).
    """

    log = Logger()

    def __init__(self, context: AgentContext, workers: WorkerPool) -> None:
        super().__init__()
        self.context = context
        self._workers = workers
        self.fatalError: str | None = None
        self.setName(f"clacks-agent:{context.config.core.id}")

    def startService(self) -> None:
        config = self.context.config
        self.log.info(
            "clacks-agent {version} starting: node {node} in domain {domain} (config: {sources})",
            version=__version__,
            node=config.core.id,
            domain=config.core.domain,
            sources=", ".join(config.sources) or "defaults",
        )
        for warning in config.warnings:
            self.log.warn("Configuration: {problem}", problem=warning)
        if config.standalone:
            self.log.info("No [amqp] url configured: running standalone, without a bus")
        self._workers.start()
        super().startService()

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        for child in reversed(list(self)):
            try:
                yield maybeDeferred(child.stopService)
            except Exception:
                self.log.failure("Stopping {name} failed", name=child.name)
        yield self._workers.stop(timeout=self.context.config.agent.drainTimeout + STOP_GRACE)
        self.log.info("clacks-agent stopped: node {node}", node=self.context.config.core.id)

    def fatal(self, reason: str) -> None:
        """
        Give up: log C{reason} and stop the reactor (strict plugins).
        """
        if self.fatalError is not None:
            return
        self.fatalError = reason
        self.log.critical("Fatal: {reason}; stopping the agent", reason=reason)
        if self.running:
            # During shutdown the reactor is stopping already.
            reactor = self.context.reactor
            reactor.callLater(0, reactor.stop)


def makeAgent(
    config: AgentConfig,
    reactor: Any = None,
    entryPoints: Iterable[EntryPoint] | None = None,
    dropins: ModuleType | None = None,
    objectEntryPoints: Iterable[EntryPoint] | None = None,
    plugins: Sequence[tuple[str, Any]] = (),
) -> AgentService:
    """
    Build an agent: discover and create its plugins and turn its interface
    handlers into child services.

    @param reactor: the reactor to run on; the global one if C{None}.
    @param entryPoints: the C{agent.module} entry points; by default the
        installed ones.
    @param dropins: the drop-in package; by default L{clacks.plugins}.
    @param objectEntryPoints: the C{agent.object} entry points.
    @param plugins: extra C{(name, class)} plugins, as if discovered.
    @raise PluginError: if a plugin fails and C{core.strict-plugins} is set.
    """
    reactor = maybeGlobalReactor(reactor)
    registry = PluginRegistry(strict=config.core.strictPlugins)
    objects = ObjectRegistry()
    workers = WorkerPool(reactor, config.agent.threads, name=f"clacks-{config.core.id}")
    context = AgentContext(
        config=config, plugins=registry, objects=objects, reactor=reactor, workers=workers
    )
    registry.discover(entryPoints, dropins)
    for name, factory in plugins:
        registry.add(name, factory)
    objects.discover(objectEntryPoints)
    if config.core.strictPlugins and objects.failures:
        first = objects.failures[0]
        raise PluginError(f"object {first.name} failed to load: {first.error}")
    registry.instantiate(context)
    agent = AgentService(context, workers)
    for name, handler in registry.handlers():
        HandlerService(name, handler, agent).setServiceParent(agent)
    return agent


__all__ = ["AgentService", "HandlerService", "makeAgent"]
