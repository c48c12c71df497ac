"""
Packaging: the twistd plugin is visible after a normal and after the
development install, and separately installed plugin packages and drop-in
files are discovered, served and stopped by a real C{clacks-agent}.

Each test installs into its own temporary directory with C{pip install
--target} and runs children with that directory on their path; nothing is
installed into the test's own environment and the repository is not
written to (sources are copied first).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.util.configs import writeConfigDir
from tests.util.processes import (
    REPO_ROOT,
    ProcessResult,
    agentCommand,
    childEnvironment,
    pipInstall,
    run,
    spawn,
    writeDropin,
)

#: The example plugin package.
HELLO_PLUGIN = os.path.join(REPO_ROOT, "examples", "hello-plugin")

#: A configuration without network that logs at debug level, so that the
#: agent says where it found each plugin.
DEBUG_OFFLINE = """\
[core]
id = hello-node
debug = true
[amqp]
url =
[http]
listen = none
"""

#: Run twistd --help with sys.path set to argv[1] (a JSON list) followed by
#: the interpreter's own entries minus argv[2] (the repository root) and
#: the current directory; then report, as JSON on the last line, where the
#: clacks package and the twistd drop-in were imported from.
TWISTD_HELP = """
import json, os, sys
first, hidden = json.loads(sys.argv[1]), os.path.realpath(sys.argv[2])
sys.path[:] = first + [
    p for p in sys.path if p and os.path.realpath(p) != hidden and p not in first
]
from twisted.scripts.twistd import run
sys.argv[1:] = ["--help"]
sys.argv[0] = "twistd"
try:
    run()
except SystemExit as e:
    code = e.code
import twisted.plugins
try:
    import clacks
except ImportError:
    clacks = None
dropin = sys.modules.get("twisted.plugins.clacks_agent")
print(json.dumps({
    "code": code,
    "clacks": getattr(clacks, "__file__", None),
    "dropin": getattr(dropin, "__file__", None),
    "path": sys.path,
    "pluginPath": list(twisted.plugins.__path__),
}))
"""

#: A drop-in interface handler, as a user would write it.
HELLO_DROPIN = """
'''
A drop-in clacks plugin: one file in a clacks/plugins/ directory on
sys.path, no package, no entry point.
'''

from zope.interface import implementer

from clacks.common.components.plugin import Plugin
from clacks.common.handler import IInterfaceHandler


@implementer(IInterfaceHandler)
class HelloDropin(Plugin):
    _priority_ = 15

    def serve(self):
        self.log.info("hello drop-in serving")

    def stop(self):
        self.log.info("hello drop-in stopped")
