"""
Tests for L{clacks.common.components.registry}, the plugin base class and
plugin discovery (entry points and drop-ins).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import EntryPoint
from typing import Any, cast

from hypothesis import given
from hypothesis import strategies as st
from twisted.plugin import IPlugin as ITwistedPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyClass, verifyObject

import tests.util.brokendropins
import tests.util.dropins
import tests.util.nodropins
from clacks.agent.config import defaultConfig
from clacks.agent.context import AgentContext
from clacks.common.components.objects import ObjectRegistry
from clacks.common.components.plugin import Plugin, PluginType
from clacks.common.components.registry import (
    ENTRY_POINT_GROUP,
    PluginError,
    PluginRegistry,
)
from clacks.common.handler import IInterfaceHandler
from clacks.interfaces import IAgentContext, IPlugin, IPluginFactory, IWorkerPool
from tests.fakes.reactor import FakeReactor
from tests.util.dropins.greeter import DropinGreeter
from tests.util.logs import captureLogs, messages
from tests.util.plugins import Early, Late, Plain, entryPoint


@implementer(IWorkerPool)
class _NoWorkers:
    """
    A stand-in worker pool: registry tests never run blocking code.
    """

    size = 0

    def run(self, f: Any, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no blocking code expected")

    def busy(self) -> int:
        return 0


verifyClass(IWorkerPool, _NoWorkers)


def makeContext(registry: PluginRegistry) -> AgentContext:
    """
    @return: an agent context around C{registry}, on a fake reactor.
    """
    return AgentContext(
        config=defaultConfig(),
        plugins=registry,
        objects=ObjectRegistry(),
        reactor=FakeReactor(),
        workers=_NoWorkers(),
    )


def discovered(entryPoints: list[EntryPoint], strict: bool = False) -> PluginRegistry:
    """
    @return: a registry that discovered C{entryPoints} and no drop-ins.
    """
    registry = PluginRegistry(strict=strict)
    registry.discover(entryPoints, tests.util.nodropins)
    return registry


def pluginClass(name: str, priority: int) -> type[Plugin]:
    """
    @return: a new plugin class with priority C{priority}.
    """
    return cast(type[Plugin], PluginType(name, (Plugin,), {"_priority_": priority}))


class PluginClassTests(SynchronousTestCase):
    """
    Tests for L{Plugin} and its metaclass.
    """

    def test_classIsFactory(self) -> None:
        """
        A L{Plugin} subclass provides L{IPluginFactory} and Twisted's plugin
        interface (so C{getPlugins} finds it in a drop-in), and its instances
        provide L{IPlugin} and keep the context they were created with.
        """
        self.assertTrue(verifyObject(IPluginFactory, Early))
        self.assertTrue(ITwistedPlugin.providedBy(Early))
        context = makeContext(PluginRegistry())
        plugin = Early(context)
        self.assertTrue(verifyObject(IPlugin, plugin))
        self.assertIs(plugin.context, context)
        self.assertTrue(verifyObject(IAgentContext, context))

    def test_defaults(self) -> None:
        """
        A plugin class that sets nothing has priority 50 and the C{core}
        command namespace.
        """
        self.assertEqual((Plain._priority_, Plain._target_), (50, "core"))


class OrderingTests(SynchronousTestCase):
    """
    Plugins are ordered by priority, ties broken by name, whatever the order
    they were discovered in.
    """

    def test_priorityThenName(self) -> None:
        """
        L{PluginRegistry.ordered} puts lower priorities first; plugins of
        equal priority are ordered by name, not by discovery order, and a
        low priority beats a name that sorts first.
        """
        registry = discovered(
            [
                entryPoint("zulu", "Plain"),
                entryPoint("aaa-late", "Late"),
                entryPoint("alpha", "Plain"),
                entryPoint("zz-early", "Early"),
                entryPoint("mike", "Plain"),
            ]
        )
        self.assertEqual(
            [spec.name for spec in registry.ordered()],
            ["zz-early", "alpha", "mike", "zulu", "aaa-late"],
        )
        self.assertEqual([spec.priority for spec in registry.ordered()], [10, 50, 50, 50, 90])

    def test_instantiateInOrder(self) -> None:
        """
        L{PluginRegistry.instantiate} creates the plugins in priority order
        and keeps them in that order for lookup and iteration.
        """
        registry = discovered(
            [
                entryPoint("late", "Late"),
                entryPoint("b-plain", "Plain"),
                entryPoint("a-plain", "Plain"),
                entryPoint("early", "Early"),
            ]
        )
        events = captureLogs(self)
        registry.instantiate(makeContext(registry))
        order = ["early", "a-plain", "b-plain", "late"]
        self.assertEqual(registry.names(), order)
        self.assertEqual([name for name, _ in registry], order)
        loaded = [e["name"] for e in events if "Loaded plugin" in e["log_format"]]
        self.assertEqual(loaded, order)
        self.assertIsInstance(registry.get("late"), Late)
        self.assertIn("early", registry)
        self.assertEqual(registry.failures, [])

    @given(
        st.dictionaries(
            st.text("abcdefghij-", min_size=1, max_size=6),
            st.integers(min_value=-5, max_value=5),
            min_size=1,
            max_size=12,
        ),
        st.randoms(use_true_random=False),
    )
    def test_orderIsStable(self, priorities: dict[str, int], random: Any) -> None:
        """
        For any set of plugins, added in any order, the registry creates them
        sorted by C{(priority, name)}.
        """
        items = list(priorities.items())
        random.shuffle(items)
        registry = PluginRegistry()
        for name, priority in items:
            registry.add(name, pluginClass("P", priority))
        registry.instantiate(makeContext(registry))
        self.assertEqual(registry.names(), sorted(priorities, key=lambda n: (priorities[n], n)))


class DiscoveryTests(SynchronousTestCase):
    """
    Tests for L{PluginRegistry.discover}: what cannot be used is reported,
    the rest is loaded.
    """

    def test_unimportableEntryPoint(self) -> None:
        """
        An entry point whose module does not exist is listed as a C{load}
        failure with its name, error and origin; the other plugins load.
        """
        events = captureLogs(self)
        registry = discovered(
            [
                EntryPoint("ghost", "tests.util.nosuchmodule:Ghost", ENTRY_POINT_GROUP),
                entryPoint("plain", "Plain"),
            ]
        )
        [failure] = registry.failures
        self.assertEqual((failure.name, failure.stage), ("ghost", "load"))
        self.assertIn("ModuleNotFoundError", failure.error)
        self.assertIn("tests.util.nosuchmodule", failure.error)
        self.assertIn("entry point ghost = tests.util.nosuchmodule:Ghost", failure.origin)
        self.assertEqual([s.name for s in registry.ordered()], ["plain"])
        [line] = [m for m in messages(events) if "ghost" in m]
        self.assertIn("Plugin ghost failed to load: ModuleNotFoundError", line)
        self.assertIn("Traceback", line)

    def test_notAPluginClass(self) -> None:
        """
        An entry point naming something that is not a L{Plugin} subclass is
        a C{load} failure saying what to subclass.
        """
        registry = discovered([entryPoint("stranger", "NotAPlugin")])
        [failure] = registry.failures
        self.assertEqual((failure.name, failure.stage), ("stranger", "load"))
        self.assertIn("is not a plugin class", failure.error)
        self.assertIn("clacks.common.components.plugin.Plugin", failure.error)
        self.assertEqual(registry.ordered(), [])

    def test_duplicateName(self) -> None:
        """
        A second plugin with a name already taken is refused and reported;
        the first one stays.
        """
        registry = discovered([entryPoint("same", "Early"), entryPoint("same", "Late")])
        [spec] = registry.ordered()
        self.assertIs(spec.factory, Early)
        [failure] = registry.failures
        self.assertEqual((failure.name, failure.stage), ("same", "load"))
        self.assertIn("already registered", failure.error)

    def test_strictLoadFailure(self) -> None:
        """
        A strict registry raises L{PluginError} naming the plugin and the
        stage as soon as a plugin fails to load.
        """
        error = self.assertRaises(
            PluginError,
            discovered,
            [EntryPoint("ghost", "tests.util.nosuchmodule:Ghost", ENTRY_POINT_GROUP)],
            strict=True,
        )
        self.assertIn("plugin ghost failed to load: ModuleNotFoundError", str(error))

    def test_installedEntryPoints(self) -> None:
        """
        Without C{entryPoints}, the registry loads the C{agent.module} entry
        points of the distributions on C{sys.path}.
        """
        site = os.path.abspath(self.mktemp())
        distInfo = os.path.join(site, "fake_clacks_plugins-1.0.dist-info")
        os.makedirs(distInfo)
        with open(os.path.join(distInfo, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\nName: fake-clacks-plugins\nVersion: 1.0\n")
        with open(os.path.join(distInfo, "entry_points.txt"), "w") as f:
            f.write(
                "[agent.module]\n"
                "fake-early = tests.util.plugins:Early\n"
                "fake-late = tests.util.plugins:Late\n"
            )
        self.patch(sys, "path", [site, *sys.path])
        registry = PluginRegistry()
        registry.discover(dropins=tests.util.nodropins)
        specs = {s.name: s for s in registry.ordered()}
        self.assertIs(specs["fake-early"].factory, Early)
        self.assertIs(specs["fake-late"].factory, Late)
        self.assertIn("of fake-clacks-plugins 1.0", specs["fake-late"].origin)


class DropinTests(SynchronousTestCase):
    """
    Drop-in modules: plugin classes in a drop-in package's modules.
    """

    def test_dropinFound(self) -> None:
        """
        A plugin class defined in a drop-in module is found under its class
        name; the L{Plugin} base class the module imports is not.
        """
        registry = PluginRegistry()
        registry.discover([], tests.util.dropins)
        [spec] = registry.ordered()
        self.assertEqual(spec.name, "DropinGreeter")
        self.assertIs(spec.factory, DropinGreeter)
        self.assertEqual(spec.origin, "drop-in tests.util.dropins.greeter")
        registry.instantiate(makeContext(registry))
        [(name, handler)] = registry.handlers()
        self.assertEqual(name, "DropinGreeter")
        self.assertTrue(verifyObject(IInterfaceHandler, handler))

    def test_brokenDropin(self) -> None:
        """
        A drop-in module that fails to import is a C{load} failure named
        after its file, with the error it raised; discovery goes on.
        """
        registry = PluginRegistry()
        registry.discover([entryPoint("plain", "Plain")], tests.util.brokendropins)
        self.flushLoggedErrors(RuntimeError)
        [failure] = registry.failures
        self.assertEqual((failure.name, failure.stage), ("broken", "load"))
        self.assertEqual(failure.error, "RuntimeError: this drop-in is broken on purpose")
        self.assertTrue(failure.origin.startswith("drop-in "))
        self.assertTrue(failure.origin.endswith(os.path.join("brokendropins", "broken.py")))
        self.assertEqual([s.name for s in registry.ordered()], ["plain"])

    def test_noDropins(self) -> None:
        """
        A drop-in package without drop-in modules contributes nothing.
        """
        registry = discovered([])
        self.assertEqual((registry.ordered(), registry.failures), ([], []))


class LookupTests(SynchronousTestCase):
    """
    Looking plugins up by name.
    """

    def test_unknownName(self) -> None:
        """
        L{PluginRegistry.get} of an unknown name raises L{KeyError} naming
        the plugins that are loaded.
        """
        registry = discovered([entryPoint("early", "Early"), entryPoint("late", "Late")])
        registry.instantiate(makeContext(registry))
        error = self.assertRaises(KeyError, registry.get, "nobody")
        self.assertIn("'nobody'", str(error))
        self.assertIn("loaded: early, late", str(error))

    def test_handlersOnly(self) -> None:
        """
        L{PluginRegistry.handlers} lists only the interface handlers, in
        start order.
        """
        registry = discovered(
            [
                entryPoint("third", "ThirdHandler"),
                entryPoint("plain", "Plain"),
                entryPoint("first", "FirstHandler"),
            ]
        )
        registry.instantiate(makeContext(registry))
        self.assertEqual([n for n, _ in registry.handlers()], ["first", "third"])
