# -*- test-case-name: tests.test_service -*-
"""
What the agent hands each plugin.
"""

from __future__ import annotations

from typing import Any

import attrs
from zope.interface import implementer

from clacks.agent.config import AgentConfig
from clacks.common.components.objects import ObjectRegistry
from clacks.common.components.registry import PluginRegistry
from clacks.interfaces import IAgentContext, IWorkerPool


@attrs.define
class AgentStats:
    """
    Counters of the agent's work, reported in its NodeStatus events.

    @ivar inflight: calls being served now.
    @ivar processed: calls served since start.
    @ivar requeued: calls handed back to the broker when stopping.
    @ivar refused: requests refused as malformed or over a limit.
    @ivar draining: the agent is stopping and takes no new calls.
    """

    inflight: int = 0
    processed: int = 0
    requeued: int = 0
    refused: int = 0
    draining: bool = False


@implementer(IAgentContext)
@attrs.frozen
class AgentContext:
    """
    One agent's configuration, registries, reactor and worker pool.

    @ivar config: the agent's configuration.
    @ivar plugins: the agent's plugins; look others up with C{get(name)}.
    @ivar objects: the agent's object classes by OID.
    @ivar reactor: the reactor the agent runs on.
    @ivar workers: the bounded pool for blocking code.
    @ivar stats: counters of the agent's work.
    """

    config: AgentConfig
    plugins: PluginRegistry
    objects: ObjectRegistry
    reactor: Any
    workers: IWorkerPool
    stats: AgentStats = attrs.Factory(AgentStats)

    @property
    def nodeId(self) -> str:
        return self.config.core.id

    @property
    def domain(self) -> str:
        return self.config.core.domain

    def status(self) -> dict[str, Any]:
        return {
            "node": self.nodeId,
            "domain": self.domain,
            "plugins": self.plugins.names(),
            "failedPlugins": self.plugins.failed() + [f.asDict() for f in self.objects.failures],
            "workersBusy": self.workers.busy(),
            "inflight": self.stats.inflight,
            "processed": self.stats.processed,
        }


__all__ = ["AgentContext", "AgentStats"]
