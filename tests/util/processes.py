"""
Running real child processes from tests: the agent, twistd, pip.

Every child is spawned with L{reactor.spawnProcess}; waits have timeouts so
that a hung child fails the test instead of hanging it, and the child is
killed (and reaped) when the test ends.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

#: The repository root: the parent of C{tests/}.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: Seconds a child may take for one step (start, print a line, exit).
STEP_TIMEOUT = 60.0


@attrs.frozen
class ProcessResult:
    """
    What a finished child did.

    @ivar out: its standard output.
    @ivar err: its standard error.
    @ivar code: its exit status, or C{None} if a signal killed it.
    @ivar signal: the signal that killed it, if one did.
    """

    out: str
    err: str
    code: int | None
    signal: int | None

    def describe(self) -> str:
        """
        @return: everything about the run, for failure messages.
        """
        return (
            f"exit status {self.code}, signal {self.signal}\n"
            f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"
        )


class ChildTimeout(Exception):
    """
    A child did not do what was waited for in time.
    """


class Child(ProcessProtocol):
    """
    A running child process: its output so far, ways to wait for a line of
    it or for its end, and to signal it.
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self._out = bytearray()
        self._err = bytearray()
        self._waiting: list[tuple[re.Pattern[str], Deferred[re.Match[str]]]] = []
        self._ended: Deferred[ProcessResult] = Deferred()
        self.result: ProcessResult | None = None

    @property
    def out(self) -> str:
        return self._out.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self._err.decode("utf-8", "replace")

    def outReceived(self, data: bytes) -> None:
        self._out += data
        self._check()

    def errReceived(self, data: bytes) -> None:
        self._err += data
        self._check()

    def _check(self) -> None:
        text = self.out + self.err
        for item in list(self._waiting):
            pattern, d = item
            match = pattern.search(text)
            if match is not None:
                self._waiting.remove(item)
                d.callback(match)

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        code: int | None = None
        sig: int | None = None
        if isinstance(value, ProcessDone):
            code = 0
        elif isinstance(value, ProcessTerminated):
            code, sig = value.exitCode, value.signal
        self.result = ProcessResult(self.out, self.err, code, sig)
        waiting, self._waiting = self._waiting, []
        for pattern, d in waiting:
            d.errback(
                ChildTimeout(
                    f"{self.argv} ended before printing {pattern.pattern!r}:\n"
                    + self.result.describe()
                )
            )
        self._ended.callback(self.result)

    def _timedOut(self, what: str, timeout: float) -> ChildTimeout:
        return ChildTimeout(
            f"{self.argv} did not {what} within {timeout:g} s\n"
            f"--- stdout so far ---\n{self.out}\n--- stderr so far ---\n{self.err}"
        )

    def waitFor(self, pattern: str, timeout: float = STEP_TIMEOUT) -> Deferred[re.Match[str]]:
        """
        @return: a Deferred firing with the match of regular expression
            C{pattern} in the child's output (stdout and stderr), once it is
            there; failing with L{ChildTimeout} if it is not there within
            C{timeout} seconds or the child ended without it.
        """
        from twisted.internet import reactor

        compiled = re.compile(pattern, re.M)
        d: Deferred[re.Match[str]] = Deferred()
        item = (compiled, d)
        self._waiting.append(item)
        self._check()
        if d.called:
            return d

        def onTimeout(result: Any, timeout: float) -> Any:
            if item in self._waiting:
                self._waiting.remove(item)
            return Failure(self._timedOut(f"print {pattern!r}", timeout))

        return d.addTimeout(timeout, reactor, onTimeoutCancel=onTimeout)

    def ended(self, timeout: float = STEP_TIMEOUT) -> Deferred[ProcessResult]:
        """
        @return: a Deferred firing with the L{ProcessResult} when the child
            has ended (and its output is all read); failing with
            L{ChildTimeout} after C{timeout} seconds.
        """
        from twisted.internet import reactor

        return self._whenEnded().addTimeout(
            timeout, reactor, onTimeoutCancel=lambda r, t: Failure(self._timedOut("exit", t))
        )

    def _whenEnded(self) -> Deferred[ProcessResult]:
        """
        @return: a new Deferred that fires with the L{ProcessResult} when
            the child has ended; cancelling it leaves the child alone.
        """
        d: Deferred[ProcessResult] = Deferred()

        def relay(result: ProcessResult) -> ProcessResult:
            if not d.called:
                d.callback(result)
            return result

        self._ended.addCallback(relay)
        return d

    def signal(self, name: str) -> None:
        """
        Send signal C{name} (C{"TERM"}, C{"INT"}, C{"KILL"}) to the child.
        """
        assert self.transport is not None
        self.transport.signalProcess(name)

    @inlineCallbacks
    def kill(self) -> Any:
        """
        Kill the child if it still runs, and wait until it is reaped.
        """
        if self.result is None:
            try:
                self.signal("KILL")
            except ProcessExitedAlready:
                pass
            yield self._whenEnded()


