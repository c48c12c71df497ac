# -*- test-case-name: tests.test_cli -*-
"""
The C{clacks} command: a clacks domain at an operator's shell.

    clacks nodes                         # the domain's nodes
    clacks methods [PATTERN]             # its commands
    clacks call greet Ada                # call a command on any node
    clacks call greet Ada --node web1    # ... on one node
    clacks call ping --all               # ... on every node
    clacks call greet -p name=Ada        # parameters by name
    clacks events [PATTERN]              # follow the events (Ctrl-C ends)
    clacks status                        # connection, broker, domain

The broker and domain come from C{--url} and C{--domain}, else from the
environment (C{CLACKS_URL}, C{CLACKS_DOMAIN}), else from an agent
configuration given with C{-c} (its C{[amqp] url} and C{[core] domain}).

With C{--http URL} (or C{CLACKS_HTTP}) the commands go to an agent's HTTP
JSON-RPC endpoint instead of the bus, as a user of the agent's users file:
C{--user NAME} (or C{CLACKS_USER}) with the password in C{CLACKS_PASSWORD}
(asked for when standard input is a terminal), or C{--token TOKEN} (or
C{CLACKS_TOKEN}).  C{call}, C{nodes}, C{methods} and C{status} work over
HTTP; C{events} needs the bus.

Output is for humans unless C{--json} is given: then every result is JSON
(C{events} writes one JSON object per line).  Errors are one line on
standard error (with a traceback under C{--debug}); the exit status says
what happened, see L{EXIT_OK} and the others.

The reactor is imported only when a command runs, never when this module
is imported.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TextIO
from urllib.parse import quote

import attrs

from clacks import __version__
from clacks._reactor import maybeGlobalReactor

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from clacks.client.http import JSONServiceProxy
    from clacks.client.proxy import AMQPServiceProxy

#: It worked.
EXIT_OK = 0
#: The call failed: the domain answered with a JSON-RPC error (printed as
#: C{error CODE: MESSAGE}), or a node of a C{--all} call did.
EXIT_CALL_ERROR = 1
#: The command line or the configuration is wrong (no domain, bad URL,
#: unknown option, unreadable C{-c} file, no credentials for C{--http},
#: C{events} with C{--http}).
EXIT_USAGE = 2
#: The broker could not be reached or refused the connection; with
#: C{--http}, the agent could not be reached or refused the credentials.
EXIT_CONNECTION = 3
#: No answer came in time (C{--timeout}), or a node of a C{--all} call did
#: not answer.
EXIT_TIMEOUT = 4
#: Interrupted (SIGINT or SIGTERM) before it finished; C{events} exits with
#: L{EXIT_OK} instead, as that is how it ends.
EXIT_INTERRUPTED = 130

#: Seconds a command waits for the broker and for answers, by default.
DEFAULT_TIMEOUT = 10.0

EXIT_CODES_HELP = f"""\
environment:
  CLACKS_URL       the broker, when --url is not given
  CLACKS_DOMAIN    the domain, when --domain is not given
  CLACKS_HTTP      an agent's HTTP endpoint, when neither --url nor --http is given
                   (it wins over CLACKS_URL, except for events)
  CLACKS_USER      the user for --http, when neither --user nor --token is given
  CLACKS_PASSWORD  the password of --user (asked for on a terminal if not set)
  CLACKS_TOKEN     the bearer token for --http, when neither --user nor --token is given

over HTTP:
  --http http://HOST:PORT[/rpc] calls an agent's JSON-RPC endpoint (it needs a users
  file) as --user NAME or with --token TOKEN; call, nodes, methods and status work,
  events needs the broker (--url).  The domain is not needed.

