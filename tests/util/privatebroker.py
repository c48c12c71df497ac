# -*- test-case-name: tests.test_privatebroker -*-
"""
A private RabbitMQ node for tests that stop, restart or kill a broker, and
helpers that close connections from the broker's side.

    broker = PrivateBroker(self.mktemp())
    self.addCleanup(broker.cleanup)
    yield broker.start()        # about 5 s here
    # ... connect to broker.url ...
    yield broker.restart()      # same port, same data: durable queues survive
    yield broker.kill()         # or a crash: SIGKILL, then start() again

The node runs beside the shared one (C{rabbit@localhost} on 5672) and shares
nothing with it but the machine's epmd: its own node name, AMQP port,
distribution port, data and log directories, Erlang cookie, configuration
file (the shared C{/etc/rabbitmq/rabbitmq.conf} would make it listen on
5672) and an empty plugin list (no management listener on 15672). It is a
child process of the test (C{rabbitmq-server} in the foreground, spawned
with L{IReactorProcess.spawnProcess}), so the reactor is never blocked and
its end is seen at once; C{rabbitmqctl} calls are spawned the same way.

L{closeBrokerConnections} and L{closeConnectionByPeerPort} close
connections from the broker's side (the client gets C{connection.close}
with code 320, CONNECTION_FORCED), on a private node or on the shared one:
on the shared node, close only your own test's connections.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

RABBITMQ_BIN = "/usr/lib/rabbitmq/bin"
"""
The RabbitMQ scripts proper. Debian's C{/usr/sbin} wrappers run them as the
C{rabbitmq} user with that user's home (and cookie) and a fixed working
directory, which a private node must not use.
"""

SHARED_RABBITMQCTL = "/usr/sbin/rabbitmqctl"
"""
Debian's wrapper: run as root, it switches to the C{rabbitmq} user, whose
cookie (C{/var/lib/rabbitmq/.erlang.cookie}) and C{rabbitmq-env.conf} (node
C{rabbit@localhost}) are those of the shared node.
"""

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"

_CLI_DIST_PORTS = range(35672, 35683)
"""
The ports that C{rabbitmqctl} itself listens on while it runs.
"""

_running: dict[str, PrivateBroker] = {}
"""
The private nodes started by this process, by node name: how
L{rabbitmqctl} finds the environment (cookie) of a node.
"""


def _reactor(reactor: Any) -> Any:
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        return globalReactor
    return reactor


def freePort(avoid: Sequence[int] = ()) -> int:
    """
    @param avoid: ports not to return.
    @return: a TCP port of 127.0.0.1 that nothing listens on right now.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid and port not in _CLI_DIST_PORTS:
            return port


@dataclass
class ProcessResult:
    """
    What a finished child process left.

    @ivar out: its standard output.
    @ivar err: its standard error.
    @ivar code: its exit code, or L{None} if a signal ended it.
    @ivar signal: the signal that ended it, or L{None}.
    """

    out: bytes
    err: bytes
    code: int | None
    signal: int | None


class ProcessTimeout(Exception):
    """
    A child process did not end in time; it was killed.
    """


class RabbitmqctlError(Exception):
    """
    C{rabbitmqctl} failed.

    @ivar result: the L{ProcessResult} of the call.
    """

    def __init__(self, args: Sequence[str], result: ProcessResult) -> None:
        self.result = result
        text = (result.err or result.out).decode("utf-8", "replace").strip()
        super().__init__(
            f"rabbitmqctl {' '.join(args)} exited with {result.code}"
            f" (signal {result.signal}): {text}"
        )


class _Collector(ProcessProtocol):
    """
    Collects the output of a child process, and kills it after a timeout.
    """

    def __init__(self, reactor: Any, timeout: float) -> None:
        self.reactor = reactor
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.ended: Deferred[ProcessResult] = Deferred()
        self.timedOut = False
        self._timer = reactor.callLater(timeout, self._timeout)

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def _timeout(self) -> None:
        self.timedOut = True
        try:
            self.transport.signalProcess("KILL")
        except Exception:  # already gone
            pass

    def processEnded(self, reason: Failure) -> None:
        if self._timer.active():
            self._timer.cancel()
        value = reason.value
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        result = ProcessResult(b"".join(self.out), b"".join(self.err), code, sig)
        if self.timedOut:
            self.ended.errback(ProcessTimeout(result))
        else:
            self.ended.callback(result)


