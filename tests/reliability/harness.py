"""
Tools of the reliability suite: agent processes with a call-recording
plugin, a load of calls from L{AMQPClient}s with each call's fate, the
figures of a scenario and the results file they go to.

Definitions (also in C{docs/reliability.md}):

  - I{accepted}: the broker confirmed the request (L{_Pending.confirmed}
    of the client's L{RPCCaller}), or a reply came, which implies it;
  - I{answered}: a result reply arrived;
  - I{failed-clear}: the caller got an error: an error reply, or the
    request was not accepted within its deadline;
  - I{lost}: accepted, but no reply within the call's (generous) deadline;
    must be 0;
  - I{ran-twice}: calls whose command ran more than once, counted from the
    agents' record files (the C{record} command appends the call id with
    C{os.write} before it does anything else, so a line survives SIGKILL).
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from clacks.client.amqp import AMQPClient
from clacks.common.jsonrpc import NODE_UNAVAILABLE, TIMEOUT, RPCError
from clacks.handlers.amqp.compat import AMQPClientFactory, AMQPConnection, AMQPError
from tests.util.agents import waitUntil
from tests.util.configs import writeConfigDir
from tests.util.example import EXAMPLE_DIR
from tests.util.processes import (
    REPO_ROOT,
    ChildTimeout,
    ProcessResult,
    agentCommand,
    childEnvironment,
)

#: Whether the slow, broker-and-processes part of the suite runs.
ENABLED = os.environ.get("CLACKS_RELIABILITY", "").lower() not in ("", "0", "false", "no")

#: Where each scenario appends its row of figures (JSON lines).
RESULTS_PATH = os.environ.get("CLACKS_RELIABILITY_RESULTS") or os.path.join(
    REPO_ROOT, "build", "reliability", "results.jsonl"
)

#: Seconds a call of the load may take before it counts as lost: far more
#: than any fault of the suite lasts.
CALL_TIMEOUT = 60.0

#: The heartbeat of the agents under test, in seconds: short, so that a
#: silent network is noticed within a few seconds.
HEARTBEAT = 2


_testStarted = 0.0


def requireReliability() -> None:
    """
    Call it in C{setUp}: it also starts the clock of the row's C{duration}
    (see L{writeRow}).

    @raise SkipTest: unless C{CLACKS_RELIABILITY=1}.
    """
    global _testStarted
    if not ENABLED:
        raise SkipTest("reliability suite: run it with make reliability (CLACKS_RELIABILITY=1)")
    _testStarted = time.monotonic()


#: The drop-in every agent of the suite loads: the example plugin, and a
#: test-only plugin whose C{record} command leaves a trace of each run.
DROPIN = '''\
import os
import signal
from importlib.metadata import entry_points

from twisted.internet.task import deferLater

from clacks.common.components.command import Command
from clacks.common.components.plugin import Plugin
from clacks_hello.plugin import HelloPlugin as _Base

if not any(ep.name == "hello" for ep in entry_points(group="agent.module")):
    # The example package is not installed: load its plugin from here.
    class Hello(_Base):
        pass


class Recorder(Plugin):
    """
    Records each run of C{record} in $RECORD_DIR/<node>.log.
    """

    _priority_ = 25
    _target_ = "recorder"

    def __init__(self, context):
        super().__init__(context)
        directory = os.environ.get("RECORD_DIR") or "."
        path = os.path.join(directory, context.config.core.id + ".log")
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    @Command(__help__="Append CALLID to this node's record file; return the node after SECONDS.")
    def record(self, callId, seconds):
        os.write(self._fd, (str(callId) + "\\n").encode("utf-8"))
        node = self.context.config.core.id
        return deferLater(self.context.reactor, float(seconds), lambda: node)

    @Command(__help__="Record CALLID, then raise SystemExit: a poison request.")
    def exit(self, callId):
        os.write(self._fd, (str(callId) + "\\n").encode("utf-8"))
        raise SystemExit(3)

    @Command(__help__="Record CALLID, then kill this agent (SIGKILL): a poison request.")
    def crash(self, callId):
        os.write(self._fd, (str(callId) + "\\n").encode("utf-8"))
        os.kill(os.getpid(), signal.SIGKILL)
'''

AGENT_CONFIG = """\
[core]
id = {node}
domain = {domain}
{coreExtra}
[amqp]
url = {url}
heartbeat = {heartbeat}
reconnect-initial = 0.1
reconnect-max = 0.5
queue-type = {queueType}
{amqpExtra}
[http]
listen = {listen}
[agent]
status-interval = {statusInterval}
drain-timeout = {drainTimeout}
capacity = {capacity}
max-deliveries = {maxDeliveries}
{extra}
"""


def writeDropins(testCase: TestCase) -> str:
    """
    @return: a new directory holding C{clacks/plugins/reliability.py} (see
        L{DROPIN}), for a child's C{PYTHONPATH}.
    """
    root = os.path.abspath(testCase.mktemp())
    directory = os.path.join(root, "clacks", "plugins")
    os.makedirs(directory)
    with open(os.path.join(directory, "reliability.py"), "w", encoding="utf-8") as f:
        f.write(DROPIN)
    return root


class LoggedChild(ProcessProtocol):
    """
    A child process whose output (stdout and stderr) goes to a file, not
    through the test process: an agent under load or fuzzing logs a lot.

    @ivar logPath: the file.
    @ivar result: its L{ProcessResult} once it ended.
    """

    def __init__(self, argv: Sequence[str], logPath: str) -> None:
        self.argv = list(argv)
        self.logPath = logPath
        self.result: ProcessResult | None = None
        self._ended: Deferred[None] = Deferred()

    @property
    def out(self) -> str:
        try:
            with open(self.logPath, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        code: int | None = None
        sig: int | None = None
        if isinstance(value, ProcessDone):
            code = 0
        elif isinstance(value, ProcessTerminated):
            code, sig = value.exitCode, value.signal
        self.result = ProcessResult(self.out, "", code, sig)
        self._ended.callback(None)

    def waitFor(self, pattern: str, timeout: float = 30.0) -> Deferred[re.Match[str]]:
        """
        @return: a Deferred firing with the first match of C{pattern} in the
            output; failing with L{ChildTimeout} if the child ends or
            C{timeout} passes first.
        """
        compiled = re.compile(pattern, re.M)

        @inlineCallbacks
        def poll() -> Generator[Deferred[Any], Any, re.Match[str]]:
            started = time.monotonic()
            while True:
                ended = self.result is not None
                match = compiled.search(self.out)
                if match is not None:
                    return match
                if ended or time.monotonic() - started > timeout:
                    what = "ended" if ended else f"did not print it within {timeout:g} s"
                    raise ChildTimeout(
                        f"{self.argv} {what}: {pattern!r}\n--- output (tail) ---\n"
                        + self.out[-4000:]
                    )
                yield pause(0.05)

        return poll()

    def ended(self, timeout: float = 30.0) -> Deferred[ProcessResult]:
        """
        @return: a Deferred firing with the L{ProcessResult} once the child
            ended; failing with L{ChildTimeout} after C{timeout} seconds
            (the child is left running).
        """
        d: Deferred[None] = Deferred()
        self._ended.addCallback(lambda _: None if d.called else d.callback(None))

        def timedOut(result: Any, timeout: float) -> Failure:
            return Failure(ChildTimeout(f"{self.argv} did not exit within {timeout:g} s"))

        d.addTimeout(timeout, reactor, onTimeoutCancel=timedOut)
        return d.addCallback(lambda _: self.result)

    def signal(self, name: str) -> None:
        assert self.transport is not None
        self.transport.signalProcess(name)

    @inlineCallbacks
    def kill(self) -> Generator[Deferred[Any], Any, None]:
        """
        Kill the child if it still runs, and wait (boundedly) until it is
        reaped.
        """
        if self.result is None:
            try:
                self.signal("KILL")
            except ProcessExitedAlready:
                pass
            yield self.ended(timeout=10)


class AgentProcess:
    """
    One C{clacks-agent} child process running the suite's drop-in, killed
    at the end of the test.  Its output goes to C{<recordDir>/<node>.out}.

    @ivar node: its node id.
    @ivar child: the L{LoggedChild} of its current run.
    @ivar recordDir: where its C{record} command writes.
    """

    def __init__(
        self,
        testCase: TestCase,
        node: str,
        domain: str,
        url: str,
        recordDir: str,
        dropins: str,
        heartbeat: int = HEARTBEAT,
        queueType: str = "classic",
        drainTimeout: float = 2.0,
        capacity: int = 16,
        maxDeliveries: int = 5,
        statusInterval: float = 1.0,
        listen: str = "none",
        coreExtra: str = "",
        amqpExtra: str = "",
        extra: str = "",
    ) -> None:
        self.testCase = testCase
        self.node = node
        self.domain = domain
        self.recordDir = recordDir
        self.dropins = dropins
        self.config = writeConfigDir(
            testCase.mktemp(),
            AGENT_CONFIG.format(
                node=node,
                domain=domain,
                url=url,
                heartbeat=heartbeat,
                queueType=queueType,
                drainTimeout=drainTimeout,
                capacity=capacity,
                maxDeliveries=maxDeliveries,
                statusInterval=statusInterval,
                listen=listen,
                coreExtra=textwrap.dedent(coreExtra),
                amqpExtra=textwrap.dedent(amqpExtra),
                extra=textwrap.dedent(extra),
            ),
        )
        self.child: LoggedChild | None = None
        self.runs: list[LoggedChild] = []

    @property
    def out(self) -> str:
        """
        Everything its runs printed, in order.
        """
        return "".join(run.out for run in self.runs)

    def _connectedPattern(self) -> str:
        return rf"Connected to \S+: topology of {re.escape(self.domain)} declared"

    def spawn(self) -> LoggedChild:
        """
        Start (or start again) the agent; do not wait.
        """
        env = childEnvironment(
            [self.dropins, EXAMPLE_DIR], RECORD_DIR=self.recordDir, PYTHONUNBUFFERED="1"
        )
        argv = agentCommand("-c", self.config)
        logPath = os.path.join(self.recordDir, f"{self.node}.{len(self.runs)}.out")
        child = LoggedChild(argv, logPath)
        out = os.open(logPath, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        devnull = os.open(os.devnull, os.O_RDONLY)
        try:
            reactor.spawnProcess(
                child,
                argv[0],
                argv,
                env=env,
                path=self.config,
                childFDs={0: devnull, 1: out, 2: out},
            )
        finally:
            os.close(out)
            os.close(devnull)
        self.testCase.addCleanup(child.kill)
        self.child = child
        self.runs.append(child)
        return child

    @inlineCallbacks
    def start(self, timeout: float = 30.0) -> Generator[Deferred[Any], Any, AgentProcess]:
        """
        Start (or start again) the agent and wait until it serves: connected,
        topology declared, consumers started.
        """
        child = self.spawn()
        yield child.waitFor(self._connectedPattern(), timeout=timeout)
        return self

    def connects(self) -> int:
        """
        @return: how many times the current run connected (and declared).
        """
        assert self.child is not None
        return len(re.findall(self._connectedPattern(), self.child.out))

    def waitFor(self, pattern: str, timeout: float = 30.0) -> Deferred[Any]:
        assert self.child is not None
        return self.child.waitFor(pattern, timeout=timeout)

    @property
    def pid(self) -> int:
        assert self.child is not None and self.child.transport is not None
        return int(self.child.transport.pid)

    def rss(self) -> int:
        """
        @return: the resident memory of the agent process, in bytes.
        """
        import psutil

        return int(psutil.Process(self.pid).memory_info().rss)

    def signal(self, name: str) -> None:
        assert self.child is not None
        self.child.signal(name)


def recordedRuns(directory: str) -> collections.Counter[str]:
    """
    @return: how many times each call id was recorded, over every node's
        record file in C{directory}.
    """
    counts: collections.Counter[str] = collections.Counter()
    for name in os.listdir(directory):
        if not name.endswith(".log"):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            counts.update(line.strip() for line in f if line.strip())
    return counts


def recordedBy(directory: str) -> dict[str, collections.Counter[str]]:
    """
    @return: per node, how many times it recorded each call id.
    """
    result = {}
    for name in os.listdir(directory):
        if name.endswith(".log"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                result[name[:-4]] = collections.Counter(line.strip() for line in f if line.strip())
    return result


@attrs.define(eq=False)
class Call:
    """
    One call of a L{Load} and its fate.

    @ivar pending: the client's record of the request (its C{confirmed}).
    @ivar outcome: C{None} while unsettled, then C{"answered"},
        C{"error-reply"}, C{"not-accepted"} or C{"no-reply"}.
    """

    callId: str
    client: int
    sentAt: float
    pending: Any = None
    outcome: str | None = None
    result: Any = None
    error: RPCError | BaseException | None = None
    doneAt: float = 0.0

    @property
    def accepted(self) -> bool:
        return bool(self.pending is not None and self.pending.confirmed) or self.outcome in (
            "answered",
            "error-reply",
        )


class Load:
    """
    Calls of the C{record} command spread over several clients, each call's
    fate kept.

    @ivar calls: every call, by call id.
    """

    def __init__(self, clients: Sequence[AMQPClient], timeout: float = CALL_TIMEOUT) -> None:
        self.clients = list(clients)
        self.timeout = timeout
        self.calls: dict[str, Call] = {}
        self._done: list[Deferred[Any]] = []
        self._captured: list[list[Any]] = []
        for client in self.clients:
            self._captured.append(_capturePending(client))
        self.started = 0.0
        self.finished = 0.0

    def fire(
        self, count: int, seconds: float | Callable[[int], float], method: str = "record"
    ) -> None:
        """
        Start C{count} calls of C{method(callId, seconds)}, round robin over
        the clients, all at once.

        @param seconds: how long each call runs, or a function of the
            call's index that says it.
        """
        if not self.started:
            self.started = time.monotonic()
        for i in range(count):
            index = i % len(self.clients)
            client = self.clients[index]
            callId = uuid.uuid4().hex
            call = Call(callId, index, time.monotonic())
            self.calls[callId] = call
            duration = seconds(i) if callable(seconds) else seconds
            d = client.call(method, callId, duration, timeout=self.timeout)
            captured = self._captured[index]
            call.pending = captured[-1] if captured else None
            d.addCallbacks(self._answered, self._failed, (call,), None, (call,), None)
            self._done.append(d)

    def _answered(self, result: Any, call: Call) -> None:
        call.outcome, call.result, call.doneAt = "answered", result, time.monotonic()

    def _failed(self, failure: Any, call: Call) -> None:
        call.error, call.doneAt = failure.value, time.monotonic()
        error = failure.value
        if (
            isinstance(error, RPCError)
            and error.code == TIMEOUT
            and "no answer to" in error.message
        ):
            call.outcome = "no-reply"
        elif (
            isinstance(error, RPCError)
            and error.code == NODE_UNAVAILABLE
            and ("request not sent" in error.message)
        ):
            call.outcome = "not-accepted"
        elif isinstance(error, RPCError):
            call.outcome = "error-reply"
        else:
            call.outcome = "not-accepted"

    def answeredBy(self, node: str) -> int:
        return sum(1 for c in self.calls.values() if c.outcome == "answered" and c.result == node)

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.calls.values() if c.outcome == outcome)

    @property
    def answered(self) -> int:
        return self.count("answered")

    @property
    def settled(self) -> int:
        return sum(1 for c in self.calls.values() if c.outcome is not None)

    @inlineCallbacks
    def waitSettled(self, timeout: float | None = None) -> Generator[Deferred[Any], Any, None]:
        """
        Wait until every call is answered or failed (each is bounded by
        the load's timeout).
        """
        bound = timeout if timeout is not None else self.timeout + 15
        yield DeferredList(list(self._done), consumeErrors=True).addTimeout(bound, reactor)
        self.finished = time.monotonic()

    def figures(self, scenario: str, runs: Mapping[str, int], **notes: Any) -> dict[str, Any]:
        """
        @param runs: how many times each call id ran (see L{recordedRuns}).
        @return: the scenario's row of figures.
        """
        calls = list(self.calls.values())
        lost = [c for c in calls if c.outcome == "no-reply" and c.accepted]
        failedClear = [
            c
            for c in calls
            if c.outcome in ("error-reply", "not-accepted")
            or (c.outcome == "no-reply" and not c.accepted)
        ]
        errors = collections.Counter(
            f"{getattr(c.error, 'code', '')} {getattr(c.error, 'message', c.error)}"[:80]
            for c in failedClear
        )
        return {
            "scenario": scenario,
            "calls": len(calls),
            "accepted": sum(1 for c in calls if c.accepted),
            "answered": self.answered,
            "failedClear": len(failedClear),
            "lost": len(lost),
            "ranTwice": sum(1 for c in calls if runs.get(c.callId, 0) > 1),
            "neverRan": sum(
                1 for c in calls if c.outcome == "answered" and runs.get(c.callId, 0) == 0
            ),
            "resent": sum(c.pending.resent for c in calls if c.pending is not None),
            "duration": round((self.finished or time.monotonic()) - self.started, 1),
            "errors": dict(errors.most_common(5)),
            "lostIds": [c.callId for c in lost][:10],
            **notes,
        }


def _capturePending(client: AMQPClient) -> list[Any]:
    """
    Keep the L{_Pending} record of every request C{client} sends (to read
    its C{confirmed} later).

    @return: the list they are appended to, newest last.
    """
    caller = client._caller
    original = caller._send
    captured: list[Any] = []

    def send(*args: Any, **kwargs: Any) -> str:
        pending = args[-1] if args else kwargs["pending"]
        captured.append(pending)
        return original(*args, **kwargs)

    caller._send = send  # type: ignore[method-assign]
    return captured


@inlineCallbacks
def startClients(
    testCase: TestCase, url: str, domain: str, count: int = 2, timeout: float = CALL_TIMEOUT
) -> Generator[Deferred[Any], Any, list[AMQPClient]]:
    """
    Start C{count} clients of C{domain}, stopped after the test.
    """
    clients = []
    for i in range(count):
        client = AMQPClient(
            url, domain, timeout=timeout, connectionName=f"clacks-reliability-client-{i}"
        )
        yield client.start(timeout=20)
        testCase.addCleanup(client.stop)
        clients.append(client)
    return clients


@inlineCallbacks
def openConnection(
    testCase: TestCase, host: str, port: int, heartbeat: int = 0
) -> Generator[Deferred[Any], Any, AMQPConnection]:
    """
    Open an AMQP connection as guest (closed after the test).
    """
    factory = AMQPClientFactory(vhost="/", heartbeat=heartbeat, connectionName="clacks-rel-probe")
    endpoint = TCP4ClientEndpoint(reactor, host, port, timeout=5)
    connection = yield endpoint.connect(factory)

    def close() -> Deferred[Any]:
        return connection.closeConnection(within=2)

    testCase.addCleanup(close)
    yield connection.start("guest", "guest").addTimeout(10, reactor)
    return connection


@inlineCallbacks
def waitQueuesEmpty(
    connection: AMQPConnection, queues: Iterable[str], timeout: float = 30.0
) -> Generator[Deferred[Any], Any, None]:
    """
    Wait until none of C{queues} holds a message (ready ones; unacked ones
    are not counted by the broker's passive declare).
    """
    channel = yield connection.newChannel()
    started = time.monotonic()
    while True:
        counts = []
        for queue in queues:
            try:
                declared = yield channel.queue_declare(queue=queue, passive=True)
            except AMQPError:
                channel = yield connection.newChannel()
                counts.append(0)
                continue
            counts.append(declared.message_count)
        if not any(counts):
            return
        if time.monotonic() - started > timeout:
            raise AssertionError(f"queues {list(queues)} still hold {counts} messages")
        yield pause(0.1)


def pause(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class EventWatcher:
    """
    Every event of a domain matching some patterns, as received: C{(routing
    key, body)}.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    @classmethod
    @inlineCallbacks
    def open(
        cls, connection: AMQPConnection, domain: str, patterns: Sequence[str]
    ) -> Generator[Deferred[Any], Any, EventWatcher]:
        watcher = cls()
        channel = yield connection.newChannel()
        declared = yield channel.queue_declare(queue="", exclusive=True, auto_delete=True)
        for pattern in patterns:
            yield channel.queue_bind(
                queue=declared.queue, exchange=f"{domain}.events", routing_key=pattern
            )
        consumer = yield connection.consume(channel, declared.queue, noAck=True)
        watcher._pump(consumer)
        return watcher

    @inlineCallbacks
    def _pump(self, consumer: Any) -> Generator[Deferred[Any], Any, None]:
        while True:
            try:
                message = yield consumer.queue.get()
            except Exception:
                return
            try:
                body = json.loads(message.content.body)
            except ValueError:
                continue
            self.events.append((message.routing_key, body))

    def of(self, event: str, node: str | None = None) -> list[dict[str, Any]]:
        return [
            body
            for key, body in self.events
            if body.get("event") == event and (node is None or body.get("node") == node)
        ]


def writeRow(row: Mapping[str, Any]) -> None:
    """
    Append C{row} to the results file and print it (trial keeps it in its
    log).  A C{duration} of 0 becomes the test's time so far.
    """
    row = dict(row)
    if not row.get("duration") and _testStarted:
        # The whole test's time, set-up included.
        row["duration"] = round(time.monotonic() - _testStarted, 1)
    os.makedirs(os.path.dirname(RESULTS_PATH), exist_ok=True)
    line = json.dumps(row, sort_keys=True) + "\n"
    fd = os.open(RESULTS_PATH, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
    print(f"reliability: {line}", end="", file=sys.stdout)


__all__ = [
    "AgentProcess",
    "CALL_TIMEOUT",
    "Call",
    "DROPIN",
    "ENABLED",
    "EventWatcher",
    "HEARTBEAT",
    "Load",
    "RESULTS_PATH",
    "openConnection",
    "pause",
    "recordedBy",
    "recordedRuns",
    "requireReliability",
    "startClients",
    "waitQueuesEmpty",
    "waitUntil",
    "writeRow",
]
