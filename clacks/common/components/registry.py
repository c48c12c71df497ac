# -*- test-case-name: tests.test_registry -*-
"""
The plugin registry: finds plugins, orders them, creates them, and keeps
them for lookup by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from importlib.metadata import EntryPoint
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs
from twisted.logger import Logger
from twisted.python.failure import Failure

from clacks.common.components._discovery import (
    Found,
    LoadFailure,
    describeException,
    loadDropins,
    loadEntryPoints,
)
from clacks.common.handler import IInterfaceHandler
from clacks.interfaces import IPlugin, IPluginFactory

if TYPE_CHECKING:
    from clacks.interfaces import IAgentContext

ENTRY_POINT_GROUP = "agent.module"


class PluginError(Exception):
    """
    A plugin could not be loaded, created or served, and the agent runs with
    C{core.strict-plugins}, so that is fatal.
    """


@attrs.frozen
class PluginFailure:
    """
    A plugin that failed, as the agent reports it in its status.

    @ivar name: the plugin's name (entry point name or drop-in class name).
    @ivar stage: C{"load"}, C{"init"}, C{"serve"} or C{"stop"}.
    @ivar error: one line: exception type and message.
    @ivar origin: where the plugin came from.
    """

    name: str
    stage: str
    error: str
    origin: str

    def asDict(self) -> dict[str, str]:
        return attrs.asdict(self)


@attrs.frozen
class PluginSpec:
    """
    A discovered plugin class, not yet created.

    @ivar name: the name other plugins look it up by.
    @ivar factory: the class (an L{IPluginFactory}).
    @ivar origin: where it came from, for log lines.
    """

    name: str
    factory: Any = attrs.field(repr=lambda f: getattr(f, "__qualname__", repr(f)))
    origin: str

    @property
    def priority(self) -> int:
        return int(getattr(self.factory, "_priority_", 50))

    def sortKey(self) -> tuple[int, str]:
        return (self.priority, self.name)


class PluginRegistry:
    """
    The plugins of one agent.

    Plugins come from the C{agent.module} entry-point group and from drop-in
    files of the C{clacks.plugins} package, or are added directly with
    L{add}.  L{instantiate} creates them in priority order (lower first, ties
    broken by name) and hands each the agent's context.  A plugin that fails
    is logged with its name and traceback and listed in L{failures}; the
    others go on, unless the registry is strict.

    @ivar failures: what failed, in order.
    """

    log = Logger()

    def __init__(self, strict: bool = False) -> None:
        self._strict = strict
        self._specs: dict[str, PluginSpec] = {}
        self._instances: dict[str, IPlugin] = {}
        self.failures: list[PluginFailure] = []

    # Discovery

    def discover(
        self,
        entryPoints: Iterable[EntryPoint] | None = None,
        dropins: ModuleType | None = None,
    ) -> None:
        """
        Find plugins on the C{agent.module} entry points and in drop-ins.

        @param entryPoints: the entry points to look at; by default those of
            the installed distributions.
        @param dropins: the drop-in package; by default L{clacks.plugins}.
            Pass a module without drop-ins to turn them off.
        """
        if dropins is None:
            import clacks.plugins

            dropins = clacks.plugins
        found = [
            *loadEntryPoints(ENTRY_POINT_GROUP, entryPoints),
            *loadDropins(IPluginFactory, dropins),
        ]
        for item in found:
            if isinstance(item, LoadFailure):
                self._fail(item.name, "load", item.error, item.origin, item.traceback)
            else:
                self._addFound(item)

    def _addFound(self, item: Found) -> None:
        if not IPluginFactory.providedBy(item.value):
            self._fail(
                item.name,
                "load",
                f"{item.value!r} is not a plugin class: subclass "
                "clacks.common.components.plugin.Plugin",
                item.origin,
            )
            return
        self.add(item.name, item.value, item.origin)

    def add(self, name: str, factory: Any, origin: str = "added directly") -> None:
        """
        Register a plugin class under C{name}.  A second plugin of the same
        name is refused (reported as a failure), the first one stays.
        """
        existing = self._specs.get(name)
        if existing is not None:
            self._fail(
                name,
                "load",
                f"a plugin named {name!r} is already registered "
                f"({existing.origin}); rename one of them",
                origin,
            )
            return
        self._specs[name] = PluginSpec(name, factory, origin)
        self.log.debug(
            "Found plugin {name} (priority {priority}) from {origin}",
            name=name,
            priority=self._specs[name].priority,
            origin=origin,
        )

    def ordered(self) -> list[PluginSpec]:
        """
        @return: the discovered plugins, lowest priority first, ties by name.
        """
        return sorted(self._specs.values(), key=PluginSpec.sortKey)

    # Creation

    def instantiate(self, context: IAgentContext) -> None:
        """
        Create every discovered plugin, in priority order, with C{context}.

        @raise PluginError: if strict and any plugin failed, now or during
            discovery.
        """
        if self._strict and self.failures:
            first = self.failures[0]
            raise PluginError(f"plugin {first.name} failed to {first.stage}: {first.error}")
        for spec in self.ordered():
            try:
                plugin = spec.factory(context)
            except Exception:
                self.recordFailure(spec.name, "init", Failure())
                continue
            self._instances[spec.name] = plugin
            self.log.info(
                "Loaded plugin {name} (priority {priority}, {kind})",
                name=spec.name,
                priority=spec.priority,
                kind="interface handler" if IInterfaceHandler.providedBy(plugin) else "plugin",
            )

    def reportProblem(self, name: str, stage: str, error: str) -> None:
        """
        Report that plugin C{name} has a problem that is not an exception
        (a command without help, say): log it and list it in L{failures}.

        @raise PluginError: if the registry is strict.
        """
        spec = self._specs.get(name)
        self._fail(name, stage, error, spec.origin if spec is not None else "unknown")

    def recordFailure(self, name: str, stage: str, failure: Failure) -> None:
        """
        Report that plugin C{name} failed at C{stage}: log it with its
        traceback and list it in L{failures}.

        @raise PluginError: if the registry is strict.
        """
        spec = self._specs.get(name)
        origin = spec.origin if spec is not None else "unknown"
        assert failure.value is not None
        self._fail(
            name,
            stage,
            describeException(failure.value),
            origin,
            failure.getTraceback(),
        )

    def _fail(
        self,
        name: str,
        stage: str,
        error: str,
        origin: str,
        traceback: str | None = None,
    ) -> None:
        self.failures.append(PluginFailure(name, stage, error, origin))
        self.log.critical(
            "Plugin {plugin} failed to {stage}: {error} ({origin}); "
            "fix or uninstall it. {traceback}",
            plugin=name,
            stage=stage,
            error=error,
            origin=origin,
            traceback=traceback or "",
        )
        if self._strict:
            raise PluginError(f"plugin {name} failed to {stage}: {error}")

    # Lookup

    def get(self, name: str) -> IPlugin:
        """
        @return: the plugin called C{name}.
        @raise KeyError: with the names that do exist, if there is none.
        """
        try:
            return self._instances[name]
        except KeyError:
            raise KeyError(
                f"no plugin named {name!r}; loaded: {', '.join(self._instances) or 'none'}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._instances

    def __iter__(self) -> Iterator[tuple[str, IPlugin]]:
        """
        @return: C{(name, plugin)} pairs, in start order.
        """
        return iter(list(self._instances.items()))

    def names(self) -> list[str]:
        return list(self._instances)

    def handlers(self) -> list[tuple[str, IInterfaceHandler]]:
        """
        @return: the interface handlers, in start order.
        """
        return [(n, p) for n, p in self if IInterfaceHandler.providedBy(p)]

    def failed(self) -> list[dict[str, str]]:
        """
        @return: the failures, JSON-ready, for status events.
        """
        return [f.asDict() for f in self.failures]


__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginError",
    "PluginFailure",
    "PluginRegistry",
    "PluginSpec",
]
