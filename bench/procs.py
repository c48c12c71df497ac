"""
Child processes of the bench: every one is started here, in a session of
its own, and every one is killed when the bench ends, however it ends
(normal exit, an error, Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

#: The repository root.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_children: list[Child] = []

#: Where the children keep their bytecode: outside the work tree, and kept
#: even where C{PYTHONDONTWRITEBYTECODE} is set, so that every start after
#: the first one loads compiled modules, as an installed agent does.
PYCACHE = os.path.join(ROOT, "bench", ".cache", "pycache")


def childEnv(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    @return: C{base} (default: this process's environment) for a child,
        with bytecode caching on (see L{PYCACHE}).
    """
    env = dict(os.environ if base is None else base)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    return env


class BenchError(Exception):
    """
    A scenario could not run: a child failed or timed out.
    """


class Child:
    """
    A started process, its log file, and ways to wait for it.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._logFile = open(log, "wb")
        self.started = time.monotonic()
        self.startedWall = time.time()
        self.process = subprocess.Popen(
            self.argv,
            stdout=self._logFile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=childEnv(env),
            cwd=cwd or ROOT,
            start_new_session=True,
        )
        _children.append(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        if not self._logFile.closed:
            self._logFile.flush()
        with open(self.log, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def waitFor(self, text: str, timeout: float) -> None:
        """
        Wait until C{text} is in the output.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if not self.alive():
                raise BenchError(
                    f"{self.name} exited ({self.process.returncode}) before printing "
                    f"{text!r}:\n{self.tail()}"
                )
            time.sleep(0.02)
        raise BenchError(f"{self.name} did not print {text!r} in {timeout:g} s:\n{self.tail()}")

    def result(self, timeout: float) -> dict[str, Any]:
        """
        Wait for the child to exit and return its C{BENCH-RESULT} line.
        """
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(
                f"{self.name} did not finish in {timeout:g} s:\n{self.tail()}"
            ) from None
        for line in reversed(self.output().splitlines()):
            if line.startswith("BENCH-RESULT "):
                if self.process.returncode != 0:
                    break
                return dict(json.loads(line[len("BENCH-RESULT ") :]))
        raise BenchError(
            f"{self.name} exited with {self.process.returncode} without a result:\n{self.tail()}"
        )

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """
        SIGTERM, then SIGKILL if it is still running after C{timeout}.
        """
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close()
        return self.process.returncode

    def kill(self) -> None:
        """
        SIGKILL the child and everything in its session (its own children).
        """
        if self.alive():
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(self.pid, signal.SIGKILL)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._close()

    def _close(self) -> None:
        if self in _children:
            _children.remove(self)
        if not self._logFile.closed:
            self._logFile.close()


def killAll() -> None:
    """
    Kill every child still running (by its own pid / session only).
    """
    for child in list(_children):
        child.kill()


def _onSignal(signum: int, frame: Any) -> None:
    killAll()
    sys.stderr.write(f"\nbench: interrupted (signal {signum}); every child process killed\n")
    # Let the driver's finally blocks delete the broker objects.
    raise KeyboardInterrupt


def installCleanup() -> None:
    atexit.register(killAll)
    signal.signal(signal.SIGINT, _onSignal)
    signal.signal(signal.SIGTERM, _onSignal)


def httpStatus(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return None


def waitHTTP(child: Child, url: str, timeout: float, interval: float = 0.01) -> float:
    """
    Poll C{url} until it answers 200.

    @return: seconds from the child's start to that answer.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpStatus(url, timeout=0.5) == 200:
            return time.monotonic() - child.started
        if not child.alive():
            raise BenchError(f"{child.name} exited ({child.process.returncode}):\n{child.tail()}")
        time.sleep(interval)
    raise BenchError(f"{child.name}: {url} not 200 within {timeout:g} s:\n{child.tail()}")


def rss(pid: int) -> int:
    """
    @return: the resident set size of process C{pid}, in bytes.
    """
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for {pid}")


def cpuSeconds(pid: int) -> float:
    """
    @return: user + system CPU time process C{pid} has used, in seconds.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def brokerPid(port: int = 5672) -> int | None:
    """
    @return: the pid of the process listening on C{port} (the broker), if
        C{ss} can tell.
    """
    import re

    try:
        out = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.findall(r"pid=(\d+)", out)
    return int(found[0]) if found else None
