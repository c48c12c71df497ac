"""
Running the C{clacks} command line and blocking-client scripts as child
processes of a test, against agents that run in the test's own reactor.

The children are spawned with L{tests.util.processes.spawn}, so waiting for
them never blocks the reactor (the in-process agents keep serving), and a
child that hangs is killed at the end of the test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.util.processes import Child, ProcessResult, childEnvironment, spawn

#: An address where no broker listens: connections are refused at once.
UNREACHABLE_URL = "amqp://guest:guest@127.0.0.1:1/"

#: Seconds a C{clacks} child may take, start to end, unless told otherwise.
CHILD_TIMEOUT = 30.0


def clacksCommand(*args: str) -> list[str]:
    """
    @return: the command line of C{clacks ARGS}: the console script next to
        this Python if it is installed there, else C{python -m
        clacks.client.cli}.
    """
    script = os.path.join(os.path.dirname(sys.executable), "clacks")
    if os.access(script, os.X_OK):
        return [script, *args]
    return [sys.executable, "-m", "clacks.client.cli", *args]


def clacksEnvironment(**extra: str) -> dict[str, str]:
    """
    @return: the environment of a child: this one without any
        C{CLACKS_*} settings of the person running the tests,
        plus C{extra}.
    """
    env = childEnvironment()
    for name in ("URL", "DOMAIN", "HTTP", "USER", "PASSWORD", "TOKEN"):
        env.pop(f"CLACKS_{name}", None)
    env.update(extra)
    return env


def spawnClacks(testCase: TestCase, *args: str, env: Mapping[str, str] | None = None) -> Child:
    """
    Start C{clacks ARGS} with L{clacksEnvironment} (or C{env}).
    """
    return spawn(testCase, clacksCommand(*args), env=clacksEnvironment() if env is None else env)


def runClacks(
    testCase: TestCase,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = CHILD_TIMEOUT,
) -> Deferred[ProcessResult]:
    """
    Run C{clacks ARGS} to its end.

    @return: a Deferred firing with its L{ProcessResult}.
    """
    return spawnClacks(testCase, *args, env=env).ended(timeout)


def runScript(
    testCase: TestCase,
    source: str,
    *args: str,
    timeout: float = CHILD_TIMEOUT,
    env: Mapping[str, str] | None = None,
) -> Deferred[ProcessResult]:
    """
    Write Python C{source} to a file of the test and run it with this
    Python and C{args}.

    @return: a Deferred firing with its L{ProcessResult}.
    """
    directory = os.path.abspath(testCase.mktemp())
    os.makedirs(directory)
    path = os.path.join(directory, "script.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source)
    child = spawn(
        testCase,
        [sys.executable, path, *args],
        env=clacksEnvironment() if env is None else env,
        cwd=directory,
    )
    return child.ended(timeout)


def lines(text: str) -> list[str]:
    """
    @return: the non-empty lines of C{text}.
    """
    return [line for line in text.splitlines() if line.strip()]


def describe(result: Any) -> str:
    """
    @return: everything about a finished child, for failure messages.
    """
    return str(result.describe())


__all__ = [
    "CHILD_TIMEOUT",
    "UNREACHABLE_URL",
    "clacksCommand",
    "clacksEnvironment",
    "describe",
    "lines",
    "runClacks",
    "runScript",
    "spawnClacks",
]
