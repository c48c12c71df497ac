"""
Tests for L{clacks.agent.config}: reading, merging and validating the
configuration.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from clacks.agent.config import (
    DEFAULT_CONFIG_PATH,
    AgentConfig,
    ConfigError,
    CoreConfig,
    configFiles,
    defaultConfig,
    loadConfig,
)
from clacks.agent.tap import loadAgentConfig
from tests.util.configs import writeConfigDir


class DefaultsTests(SynchronousTestCase):
    """
    What a minimal configuration gives.
    """

    def test_defaults(self) -> None:
        """
        A configuration that only names the node gets every default: domain
        C{org.clacks}, plugins not strict, standalone (no broker URL), HTTP
        on 127.0.0.1:8080, 8 worker threads, node timeout of three status
        intervals.
        """
        path = writeConfigDir(self.mktemp(), "[core]\nid = n1\n")
        config = loadConfig(path)
        self.assertIsInstance(config, AgentConfig)
        self.assertEqual(config.core.id, "n1")
        self.assertEqual(config.core.domain, "org.clacks")
        self.assertFalse(config.core.strictPlugins)
        self.assertTrue(config.standalone)
        self.assertEqual(config.http.listen, "tcp:8080:interface=127.0.0.1")
        self.assertEqual(config.agent.threads, 8)
        self.assertEqual(config.agent.nodeTimeout, 3 * config.agent.statusInterval)
        self.assertEqual(config.sources, (os.path.join(path, "config"),))
        self.assertEqual(config.warnings, ())

    def test_defaultPath(self) -> None:
        """
        The default configuration path is C{/etc/clacks}.
        """
        self.assertEqual(DEFAULT_CONFIG_PATH, "/etc/clacks")

    def test_shippedConfig(self) -> None:
        """
        The example configuration shipped in C{etc/clacks} loads without
        errors or warnings.
        """
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        config = loadConfig(os.path.join(root, "etc", "clacks"))
        self.assertEqual(config.warnings, ())
        self.assertEqual(config.core.domain, "org.clacks")

    def test_defaultConfig(self) -> None:
        """
        L{defaultConfig} builds a configuration without files, replacing the
        sections it is given.
        """
        config = defaultConfig()
        self.assertEqual((config.sources, config.core.strictPlugins), ((), False))
        config = defaultConfig(core=CoreConfig(id="embedded", strictPlugins=True))
        self.assertEqual((config.core.id, config.core.strictPlugins), ("embedded", True))
        self.assertEqual(config.agent.threads, 8)

    def test_singleFile(self) -> None:
        """
        C{-c} may name one file instead of a directory.
        """
        path = writeConfigDir(self.mktemp(), "[core]\nid = single\n")
        config = loadConfig(os.path.join(path, "config"))
        self.assertEqual(config.core.id, "single")

    def test_flags(self) -> None:
        """
        Booleans accept yes/no, on/off, true/false and 1/0, in any case.
        """
        path = writeConfigDir(self.mktemp(), "[core]\nstrict-plugins = Yes\ndebug = off\n")
        config = loadConfig(path)
        self.assertEqual((config.core.strictPlugins, config.core.debug), (True, False))


class OverrideTests(SynchronousTestCase):
    """
    C{config.d} files and the command line override the main file.
    """

    def test_confdOrder(self) -> None:
        """
        The C{*.conf} files of C{config.d} are applied after C{config}, in
        sorted order whatever order they were written in; a later file wins,
        key by key, so keys it does not set keep their earlier values.
        Files not ending in C{.conf} are ignored.
        """
        path = writeConfigDir(
            self.mktemp(),
            "[core]\nid = n1\ndomain = base\n[agent]\nthreads = 2\n",
            {
                "20-later.conf": "[core]\ndomain = twenty\n",
                "10-earlier.conf": "[core]\ndomain = ten\n[agent]\nthreads = 4\n",
                "README": "[core]\ndomain = ignored\n",
                "30-off.conf.disabled": "[core]\ndomain = disabled\n",
            },
        )
        config = loadConfig(path)
        confd = os.path.join(path, "config.d")
        self.assertEqual(
            config.sources,
            (
                os.path.join(path, "config"),
                os.path.join(confd, "10-earlier.conf"),
                os.path.join(confd, "20-later.conf"),
            ),
        )
        self.assertEqual(config.core.domain, "twenty")
        self.assertEqual(config.agent.threads, 4)
        self.assertEqual(config.core.id, "n1")

    def test_confdOnly(self) -> None:
        """
        A directory with C{config.d} files and no C{config} file is enough.
        """
        path = writeConfigDir(self.mktemp(), None, {"50-id.conf": "[core]\nid = only-d\n"})
        self.assertEqual(loadConfig(path).core.id, "only-d")

    def test_commandLineWins(self) -> None:
        """
        C{--url} overrides C{[amqp] url} of every file.
        """
        path = writeConfigDir(
            self.mktemp(),
            "[amqp]\nurl = amqp://a:b@file-host/\n",
            {"10.conf": "[amqp]\nurl = amqp://a:b@confd-host/\n"},
        )
        config = loadAgentConfig(path, "amqps://u:p@cli-host:5999/vh")
        assert config.amqp.url is not None
        self.assertEqual(
            (config.amqp.url.host, config.amqp.url.port, config.amqp.url.vhost),
            ("cli-host", 5999, "vh"),
        )
        self.assertTrue(config.amqp.url.tls)
        self.assertFalse(config.standalone)
        self.assertEqual(config.amqp.url.redacted(), "amqps://u@cli-host:5999/vh")

    def test_badCommandLineValue(self) -> None:
        """
        A bad C{--url} is reported as coming from the command line.
        """
        path = writeConfigDir(self.mktemp(), "[core]\nid = n1\n")
        error = self.assertRaises(ConfigError, loadAgentConfig, path, "http://x/")
        self.assertTrue(str(error).startswith("command line: [amqp] url = 'http://x/': expected"))


class ErrorTests(SynchronousTestCase):
    """
    A bad configuration stops start-up with one line naming file, section,
    key and what is expected.
    """

    def assertOneLine(self, error: ConfigError) -> str:
        """
        Assert C{error} reads as a single line, and return it.
        """
        text = str(error)
        self.assertNotIn("\n", text)
        self.assertTrue(text)
        return text

    def test_badValue(self) -> None:
        """
        A value that does not parse is reported with the file it came from
        (here a C{config.d} file), its section and key, the value and what is
        expected.
        """
        path = writeConfigDir(
            self.mktemp(),
            "[agent]\nthreads = 2\n",
            {"10-threads.conf": "[agent]\nthreads = many\n"},
        )
        error = self.assertRaises(ConfigError, loadConfig, path)
        filename = os.path.join(path, "config.d", "10-threads.conf")
        self.assertEqual(
            self.assertOneLine(error),
            f"{filename}: [agent] threads = 'many': expected a whole number, 1 or more",
        )
        self.assertEqual((error.path, error.section, error.key), (filename, "agent", "threads"))

    def test_everyKeyValidated(self) -> None:
        """
        Each typed key rejects a bad value with one line naming the file,
        section and key and saying what is expected.
        """
        bad = [
            ("core", "id", "-starts-with-dash"),
            ("core", "domain", "has space"),
            ("core", "strict-plugins", "maybe"),
            ("core", "debug", "2"),
            ("amqp", "url", "http://host/"),
            ("amqp", "url", "amqp://host:port/"),
            ("amqp", "heartbeat", "-1"),
            ("amqp", "cafile", "/no/such/ca.pem"),
            ("amqp", "reconnect-initial", "0"),
            ("amqp", "reconnect-max", "inf"),
            ("amqp", "queue-type", "stream"),
            ("amqp", "publish-timeout", "soon"),
            ("http", "listen", "8080"),
            ("http", "path", "rpc"),
            ("agent", "status-interval", "nan"),
            ("agent", "node-timeout", "-5"),
            ("agent", "threads", "0"),
            ("agent", "drain-timeout", "forever"),
        ]
        for section, key, value in bad:
            path = writeConfigDir(self.mktemp(), f"[{section}]\n{key} = {value}\n")
            error = self.assertRaises(ConfigError, loadConfig, path)
            text = self.assertOneLine(error)
            self.assertTrue(
                text.startswith(f"{os.path.join(path, 'config')}: [{section}] {key} = "),
                text,
            )
            self.assertIn(": expected ", text)

    @settings(max_examples=50, deadline=None)
    @given(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1))
    def test_anyBadThreadsValue(self, value: str) -> None:
        """
        Whatever bad value C{[agent] threads} has, the error is one line
        naming file, section and key; a whole number of 1 or more is
        accepted.
        """
        path = writeConfigDir(self.mktemp(), f"[agent]\nthreads = {value}\n")
        try:
            number = int(value.strip())
        except ValueError:
            number = 0
        if number >= 1:
            self.assertEqual(loadConfig(path).agent.threads, number)
            return
        error = self.assertRaises(ConfigError, loadConfig, path)
        text = self.assertOneLine(error)
        self.assertIn("config: [agent] threads = ", text)
        self.assertTrue(text.endswith(": expected a whole number, 1 or more"))

    def test_nodeTimeoutNotAboveInterval(self) -> None:
        """
        A node timeout not above the status interval is refused, naming the
        key and the interval.
        """
        path = writeConfigDir(self.mktemp(), "[agent]\nstatus-interval = 10\nnode-timeout = 10\n")
        text = self.assertOneLine(self.assertRaises(ConfigError, loadConfig, path))
        self.assertIn("[agent] node-timeout = 10: expected more than status-interval (10 s)", text)

    def test_certWithoutKey(self) -> None:
        """
        A client certificate without its key is refused.
        """
        path = writeConfigDir(self.mktemp(), "[core]\nid = n1\n")
        cert = os.path.join(path, "config")
        with open(os.path.join(path, "config"), "a") as f:
            f.write(f"[amqp]\ncertfile = {cert}\n")
        text = self.assertOneLine(self.assertRaises(ConfigError, loadConfig, path))
        self.assertIn("[amqp] certfile and keyfile go together", text)

    def test_syntaxError(self) -> None:
        """
        A line that is not C{key = value} is reported with the file and line
        number.
        """
        path = writeConfigDir(self.mktemp(), "[core]\nid = n1\nthis is not a setting\n")
        text = self.assertOneLine(self.assertRaises(ConfigError, loadConfig, path))
        self.assertIn(os.path.join(path, "config"), text)
        self.assertIn("line 3: expected 'key = value'", text)

    def test_noSection(self) -> None:
        """
        A setting before any section header is reported with its line.
        """
        path = writeConfigDir(self.mktemp(), "id = n1\n")
        text = self.assertOneLine(self.assertRaises(ConfigError, loadConfig, path))
        self.assertIn("line 1: expected a [section] header", text)

    def test_duplicateKey(self) -> None:
        """
        A key given twice in one file is refused, naming section and key.
        """
        path = writeConfigDir(self.mktemp(), "[core]\nid = a\nid = b\n")
        text = self.assertOneLine(self.assertRaises(ConfigError, loadConfig, path))
        self.assertIn("[core] id key given twice (line 3)", text)

    def test_missingPath(self) -> None:
        """
        A path that does not exist is refused with a hint about C{-c}.
        """
        path = os.path.abspath(self.mktemp())
        text = self.assertOneLine(self.assertRaises(ConfigError, loadConfig, path))
        self.assertEqual(text, f"{path}: no such file or directory (give the config with -c)")

    def test_emptyDirectory(self) -> None:
        """
        A directory without C{config} or C{config.d/*.conf} is refused.
        """
        path = writeConfigDir(self.mktemp(), None)
        self.assertRaises(ConfigError, configFiles, path)


class UnknownKeyTests(SynchronousTestCase):
    """
    Unknown keys are warned about, not fatal.
    """

    def test_unknownKeyWarned(self) -> None:
        """
        An unknown key of a known section is ignored and reported in
        C{warnings} with its file, section and key and the known keys.
        """
        path = writeConfigDir(self.mktemp(), "[core]\nid = n1\ncolour = red\n")
        config = loadConfig(path)
        self.assertEqual(config.core.id, "n1")
        self.assertEqual(
            config.warnings,
            (
                f"{os.path.join(path, 'config')}: [core] colour: unknown key, ignored "
                "(known keys: id, domain, strict-plugins, debug, users)",
            ),
        )

    def test_pluginSections(self) -> None:
        """
        Sections the agent does not know belong to plugins: they cause no
        warning and plugins read them with L{AgentConfig.section}, with
        C{config.d} overriding key by key.
        """
        path = writeConfigDir(
            self.mktemp(),
            "[hello]\ngreeting = Hi\nname = world\n",
            {"10.conf": "[hello]\nname = clacks\n"},
        )
        config = loadConfig(path)
        self.assertEqual(config.warnings, ())
        self.assertEqual(config.section("hello"), {"greeting": "Hi", "name": "clacks"})
        self.assertEqual(config.section("absent"), {})