exit status:
  {EXIT_OK}    ok
  {EXIT_CALL_ERROR}    the call failed (the JSON-RPC error is printed: "error CODE: MESSAGE")
  {EXIT_USAGE}    usage error: bad option or argument, no broker URL or domain, bad config,
       no credentials for --http, events with --http
  {EXIT_CONNECTION}    the broker or the HTTP endpoint is unreachable, or refused the
       connection or the credentials
  {EXIT_TIMEOUT}    timeout: no answer within --timeout seconds
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); "clacks events" ends with 0
"""


class UsageError(Exception):
    """
    The command line or configuration cannot be used; C{str()} says why,
    on one line.
    """


class _Parser(argparse.ArgumentParser):
    """
    An argument parser whose errors are one line on standard error, with
    exit status L{EXIT_USAGE}.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def _positiveFloat(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {value!r}")
    return number


def _common() -> _Parser:
    # SUPPRESS: given before or after the subcommand, an option is set once
    # and not reset by the other parser's default.
    common = _Parser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--url", metavar="URL", default=argparse.SUPPRESS, help="the broker: amqp://user:pw@host/"
    )
    group.add_argument("--domain", metavar="NAME", default=argparse.SUPPRESS, help="the domain")
    group.add_argument(
        "--http",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="call an agent's HTTP endpoint instead of the broker: http://host:8080/rpc",
    )
    group.add_argument(
        "--user",
        metavar="NAME",
        default=argparse.SUPPRESS,
        help="with --http: log in as NAME (password in CLACKS_PASSWORD, or asked for)",
    )
    group.add_argument(
        "--token",
        metavar="TOKEN",
        default=argparse.SUPPRESS,
        help="with --http: log in with this bearer token (CLACKS_TOKEN hides it from ps)",
    )
    group.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="an agent configuration (file or directory) for the URL and domain",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positiveFloat,
        default=argparse.SUPPRESS,
        help=f"wait this long for the broker and for answers [{DEFAULT_TIMEOUT:g}]",
    )
    group.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for machines"
    )
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log to standard error, with tracebacks",
    )
    return common


def makeParser() -> argparse.ArgumentParser:
    """
    @return: the parser of the C{clacks} command line.
    """
    common = _common()
    parser = _Parser(
        prog="clacks",
        description="Call and watch the agents of a clacks domain, over its broker (--url) "
        "or an agent's HTTP endpoint (--http).",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"clacks {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(
            name,
            help=help,
            description=description,
            parents=[common],
            epilog=EXIT_CODES_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return sub

    call = command(
        "call",
        "call a command",
        "Call METHOD with ARGs on any node that provides it (or --node, or --all). "
        "An ARG (and a -p VALUE) that parses as JSON is that JSON value "
        '(42, true, null, [1,2], {"a":1}, "quoted"), anything else is a string; '
        "put -- before arguments that start with a dash.",
    )
    call.add_argument("method", metavar="METHOD", help="the command's name")
    call.add_argument("args", metavar="ARG", nargs="*", help="parameters, by position")
    call.add_argument(
        "-p",
        "--param",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="a parameter by name (repeatable; not together with ARGs)",
    )
    target = call.add_mutually_exclusive_group()
    target.add_argument("--node", metavar="ID", help="run it on this node only")
    target.add_argument("--all", action="store_true", help="run it on every node")

    command(
        "nodes",
        "list the domain's nodes",
        "List the nodes of the domain (getNodes): id, state, load, calls in flight, "
        "last seen, version.",
    )
    methods = command(
        "methods",
        "list the domain's commands",
        "List the commands of the domain (getMethods): signature, type, providing nodes, help.",
    )
    methods.add_argument(
        "pattern", metavar="PATTERN", nargs="?", help="only commands whose name contains it"
    )
    events = command(
        "events",
        "follow the domain's events",
        "Print the domain's events as they come, one line each, until Ctrl-C "
        "(over the broker only, not --http).",
    )
    events.add_argument(
        "pattern",
        metavar="PATTERN",
        nargs="?",
        default="#",
        help="a topic pattern on <Event>.<node>, e.g. NodeStatus.# or #.web1 [#]",
    )
    command(
        "status",
        "show the connection, the broker and the domain",
        "Show the connection, the broker (product and version; with --http, the agent that "
        "answers) and the domain's nodes by state.",
    )
    return parser


# Settings


@attrs.frozen
class Settings:
    """
    Where to connect, resolved from the command line, the environment and
    the configuration file.

    @ivar url: the broker URL, with its password; empty over HTTP.
    @ivar domain: the domain (over HTTP, empty if not given: it is only
        shown by C{status}).
    @ivar timeout: seconds for the connection and for each answer.
    @ivar http: the agent's HTTP endpoint, when the commands go over HTTP.
    @ivar user: the user to log in as over HTTP, with C{password}.
    @ivar token: the bearer token to log in with over HTTP.
    """

    url: str = attrs.field(repr=False)
    domain: str
    timeout: float = DEFAULT_TIMEOUT
    http: str | None = attrs.field(default=None, repr=False)
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    token: str | None = attrs.field(default=None, repr=False)


def urlOf(broker: Any) -> str:
    """
    @return: the URL string of a L{clacks.agent.config.BrokerURL},
        password included.
    """
    host = f"[{broker.host}]" if ":" in broker.host else broker.host
    vhost = "" if broker.vhost == "/" else quote(broker.vhost, safe="")
    return (
        f"{broker.scheme}://{quote(broker.username, safe='')}:{quote(broker.password, safe='')}"
        f"@{host}:{broker.port}/{vhost}"
    )


def _loadConfig(path: str) -> Any:
    from clacks.agent.config import ConfigError, loadConfig

    try:
        return loadConfig(path)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror or e}") from None