"""


def _ignoreForCopy(directory: str, names: list[str]) -> set[str]:
    """
    What a fresh clone would not have: the git directory, virtualenvs, build
    output, caches, test scratch directories.
    """
    topLevel = os.path.realpath(directory) in (
        os.path.realpath(REPO_ROOT),
        os.path.realpath(HELLO_PLUGIN),
    )
    return {
        n
        for n in names
        if (topLevel and n in (".git", "build", "dist"))
        or n in ("__pycache__", ".mypy_cache", ".ruff_cache", ".hypothesis", "dropin.cache")
        or n.startswith("_trial_temp")
        or n.endswith((".egg-info", ".pyc"))
        or os.path.isfile(os.path.join(directory, n, "pyvenv.cfg"))
    }


def inOrder(testCase: TestCase, text: str, *parts: str) -> None:
    """
    Assert that each of C{parts} occurs in C{text}, in this order.
    """
    position = -1
    for part in parts:
        found = text.find(part, position + 1)
        if found == -1:
            testCase.fail(f"{part!r} not found after position {position} in:\n{text}")
        position = found


class TwistdPluginTests(TestCase):
    """
    C{twistd --help} lists C{clacks-agent}.
    """

    timeout = 180

    def twistdHelp(self, first: list[str]) -> Any:
        """
        Run C{twistd --help} with C{first} at the front of C{sys.path} and
        the repository root removed from it.

        @return: a Deferred firing with C{(ProcessResult, report)}.
        """
        d = run(
            self,
            [sys.executable, "-c", TWISTD_HELP, json.dumps(first), REPO_ROOT],
        )

        def parse(result: ProcessResult) -> tuple[ProcessResult, dict[str, Any]]:
            self.assertEqual(result.code, 0, result.describe())
            return result, json.loads(result.out.strip().splitlines()[-1])

        return d.addCallback(parse)

    @inlineCallbacks
    def test_installed(self) -> Any:
        """
        After a normal (non-editable) C{pip install} of a copy of the
        repository, C{twistd --help} lists C{clacks-agent}, with C{clacks}
        and the drop-in imported from the install and not from the
        repository.
        """
        source = os.path.abspath(self.mktemp())
        shutil.copytree(REPO_ROOT, source, ignore=_ignoreForCopy)
        target = os.path.abspath(self.mktemp())
        installed: ProcessResult = yield pipInstall(self, source, target)
        self.assertEqual(installed.code, 0, installed.describe())
        self.assertTrue(
            os.path.isfile(os.path.join(target, "twisted", "plugins", "clacks_agent.py"))
        )
        self.assertFalse(os.path.exists(os.path.join(target, "twisted", "__init__.py")))
        self.assertFalse(os.path.exists(os.path.join(target, "twisted", "plugins", "__init__.py")))

        result, report = yield self.twistdHelp([target])
        self.assertEqual(report["code"], 0)
        self.assertRegex(result.out, r"\n\s+clacks-agent\s+The clacks agent daemon")
        self.assertEqual(
            os.path.realpath(report["clacks"]),
            os.path.realpath(os.path.join(target, "clacks", "__init__.py")),
        )
        self.assertEqual(
            os.path.realpath(report["dropin"]),
            os.path.realpath(os.path.join(target, "twisted", "plugins", "clacks_agent.py")),
        )
        root = os.path.realpath(REPO_ROOT)
        self.assertNotIn(root, [os.path.realpath(p) for p in report["path"] if p])
        self.assertNotIn(
            os.path.join(root, "twisted", "plugins"),
            [os.path.realpath(p) for p in report["pluginPath"]],
        )

    @inlineCallbacks
    def test_notInstalled(self) -> Any:
        """
        Without the install, the same C{twistd --help} does not list
        C{clacks-agent}: the test above sees the install, not the
        repository.
        """
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        result, report = yield self.twistdHelp([empty])
        self.assertNotIn("clacks-agent", result.out.rsplit("\n", 2)[0])
        self.assertIsNone(report["dropin"])

    @inlineCallbacks
    def test_developmentInstall(self) -> Any:
        """
        In the development install (the Makefile's editable compat install,
        which runs these tests), C{twistd --help} lists C{clacks-agent}
        when run from outside the repository.
        """
        result: ProcessResult = yield run(
            self,
            [
                sys.executable,
                "-c",
                "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()",
                "--help",
            ],
        )
        self.assertEqual(result.code, 0, result.describe())
        self.assertRegex(result.out, r"\n\s+clacks-agent\s+The clacks agent daemon")

    @inlineCallbacks
    def test_developmentConsoleScript(self) -> Any:
        """
        The C{twistd} console script of the development environment lists
        C{clacks-agent} too.
        """
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        if not os.access(twistd, os.X_OK):
            self.skipTest(f"no twistd script next to {sys.executable}")
        result: ProcessResult = yield run(self, [twistd, "--help"])
        self.assertEqual(result.code, 0, result.describe())
        self.assertRegex(result.out, r"\n\s+clacks-agent\s+The clacks agent daemon")


class PluginPackageTests(TestCase):
    """
    Plugins from outside the agent's package, run by a real agent.
    """

    timeout = 180

    def startAgent(self, pythonPath: str) -> Any:
        """
        Start C{clacks-agent} with C{pythonPath} and a configuration without
        network at debug level.

        @return: the child.
        """
        config = writeConfigDir(self.mktemp(), DEBUG_OFFLINE)
        return spawn(self, agentCommand("-c", config), env=childEnvironment([pythonPath]))

    @inlineCallbacks
    def test_pluginPackage(self) -> Any:
        """
        The example package, installed on its own, is discovered from its
        entry points: its plugins are created in priority order (the handler,
        priority 10, before the plugin, priority 20, although its name sorts
        later), its object class is registered under its OID, its handler is
        served, and on SIGTERM it is stopped and the agent exits with 0.
        """
        source = os.path.abspath(self.mktemp())
        shutil.copytree(HELLO_PLUGIN, source, ignore=_ignoreForCopy)
        target = os.path.abspath(self.mktemp())
        installed: ProcessResult = yield pipInstall(self, source, target)
        self.assertEqual(installed.code, 0, installed.describe())
        self.assertTrue(os.path.isdir(os.path.join(target, "clacks_hello")))

        child = self.startAgent(target)
        yield child.waitFor(r"hello handler serving")
        child.signal("TERM")
        result: ProcessResult = yield child.ended()
        self.assertEqual(result.code, 0, result.describe())
        inOrder(
            self,
            result.out,
            "Found plugin hello (priority 20) from entry point hello = "
            "clacks_hello.plugin:HelloPlugin [agent.module] of clacks-hello-plugin 0.1.0",
            "Loaded plugin hello-handler (priority 10, interface handler)",
            "Loaded plugin hello (priority 20, plugin)",
            "Starting interface handler hello-handler",
            "hello handler serving on node hello-node (objects: HelloGreeting; "
            "greeting: Hello, world, from hello-node!)",
            "Received SIGTERM, shutting down.",
            "Stopping interface handler hello-handler",
            "hello handler stopped",
            "clacks-agent stopped: node hello-node",
        )
        self.assertIn(
            "Found plugin hello-handler (priority 10) from entry point hello-handler = "
            "clacks_hello.handler:HelloHandler [agent.module] of clacks-hello-plugin 0.1.0",
            result.out,
        )
        self.assertNotIn("failed to", result.out)

    @inlineCallbacks
    def test_dropin(self) -> Any:
        """
        A single drop-in file in a C{clacks/plugins/} directory on the path
        (no package, no C{__init__.py}) is found under its class name,
        served, and stopped on SIGTERM, and the agent exits with 0.
        """
        root = writeDropin(self.mktemp(), "hello_dropin", textwrap.dedent(HELLO_DROPIN))
        self.assertFalse(os.path.exists(os.path.join(root, "clacks", "__init__.py")))
        child = self.startAgent(root)
        yield child.waitFor(r"hello drop-in serving")
        child.signal("TERM")
        result: ProcessResult = yield child.ended()
        self.assertEqual(result.code, 0, result.describe())
        inOrder(
            self,
            result.out,
            "Found plugin HelloDropin (priority 15) from drop-in clacks.plugins.hello_dropin",
            "Loaded plugin HelloDropin (priority 15, interface handler)",
            "Starting interface handler HelloDropin",
            "hello drop-in serving",
            "Received SIGTERM, shutting down.",
            "Stopping interface handler HelloDropin",
            "hello drop-in stopped",
            "clacks-agent stopped: node hello-node",
        )
        self.assertNotIn("failed to", result.out)