def childEnvironment(pythonPath: Sequence[str] = (), **extra: str) -> dict[str, str]:
    """
    @return: this process's environment for a child, without Python
        variables that would change what it imports, with C{PYTHONPATH} set
        to C{pythonPath} (if any) and C{extra} added.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")
    }
    if pythonPath:
        env["PYTHONPATH"] = os.pathsep.join(pythonPath)
    env.update(extra)
    return env


def spawn(
    testCase: TestCase,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Child:
    """
    Start C{argv} (the first item is the executable's path), with
    C{childEnvironment()} unless C{env} is given, in C{cwd} (by default a
    new directory of the test).  The child is killed at the end of the test.
    """
    from twisted.internet import reactor

    if cwd is None:
        cwd = os.path.abspath(testCase.mktemp())
        os.makedirs(cwd)
    child = Child(argv)
    reactor.spawnProcess(
        child,
        argv[0],
        list(argv),
        env=dict(childEnvironment() if env is None else env),
        path=cwd,
    )
    testCase.addCleanup(child.kill)
    return child


def run(
    testCase: TestCase,
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = STEP_TIMEOUT,
) -> Deferred[ProcessResult]:
    """
    Run C{argv} to its end (see L{spawn}).

    @return: a Deferred firing with its L{ProcessResult}.
    """
    return spawn(testCase, argv, env, cwd).ended(timeout)


def agentCommand(*args: str) -> list[str]:
    """
    @return: the command line of C{clacks-agent ARGS}: the console script
        next to this Python if it is installed there, else C{python -m
        clacks.agent.main}.
    """
    script = os.path.join(os.path.dirname(sys.executable), "clacks-agent")
    if os.access(script, os.X_OK):
        return [script, *args]
    return [sys.executable, "-m", "clacks.agent.main", *args]


def pipInstall(
    testCase: TestCase, source: str, target: str, timeout: float = STEP_TIMEOUT
) -> Deferred[ProcessResult]:
    """
    Run C{pip install --no-deps --no-build-isolation --target TARGET
    SOURCE} with this Python, offline.
    """
    return run(
        testCase,
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            target,
            source,
        ],
        timeout=timeout,
    )


def writeDropin(root: str, module: str, source: str) -> str:
    """
    Write drop-in module C{module} with C{source} into C{ROOT/clacks/plugins/}
    (without any C{__init__.py}), so that a child with C{root} on its
    C{PYTHONPATH} loads it.

    @return: C{root}, absolute.
    """
    root = os.path.abspath(root)
    directory = os.path.join(root, "clacks", "plugins")
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, f"{module}.py"), "w", encoding="utf-8") as f:
        f.write(source)
    return root


__all__ = [
    "REPO_ROOT",
    "STEP_TIMEOUT",
    "Child",
    "ChildTimeout",
    "ProcessResult",
    "agentCommand",
    "childEnvironment",
    "pipInstall",
    "run",
    "spawn",
    "writeDropin",
]