def resolveSettings(
    options: argparse.Namespace,
    environ: Mapping[str, str],
    prompt: Callable[[str], str] | None = None,
) -> Settings:
    """
    Find the broker and the domain: C{--url}/C{--domain}, else
    C{CLACKS_URL}/C{CLACKS_DOMAIN}, else the C{-c} configuration; each
    on its own.  With C{--http} (or C{CLACKS_HTTP} when neither C{--url}
    nor C{--http} is given, except for C{events}), find the HTTP endpoint
    and the credentials instead (see L{httpSettings}).

    @param prompt: asks for a password (C{getpass.getpass}); C{None} when
        nobody can be asked.
    @raise UsageError: if one is missing or bad, saying where it came from.
    """
    from clacks.agent.config import parseBrokerURL

    url: str | None = getattr(options, "url", None)
    urlFrom = "--url"
    http: str | None = getattr(options, "http", None)
    if url and http:
        raise UsageError("give --url (the broker) or --http (an agent), not both")
    if http:
        return httpSettings(options, environ, http, "--http", prompt)
    if not url and environ.get("CLACKS_HTTP") and options.command != "events":
        # (events needs the broker: CLACKS_URL or -c, if given, serve it.)
        return httpSettings(options, environ, environ["CLACKS_HTTP"], "CLACKS_HTTP", prompt)
    for flag in ("user", "token"):
        if getattr(options, flag, None):
            raise UsageError(f"--{flag} is for calls over HTTP: give --http URL too")
    if not url and environ.get("CLACKS_URL"):
        url, urlFrom = environ["CLACKS_URL"], "CLACKS_URL"
    domain: str | None = getattr(options, "domain", None)
    if not domain and environ.get("CLACKS_DOMAIN"):
        domain = environ["CLACKS_DOMAIN"]
    path = getattr(options, "config", None)
    if path and (not url or not domain):
        config = _loadConfig(path)
        if not url:
            if config.amqp.url is None:
                raise UsageError(f"{path}: no [amqp] url: the agent is standalone")
            url, urlFrom = urlOf(config.amqp.url), path
        if not domain:
            domain = config.core.domain
    if not url and environ.get("CLACKS_HTTP"):
        raise UsageError(
            "events needs the broker: give --url URL, set CLACKS_URL or give -c CONFIG"
        )
    if not url:
        raise UsageError("no broker: give --url URL, set CLACKS_URL or give -c CONFIG")
    if not domain:
        raise UsageError("no domain: give --domain NAME, set CLACKS_DOMAIN or give -c CONFIG")
    try:
        parseBrokerURL(url)
    except ValueError as e:
        raise UsageError(f"{urlFrom}: {e}") from None
    return Settings(url=url, domain=domain, timeout=getattr(options, "timeout", DEFAULT_TIMEOUT))


