"""
Tests for the C{clacks} command (L{clacks.client.cli}).

The pure parts (settings, arguments, output) are tested in-process; the
commands are run as the real console script, in child processes, against
agents that run in the test's reactor on the real broker, each test in a
domain of its own.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from typing import Any

from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from clacks.agent.config import parseBrokerURL
from clacks.agent.dispatch import AllNodesResult
from clacks.client import _output
from clacks.client.cli import (
    DEFAULT_TIMEOUT,
    EXIT_CALL_ERROR,
    EXIT_CONNECTION,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    Settings,
    UsageError,
    callParameters,
    makeParser,
    parseArgument,
    resolveSettings,
    urlOf,
)
from clacks.common.jsonrpc import RPCError
from tests.util.agents import DomainFixture, waitUntil
from tests.util.cli import UNREACHABLE_URL, clacksEnvironment, lines, runClacks, spawnClacks
from tests.util.example import HelloPlugin
from tests.util.processes import childEnvironment, run

HELLO = [("hello", HelloPlugin)]

GOOD_URL = "amqp://guest:guest@127.0.0.1:5672/"


def writeConfig(testCase: SynchronousTestCase, url: str | None, domain: str) -> str:
    """
    @return: the path of a new agent configuration file with C{url} and
        C{domain}.
    """
    path = os.path.abspath(testCase.mktemp())
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"[core]\nid = cli\ndomain = {domain}\n")
        if url:
            f.write(f"[amqp]\nurl = {url}\n")
    return path


def parse(*argv: str) -> argparse.Namespace:
    return makeParser().parse_args(list(argv))


class SettingsTests(SynchronousTestCase):
    """
    L{resolveSettings}: C{--url}/C{--domain} win over C{CLACKS_URL}/
    C{CLACKS_DOMAIN}, which win over the C{-c} configuration, each on its
    own.
    """

    def test_flags(self) -> None:
        """
        The flags are used when given, before or after the subcommand.
        """
        env = {"CLACKS_URL": "amqp://env/", "CLACKS_DOMAIN": "env"}
        self.assertEqual(
            resolveSettings(parse("--url", "amqp://a/", "nodes", "--domain", "d"), env),
            Settings("amqp://a/", "d", DEFAULT_TIMEOUT),
        )
        self.assertEqual(
            resolveSettings(parse("nodes", "--url", "amqp://a/", "--timeout", "2.5"), env),
            Settings("amqp://a/", "env", 2.5),
        )

    def test_environment(self) -> None:
        """
        The environment is used for what the flags do not give, and wins
        over the configuration file.
        """
        path = writeConfig(self, "amqp://file/", "file")
        env = {"CLACKS_URL": "amqp://env/", "CLACKS_DOMAIN": "env"}
        self.assertEqual(
            resolveSettings(parse("-c", path, "nodes"), env), Settings("amqp://env/", "env")
        )
        self.assertEqual(
            resolveSettings(parse("-c", path, "nodes"), {"CLACKS_DOMAIN": "env"}),
            Settings("amqp://guest:guest@file:5672/", "env"),
        )

    def test_configFile(self) -> None:
        """
        The C{-c} configuration gives the URL (with its password, user and
        vhost quoted) and the domain.
        """
        path = writeConfig(self, "amqps://us%40r:p%3Aw@broker:5999/v%2Fh", "file")
        settings = resolveSettings(parse("-c", path, "nodes"), {})
        self.assertEqual(settings.domain, "file")
        self.assertEqual(
            parseBrokerURL(settings.url), parseBrokerURL("amqps://us%40r:p%3Aw@broker:5999/v%2Fh")
        )

    def test_missing(self) -> None:
        """
        Without a domain or a URL from anywhere, or with a configuration
        without C{[amqp] url}, the settings are refused, saying how to give
        them.
        """
        error = self.assertRaises(
            UsageError, resolveSettings, parse("nodes", "--url", "amqp://a/"), {}
        )
        self.assertEqual(
            str(error), "no domain: give --domain NAME, set CLACKS_DOMAIN or give -c CONFIG"
        )
        error = self.assertRaises(
            UsageError, resolveSettings, parse("nodes"), {"CLACKS_DOMAIN": "d"}
        )
        self.assertIn("no broker", str(error))
        path = writeConfig(self, None, "file")
        error = self.assertRaises(UsageError, resolveSettings, parse("-c", path, "nodes"), {})
        self.assertIn("no [amqp] url", str(error))

    def test_bad(self) -> None:
        """
        A bad URL is refused, naming where it came from; so is a bad or
        missing configuration file.
        """
        error = self.assertRaises(
            UsageError,
            resolveSettings,
            parse("nodes"),
            {"CLACKS_URL": "http://x/", "CLACKS_DOMAIN": "d"},
        )
        self.assertTrue(str(error).startswith("CLACKS_URL: expected an AMQP URL"), str(error))
        missing = os.path.abspath(self.mktemp())
        self.assertRaises(UsageError, resolveSettings, parse("-c", missing, "nodes"), {})
        path = writeConfig(self, "nonsense", "d")
        error = self.assertRaises(UsageError, resolveSettings, parse("-c", path, "nodes"), {})
        self.assertIn("[amqp] url", str(error))

    def test_urlOf(self) -> None:
        """
        L{urlOf} gives back a URL that parses to the same broker.
        """
        for url in (
            "amqp://guest:guest@127.0.0.1:5672/",
            "amqps://a%2Fb:c%40d@h:1/%2Fv",
            "amqp://u:p@[::1]:5672/x",
        ):
            broker = parseBrokerURL(url)
            self.assertEqual(parseBrokerURL(urlOf(broker)), broker)


class ArgumentTests(SynchronousTestCase):
    """
    The arguments of C{clacks call}, and usage errors.
    """

    def test_parseArgument(self) -> None:
        """
        An argument that parses as JSON is that value, anything else the
        string itself.
        """
        self.assertEqual(
            [parseArgument(a) for a in ["42", "-1.5", "true", "null", "[1]", '{"a":1}', '"7"']],
            [42, -1.5, True, None, [1], {"a": 1}, "7"],
        )
        self.assertEqual([parseArgument(a) for a in ["Ada", "a b", "{x"]], ["Ada", "a b", "{x"])

    def test_callParameters(self) -> None:
        """
        ARGs are positional parameters, C{-p NAME=VALUE} named ones; not
        both, and C{-p} needs its C{=}.
        """
        self.assertEqual(callParameters(parse("call", "m", "1", "x")), ([1, "x"], {}))
        self.assertEqual(
            callParameters(parse("call", "m", "-p", "a=1", "-p", "b=x=y")),
            ([], {"a": 1, "b": "x=y"}),
        )
        self.assertRaises(UsageError, callParameters, parse("call", "m", "1", "-p", "a=1"))
        self.assertRaises(UsageError, callParameters, parse("call", "m", "-p", "a"))

    def test_usageErrors(self) -> None:
        """
        A bad command line exits with L{EXIT_USAGE} and one line on
        standard error.
        """
        for argv in (
            ["nodes", "--bogus"],
            [],
            ["call"],
            ["call", "m", "--node", "a", "--all"],
            ["nodes", "--timeout", "0"],
        ):
            err = io.StringIO()
            self.patch(sys, "stderr", err)
            exit = self.assertRaises(SystemExit, makeParser().parse_args, argv)
            self.assertEqual(exit.code, EXIT_USAGE)
            self.assertEqual(len(lines(err.getvalue())), 1, (argv, err.getvalue()))
            self.assertTrue(err.getvalue().startswith("error: "), err.getvalue())


class OutputTests(SynchronousTestCase):
    """
    L{clacks.client._output}: what humans read.
    """

    def test_errorLine(self) -> None:
        """
        A JSON-RPC error is one line with its code and message.
        """
        self.assertEqual(
            _output.errorLine(RPCError(-32601, "no node of the domain provides 'x'")),
            "error -32601: no node of the domain provides 'x'",
        )
        self.assertEqual(_output.errorLine(RPCError(-32000, "a\nb")), "error -32000: a b")

    def test_nodes(self) -> None:
        """
        Nodes are a table: id, state, load, in-flight, last seen, version.
        """
        text = _output.formatNodes(
            [
                {"node": "web2", "state": "suspect", "lastSeen": 90.0, "load": None},
                {
                    "node": "web1",
                    "state": "alive",
                    "load": 0.5,
                    "inflight": 3,
                    "lastSeen": 99.5,
                    "version": "1.0",
                    "draining": True,
                },
            ],
            now=100.0,
        )
        self.assertEqual(
            text.splitlines(),
            [
                "NODE  STATE             LOAD  IN-FLIGHT  LAST SEEN  VERSION",
                "web1  alive (draining)  0.50  3          0.5s ago   1.0",
                "web2  suspect           -     -          10.0s ago  -",
            ],
        )
        self.assertEqual(_output.formatNodes([]), "(no nodes)")

    def test_allNodes(self) -> None:
        """
        A call to every node is one line per node: result, error or no
        answer.
        """
        result = AllNodesResult({"a": "x", "bb": [1]}, {"c": RPCError(-32000, "E: no")}, ["d"])
        self.assertEqual(
            _output.formatAllNodes(result).splitlines(),
            ["a   x", "bb  [1]", "c   error -32000: E: no", "d   (no answer)"],
        )

    def test_event(self) -> None:
        """
        An event is one line: time, type, node, then its fields, shortened.
        """
        when = time.mktime((2026, 1, 2, 3, 4, 5, 0, 0, -1)) + 0.25
        line = _output.formatEvent(
            {
                "event": "NodeAnnounce",
                "node": "web1",
                "incarnation": "0123456789abcdef",
                "commands": ["a", "b"],
                "methods": [{"name": "a"}, {"name": "b"}],
                "objects": [],
                "reason": "a b",
                "rss": 2 * 1024 * 1024,
            },
            when,
        )
        self.assertEqual(
            line,
            "03:04:05.250 NodeAnnounce web1 incarnation=01234567 commands=a,b methods=<2> "
            'reason="a b" rss=2.0MiB',
        )

    def test_status(self) -> None:
        """
        The status is one line each for the connection, the broker and the
        domain.
        """
        status: dict[str, Any] = {
            "connection": {"url": "amqp://g@h:1/", "name": "n", "connected": True},
            "broker": _output.brokerSummary(
                {"product": "RabbitMQ", "version": "3.13", "platform": "Erlang", "x": 1}
            ),
            "domain": {"name": "d", "nodes": 3, "states": {"alive": 2, "dead": 1}},
        }
        self.assertEqual(
            _output.formatStatus(status).splitlines(),
            [
                "connection  amqp://g@h:1/ as n (connected)",
                "broker      RabbitMQ 3.13 (Erlang)",
                "domain      d: 3 nodes (2 alive, 1 dead)",
            ],
        )


class ImportTests(TestCase):
    """
    The module is light to import.
    """

    @inlineCallbacks
    def test_noReactor(self) -> Any:
        """
        Importing L{clacks.client.cli} does not import the reactor.
        """
        result = yield run(
            self,
            [
                sys.executable,
                "-c",
                "import sys, clacks.client.cli; print('twisted.internet.reactor' in sys.modules)",
            ],
            env=childEnvironment(),
        )
        self.assertEqual((result.code, result.out.strip()), (0, "False"), result.describe())


class CommandTests(TestCase):
    """
    The C{clacks} console script against agents of a domain of the test.
    """

    timeout = 90

    def setUp(self) -> None:
        self.domain = DomainFixture(self)
        self.env = clacksEnvironment(
            CLACKS_URL=self.domain.brokerURL, CLACKS_DOMAIN=self.domain.domain
        )

    @inlineCallbacks
    def startAgents(self, *nodes: str) -> Any:
        """
        Start agents C{nodes} with the example plugin, and wait until each
        knows all the others.
        """
        agents = []
        for node in nodes:
            agents.append((yield self.domain.startAgent(node, plugins=HELLO)))

        def known() -> bool:
            for agent in agents:
                directory = self.domain.directory(agent)
                for node in nodes:
                    info = directory.get(node)
                    if info is None or info.status is None or "greet" not in info.commands:
                        return False
            return True

        yield waitUntil(known, 15, f"the agents to know {nodes}")
        return agents

    def clacks(self, *args: str, **env: str) -> Any:
        return runClacks(self, *args, env={**self.env, **env})

    def assertExit(self, result: Any, code: int, stderr: str | None = None) -> None:
        """
        Assert the exit status, and that standard error is C{stderr}: one
        line (or nothing, when C{None}).
        """
        self.assertEqual(result.code, code, result.describe())
        if stderr is None:
            self.assertEqual(result.err, "", result.describe())
        else:
            self.assertEqual(result.err, stderr + "\n", result.describe())

    @inlineCallbacks
    def test_nodes(self) -> Any:
        """
        C{clacks nodes} lists the nodes: a table for humans, the
        C{getNodes} list with C{--json}.
        """
        yield self.startAgents("web1", "web2")
        result = yield self.clacks("nodes")
        self.assertExit(result, EXIT_OK)
        table = lines(result.out)
        self.assertEqual(
            table[0].split(), ["NODE", "STATE", "LOAD", "IN-FLIGHT", "LAST", "SEEN", "VERSION"]
        )
        self.assertEqual(
            [line.split()[:2] for line in table[1:]], [["web1", "alive"], ["web2", "alive"]]
        )
        result = yield self.clacks("nodes", "--json")
        self.assertExit(result, EXIT_OK)
        nodes = json.loads(result.out)
        self.assertEqual(sorted(n["node"] for n in nodes), ["web1", "web2"])
        self.assertEqual({n["state"] for n in nodes}, {"alive"})

    @inlineCallbacks
    def test_methods(self) -> Any:
        """
        C{clacks methods [PATTERN]} lists the commands with signature, help
        and providers.
        """
        yield self.startAgents("web1")
        result = yield self.clacks("methods", "greet")
        self.assertExit(result, EXIT_OK)
        out = lines(result.out)
        self.assertEqual(
            out[:3],
            [
                "greet(name: str) -> str",
                "    NORMAL, on web1",
                "    Greet NAME, from the node that answers.",
            ],
        )
        self.assertIn("greetingCount() -> int", out)
        self.assertNotIn("echo(value: Any) -> Any", out)
        result = yield self.clacks("methods", "--json")
        self.assertExit(result, EXIT_OK)
        methods = {m["name"]: m for m in json.loads(result.out)}
        self.assertIn("getNodes", methods)
        self.assertEqual(methods["echo"]["nodes"], ["web1"])

    @inlineCallbacks
    def test_call(self) -> Any:
        """
        C{clacks call} prints the result (strings as they are, JSON
        otherwise); ARGs are JSON when they parse; C{-p} passes them by
        name; C{--node} picks the node; C{--json} prints JSON.
        """
        yield self.startAgents("web1", "web2")
        result = yield self.clacks("call", "greet", "-p", "name=Ada", "--node", "web2")
        self.assertExit(result, EXIT_OK)
        self.assertEqual(result.out, "Hello, Ada, from web2!\n")
        result = yield self.clacks("--json", "call", "echo", '{"a": [1, null]}', "--node", "web1")
        self.assertExit(result, EXIT_OK)
        self.assertEqual(json.loads(result.out), {"a": [1, None]})

    @inlineCallbacks
    def test_callAll(self) -> Any:
        """
        C{clacks call --all} runs the command on every node: one line each,
        or the results, errors and missing nodes with C{--json}; a node's
        error makes the exit status L{EXIT_CALL_ERROR}, with one line on
        standard error naming the failed nodes.
        """
        yield self.startAgents("web1", "web2")
        result = yield self.clacks("call", "greet", "Ada", "--all")
        self.assertExit(result, EXIT_OK)
        self.assertEqual(
            lines(result.out),
            ["web1  Hello, Ada, from web1!", "web2  Hello, Ada, from web2!"],
        )
        result = yield self.clacks("call", "fail", "no", "--all", "--json")
        self.assertExit(
            result,
            EXIT_CALL_ERROR,
            "error: failed on web1, web2",
        )
        answer = json.loads(result.out)
        self.assertEqual((answer["results"], answer["missing"]), ({}, []))
        self.assertEqual(answer["errors"]["web1"]["code"], -32000)
        self.flushLoggedErrors(ValueError)

    @inlineCallbacks
    def test_callErrors(self) -> Any:
        """
        An unknown command or bad parameters: exit status
        L{EXIT_CALL_ERROR}, the JSON-RPC error as one line on standard
        error (and as JSON on standard output with C{--json}).
        """
        yield self.startAgents("web1")
        result = yield self.clacks("call", "nope", "--json")
        self.assertExit(
            result, EXIT_CALL_ERROR, "error -32601: no node of the domain provides 'nope'"
        )
        self.assertEqual(
            json.loads(result.out),
            {"error": {"code": -32601, "message": "no node of the domain provides 'nope'"}},
        )
        result = yield self.clacks("call", "greet", "a", "b")
        self.assertExit(
            result,
            EXIT_CALL_ERROR,
            "error -32602: greet(name: str) -> str: too many positional arguments",
        )
        self.assertEqual(result.out, "")

    @inlineCallbacks
    def test_timeout(self) -> Any:
        """
        No answer within C{--timeout}: exit status L{EXIT_TIMEOUT}, one
        line.
        """
        agents = yield self.startAgents("web1")
        result = yield self.clacks("call", "slowEcho", "x", "1.5", "--timeout", "0.5")
        self.assertExit(
            result, EXIT_TIMEOUT, "error -32001: no answer to 'slowEcho' (any) within 0.5 s"
        )
        yield waitUntil(lambda: agents[0].context.stats.inflight == 0, 5, "the call to end")

    @inlineCallbacks
    def test_unreachable(self) -> Any:
        """
        A broker that cannot be reached: exit status L{EXIT_CONNECTION} at
        once, one line that names it (without the password) and why.
        """
        started = time.monotonic()
        result = yield self.clacks("nodes", "--url", UNREACHABLE_URL)
        self.assertEqual(result.code, EXIT_CONNECTION, result.describe())
        self.assertLess(time.monotonic() - started, 10)
        [line] = lines(result.err)
        self.assertTrue(
            line.startswith("error: cannot connect to amqp://guest@127.0.0.1:1/: "), line
        )
        self.assertIn("refused", line)
        self.assertEqual(result.out, "")

    @inlineCallbacks
    def test_usage(self) -> Any:
        """
        No domain from anywhere: exit status L{EXIT_USAGE}, one line (see
        L{ArgumentTests.test_usageErrors} for bad options).
        """
        env = clacksEnvironment(CLACKS_URL=GOOD_URL)
        result = yield runClacks(self, "nodes", env=env)
        self.assertExit(
            result,
            EXIT_USAGE,
            "error: no domain: give --domain NAME, set CLACKS_DOMAIN or give -c CONFIG",
        )

    @inlineCallbacks
    def test_precedence(self) -> Any:
        """
        The flags win over the environment, which wins over the C{-c}
        file: the command reaches the domain (and broker) of the winner
        (see L{SettingsTests} for every combination).
        """
        yield self.startAgents("web1")
        good, bad = self.domain.domain, self.domain.domain + ".nowhere"
        goodFile = writeConfig(self, GOOD_URL, good)
        badFile = writeConfig(self, UNREACHABLE_URL, bad)
        base = clacksEnvironment()
        cases = [
            # (arguments, environment, expected exit status)
            (
                ["--domain", good, "--url", GOOD_URL],
                {"CLACKS_DOMAIN": bad, "CLACKS_URL": UNREACHABLE_URL},
                EXIT_OK,
            ),
            (["-c", badFile], {"CLACKS_DOMAIN": good, "CLACKS_URL": GOOD_URL}, EXIT_OK),
            (["-c", goodFile], {}, EXIT_OK),
        ]
        for args, env, code in cases:
            result = yield runClacks(
                self, "call", "greet", "x", "--node", "web1", *args, env={**base, **env}
            )
            self.assertEqual(result.code, code, (args, env, result.describe()))
            self.assertEqual(result.out, "Hello, x, from web1!\n")

    @inlineCallbacks
    def test_status(self) -> Any:
        """
        C{clacks status}: the connection, the broker's product and version,
        the domain's nodes by state.
        """
        yield self.startAgents("web1", "web2")
        result = yield self.clacks("status")
        self.assertExit(result, EXIT_OK)
        [connection, broker, domain] = lines(result.out)
        self.assertTrue(
            connection.startswith("connection  amqp://guest@127.0.0.1:5672/ as clacks-cli@"),
            connection,
        )
        self.assertTrue(broker.startswith("broker      RabbitMQ "), broker)
        self.assertEqual(domain, f"domain      {self.domain.domain}: 2 nodes (2 alive)")
        result = yield self.clacks("status", "--json")
        self.assertExit(result, EXIT_OK)
        status = json.loads(result.out)
        self.assertEqual(status["broker"]["product"], "RabbitMQ")
        self.assertTrue(status["connection"]["connected"])
        self.assertEqual(
            status["domain"], {"name": self.domain.domain, "nodes": 2, "states": {"alive": 2}}
        )

    @inlineCallbacks
    def test_events(self) -> Any:
        """
        C{clacks events} prints a line for each event as it comes (here the
        agents' NodeStatus); SIGINT ends it with exit status 0 and nothing
        on standard error but the line saying what it follows.
        """
        yield self.startAgents("web1")
        child = spawnClacks(self, "events", env=self.env)
        yield child.waitFor(
            r"^\d\d:\d\d:\d\d\.\d\d\d NodeStatus web1 incarnation=\w{8} sequence=\d+ ", 20
        )
        child.signal("INT")
        result = yield child.ended(20)
        self.assertExit(
            result,
            EXIT_OK,
            f"following the events of {self.domain.domain} matching '#' (Ctrl-C to stop)",
        )

    @inlineCallbacks
    def test_eventsJSON(self) -> Any:
        """
        C{clacks events PATTERN --json} prints one JSON object per event,
        only events matching the pattern, until SIGINT (exit status 0).
        """
        yield self.startAgents("web1", "web2")
        child = spawnClacks(self, "events", "#.web2", "--json", env=self.env)
        yield waitUntil(lambda: len(lines(child.out)) >= 3, 20, "three events")
        child.signal("INT")
        result = yield child.ended(20)
        self.assertEqual(result.code, EXIT_OK, result.describe())
        events = [json.loads(line) for line in lines(result.out)]
        self.assertGreaterEqual(len(events), 3)
        self.assertEqual({e["node"] for e in events}, {"web2"})
        self.assertIn("NodeStatus", {e["event"] for e in events})


# Over HTTP (--http)

#: What an agent answers to a call with wrong credentials.
REFUSED = "authentication required: HTTP Basic or a bearer token"

#: The environment variables of the HTTP settings.
HTTP_VARIABLES = ("CLACKS_HTTP", "CLACKS_USER", "CLACKS_PASSWORD", "CLACKS_TOKEN")


def httpEnvironment(**extra: str) -> dict[str, str]:
    """
    @return: L{clacksEnvironment} without any HTTP settings of the person
        running the tests, plus C{extra}.
    """
    env = clacksEnvironment()
    for name in HTTP_VARIABLES:
        env.pop(name, None)
    env.update(extra)
    return env


class HTTPSettingsTests(SynchronousTestCase):
    """
    L{resolveSettings} with C{--http}: the endpoint and who logs in, flags
    before the environment.
    """

    URL = "http://127.0.0.1:8080/rpc"

    def test_transport(self) -> None:
        """
        C{--http} goes over HTTP (no domain needed); C{--url} wins over
        C{CLACKS_HTTP}, which wins over C{CLACKS_URL}; C{--url} and
        C{--http} together are refused.
        """
        env = {"CLACKS_PASSWORD": "pw", "CLACKS_URL": GOOD_URL}
        self.assertEqual(
            resolveSettings(parse("nodes", "--http", self.URL, "--user", "alice"), env),
            Settings("", "", DEFAULT_TIMEOUT, http=self.URL, user="alice", password="pw"),
        )
        env = {"CLACKS_HTTP": self.URL, "CLACKS_TOKEN": "tok", "CLACKS_DOMAIN": "d"}
        settings = resolveSettings(parse("nodes", "--timeout", "2"), env)
        self.assertEqual(
            (settings.http, settings.token, settings.domain, settings.timeout),
            (self.URL, "tok", "d", 2.0),
        )
        settings = resolveSettings(parse("nodes", "--url", GOOD_URL), env)
        self.assertEqual((settings.url, settings.http), (GOOD_URL, None))
        error = self.assertRaises(
            UsageError, resolveSettings, parse("nodes", "--url", GOOD_URL, "--http", self.URL), {}
        )
        self.assertEqual(str(error), "give --url (the broker) or --http (an agent), not both")
        error = self.assertRaises(
            UsageError, resolveSettings, parse("nodes", "--http", "ftp://x/", "--token", "t"), {}
        )
        self.assertTrue(str(error).startswith("--http: expected an HTTP URL"), str(error))

    def test_credentials(self) -> None:
        """
        C{--user} or C{--token} win over C{CLACKS_USER} and
        C{CLACKS_TOKEN}; user and password in the URL do without either.
        Two kinds at once, or none, are refused.
        """
        env = {"CLACKS_TOKEN": "envtoken", "CLACKS_PASSWORD": "pw"}
        settings = resolveSettings(parse("nodes", "--http", self.URL, "--user", "bob"), env)
        self.assertEqual((settings.user, settings.password, settings.token), ("bob", "pw", None))
        settings = resolveSettings(
            parse("nodes", "--http", self.URL, "--token", "t"), {"CLACKS_USER": "u"}
        )
        self.assertEqual((settings.user, settings.token), (None, "t"))
        settings = resolveSettings(parse("nodes", "--http", "http://u:p@h/"), {})
        self.assertEqual(
            (settings.http, settings.user, settings.token), ("http://u:p@h/", None, None)
        )
        for argv, env, message in [
            (["--user", "a", "--token", "t"], {}, "give --user or --token, not both"),
            (
                [],
                {"CLACKS_USER": "a", "CLACKS_TOKEN": "t"},
                "CLACKS_USER and CLACKS_TOKEN are both set: give --user or --token, or unset one",
            ),
            (
                [],
                {},
                "no credentials for --http: give --user NAME (password in CLACKS_PASSWORD) "
                "or --token TOKEN (or set CLACKS_USER or CLACKS_TOKEN)",
            ),
            (
                ["--user", "a"],
                {},
                "no password for a: set CLACKS_PASSWORD (it is asked for only on a terminal)",
            ),
        ]:
            error = self.assertRaises(
                UsageError, resolveSettings, parse("nodes", "--http", self.URL, *argv), env
            )
            self.assertEqual(str(error), message)

    def test_prompt(self) -> None:
        """
        Without C{CLACKS_PASSWORD}, the password is asked for, naming the
        user and the endpoint.
        """
        asked: list[str] = []

        def prompt(text: str) -> str:
            asked.append(text)
            return "typed"

        settings = resolveSettings(
            parse("call", "x", "--http", "http://h:1", "--user", "alice"), {}, prompt
        )
        self.assertEqual(settings.password, "typed")
        self.assertEqual(asked, ["Password for alice at http://h:1/rpc: "])

    def test_events(self) -> None:
        """
        C{events} needs the broker: with C{--http} it is a usage error;
        C{CLACKS_HTTP} does not stand in the way of C{CLACKS_URL}.
        """
        error = self.assertRaises(
            UsageError, resolveSettings, parse("events", "--http", self.URL, "--token", "t"), {}
        )
        self.assertTrue(str(error).startswith("events needs the broker"), str(error))
        env = {"CLACKS_HTTP": self.URL, "CLACKS_URL": GOOD_URL, "CLACKS_DOMAIN": "d"}
        self.assertEqual(resolveSettings(parse("events"), env), Settings(GOOD_URL, "d"))
        error = self.assertRaises(
            UsageError, resolveSettings, parse("events"), {"CLACKS_HTTP": self.URL}
        )
        self.assertTrue(str(error).startswith("events needs the broker"), str(error))

    def test_userWithoutHTTP(self) -> None:
        """
        C{--user} and C{--token} are refused for the broker.
        """
        error = self.assertRaises(
            UsageError, resolveSettings, parse("nodes", "--user", "a"), {"CLACKS_URL": GOOD_URL}
        )
        self.assertEqual(str(error), "--user is for calls over HTTP: give --http URL too")


class HTTPCommandTests(TestCase):
    """
    The C{clacks} console script with C{--http}, against agents with a
    users file (alice, with a token; no ACL).
    """

    timeout = 90

    def setUp(self) -> None:
        from clacks.agent.users import addToken
        from tests.util.secured import usersFile

        self.domain = DomainFixture(self)
        self.users = usersFile(self, {"alice": ("wonderland", [])})
        self.token = addToken(self.users, "alice", "ci")

    @inlineCallbacks
    def startAgents(self, *nodes: str) -> Any:
        """
        Start agents C{nodes} with the example plugin and the users file;
        wait until each knows the others.

        @return: the endpoint URL of the first.
        """
        from tests.util.secured import startSecuredAgent, waitForDomain

        agents = []
        for node in nodes:
            agent = yield startSecuredAgent(self.domain, node, self.users, objects=False)
            agents.append(agent)
        yield waitForDomain(self.domain, agents)
        self.agents = agents
        return f"http://127.0.0.1:{self.domain.httpPort(agents[0])}/rpc"

    def clacks(self, *args: str, **env: str) -> Any:
        return runClacks(self, *args, env=httpEnvironment(**env))

    def assertExit(self, result: Any, code: int, stderr: str | None = None) -> None:
        self.assertEqual(result.code, code, result.describe())
        self.assertEqual(result.err, "" if stderr is None else stderr + "\n", result.describe())

    @inlineCallbacks
    def test_call(self) -> Any:
        """
        C{clacks call} over HTTP, as C{--user} with C{CLACKS_PASSWORD} or
        with C{CLACKS_TOKEN}: by name on one node, C{--json}, C{--all};
        the agent's JSON-RPC errors as over the broker.  (The children run
        at once.)
        """
        url = yield self.startAgents("web1", "web2")
        token = {"CLACKS_HTTP": url, "CLACKS_TOKEN": self.token}
        byName, echo, everywhere, unknown = yield gatherResults(
            [
                self.clacks(
                    "call",
                    "greet",
                    "-p",
                    "name=Ada",
                    "--node",
                    "web2",
                    "--http",
                    url,
                    "--user",
                    "alice",
                    CLACKS_PASSWORD="wonderland",
                ),
                self.clacks("--json", "call", "echo", '{"a": [1, null]}', **token),
                self.clacks("call", "whoami", "--all", "--json", **token),
                self.clacks("call", "nope", **token),
            ]
        )
        self.assertExit(byName, EXIT_OK)
        self.assertEqual(byName.out, "Hello, Ada, from web2!\n")
        self.assertExit(echo, EXIT_OK)
        self.assertEqual(json.loads(echo.out), {"a": [1, None]})
        self.assertExit(everywhere, EXIT_OK)
        self.assertEqual(
            json.loads(everywhere.out),
            {
                "results": {
                    "web1": {"user": "alice", "node": "web1"},
                    "web2": {"user": "alice", "node": "web2"},
                },
                "errors": {},
                "missing": [],
            },
        )
        self.assertExit(
            unknown, EXIT_CALL_ERROR, "error -32601: no node of the domain provides 'nope'"
        )

    @inlineCallbacks
    def test_nodes(self) -> Any:
        """
        Over HTTP: C{clacks nodes} prints the table; C{clacks status} names
        the endpoint, the user and the agent that answered.  A wrong
        password is exit status L{EXIT_CONNECTION}, one line naming the
        endpoint, the user and the agent's reason; so is an endpoint where
        nothing listens.  A call slower than C{--timeout} is
        L{EXIT_TIMEOUT}.  (The children run at once.)
        """
        url = yield self.startAgents("web1")
        env = {"CLACKS_HTTP": url, "CLACKS_USER": "alice", "CLACKS_PASSWORD": "wonderland"}
        nodes, status, refused, unreachable, slow = yield gatherResults(
            [
                self.clacks("nodes", **env),
                self.clacks("status", CLACKS_DOMAIN=self.domain.domain, **env),
                self.clacks(
                    "call", "greet", "x", "--http", url, "--user", "alice", CLACKS_PASSWORD="wrong"
                ),
                self.clacks("nodes", "--http", "http://127.0.0.1:1", "--token", "t"),
                self.clacks(
                    "call",
                    "slowEcho",
                    "x",
                    "0.6",
                    "--timeout",
                    "0.3",
                    CLACKS_HTTP=url,
                    CLACKS_TOKEN=self.token,
                ),
            ]
        )
        ended = time.monotonic()
        self.assertExit(nodes, EXIT_OK)
        table = lines(nodes.out)
        self.assertEqual(table[0].split()[:2], ["NODE", "STATE"])
        self.assertEqual([line.split()[:2] for line in table[1:]], [["web1", "alive"]])
        self.assertExit(status, EXIT_OK)
        [connection, agent, domain] = lines(status.out)
        self.assertEqual(connection, f"connection  {url} as alice (connected)")
        self.assertTrue(agent.startswith("agent       web1 (clacks "), agent)
        self.assertEqual(domain, f"domain      {self.domain.domain}: 1 node (1 alive)")
        self.assertExit(
            refused, EXIT_CONNECTION, f"error: authentication refused by {url} for alice: {REFUSED}"
        )
        self.assertEqual(refused.out, "")
        self.assertEqual(unreachable.code, EXIT_CONNECTION, unreachable.describe())
        [line] = lines(unreachable.err)
        self.assertTrue(line.startswith("error: cannot connect to http://127.0.0.1:1/rpc: "), line)
        self.assertIn("refused", line)
        self.assertExit(
            slow, EXIT_TIMEOUT, "error -32001: no answer to 'slowEcho' (any) within 0.3 s"
        )
        # The agent still runs it (a call over HTTP is not counted in flight).
        yield waitUntil(lambda: time.monotonic() - ended > 0.6, 5, "the slow call to end")

    @inlineCallbacks
    def test_events(self) -> Any:
        """
        C{events} with C{--http}: exit status L{EXIT_USAGE}, one line (see
        L{HTTPSettingsTests} for the other usage errors).
        """
        result = yield self.clacks("events", "--http", "http://127.0.0.1:1", "--token", "t")
        self.assertExit(
            result,
            EXIT_USAGE,
            "error: events needs the broker (--url or CLACKS_URL): an agent's HTTP endpoint "
            "does not send events",
        )
