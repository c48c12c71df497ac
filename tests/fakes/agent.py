# -*- test-case-name: tests.test_commands -*-
"""
An agent's context built by hand for in-process tests: real registries, a
L{Clock} as reactor and a worker pool that runs jobs at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyClass

from clacks.agent.config import AgentConfig, CoreConfig, defaultConfig
from clacks.agent.context import AgentContext
from clacks.common.components.objects import ObjectRegistry
from clacks.common.components.registry import PluginRegistry
from clacks.interfaces import IWorkerPool


@implementer(IWorkerPool)
class SyncWorkerPool:
    """
    A worker pool that runs each job at once, in the calling thread.

    @ivar jobs: the functions handed to L{run}, in order.
    """

    size = 1

    def __init__(self) -> None:
        self.jobs: list[Callable[..., Any]] = []

    def run(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        self.jobs.append(f)
        return maybeDeferred(f, *args, **kwargs)

    def busy(self) -> int:
        return 0


verifyClass(IWorkerPool, SyncWorkerPool)


def agentContext(
    plugins: Mapping[str, Any],
    node: str = "n1",
    debug: bool = False,
    sections: Mapping[str, Mapping[str, str]] | None = None,
    config: AgentConfig | None = None,
) -> tuple[AgentContext, Clock, SyncWorkerPool]:
    """
    Build an agent's context with C{plugins} (name to class) added and
    created, in priority order.

    @param sections: raw configuration sections, for plugins that read
        their own (C{{"hello": {"friends": "ada"}}}).
    @return: the context, its clock and its worker pool.
    """
    if config is None:
        config = defaultConfig(
            core=CoreConfig(id=node, domain="test", debug=debug), sections=dict(sections or {})
        )
    registry = PluginRegistry()
    for name, factory in plugins.items():
        registry.add(name, factory)
    clock = Clock()
    workers = SyncWorkerPool()
    context = AgentContext(
        config=config,
        plugins=registry,
        objects=ObjectRegistry(),
        reactor=clock,
        workers=workers,
    )
    registry.instantiate(context)
    return context, clock, workers


__all__ = ["SyncWorkerPool", "agentContext"]
