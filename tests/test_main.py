"""
Tests for L{clacks.agent.main}, the C{clacks-agent} command.

The command line is parsed in-process; everything that runs the agent runs
a real C{clacks-agent} child process (it takes over the global reactor and
logging), with a configuration that opens no network connection.
"""

from __future__ import annotations

import io
import os
import pstats
import re
import sys
import textwrap
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

import clacks
from clacks.agent.main import EXIT_FAILED, EXIT_OK, EXIT_USAGE, buildParser, run
from tests.util.configs import OFFLINE, writeConfigDir
from tests.util.processes import (
    ProcessResult,
    agentCommand,
    childEnvironment,
    spawn,
    writeDropin,
)
from tests.util.processes import run as runChild

#: A drop-in interface handler that logs when it serves and stops.
GOOD_HANDLER = """
from zope.interface import implementer
from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler

@implementer(IInterfaceHandler)
class GoodHandler(Plugin):
    _priority_ = 60

    def serve(self):
        self.log.info("good handler serving")

    def stop(self):
        self.log.info("good handler stopped")
"""

#: A drop-in plugin that raises in its constructor.
BROKEN_INIT = """
from clacks.common.components.plugin import Plugin

class BrokenInit(Plugin):
    _priority_ = 0

    def __init__(self, context):
        raise RuntimeError("broken on purpose in __init__")
"""

#: A drop-in interface handler that raises in C{serve()}.
BROKEN_SERVE = """
from zope.interface import implementer
from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler

@implementer(IInterfaceHandler)
class BrokenServe(Plugin):
    _priority_ = 0

    def serve(self):
        raise RuntimeError("broken on purpose in serve()")

    def stop(self):
        self.log.info("broken handler stopped")
"""


def offlineConfig(strict: bool = False) -> str:
    """
    @return: the text of a configuration without network, strict or not.
    """
    return OFFLINE.replace("[core]\n", f"[core]\nstrict-plugins = {str(strict).lower()}\n")


class ParserTests(SynchronousTestCase):
    """
    Tests for the command line parser and for L{run} before it starts
    anything.
    """

    def test_defaults(self) -> None:
        """
        Without arguments the configuration is C{/etc/clacks}, there is no
        broker URL and no profiling.
        """
        options = buildParser().parse_args([])
        self.assertEqual(
            (options.config, options.url, options.profile), ("/etc/clacks", None, False)
        )

    def test_options(self) -> None:
        """
        C{-c}, C{--url} and C{--profile} are parsed.
        """
        options = buildParser().parse_args(["-c", "dir", "--url", "amqp://h/", "--profile"])
        self.assertEqual((options.config, options.url, options.profile), ("dir", "amqp://h/", True))
        options = buildParser().parse_args(["--config", "other"])
        self.assertEqual(options.config, "other")

    def test_badConfig(self) -> None:
        """
        L{run} with a bad configuration returns L{EXIT_USAGE} after writing
        one line naming file, section, key and what is expected to stderr;
        it starts nothing.
        """
        path = writeConfigDir(self.mktemp(), "[agent]\nthreads = many\n")
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        self.assertEqual(run(["-c", path]), EXIT_USAGE)
        self.assertEqual(
            stderr.getvalue(),
            f"clacks-agent: {os.path.join(path, 'config')}: [agent] threads = 'many': "
            "expected a whole number, 1 or more\n",
        )


