"""
Tests for L{clacks.agent.service}: building an agent from its plugins,
starting and stopping its interface handlers, and plugin failures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.metadata import EntryPoint
from typing import Any, cast

from twisted.application.service import IServiceCollection
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

import tests.util.nodropins
from clacks.agent.config import (
    AgentConfig,
    AgentSettings,
    CoreConfig,
    defaultConfig,
    loadConfig,
)
from clacks.agent.service import STOP_GRACE, AgentService, HandlerService, makeAgent
from clacks.common.components.objects import ENTRY_POINT_GROUP as OBJECT_GROUP
from clacks.common.components.registry import ENTRY_POINT_GROUP, PluginError
from clacks.interfaces import IAgentContext, IWorkerPool
from tests.fakes.reactor import FakeReactor
from tests.util.configs import writeConfigDir
from tests.util.logs import captureLogs, handlerCalls, messages
from tests.util.objects import objectEntryPoint
from tests.util.plugins import FirstHandler, RecordingHandler, entryPoint

#: The three recording handlers, in an order that is not their priority
#: order, with an ordinary plugin among them.
HANDLERS = [
    entryPoint("third", "ThirdHandler"),
    entryPoint("plain", "Plain"),
    entryPoint("first", "FirstHandler"),
    entryPoint("second", "SecondHandler"),
]


def testConfig(strict: bool = False, **agent: Any) -> AgentConfig:
    """
    @return: a configuration for node C{test-node}.
    """
    return defaultConfig(
        core=CoreConfig(id="test-node", strictPlugins=strict), agent=AgentSettings(**agent)
    )


class AgentMixin:
    """
    Builds agents on a L{FakeReactor} with chosen plugins, none from the
    environment, and checks that each leaves no timer behind.
    """

    def buildAgent(
        self,
        entryPoints: Sequence[EntryPoint],
        config: AgentConfig | None = None,
        objectEntryPoints: Sequence[EntryPoint] = (),
        **kwargs: Any,
    ) -> tuple[AgentService, FakeReactor]:
        """
        @return: an agent built by L{makeAgent} from C{entryPoints}, and its
            reactor.  The agent is stopped at the end of the test if it runs.
        """
        testCase = cast(SynchronousTestCase, self)
        reactor = FakeReactor()
        agent = makeAgent(
            config or testConfig(),
            reactor=reactor,
            entryPoints=entryPoints,
            dropins=tests.util.nodropins,
            objectEntryPoints=objectEntryPoints,
            **kwargs,
        )

        def cleanUp() -> None:
            if agent.running:
                testCase.successResultOf(agent.stopService())
            testCase.assertEqual(reactor.getDelayedCalls(), [])

        testCase.addCleanup(cleanUp)
        return agent, reactor

    def handler(self, agent: AgentService, name: str) -> RecordingHandler:
        """
        @return: the recording handler loaded as C{name}.
        """
        return cast(RecordingHandler, agent.context.plugins.get(name))


class BuildTests(AgentMixin, SynchronousTestCase):
    """
    Tests for L{makeAgent}.
    """

    def test_serviceTree(self) -> None:
        """
        The agent is a service collection named after the node, with one
        child L{HandlerService} per interface handler, named after the
        plugin, in priority order; ordinary plugins are loaded but get no
        service.
        """
        agent, _ = self.buildAgent(HANDLERS)
        self.assertTrue(IServiceCollection.providedBy(agent))
        self.assertEqual(agent.name, "clacks-agent:test-node")
        self.assertEqual([s.name for s in agent], ["first", "second", "third"])
        self.assertIsInstance(agent.getServiceNamed("second"), HandlerService)
        self.assertEqual(agent.context.plugins.names(), ["first", "second", "third", "plain"])

    def test_context(self) -> None:
        """
        Every plugin gets the agent's context, which provides
        L{IAgentContext}, with a worker pool of C{[agent] threads} threads.
        """
        agent, reactor = self.buildAgent(HANDLERS, testConfig(threads=3))
        context = agent.context
        self.assertTrue(verifyObject(IAgentContext, context))
        self.assertTrue(verifyObject(IWorkerPool, context.workers))
        self.assertEqual(context.workers.size, 3)
        self.assertIs(context.reactor, reactor)
        for _, plugin in context.plugins:
            self.assertIs(plugin.context, context)

    def test_extraPlugins(self) -> None:
        """
        Plugins handed to L{makeAgent} directly are loaded and served like
        discovered ones.
        """
        events = captureLogs(self)
        agent, _ = self.buildAgent([], plugins=[("extra", FirstHandler)])
        agent.startService()
        self.assertEqual(handlerCalls(events), [("first", "serve")])
        self.assertEqual(agent.context.plugins.names(), ["extra"])

    def test_objects(self) -> None:
        """
        The agent's object registry holds the classes of the C{agent.object}
        entry points it is given.
        """
        agent, _ = self.buildAgent([], objectEntryPoints=[objectEntryPoint("Thing", "Thing")])
        self.assertEqual(agent.context.objects.oids(), ["Thing"])


class StartStopTests(AgentMixin, SynchronousTestCase):
    """
    Handlers start in priority order and stop in reverse, one at a time.
    """

    def test_serveInPriorityOrder(self) -> None:
        """
        Starting the agent calls C{serve()} of every handler, lowest priority
        first, after logging the version and node.
        """
        events = captureLogs(self)
        agent, _ = self.buildAgent(HANDLERS)
        agent.startService()
        self.assertTrue(agent.running)
        self.assertEqual(
            handlerCalls(events), [("first", "serve"), ("second", "serve"), ("third", "serve")]
        )
        self.assertIn(
            "clacks-agent 0.1.0 starting: node test-node in domain org.clacks (config: defaults)",
            messages(events),
        )

    def test_stopInReverseEachWaiting(self) -> None:
        """
        Stopping the agent calls C{stop()} of the handlers in reverse
        priority order, each only after the previous one's Deferred fired;
        the agent's own Deferred fires after the last.
        """
        events = captureLogs(self)
        agent, _ = self.buildAgent(HANDLERS)
        agent.startService()
        del events[:]
        for name in ("first", "second", "third"):
            self.handler(agent, name).stopResult = Deferred()
        stopped = agent.stopService()
        self.assertFalse(agent.running)
        self.assertEqual(handlerCalls(events), [("third", "stop")])
        self.assertNoResult(stopped)
        cast(Deferred[None], self.handler(agent, "third").stopResult).callback(None)
        self.assertEqual(handlerCalls(events), [("third", "stop"), ("second", "stop")])
        self.assertNoResult(stopped)
        cast(Deferred[None], self.handler(agent, "second").stopResult).callback(None)
        self.assertEqual(handlerCalls(events)[-1], ("first", "stop"))
        self.assertNoResult(stopped)
        cast(Deferred[None], self.handler(agent, "first").stopResult).callback(None)
        self.successResultOf(stopped)
        self.assertEqual(
            handlerCalls(events), [("third", "stop"), ("second", "stop"), ("first", "stop")]
        )
        self.assertEqual(messages(events)[-1], "clacks-agent stopped: node test-node")

    def test_stopTimeout(self) -> None:
        """
        A handler whose C{stop()} does not finish within the drain timeout
        plus L{STOP_GRACE} is reported as failed to stop, and the next one is
        stopped.
        """
        events = captureLogs(self)
        agent, reactor = self.buildAgent(HANDLERS, testConfig(drainTimeout=2.0))
        agent.startService()
        self.handler(agent, "second").stopResult = Deferred()
        stopped = agent.stopService()
        reactor.advance(2.0 + STOP_GRACE - 0.5)
        self.assertEqual(handlerCalls(events)[-1], ("second", "stop"))
        self.assertNoResult(stopped)
        reactor.advance(0.5)
        self.successResultOf(stopped)
        self.assertEqual(handlerCalls(events)[-1], ("first", "stop"))
        [failure] = agent.context.status()["failedPlugins"]
        self.assertEqual((failure["name"], failure["stage"]), ("second", "stop"))
        self.assertIn("TimeoutError", failure["error"])

    def test_configWarningsLogged(self) -> None:
        """
        An unknown configuration key is logged as a warning when the agent
        starts, and the agent starts anyway.
        """
        events = captureLogs(self)
        path = writeConfigDir(self.mktemp(), "[core]\nid = test-node\ncolour = red\n")
        agent, _ = self.buildAgent(HANDLERS, loadConfig(path))
        agent.startService()
        self.assertTrue(agent.running)
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(
            formatEvent(warning),
            f"Configuration: {os.path.join(path, 'config')}: [core] colour: unknown key, "
            "ignored (known keys: id, domain, strict-plugins, debug, users)",
        )
        self.assertEqual(len(handlerCalls(events)), 3)


class FailureTests(AgentMixin, SynchronousTestCase):
    """
    A failing plugin is reported and the others run, unless plugins are
    strict.
    """

    def assertFailed(self, agent: AgentService, name: str, stage: str, error: str) -> None:
        """
        Assert that the agent's status reports exactly one failed plugin.
        """
        [failure] = agent.context.status()["failedPlugins"]
        self.assertEqual(
            (failure["name"], failure["stage"], failure["error"]), (name, stage, error)
        )

    def test_initFailure(self) -> None:
        """
        A plugin raising in C{__init__} is left out, logged with its name and
        traceback and reported with stage C{init}; the agent serves the
        others.
        """
        events = captureLogs(self)
        agent, _ = self.buildAgent([*HANDLERS, entryPoint("broken", "BrokenInit")])
        self.assertFailed(agent, "broken", "init", "RuntimeError: broken on purpose in __init__")
        [failure] = agent.context.status()["failedPlugins"]
        self.assertEqual(
            failure["origin"], "entry point broken = tests.util.plugins:BrokenInit [agent.module]"
        )
        self.assertNotIn("broken", agent.context.plugins)
        [line] = [m for m in messages(events) if "Plugin broken failed" in m]
        self.assertIn("Plugin broken failed to init: RuntimeError: broken on purpose", line)
        self.assertIn("Traceback", line)
        agent.startService()
        self.assertEqual(
            handlerCalls(events), [("first", "serve"), ("second", "serve"), ("third", "serve")]
        )

    def test_serveFailure(self) -> None:
        """
        A handler raising in C{serve()} is reported with stage C{serve}; the
        handlers after it are served, the agent keeps running, and it still
        stops every handler.
        """
        events = captureLogs(self)
        agent, reactor = self.buildAgent([*HANDLERS, entryPoint("broken", "BrokenServe")])
        agent.startService()
        reactor.advance(0)
        self.assertEqual(
            handlerCalls(events),
            [
                ("first", "serve"),
                ("broken-serve", "serve"),
                ("second", "serve"),
                ("third", "serve"),
            ],
        )
        self.assertFailed(agent, "broken", "serve", "RuntimeError: broken on purpose in serve()")
        self.assertTrue(agent.running)
        self.assertIsNone(agent.fatalError)
        self.assertEqual(reactor.stops, 0)
        self.successResultOf(agent.stopService())
        self.assertEqual(
            [c for c in handlerCalls(events) if c[1] == "stop"],
            [("third", "stop"), ("second", "stop"), ("broken-serve", "stop"), ("first", "stop")],
        )

    def test_serveFailsLater(self) -> None:
        """
        A C{serve()} whose Deferred fails is reported with stage C{serve}
        when it fails.
        """
        agent, _ = self.buildAgent(HANDLERS)
        serving: Deferred[None] = Deferred()
        self.handler(agent, "second").serveResult = serving
        agent.startService()
        self.assertEqual(agent.context.status()["failedPlugins"], [])
        serving.errback(ConnectionRefusedError("no broker"))
        self.assertFailed(agent, "second", "serve", "ConnectionRefusedError: no broker")

    def test_stopFailure(self) -> None:
        """
        A handler raising in C{stop()} is reported with stage C{stop}; the
        handler before it is still stopped and the agent stops.
        """
        events = captureLogs(self)
        agent, _ = self.buildAgent([*HANDLERS, entryPoint("broken", "BrokenStop")])
        agent.startService()
        self.successResultOf(agent.stopService())
        self.assertEqual(
            [c for c in handlerCalls(events) if c[1] == "stop"],
            [("third", "stop"), ("second", "stop"), ("broken-stop", "stop"), ("first", "stop")],
        )
        self.assertFailed(agent, "broken", "stop", "RuntimeError: broken on purpose in stop()")

    def test_loadFailure(self) -> None:
        """
        An entry point that cannot be imported is reported with stage
        C{load}; the agent builds with the other plugins.
        """
        ghost = EntryPoint("ghost", "tests.util.nosuchmodule:Ghost", ENTRY_POINT_GROUP)
        agent, _ = self.buildAgent([*HANDLERS, ghost])
        [failure] = agent.context.status()["failedPlugins"]
        self.assertEqual((failure["name"], failure["stage"]), ("ghost", "load"))
        self.assertEqual([s.name for s in agent], ["first", "second", "third"])

    def test_objectFailureInStatus(self) -> None:
        """
        An object entry point that fails to load is reported in the status
        too.
        """
        ghost = EntryPoint("Ghost", "tests.util.nosuchmodule:Ghost", OBJECT_GROUP)
        agent, _ = self.buildAgent(HANDLERS, objectEntryPoints=[ghost])
        [failure] = agent.context.status()["failedPlugins"]
        self.assertEqual((failure["name"], failure["stage"]), ("Ghost", "load"))

    def test_strictInitFailure(self) -> None:
        """
        With C{core.strict-plugins}, a plugin raising in C{__init__} makes
        L{makeAgent} raise L{PluginError} naming the plugin and stage.
        """
        error = self.assertRaises(
            PluginError,
            self.buildAgent,
            [*HANDLERS, entryPoint("broken", "BrokenInit")],
            testConfig(strict=True),
        )
        self.assertEqual(
            str(error), "plugin broken failed to init: RuntimeError: broken on purpose in __init__"
        )

    def test_strictLoadFailure(self) -> None:
        """
        With C{core.strict-plugins}, a plugin that cannot be loaded makes
        L{makeAgent} raise L{PluginError}.
        """
        ghost = EntryPoint("ghost", "tests.util.nosuchmodule:Ghost", ENTRY_POINT_GROUP)
        error = self.assertRaises(
            PluginError, self.buildAgent, [*HANDLERS, ghost], testConfig(strict=True)
        )
        self.assertIn("plugin ghost failed to load", str(error))

    def test_strictObjectFailure(self) -> None:
        """
        With C{core.strict-plugins}, an object entry point that cannot be
        loaded makes L{makeAgent} raise L{PluginError}.
        """
        ghost = EntryPoint("Ghost", "tests.util.nosuchmodule:Ghost", OBJECT_GROUP)
        error = self.assertRaises(
            PluginError,
            self.buildAgent,
            HANDLERS,
            testConfig(strict=True),
            objectEntryPoints=[ghost],
        )
        self.assertIn("object Ghost failed to load", str(error))

    def test_strictServeFailureIsFatal(self) -> None:
        """
        With C{core.strict-plugins}, a handler raising in C{serve()} calls
        the agent's C{fatal}: the reason is kept and logged, and the reactor
        is stopped on the next turn.
        """
        events = captureLogs(self)
        agent, reactor = self.buildAgent(
            [*HANDLERS, entryPoint("broken", "BrokenServe")], testConfig(strict=True)
        )
        agent.startService()
        reason = "plugin broken failed to serve: RuntimeError: broken on purpose in serve()"
        self.assertEqual(agent.fatalError, reason)
        self.assertIn(f"Fatal: {reason}; stopping the agent", messages(events))
        self.assertEqual(reactor.stops, 0)
        reactor.advance(0)
        self.assertEqual(reactor.stops, 1)

    def test_fatalOnce(self) -> None:
        """
        L{AgentService.fatal} keeps the first reason and stops the reactor
        once.
        """
        agent, reactor = self.buildAgent(HANDLERS)
        agent.startService()
        agent.fatal("first reason")
        agent.fatal("second reason")
        reactor.advance(0)
        self.assertEqual((agent.fatalError, reactor.stops), ("first reason", 1))


class StatusTests(AgentMixin, SynchronousTestCase):
    """
    Tests for C{AgentContext.status}.
    """

    def test_status(self) -> None:
        """
        The status names the node and domain, the loaded plugins in start
        order, no failures, and no busy workers.
        """
        agent, _ = self.buildAgent(HANDLERS)
        status = agent.context.status()
        self.assertEqual(
            {k: status[k] for k in ("node", "domain", "plugins", "failedPlugins", "workersBusy")},
            {
                "node": "test-node",
                "domain": "org.clacks",
                "plugins": ["first", "second", "third", "plain"],
                "failedPlugins": [],
                "workersBusy": 0,
            },
        )