def httpSettings(
    options: argparse.Namespace,
    environ: Mapping[str, str],
    http: str,
    httpFrom: str,
    prompt: Callable[[str], str] | None = None,
) -> Settings:
    """
    The settings of a command over HTTP: the endpoint C{http} (from
    C{httpFrom}), and who logs in: C{--user} or C{--token}, else
    C{CLACKS_USER} or C{CLACKS_TOKEN}, else the user and password in the
    URL.  The password of a user comes from C{CLACKS_PASSWORD}, else from
    C{prompt}.  The domain (C{--domain}, C{CLACKS_DOMAIN}, C{-c}) is
    optional.

    @raise UsageError: for C{events}, a bad URL, no credentials, or two
        kinds of them.
    """
    from clacks.client.http import parseEndpoint

    if options.command == "events":
        raise UsageError(
            "events needs the broker (--url or CLACKS_URL): an agent's HTTP endpoint "
            "does not send events"
        )
    try:
        endpoint = parseEndpoint(http)
    except ValueError as e:
        raise UsageError(f"{httpFrom}: {e}") from None
    user: str | None = getattr(options, "user", None)
    token: str | None = getattr(options, "token", None)
    if user and token:
        raise UsageError("give --user or --token, not both")
    if not user and not token:
        user = environ.get("CLACKS_USER") or None
        token = environ.get("CLACKS_TOKEN") or None
        if user and token:
            raise UsageError(
                "CLACKS_USER and CLACKS_TOKEN are both set: give --user or --token, or unset one"
            )
    password: str | None = None
    if user:
        password = environ.get("CLACKS_PASSWORD")
        if password is None:
            if prompt is None:
                raise UsageError(
                    f"no password for {user}: set CLACKS_PASSWORD "
                    "(it is asked for only on a terminal)"
                )
            try:
                password = prompt(f"Password for {user} at {endpoint.url}: ")
            except EOFError:
                raise UsageError(f"no password for {user}") from None
    elif not token and endpoint.username is None:
        raise UsageError(
            "no credentials for --http: give --user NAME (password in CLACKS_PASSWORD) "
            "or --token TOKEN (or set CLACKS_USER or CLACKS_TOKEN)"
        )
    domain: str | None = getattr(options, "domain", None) or environ.get("CLACKS_DOMAIN")
    path = getattr(options, "config", None)
    if path and not domain:
        domain = _loadConfig(path).core.domain
    return Settings(
        url="",
        domain=domain or "",
        timeout=getattr(options, "timeout", DEFAULT_TIMEOUT),
        http=http,
        user=user,
        password=password,
        token=token,
    )