def runProcess(
    executable: str,
    args: Sequence[str],
    env: Mapping[str, str],
    path: str | None = None,
    timeout: float = 60.0,
    reactor: Any = None,
) -> Deferred[ProcessResult]:
    """
    Run a child process to its end without blocking the reactor.

    @param executable: the program.
    @param args: its arguments, without the program's name.
    @param env: its whole environment.
    @param path: its working directory.
    @param timeout: seconds after which it is killed (SIGKILL) and the result
        fails with L{ProcessTimeout}.
    @return: a L{Deferred} firing with its L{ProcessResult}.
    """
    reactor = _reactor(reactor)
    collector = _Collector(reactor, timeout)
    reactor.spawnProcess(
        collector, executable, [executable, *args], env=dict(env), path=path
    )
    return collector.ended


def _cleanEnvironment() -> dict[str, str]:
    """
    @return: this process's environment without the variables that would
        point RabbitMQ or Erlang elsewhere, in a UTF-8 locale.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RABBITMQ_", "ERL_"))
    }
    env["LANG"] = env["LC_ALL"] = "C.UTF-8"
    return env


@inlineCallbacks
def rabbitmqctl(
    args: Sequence[str],
    nodename: str | None = None,
    timeout: float = 60.0,
    reactor: Any = None,
) -> Any:
    """
    Run C{rabbitmqctl} against a node.

    @param args: the command and its arguments, e.g. C{["list_queues"]}.
    @param nodename: a L{PrivateBroker}'s node name; L{None} for the shared
        node. A name that is no running private node's is passed on with
        C{-n}, with the shared node's cookie.
    @param timeout: seconds after which C{rabbitmqctl} is killed.
    @return: a L{Deferred} firing with its standard output (L{bytes}), or
        failing with L{RabbitmqctlError}.
    """
    broker = _running.get(nodename) if nodename is not None else None
    if broker is not None:
        executable = os.path.join(RABBITMQ_BIN, "rabbitmqctl")
        env = broker.environment()
        path: str | None = broker.baseDir
    else:
        if os.geteuid() == 0 and os.path.exists(SHARED_RABBITMQCTL):
            executable = SHARED_RABBITMQCTL
        else:
            executable = os.path.join(RABBITMQ_BIN, "rabbitmqctl")
        env = _cleanEnvironment()
        path = None
    fullArgs = (["-n", nodename] if nodename is not None else []) + list(args)
    result = yield runProcess(executable, fullArgs, env, path, timeout, reactor)
    if result.code != 0:
        raise RabbitmqctlError(fullArgs, result)
    return result.out


@dataclass
class BrokerConnection:
    """
    An AMQP connection as the broker lists it.

    @ivar pid: the connection's Erlang process, as C{close_connection} wants
        it (C{<rabbit@localhost.1796399117.894.0>}).
    @ivar peerPort: the client's local port.
    @ivar user: the user it logged in as.
    @ivar name: the broker's name for it (C{"127.0.0.1:52568 ->
        127.0.0.1:5672"}).
    @ivar connectionName: the C{connection_name} client property, if the
        client sent one.
    """

    pid: str
    peerPort: int
    user: str = ""
    name: str = ""
    connectionName: str | None = None


@inlineCallbacks
def _pidsByPeerPort(nodename: str | None, reactor: Any) -> Any:
    """
    @return: a L{Deferred} firing with C{{peer_port: pid}} of the node's
        connections. The JSON formatter writes pids as C{#PID<...>}, which
        C{close_connection} rejects, hence the plain table here.
    """
    out = yield rabbitmqctl(
        ["list_connections", "-q", "--no-table-headers", "pid", "peer_port"],
        nodename,
        reactor=reactor,
    )
    pids = {}
    for line in out.decode("utf-8").splitlines():
        fields = line.strip().split("\t")
        if len(fields) == 2 and fields[1].isdigit():
            pids[int(fields[1])] = fields[0]
    return pids


@inlineCallbacks
def listBrokerConnections(nodename: str | None = None, reactor: Any = None) -> Any:
    """
    List a node's AMQP connections (two C{rabbitmqctl} calls, about 1 s).

    @param nodename: see L{rabbitmqctl}.
    @return: a L{Deferred} firing with a list of L{BrokerConnection}.
    """
    out = yield rabbitmqctl(
        [
            "list_connections",
            "-q",
            "peer_port",
            "user",
            "name",
            "client_properties",
            "--formatter",
            "json",
        ],
        nodename,
        reactor=reactor,
    )
    pids = yield _pidsByPeerPort(nodename, reactor)
    connections = []
    for row in json.loads(out or b"[]"):
        pid = pids.get(row["peer_port"])
        if pid is None:  # gone between the two calls
            continue
        connectionName = None
        for item in row.get("client_properties") or []:
            if len(item) == 3 and item[0] == "connection_name":
                connectionName = item[2]
        connections.append(
            BrokerConnection(pid, row["peer_port"], row["user"], row["name"], connectionName)
        )
    return connections


@inlineCallbacks
def _close(
    connections: list[BrokerConnection], nodename: str | None, reason: str, reactor: Any
) -> Any:
    closed = []
    for connection in connections:
        try:
            yield rabbitmqctl(
                ["close_connection", connection.pid, reason], nodename, reactor=reactor
            )
        except RabbitmqctlError as e:
            # It may have closed meanwhile.
            log.info("could not close {pid}: {error}", pid=connection.pid, error=e)
        else:
            closed.append(connection)
    return closed


@inlineCallbacks
def closeBrokerConnections(
    namePrefix: str,
    nodename: str | None = None,
    reason: str = "closed by test",
    reactor: Any = None,
) -> Any:
    """
    Close, from the broker's side, every connection whose client-provided
    connection name (client property C{connection_name}) starts with
    C{namePrefix}. Connections without a name are left alone.

    @param namePrefix: a prefix that only the test's own connections use.
    @param nodename: see L{rabbitmqctl}.
    @param reason: the text the clients get with code 320.
    @return: a L{Deferred} firing with the L{BrokerConnection}s closed.
    """
    if not namePrefix:
        raise ValueError("an empty prefix would close every named connection")
    connections = yield listBrokerConnections(nodename, reactor)
    matching = [
        c
        for c in connections
        if c.connectionName is not None and c.connectionName.startswith(namePrefix)
    ]
    closed = yield _close(matching, nodename, reason, reactor)
    return closed


@inlineCallbacks
def closeConnectionByPeerPort(
    port: int,
    nodename: str | None = None,
    reason: str = "closed by test",
    reactor: Any = None,
) -> Any:
    """
    Close, from the broker's side, the connection whose client socket has
    local port C{port} (C{transport.getHost().port} on the client). Through
    a L{tests.util.proxy.FaultProxy}, use the proxy's
    C{upstreamPorts()} instead: the broker sees the proxy's socket.

    @param port: the client's local port.
    @param nodename: see L{rabbitmqctl}.
    @param reason: the text the client gets with code 320.
    @return: a L{Deferred} firing with the L{BrokerConnection}s closed (none
        or one).
    """
    pids = yield _pidsByPeerPort(nodename, reactor)
    matching = [BrokerConnection(pids[port], port)] if port in pids else []
    closed = yield _close(matching, nodename, reason, reactor)
    return closed


class _AMQPProbe(Protocol):
    """
    Sends the AMQP 0-9-1 protocol header and waits for C{connection.start}.
    """

    def __init__(self) -> None:
        self.answer: Deferred[bool] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self.buffer = b""

    def connectionMade(self) -> None:
        self.transport.write(AMQP_HEADER)

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= 11 and not self.answer.called:
            # A method frame on channel 0: connection (10) . start (10).
            ok = self.buffer[0] == 1 and self.buffer[7:11] == b"\x00\x0a\x00\x0a"
            self.answer.callback(ok)
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.answer.called:
            self.answer.callback(False)
        self.lost.callback(None)


@inlineCallbacks
def brokerAnswers(
    host: str = "127.0.0.1", port: int = 5672, timeout: float = 5.0, reactor: Any = None
) -> Any:
    """
    Check that an AMQP 0-9-1 broker answers on C{host:port}: it accepts the
    connection and replies to the protocol header with C{connection.start}.

    @return: a L{Deferred} firing with L{True} or L{False}, never failing,
        once the probe's socket is closed (a clean reactor for trial).
    """
    reactor = _reactor(reactor)
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    try:
        probe = yield endpoint.connect(Factory.forProtocol(_AMQPProbe))
    except Exception:
        return False
    try:
        ok = yield probe.answer.addTimeout(timeout, reactor)
    except Exception:
        ok = False
        probe.transport.abortConnection()
    yield probe.lost
    return ok


class BrokerStartError(Exception):
    """
    A private node did not come up; the message ends with its log's tail.
    """


class _ServerProcess(ProcessProtocol):
    """
    The C{rabbitmq-server} script, which runs the node in the foreground.
    """

    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        self.ended.callback(None)


class PrivateBroker:
    """
    A RabbitMQ node of the test's own, in C{baseDir}.

    @ivar baseDir: the directory of its data, logs and configuration; removed
        by L{cleanup}.
    @ivar nodename: its unique Erlang node name, C{clackstest-<hex>@localhost}.
    @ivar port: its AMQP port on 127.0.0.1, chosen at the first L{start} and
        kept by L{restart}; L{None} before.
    @ivar distPort: its Erlang distribution port, chosen likewise.
    @ivar startTimeout: seconds L{start} waits for the node to answer AMQP.
    @ivar stopTimeout: seconds L{stop} waits for the node to end before
        killing it.
    @ivar timings: how long each C{start}, C{stop} and C{restart} took, in
        seconds, in order: C{{"start": [3.9, 3.3], ...}} (a restart's own
        stop and start are listed too).
    """

    def __init__(
        self,
        baseDir: str | os.PathLike[str],
        reactor: Any = None,
        startTimeout: float = 60.0,
        stopTimeout: float = 30.0,
    ) -> None:
        self.reactor = _reactor(reactor)
        self.baseDir = os.path.abspath(os.fspath(baseDir))
        self.nodename = f"clackstest-{secrets.token_hex(4)}@localhost"
        self.port: int | None = None
        self.distPort: int | None = None
        self.startTimeout = startTimeout
        self.stopTimeout = stopTimeout
        self.timings: dict[str, list[float]] = {}
        self._process: _ServerProcess | None = None
        self._transport: Any = None

    @property
    def url(self) -> str:
        """
        C{amqp://guest:guest@127.0.0.1:PORT/}; the port is chosen by the
        first L{start}.
        """
        if self.port is None:
            raise RuntimeError("the private broker was never started")
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        """
        Whether the node's process is alive (it may still be booting).
        """
        return self._process is not None and self._process.reason is None

    @property
    def logPath(self) -> str:
        """
        The node's own log file.
        """
        return os.path.join(self.baseDir, "log", f"{self.nodename}.log")

    @property
    def consolePath(self) -> str:
        """
        What the C{rabbitmq-server} script wrote: early boot errors go there.
        """
        return os.path.join(self.baseDir, "console.log")

    def environment(self) -> dict[str, str]:
        """
        @return: the environment of the node and of C{rabbitmqctl} for it.
        """
        assert self.port is not None and self.distPort is not None
        base = self.baseDir
        env = _cleanEnvironment()
        env.update(
            {
                # The cookie is $HOME/.erlang.cookie, for the node and the CLI.
                "HOME": base,
                "RABBITMQ_NODENAME": self.nodename,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.distPort),
                "RABBITMQ_MNESIA_BASE": os.path.join(base, "mnesia"),
                "RABBITMQ_LOG_BASE": os.path.join(base, "log"),
                "RABBITMQ_PID_FILE": os.path.join(base, "node.pid"),
                # Not /etc/rabbitmq/*: they name the shared node and its port.
                "RABBITMQ_CONF_ENV_FILE": os.path.join(base, "rabbitmq-env.conf"),
                "RABBITMQ_CONFIG_FILE": os.path.join(base, "rabbitmq.conf"),
                "RABBITMQ_ADVANCED_CONFIG_FILE": os.path.join(base, "advanced.config"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(base, "enabled_plugins"),
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                    "-kernel inet_dist_use_interface {127,0,0,1}"
                ),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
            }
        )
        return env

    def _prepare(self) -> None:
        """
        Choose the ports and write the node's files, once.
        """
        if self.port is not None:
            return
        os.makedirs(os.path.join(self.baseDir, "log"), exist_ok=True)
        self.port = freePort()
        self.distPort = freePort(avoid=[self.port])
        cookie = os.path.join(self.baseDir, ".erlang.cookie")
        fd = os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(20).upper())
        files = {
            "rabbitmq-env.conf": "",
            "enabled_plugins": "[].\n",
            "rabbitmq.conf": (
                f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
                "loopback_users.guest = true\n"
                "disk_free_limit.absolute = 10MB\n"
                "log.file.level = info\n"
            ),
        }
        for name, text in files.items():
            with open(os.path.join(self.baseDir, name), "w") as f:
                f.write(text)

    @inlineCallbacks
    def start(self) -> Any:
        """
        Start the node and wait (up to C{startTimeout}) until it answers AMQP
        on C{port}. A node started again keeps its port, name and data.

        @return: a L{Deferred} firing when the node accepts AMQP connections,
            or failing with L{BrokerStartError} (the node is then killed).
        """
        if self.running:
            raise RuntimeError(f"{self.nodename} is already running")
        started = self.reactor.seconds()
        self._prepare()
        assert self.port is not None
        if (yield brokerAnswers(port=self.port, timeout=1.0, reactor=self.reactor)):
            raise BrokerStartError(f"something already answers on port {self.port}")
        process = _ServerProcess()
        self._process = process
        _running[self.nodename] = self
        console = os.open(self.consolePath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            server = os.path.join(RABBITMQ_BIN, "rabbitmq-server")
            self._transport = self.reactor.spawnProcess(
                process,
                server,
                [server],
                env=self.environment(),
                path=self.baseDir,
                childFDs={0: devnull, 1: console, 2: console},
            )
        finally:
            os.close(console)
            os.close(devnull)
        deadline = started + self.startTimeout
        while True:
            if process.reason is not None:
                _running.pop(self.nodename, None)
                raise BrokerStartError(
                    f"{self.nodename} ended while starting ({process.reason.value})"
                    f"\n{self._logTail()}"
                )
            if (yield brokerAnswers(port=self.port, timeout=2.0, reactor=self.reactor)):
                break
            if self.reactor.seconds() > deadline:
                yield self.kill()
                raise BrokerStartError(
                    f"{self.nodename} did not answer on port {self.port} within"
                    f" {self.startTimeout} s\n{self._logTail()}"
                )
            yield deferLater(self.reactor, 0.1, lambda: None)
        self.timings.setdefault("start", []).append(self.reactor.seconds() - started)

    @inlineCallbacks
    def stop(self) -> Any:
        """
        Stop the node with C{rabbitmqctl stop} and wait until its process has
        ended (its port is then closed); kill it if it takes longer than
        C{stopTimeout}.

        @return: a L{Deferred} firing once the node is down.
        """
        process = self._process
        if process is None or process.reason is not None:
            return
        started = self.reactor.seconds()
        try:
            yield rabbitmqctl(
                ["stop"], self.nodename, timeout=self.stopTimeout, reactor=self.reactor
            )
        except Exception as e:
            log.warn("rabbitmqctl stop {node} failed: {error}", node=self.nodename, error=e)
            yield self.kill()
        else:
            try:
                yield self._waitForEnd(process, self.stopTimeout)
            except Exception:
                log.warn("{node} did not stop in time: killing it", node=self.nodename)
                yield self.kill()
        _running.pop(self.nodename, None)
        self.timings.setdefault("stop", []).append(self.reactor.seconds() - started)

    @inlineCallbacks
    def restart(self) -> Any:
        """
        Stop the node, then start it again on the same port with the same
        data, as a real broker restart: durable queues and persistent
        messages survive, connections do not.

        @return: a L{Deferred} firing when the node answers again.
        """
        started = self.reactor.seconds()
        yield self.stop()
        yield self.start()
        self.timings.setdefault("restart", []).append(self.reactor.seconds() - started)

    @inlineCallbacks
    def kill(self) -> Any:
        """
        Kill the node at once (SIGKILL), as a crash would; L{start} brings it
        back with what it had written to disk.

        @return: a L{Deferred} firing once its process has ended.
        """
        process = self._process
        if process is None or process.reason is not None:
            return
        for pid in self._nodePids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            yield self._waitForEnd(process, 10.0)
        except Exception:
            # The script itself did not end with its node: kill it too.
            try:
                self._transport.signalProcess("KILL")
            except Exception:
                pass
            yield process.ended
        _running.pop(self.nodename, None)

    @inlineCallbacks
    def cleanup(self) -> Any:
        """
        Stop the node (killing it if need be) and remove C{baseDir}. Safe to
        call whatever state the node is in: register it with C{addCleanup}
        before L{start}.

        @return: a L{Deferred} firing once done.
        """
        try:
            yield self.stop()
        except Exception:
            log.failure("stopping {node}", node=self.nodename)
            yield self.kill()
        _running.pop(self.nodename, None)
        shutil.rmtree(self.baseDir, ignore_errors=True)

    def rabbitmqctl(self, *args: str, timeout: float = 60.0) -> Deferred[bytes]:
        """
        Run C{rabbitmqctl -n NODENAME ARGS...} against this node.

        @return: see L{rabbitmqctl}.
        """
        return rabbitmqctl(list(args), self.nodename, timeout, self.reactor)

    def closeConnections(self, namePrefix: str, reason: str = "closed by test") -> Any:
        """
        L{closeBrokerConnections} on this node.
        """
        return closeBrokerConnections(namePrefix, self.nodename, reason, self.reactor)

    def closeConnectionByPeerPort(self, port: int, reason: str = "closed by test") -> Any:
        """
        L{closeConnectionByPeerPort} on this node.
        """
        return closeConnectionByPeerPort(port, self.nodename, reason, self.reactor)

    def _waitForEnd(self, process: _ServerProcess, timeout: float) -> Deferred[Any]:
        waiter: Deferred[None] = Deferred()

        def ended(result: None) -> None:
            if not waiter.called:
                waiter.callback(None)

        process.ended.addCallback(ended)
        return waiter.addTimeout(timeout, self.reactor)

    def _nodePids(self) -> list[int]:
        """
        @return: the pid of the Erlang VM: the script's child (it runs the VM
            in the background and waits for it), or else the pid file's.
        """
        pids: set[int] = set()
        script = getattr(self._transport, "pid", None)
        if script is not None:
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        stat = f.read()
                except OSError:
                    continue
                # "pid (comm) state ppid ...": comm may hold spaces.
                fields = stat.rsplit(")", 1)[-1].split()
                if len(fields) > 1 and fields[1] == str(script):
                    pids.add(int(entry))
        try:
            with open(os.path.join(self.baseDir, "node.pid")) as f:
                pids.add(int(f.read().strip()))
        except (OSError, ValueError):
            pass
        return sorted(pids)

    def _logTail(self, lines: int = 60) -> str:
        tails = []
        for path in (self.consolePath, self.logPath):
            try:
                with open(path, errors="replace") as f:
                    text = f.read().splitlines()[-lines:]
            except OSError:
                continue
            tails.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(tails)


@atexit.register
def _killLeftovers() -> None:
    """
    At exit, kill the private nodes that no cleanup stopped, so that an
    interrupted test run does not leave Erlang VMs behind.
    """
    for broker in list(_running.values()):
        if not broker.running:
            continue
        for pid in broker._nodePids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


__all__ = [
    "BrokerConnection",
    "BrokerStartError",
    "PrivateBroker",
    "ProcessResult",
    "ProcessTimeout",
    "RabbitmqctlError",
    "brokerAnswers",
    "closeBrokerConnections",
    "closeConnectionByPeerPort",
    "freePort",
    "listBrokerConnections",
    "rabbitmqctl",
]