class CommandTests(TestCase):
    """
    C{clacks-agent} as a child process.
    """

    timeout = 120

    def startAgent(
        self, config: str = OFFLINE, *args: str, dropins: dict[str, str] | None = None
    ) -> Any:
        """
        Start C{clacks-agent -c DIR ARGS} with C{config} in DIR and
        C{dropins} (module name to source) on its path.

        @return: the L{tests.util.processes.Child}.
        """
        path = writeConfigDir(self.mktemp(), config)
        pythonPath = []
        if dropins:
            root = os.path.abspath(self.mktemp())
            for module, source in dropins.items():
                writeDropin(root, module, textwrap.dedent(source))
            pythonPath.append(root)
        self.cwd = os.path.abspath(self.mktemp())
        os.makedirs(self.cwd)
        return spawn(
            self,
            agentCommand("-c", path, *args),
            env=childEnvironment(pythonPath),
            cwd=self.cwd,
        )

    @inlineCallbacks
    def test_help(self) -> Any:
        """
        C{clacks-agent --help} shows the usage line and every option with
        its default, and exits with status 0.
        """
        result: ProcessResult = yield runChild(self, agentCommand("--help"))
        self.assertEqual(result.code, 0, result.describe())
        self.assertTrue(result.out.startswith("usage: clacks-agent - the clacks core daemon\n"))
        for expected in (
            "-h, --help",
            "--version",
            "-c FILE, --config FILE",
            "[/etc/clacks]",
            "--url URL",
            "--profile",
        ):
            self.assertIn(expected, result.out)

    @inlineCallbacks
    def test_version(self) -> Any:
        """
        C{clacks-agent --version} prints the version of the package and
        exits with status 0.
        """
        result: ProcessResult = yield runChild(self, agentCommand("--version"))
        self.assertEqual(result.code, 0, result.describe())
        self.assertEqual(result.out, f"clacks-agent {clacks.__version__}\n")

    @inlineCallbacks
    def test_badConfig(self) -> Any:
        """
        With a bad configuration value, C{clacks-agent} exits with a non-zero
        status and one line on stderr naming file, section, key and what is
        expected.
        """
        child = self.startAgent("[core]\nid = n1\n[http]\nlisten = 8080\n")
        result: ProcessResult = yield child.ended()
        self.assertEqual(result.code, EXIT_USAGE, result.describe())
        [line] = result.err.splitlines()
        self.assertRegex(
            line,
            r"^clacks-agent: /\S+/config: \[http\] listen = '8080': expected a Twisted "
            r"endpoint string",
        )
        self.assertEqual(result.out, "")

    @inlineCallbacks
    def test_missingConfig(self) -> Any:
        """
        A configuration path that does not exist makes C{clacks-agent} exit
        with a non-zero status, naming the path.
        """
        missing = os.path.abspath(self.mktemp())
        result: ProcessResult = yield runChild(self, agentCommand("-c", missing))
        self.assertEqual(result.code, EXIT_USAGE, result.describe())
        self.assertEqual(
            result.err,
            f"clacks-agent: {missing}: no such file or directory (give the config with -c)\n",
        )

    @inlineCallbacks
    def stopWithSignal(self, signal: str) -> Any:
        """
        Start the agent with a drop-in handler, wait until it serves, send
        C{signal}, and check that the agent stopped its handlers and exited
        with status 0.
        """
        child = self.startAgent(dropins={"good": GOOD_HANDLER})
        yield child.waitFor(r"good handler serving")
        child.signal(signal)
        result: ProcessResult = yield child.ended()
        self.assertEqual(result.code, EXIT_OK, result.describe())
        out = result.out
        self.assertIn(f"Received SIG{signal}, shutting down.", out)
        self.assertLess(out.index(f"Received SIG{signal}"), out.index("good handler stopped"))
        self.assertLess(
            out.index("good handler stopped"), out.index("clacks-agent stopped: node test-node")
        )
        self.assertNotIn("Traceback", out + result.err)

    def test_sigterm(self) -> Any:
        """
        SIGTERM stops C{clacks-agent} cleanly: handlers are stopped and the
        exit status is 0.
        """
        return self.stopWithSignal("TERM")

    def test_sigint(self) -> Any:
        """
        SIGINT (Ctrl-C) stops C{clacks-agent} cleanly too, with exit status
        0.
        """
        return self.stopWithSignal("INT")

    @inlineCallbacks
    def test_initFailureStrict(self) -> Any:
        """
        With C{core.strict-plugins = true}, a plugin raising in C{__init__}
        makes C{clacks-agent} log why and exit with a non-zero status
        before starting.
        """
        child = self.startAgent(offlineConfig(strict=True), dropins={"broken": BROKEN_INIT})
        result: ProcessResult = yield child.ended()
        self.assertEqual(result.code, EXIT_FAILED, result.describe())
        self.assertIn(
            "Fatal: plugin BrokenInit failed to init: RuntimeError: broken on purpose in __init__",
            result.out,
        )
        self.assertNotIn("starting: node", result.out)

    @inlineCallbacks
    def test_brokenDropinStrict(self) -> Any:
        """
        With C{core.strict-plugins = true}, a drop-in file that fails to
        import is fatal too: C{clacks-agent} names the file and the error
        and exits with a non-zero status.
        """
        child = self.startAgent(
            offlineConfig(strict=True), dropins={"halfwritten": "class Broken(:\n"}
        )
        result: ProcessResult = yield child.ended()
        self.assertEqual(result.code, EXIT_FAILED, result.describe())
        self.assertIn("Fatal: plugin halfwritten failed to load: SyntaxError", result.out)
        self.assertNotIn("starting: node", result.out)

    @inlineCallbacks
    def test_serveFailureStrict(self) -> Any:
        """
        With C{core.strict-plugins = true}, a handler raising in C{serve()}
        is fatal: C{clacks-agent} logs why, stops its handlers and exits
        with a non-zero status, without being signalled.
        """
        child = self.startAgent(
            offlineConfig(strict=True), dropins={"broken": BROKEN_SERVE, "good": GOOD_HANDLER}
        )
        result: ProcessResult = yield child.ended()
        self.assertEqual(result.code, EXIT_FAILED, result.describe())
        self.assertIn(
            "Fatal: plugin BrokenServe failed to serve: RuntimeError: broken on purpose in serve()",
            result.out,
        )
        self.assertIn("good handler stopped", result.out)
        self.assertIn("clacks-agent stopped: node test-node", result.out)

    @inlineCallbacks
    def test_serveFailureNotStrict(self) -> Any:
        """
        Without C{core.strict-plugins}, a handler raising in C{serve()} is
        logged with its name and the agent keeps serving the others until it
        is stopped, with exit status 0.
        """
        child = self.startAgent(
            offlineConfig(strict=False), dropins={"broken": BROKEN_SERVE, "good": GOOD_HANDLER}
        )
        yield child.waitFor(r"good handler serving")
        self.assertIn(
            "Plugin BrokenServe failed to serve: RuntimeError: broken on purpose in serve()",
            child.out,
        )
        child.signal("TERM")
        result: ProcessResult = yield child.ended()
        self.assertEqual(result.code, EXIT_OK, result.describe())
        self.assertIn("good handler stopped", result.out)

    @inlineCallbacks
    def test_profile(self) -> Any:
        """
        With C{--profile}, C{clacks-agent} writes a profile when it stops,
        names the file in its log, and the file is readable by L{pstats}
        and covers the agent's own code.
        """
        child = self.startAgent(OFFLINE, "--profile", dropins={"good": GOOD_HANDLER})
        yield child.waitFor(r"good handler serving")
        child.signal("TERM")
        result: ProcessResult = yield child.ended()
        self.assertEqual(result.code, EXIT_OK, result.describe())
        match = re.search(r"Profile written to (\S+\.prof) \(read it with", result.out)
        if match is None:
            self.fail(f"no profile line:\n{result.describe()}")
        path = match.group(1)
        self.assertTrue(os.path.isabs(path))
        self.assertEqual(os.path.dirname(path), self.cwd)
        stats = pstats.Stats(path)
        functions = {(os.path.basename(f), name) for f, _, name in stats.stats}  # type: ignore[attr-defined]
        self.assertIn(("service.py", "startService"), functions)