def parseArgument(text: str) -> Any:
    """
    @return: C{text} as JSON if it parses, else C{text} itself.
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def callParameters(options: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    """
    @return: the positional and named parameters of C{clacks call}.
    @raise UsageError: for a C{-p} without C{=}, or both kinds.
    """
    args = [parseArgument(a) for a in options.args]
    kwargs: dict[str, Any] = {}
    for item in options.param:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"-p {item!r}: expected NAME=VALUE")
        kwargs[name] = parseArgument(value)
    if args and kwargs:
        raise UsageError("give the parameters by position (ARG) or by name (-p), not both")
    return args, kwargs


# Running


@attrs.define
class _Session:
    """
    One run of a command: its options, its output streams, the proxy, and
    a Deferred that fires when the user interrupts it.
    """

    options: argparse.Namespace
    settings: Settings
    out: TextIO
    err: TextIO
    reactor: Any
    interrupted: Deferred[None]
    proxy: AMQPServiceProxy | JSONServiceProxy | None = None
    following: bool = False

    @property
    def json(self) -> bool:
        return bool(getattr(self.options, "json", False))

    def write(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def report(self, line: str) -> None:
        """
        Write the one line that says what went wrong (after the traceback
        of the exception being handled, with C{--debug}).
        """
        if getattr(self.options, "debug", False):
            traceback.print_exc(file=self.err)
        self.err.write(line + "\n")
        self.err.flush()


Command = Callable[[_Session], Coroutine[Any, Any, int]]


async def _call(session: _Session) -> int:
    from clacks.client._output import formatAllNodes, formatValue, jsonLine

    options = session.options
    args, kwargs = callParameters(options)
    assert session.proxy is not None
    method = session.proxy[options.method]
    if options.node:
        method = method.on(options.node)
    elif options.all:
        method = method.everywhere()
    result = await method.within(session.settings.timeout)(*args, **kwargs)
    if not options.all:
        session.write(jsonLine(result) if session.json else formatValue(result))
        return EXIT_OK
    session.write(jsonLine(result.toJSON()) if session.json else formatAllNodes(result))
    problems = []
    if result.errors:
        problems.append(f"failed on {', '.join(sorted(result.errors))}")
    if result.missing:
        problems.append(
            f"no answer within {session.settings.timeout:g} s from {', '.join(result.missing)}"
        )
    if problems:
        session.report(f"error: {'; '.join(problems)}")
    if result.errors:
        return EXIT_CALL_ERROR
    if result.missing:
        return EXIT_TIMEOUT
    return EXIT_OK


async def _nodes(session: _Session) -> int:
    from clacks.client._output import formatNodes, jsonLine

    assert session.proxy is not None
    nodes = await session.proxy.getNodes.within(session.settings.timeout)()
    session.write(jsonLine(nodes) if session.json else formatNodes(nodes))
    return EXIT_OK


async def _methods(session: _Session) -> int:
    from clacks.client._output import formatMethods, jsonLine

    assert session.proxy is not None
    pattern = session.options.pattern
    method = session.proxy.getMethods.within(session.settings.timeout)
    methods = await (method(pattern) if pattern else method())
    session.write(jsonLine(methods) if session.json else formatMethods(methods))
    return EXIT_OK


async def _status(session: _Session) -> int:
    from clacks.client._output import brokerSummary, formatStatus, jsonLine
    from clacks.client.proxy import AMQPServiceProxy

    proxy = session.proxy
    assert isinstance(proxy, AMQPServiceProxy)
    status: dict[str, Any] = {
        "connection": {
            "url": proxy.url.redacted(),
            "name": proxy.connectionName,
            "connected": proxy.connected,
        },
        "broker": brokerSummary(proxy.serverProperties),
        "domain": {"name": proxy.domain},
    }
    code = await _domainStatus(session, status)
    session.write(jsonLine(status) if session.json else formatStatus(status))
    return code


async def _domainStatus(session: _Session, status: dict[str, Any]) -> int:
    """
    Add the domain's nodes by state to C{status} (or the error that came
    instead, reported).

    @return: the exit status.
    """
    from clacks.client._output import errorLine, nodeCounts
    from clacks.client.proxy import CallError
    from clacks.common.jsonrpc import TIMEOUT

    assert session.proxy is not None
    try:
        nodes = await session.proxy.getNodes.within(session.settings.timeout)()
    except CallError as e:
        status["domain"]["error"] = e.toJSON()
        session.report(errorLine(e))
        return EXIT_TIMEOUT if e.code == TIMEOUT else EXIT_CALL_ERROR
    status["domain"]["nodes"] = len(nodes)
    status["domain"]["states"] = nodeCounts(nodes)
    return EXIT_OK


async def _statusHTTP(session: _Session) -> int:
    from clacks.client._output import formatStatus, jsonLine
    from clacks.client.http import JSONServiceProxy
    from clacks.client.proxy import CallError
    from clacks.common.jsonrpc import TIMEOUT

    proxy = session.proxy
    assert isinstance(proxy, JSONServiceProxy)
    status: dict[str, Any] = {
        "connection": {"url": proxy.url, "name": proxy.identity, "connected": False},
        "agent": None,
        "domain": {"name": session.settings.domain or None},
    }
    try:
        pong = await proxy.ping.within(session.settings.timeout)()
    except CallError as e:
        if e.code == TIMEOUT:
            raise
        # It answered (an ACL may deny ping): reachable, credentials good.
        pong = None
    status["connection"]["connected"] = True
    if isinstance(pong, Mapping):
        status["agent"] = {"node": pong.get("node"), "version": pong.get("version")}
    code = await _domainStatus(session, status)
    if session.json:
        session.write(jsonLine(status))
        return code
    named = {**status, "domain": {**status["domain"], "name": status["domain"]["name"] or "-"}}
    lines = formatStatus(named).splitlines()
    if status["agent"] is not None:
        agent = status["agent"]
        lines.insert(1, f"agent       {agent['node']} (clacks {agent['version']})")
    session.write("\n".join(lines))
    return code


async def _events(session: _Session) -> int:
    # The subscription is made before connecting (see _run); here the
    # events are printed until the user interrupts.
    session.err.write(
        f"following the events of {session.settings.domain} matching "
        f"{session.options.pattern!r} (Ctrl-C to stop)\n"
    )
    session.err.flush()
    session.following = True
    await session.interrupted
    return EXIT_OK


def _subscribe(session: _Session) -> None:
    from clacks.client._output import formatEvent, jsonLine
    from clacks.client.proxy import AMQPServiceProxy

    assert isinstance(session.proxy, AMQPServiceProxy)

    def printEvent(event: Any) -> None:
        body = event.toJSON()
        try:
            session.write(jsonLine(body) if session.json else formatEvent(body, time.time()))
        except BrokenPipeError:
            # The reader went away (clacks events | head): stop quietly.
            _interrupt(session)

    session.proxy.subscribe(session.options.pattern, printEvent)

    def observe(ready: bool) -> None:
        if not ready and not session.interrupted.called:
            session.err.write("connection lost; reconnecting\n")
            session.err.flush()

    session.proxy.client.bus.observe(observe)


def _interrupt(session: _Session) -> None:
    if not session.interrupted.called:
        session.interrupted.callback(None)


COMMANDS: dict[str, Command] = {
    "call": _call,
    "nodes": _nodes,
    "methods": _methods,
    "status": _status,
    "events": _events,
}


async def _run(session: _Session) -> int:
    """
    Connect, run the session's command, disconnect.

    @return: the exit status.
    """
    from twisted.internet.defer import CancelledError

    from clacks.client._output import errorLine, jsonLine
    from clacks.client.proxy import AMQPServiceProxy, CallError, ConnectionFailed
    from clacks.common.jsonrpc import TIMEOUT

    settings = session.settings
    name = f"clacks-cli@{socket.gethostname()}:{os.getpid()}"
    try:
        if session.options.command == "call":
            callParameters(session.options)
        if settings.http:
            return await _runHTTP(session)
        session.proxy = AMQPServiceProxy(
            settings.url,
            settings.domain,
            timeout=settings.timeout,
            reactor=session.reactor,
            connectionName=name,
        )
        if session.options.command == "events":
            _subscribe(session)
        try:
            await session.proxy.connect(settings.timeout, attempts=1)
            return await COMMANDS[session.options.command](session)
        finally:
            await session.proxy.close()
    except UsageError as e:
        session.report(f"error: {e}")
        return EXIT_USAGE
    except ConnectionFailed as e:
        session.report(f"error: {e}")
        return EXIT_CONNECTION
    except CallError as e:
        if session.json:
            session.write(jsonLine({"error": e.toJSON()}))
        session.report(errorLine(e))
        return EXIT_TIMEOUT if e.code == TIMEOUT else EXIT_CALL_ERROR
    except CancelledError:
        session.report("interrupted")
        return EXIT_INTERRUPTED


async def _runHTTP(session: _Session) -> int:
    """
    Run the session's command over HTTP (exceptions as in L{_run}).
    """
    from clacks.client.http import JSONServiceProxy

    settings = session.settings
    proxy = JSONServiceProxy(
        settings.http or "",
        credentials=(settings.user, settings.password or "") if settings.user else None,
        token=settings.token,
        timeout=settings.timeout,
        reactor=session.reactor,
    )
    session.proxy = proxy
    name = session.options.command
    command = _statusHTTP if name == "status" else COMMANDS[name]
    try:
        return await command(session)
    finally:
        await proxy.close()


def _discard(event: Mapping[str, Any]) -> None:
    """
    A log observer that drops every event.
    """


def run(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    reactor: Any = None,
) -> int:
    """
    Run the C{clacks} command line C{argv} to its end.

    @param environ: the environment (C{CLACKS_URL}, C{CLACKS_DOMAIN},
        C{CLACKS_HTTP}, C{CLACKS_USER}, C{CLACKS_PASSWORD}, C{CLACKS_TOKEN}).
    @param reactor: the reactor to run; the global one by default.  It is
        run (and stopped) here.
    @return: the exit status.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    environ = os.environ if environ is None else environ
    options = makeParser().parse_args(argv)
    debug = bool(getattr(options, "debug", False))
    prompt: Callable[[str], str] | None = None
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        prompt = getpass.getpass
    try:
        settings = resolveSettings(options, environ, prompt)
    except UsageError as e:
        err.write(f"error: {e}\n")
        return EXIT_USAGE
    from twisted.logger import globalLogBeginner, textFileLogObserver

    # Without --debug the log (reconnects, retries, Twisted's own errors)
    # is dropped: what went wrong is the one line this command writes.
    observer: Any = textFileLogObserver(err) if debug else _discard
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    reactor = maybeGlobalReactor(reactor)
    from twisted.internet.defer import Deferred, ensureDeferred

    session = _Session(options, settings, out, err, reactor, Deferred())
    outcome: list[int] = []
    running: list[Deferred[int]] = []

    def start() -> None:
        d = ensureDeferred(_run(session))
        running.append(d)
        d.addErrback(failed)
        d.addCallback(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    def failed(failure: Any) -> int:
        error = failure.value
        message = f"{type(error).__name__}: {error}".replace("\n", " ")
        err.write(f"error: {message}\n")
        if debug:
            err.write("".join(traceback.format_exception(error)))
        return EXIT_CALL_ERROR

    def interrupt() -> None:
        if session.following and not session.interrupted.called:
            # How "events" ends: it closes the connection and exits 0.
            _interrupt(session)
            return
        # Any other command, "events" before it follows, or a second
        # Ctrl-C: give up what is under way.
        for d in running:
            d.cancel()

    def onSignal(signum: int, frame: Any) -> None:
        reactor.callFromThread(interrupt)

    previous = {sig: signal.signal(sig, onSignal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        reactor.callWhenRunning(start)
        reactor.run(installSignalHandlers=False)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return outcome[0] if outcome else EXIT_INTERRUPTED


def main() -> NoReturn:
    """
    The C{clacks} console script.
    """
    try:
        code = run()
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # Nobody reads the rest: do not complain about it at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


if __name__ == "__main__":
    main()
