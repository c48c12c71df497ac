"""
Real clacks-agent processes for the bench: their plugins (the example
hello plugin, the bench probe, generated trivial drop-ins), configuration,
users file, and the broker objects of the bench's domain.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterable

from bench.procs import ROOT, BenchError, Child, waitHTTP

BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
HELLO_SOURCE = os.path.join(ROOT, "examples", "hello-plugin")
PROBE_SOURCE = os.path.join(ROOT, "bench", "plugins", "bench_probe.py")
CACHE = os.path.join(ROOT, "bench", ".cache")


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def helloPlugin() -> str:
    """
    Install the example hello plugin (pip --target), once per version of
    its sources.

    @return: the directory to put on C{PYTHONPATH}.
    """
    digest = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(HELLO_SOURCE)):
        dirs[:] = sorted(d for d in dirs if d not in ("build", "__pycache__") and "egg" not in d)
        for name in sorted(files):
            if name.endswith((".py", ".cfg", ".toml")):
                with open(os.path.join(base, name), "rb") as f:
                    digest.update(name.encode() + f.read())
    target = os.path.join(CACHE, f"hello-{digest.hexdigest()[:12]}")
    if not os.path.isdir(os.path.join(target, "clacks_hello")):
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run(
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                "--no-build-isolation", "--no-index", "--disable-pip-version-check",
                "--target", target, HELLO_SOURCE,
            ],
            check=True,
        )  # fmt: skip
    return target


TRIVIAL = """\
from clacks.common.components.command import Command
from clacks.common.components.plugin import Plugin


class Trivial{n:03d}(Plugin):
    _target_ = "trivial"

    @Command(__help__="Answer {n}.")
    def trivial{n:03d}(self):
        return {n}
"""


def writeDropins(root: str, trivial: int = 0) -> str:
    """
    Make a drop-in root: C{ROOT/clacks/plugins/} with the bench probe and
    C{trivial} generated one-command plugins.

    @return: C{root}, for C{PYTHONPATH}.
    """
    directory = os.path.join(root, "clacks", "plugins")
    os.makedirs(directory, exist_ok=True)
    shutil.copy(PROBE_SOURCE, os.path.join(directory, "bench_probe.py"))
    for n in range(trivial):
        with open(os.path.join(directory, f"bench_trivial_{n:03d}.py"), "w") as f:
            f.write(TRIVIAL.format(n=n))
    return root


class Domain:
    """
    One bench run's domain: a unique name, its agents, and the broker
    objects to delete at the end.

    @ivar name: C{bench.<random>}.
    """

    def __init__(self, runDir: str) -> None:
        self.name = f"bench.{uuid.uuid4().hex[:10]}"
        self.runDir = runDir
        self.nodes: set[str] = set()
        self.extraQueues: set[str] = set()
        self.extraExchanges: set[str] = set()
        self.hello = helloPlugin()
        self.dropins = {0: writeDropins(os.path.join(runDir, "dropins-0"))}
        self.users, self.token = self._users()

    def _users(self) -> tuple[str, str]:
        from clacks.agent.users import addToken, addUser

        path = os.path.join(self.runDir, "users")
        addUser(path, "bench", "bench", rounds=4)
        return path, addToken(path, "bench", "http")

    def dropinRoot(self, trivial: int) -> str:
        if trivial not in self.dropins:
            self.dropins[trivial] = writeDropins(
                os.path.join(self.runDir, f"dropins-{trivial}"), trivial
            )
        return self.dropins[trivial]

    def env(self, trivial: int = 0) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
        }
        env["PYTHONPATH"] = os.pathsep.join([self.hello, self.dropinRoot(trivial)])
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def startAgent(
        self,
        node: str,
        statusInterval: float = 10.0,
        nodeTimeout: float | None = None,
        trivial: int = 0,
        profile: bool = False,
        http: bool = True,
    ) -> Agent:
        return Agent(self, node, statusInterval, nodeTimeout, trivial, profile, http)

    def queues(self) -> list[str]:
        names = [f"{self.name}.commands.any", f"{self.name}.dead"]
        names += [f"{self.name}.commands.node.{n}" for n in sorted(self.nodes)]
        return names + sorted(self.extraQueues)

    def exchanges(self) -> list[str]:
        base = [f"{self.name}.{x}" for x in ("events", "commands", "dead")]
        return base + sorted(self.extraExchanges)

    def cleanUp(self) -> list[str]:
        """
        Delete every queue and exchange of this run.

        @return: what was left over afterwards (should be empty).
        """
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
        try:
            for queue in self.queues():
                channel = connection.channel()
                channel.queue_delete(queue=queue)
                channel.close()
            for exchange in self.exchanges():
                channel = connection.channel()
                channel.exchange_delete(exchange=exchange)
                channel.close()
        finally:
            connection.close()
        return self.leftovers()

    def leftovers(self) -> list[str]:
        """
        @return: queues of the broker whose name starts with the domain
            (C{rabbitmqctl}; empty if it is not there).
        """
        if shutil.which("rabbitmqctl") is None:
            return []
        try:
            out = subprocess.run(
                ["rabbitmqctl", "list_queues", "-q", "name"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [q for q in out.split() if q.startswith(self.name + ".") or q == self.name]


class Agent:
    """
    One running C{clacks-agent} process of the bench's domain.
    """

    def __init__(
        self,
        domain: Domain,
        node: str,
        statusInterval: float,
        nodeTimeout: float | None,
        trivial: int,
        profile: bool,
        http: bool,
    ) -> None:
        self.domain = domain
        self.node = node
        self.port = freePort() if http else None
        directory = os.path.join(domain.runDir, "agents", node)
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        lines = [
            "[core]",
            f"id = {node}",
            f"domain = {domain.name}",
            f"users = {domain.users}",
            "[amqp]",
            f"url = {BROKER_URL}",
            "[http]",
            f"listen = tcp:{self.port}:interface=127.0.0.1" if http else "listen = none",
            "[agent]",
            f"status-interval = {statusInterval:g}",
        ]
        if nodeTimeout is not None:
            lines.append(f"node-timeout = {nodeTimeout:g}")
        with open(os.path.join(directory, "config"), "w") as f:
            f.write("\n".join(lines) + "\n")
        domain.nodes.add(node)
        script = os.path.join(os.path.dirname(sys.executable), "clacks-agent")
        argv = (
            [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "clacks.agent.main"]
        )
        argv += ["-c", directory] + (["--profile"] if profile else [])
        self.child = Child(
            f"agent {node}",
            argv,
            os.path.join(directory, "log"),
            env=domain.env(trivial),
            cwd=directory,
        )

    @property
    def pid(self) -> int:
        return self.child.pid

    def readyURL(self) -> str:
        return f"http://127.0.0.1:{self.port}/health/ready"

    def waitReady(self, timeout: float = 30.0) -> float:
        """
        @return: seconds from process start to C{/health/ready} 200.
        """
        if self.port is None:
            raise BenchError("agent without HTTP")
        return waitHTTP(self.child, self.readyURL(), timeout)

    def stop(self) -> int | None:
        return self.child.stop()

    def kill(self) -> None:
        self.child.kill()


def stopAll(agents: Iterable[Agent]) -> None:
    for agent in agents:
        agent.stop()
