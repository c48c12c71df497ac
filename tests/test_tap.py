"""
Tests for L{clacks.agent.tap}, the C{twistd clacks-agent} plugin, and for
its drop-in C{twisted/plugins/clacks_agent.py}.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import textwrap
from typing import Any

from twisted.application.service import IService, IServiceMaker
from twisted.internet.defer import inlineCallbacks
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

import clacks.agent.service
import tests.util.nodropins
from clacks.agent import tap
from clacks.agent.service import AgentService
from tests.fakes.reactor import FakeReactor
from tests.util.configs import OFFLINE, writeConfigDir
from tests.util.plugins import entryPoint
from tests.util.processes import ProcessResult, childEnvironment, run, spawn, writeDropin

#: A drop-in interface handler that logs when it serves and stops, and once
#: the reactor runs (twistd starts services before it runs the reactor, and
#: only a running reactor handles SIGTERM).
GOOD_HANDLER = """
from zope.interface import implementer
from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler

@implementer(IInterfaceHandler)
class GoodHandler(Plugin):
    def serve(self):
        self.log.info("good handler serving")
        self.context.reactor.callWhenRunning(self.log.info, "good handler running")

    def stop(self):
        self.log.info("good handler stopped")
"""


def twistdCommand(*args: str) -> list[str]:
    """
    @return: the command line of C{twistd ARGS} with this Python.
    """
    return [
        sys.executable,
        "-c",
        "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
        *args,
    ]


class OptionsTests(SynchronousTestCase):
    """
    Tests for L{tap.Options}.
    """

    def test_defaults(self) -> None:
        """
        The configuration defaults to C{/etc/clacks} and there is no broker
        URL.
        """
        options = tap.Options()
        self.assertEqual((options["config"], options["url"]), ("/etc/clacks", None))

    def test_config(self) -> None:
        """
        C{-c DIR} loads the configuration of C{DIR}.
        """
        path = writeConfigDir(self.mktemp())
        options = tap.Options()
        options.parseOptions(["-c", path])
        self.assertEqual(options.agentConfig.core.id, "test-node")
        self.assertTrue(options.agentConfig.standalone)

    def test_url(self) -> None:
        """
        C{--url} overrides C{[amqp] url}.
        """
        path = writeConfigDir(self.mktemp(), OFFLINE.replace("url =", "url = amqp://a:b@h1/"))
        options = tap.Options()
        options.parseOptions(["--config", path, "--url", "amqp://u:p@h2:1234/v"])
        url = options.agentConfig.amqp.url
        assert url is not None
        self.assertEqual((url.host, url.port, url.vhost, url.username), ("h2", 1234, "v", "u"))

    def test_badConfig(self) -> None:
        """
        A bad configuration is a L{usage.UsageError} whose message is the one
        line naming file, section and key.
        """
        path = writeConfigDir(self.mktemp(), "[amqp]\nqueue-type = stream\n")
        error = self.assertRaises(usage.UsageError, tap.Options().parseOptions, ["-c", path])
        self.assertEqual(
            str(error),
            f"{os.path.join(path, 'config')}: [amqp] queue-type = 'stream': "
            "expected classic or quorum",
        )


class MakeServiceTests(SynchronousTestCase):
    """
    Tests for L{tap.makeService}.
    """

    def setUp(self) -> None:
        # makeService finds plugins in the environment; give it ours only.
        self.patch(
            clacks.agent.service,
            "makeAgent",
            functools.partial(
                clacks.agent.service.makeAgent,
                entryPoints=[entryPoint("first", "FirstHandler"), entryPoint("plain", "Plain")],
                dropins=tests.util.nodropins,
                objectEntryPoints=[],
            ),
        )

    def options(self, config: str = OFFLINE) -> tap.Options:
        options = tap.Options()
        options.parseOptions(["-c", writeConfigDir(self.mktemp(), config)])
        return options

    def test_service(self) -> None:
        """
        L{tap.makeService} returns the agent: an L{IService} named after the
        node, on the reactor it is given, with its handlers as children.
        """
        reactor = FakeReactor()
        service = tap.makeService(self.options(), reactor=reactor)
        self.assertTrue(verifyObject(IService, service))
        assert isinstance(service, AgentService)
        self.assertEqual(service.name, "clacks-agent:test-node")
        self.assertIs(service.context.reactor, reactor)
        self.assertEqual([s.name for s in service], ["first"])

    def test_globalReactor(self) -> None:
        """
        Without a reactor, L{tap.makeService} uses the global one.
        """
        from twisted.internet import reactor

        service = tap.makeService(self.options())
        assert isinstance(service, AgentService)
        self.assertIs(service.context.reactor, reactor)

    def test_strictPluginFailure(self) -> None:
        """
        A plugin failure under C{core.strict-plugins} is a
        L{usage.UsageError} naming the plugin, so twistd exits with it.
        """
        self.patch(
            clacks.agent.service,
            "makeAgent",
            functools.partial(
                clacks.agent.service.makeAgent,
                entryPoints=[entryPoint("broken", "BrokenInit")],
                dropins=tests.util.nodropins,
                objectEntryPoints=[],
            ),
        )
        options = self.options(OFFLINE.replace("[core]\n", "[core]\nstrict-plugins = yes\n"))
        error = self.assertRaises(usage.UsageError, tap.makeService, options, FakeReactor())
        self.assertEqual(
            str(error), "plugin broken failed to init: RuntimeError: broken on purpose in __init__"
        )


class ServiceMakerTests(SynchronousTestCase):
    """
    Tests for the twistd drop-in.
    """

    def test_found(self) -> None:
        """
        Twisted's plugin system finds a service maker with tapname
        C{clacks-agent} that uses L{tap.Options} and L{tap.makeService}.
        """
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "clacks-agent"]
        [maker] = makers
        self.assertTrue(verifyObject(IServiceMaker, maker))
        self.assertIs(maker.options, tap.Options)
        self.assertIs(maker.makeService, tap.makeService)
        self.assertIn("clacks agent", maker.description)


class TwistdTests(TestCase):
    """
    The plugin in real child processes.
    """

    timeout = 120

    @inlineCallbacks
    def test_noReactorAtImport(self) -> Any:
        """
        Importing the drop-in and the tap module does not import (and so
        install) a reactor: twistd can still install the one the user
        picks.
        """
        result: ProcessResult = yield run(
            self,
            [
                sys.executable,
                "-c",
                "import sys, clacks.agent.tap, twisted.plugins.clacks_agent; "
                "print('twisted.internet.reactor' in sys.modules)",
            ],
        )
        self.assertEqual((result.code, result.out), (0, "False\n"), result.describe())

    @inlineCallbacks
    def test_twistdRunsAgent(self) -> Any:
        """
        C{twistd -n clacks-agent -c DIR} runs the agent with its handlers
        and stops them cleanly on SIGTERM; twistd then ends by re-raising
        the signal, as it does for every application.
        """
        config = writeConfigDir(self.mktemp())
        root = writeDropin(self.mktemp(), "good", textwrap.dedent(GOOD_HANDLER))
        child = spawn(
            self,
            twistdCommand("-n", "--pidfile=", "--logfile=-", "clacks-agent", "-c", config),
            env=childEnvironment([root]),
        )
        yield child.waitFor(r"good handler running")
        child.signal("TERM")
        result: ProcessResult = yield child.ended()
        self.assertEqual((result.code, result.signal), (None, signal.SIGTERM), result.describe())
        out = result.out
        self.assertLess(out.index("good handler stopped"), out.index("clacks-agent stopped"))
        self.assertLess(
            out.index("clacks-agent stopped: node test-node"), out.index("Server Shut Down.")
        )
        self.assertNotIn("Traceback", out + result.err)

    @inlineCallbacks
    def test_twistdBadConfig(self) -> Any:
        """
        With a bad configuration, C{twistd clacks-agent} exits with a
        non-zero status and prints the line naming file, section and key.
        """
        config = writeConfigDir(self.mktemp(), "[agent]\nthreads = -1\n")
        result: ProcessResult = yield run(
            self, twistdCommand("-n", "--pidfile=", "clacks-agent", "-c", config)
        )
        self.assertNotEqual(result.code, 0, result.describe())
        self.assertIn(
            f"{os.path.join(config, 'config')}: [agent] threads = '-1': "
            "expected a whole number, 1 or more",
            result.out + result.err,
        )
