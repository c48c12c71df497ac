"""
A/B of the AMQP RPC path: the agent and the raw txAMQP loop of the work
tree against those of a git revision, alternately, in one run.

    python -m bench.ab REV [ROUNDS] [http]

REV's C{clacks/} is extracted with C{git archive} (read-only) into a
temporary directory that is put first on the children's C{PYTHONPATH}, so
the agent, its client and the raw loop (which uses C{clacks}' txAMQP layer)
all run REV's code; the bench's own code is the work tree's.  Prints, per
variant, the medians of calls/s (sequential and 100 in flight) and the CPU
each process spent per call: CPU per call is the figure to compare on a
busy machine, as it does not count the time a process waits for a core.

With C{http}, the agents' C{/rpc} is compared instead (wrk, as in the
bench's HTTP scenario): requests/s and the agent's CPU per request.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any

from bench import procs
from bench.agents import Domain
from bench.procs import ROOT, Child
from bench.run import PY
from bench.stats import median


def main(argv: list[str]) -> None:
    rev = argv[0]
    rounds = int(argv[1]) if len(argv) > 1 else 3
    http = argv[2:3] == ["http"]
    seq, par = 1500, 6000
    procs.installCleanup()
    with tempfile.TemporaryDirectory(prefix="bench-ab-") as tmp:
        before = os.path.join(tmp, "rev")
        os.makedirs(before)
        archive = subprocess.run(
            ["git", "archive", rev, "clacks"], cwd=ROOT, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", before], input=archive.stdout, check=True)
        runDir = os.path.join(tmp, "run")
        os.makedirs(runDir)
        domain = Domain(runDir)
        variants = {rev: before, "work tree": ROOT}
        results: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
        agents, servers = {}, {}
        try:
            for name, root in variants.items():
                env = domain.env()
                env["PYTHONPATH"] = os.pathsep.join([root, env["PYTHONPATH"]])
                tag = "a" if root != ROOT else "b"
                agent = domain.startAgent(f"ab-{tag}")
                # the agent's environment: REV's clacks first
                agent.child.kill()
                agent.child = Child(
                    f"agent {name}", agent.child.argv, agent.child.log, env=env, cwd=agent.directory
                )
                agents[name] = agent
                queue = f"{domain.name}.raw-{tag}"
                domain.extraQueues.add(queue)
                servers[name] = Child(
                    f"raw {name}",
                    [PY, "-m", "bench.workers.rawamqp", "server", queue],
                    os.path.join(runDir, f"raw-{tag}.log"),
                    env=dict(os.environ, PYTHONPATH=os.pathsep.join([root, ROOT])),
                    cwd=root if root != ROOT else ROOT,
                )
            for name in variants:
                agents[name].waitReady()
                servers[name].waitFor("READY", 30)
            if http:
                _http(rev, variants, agents, domain, rounds, runDir)
                return
            for r in range(rounds):
                for name, root in (
                    list(variants.items()) if r % 2 == 0 else list(variants.items())[::-1]
                ):
                    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, ROOT]))
                    tag = "a" if root != ROOT else "b"
                    for system, argv_, pid in (
                        ("agent", [PY, "-m", "bench.workers.clacksclient", domain.name, str(seq), str(par), "100"], agents[name].pid),
                        ("raw", [PY, "-m", "bench.workers.rawamqp", "client", f"{domain.name}.raw-{tag}", str(seq), str(par), "100"], servers[name].pid),
                    ):  # fmt: skip
                        cpu0 = procs.cpuSeconds(pid)
                        client = Child(
                            f"{system}-{tag}-{r}",
                            argv_,
                            os.path.join(runDir, f"{system}-{tag}-{r}.log"),
                            env=env,
                            cwd=root,
                        )
                        result = client.result(600)
                        serverCpu = (procs.cpuSeconds(pid) - cpu0) / (seq + par + 50) * 1e6
                        out = results[name]
                        out.setdefault(f"{system} seq calls/s", []).append(result["seq"]["rate"])
                        out.setdefault(f"{system} 100-in-flight calls/s", []).append(
                            result["par"]["rate"]
                        )
                        out.setdefault(f"{system} seq p50 ms", []).append(result["seq"]["p50_ms"])
                        out.setdefault(f"{system} server CPU us/call", []).append(serverCpu)
                        out.setdefault(f"{system} client CPU us/call", []).append(
                            result["par"]["client_cpu_us"]
                        )
                        print(
                            f"round {r + 1} {name} {system}: {result['seq']['rate']} / {result['par']['rate']} calls/s, server {serverCpu:.0f} us/call",
                            flush=True,
                        )
        finally:
            procs.killAll()
            domain.cleanUp()
    keys = list(next(iter(results.values())))
    print(f"\n| median of {rounds} rounds | " + " | ".join(variants) + " |")
    print("| --- | " + " | ".join("---" for _ in variants) + " |")
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{median(results[v][key]):.1f}" for v in variants) + " |")


def _http(rev: str, variants: dict[str, str], agents: dict[str, Any], domain: Domain,
          rounds: int, runDir: str) -> None:  # fmt: skip
    from bench.run import FULL, runWrk, wrkPath

    class Settings(dict[str, Any]):
        smoke = False

    ctx: Any = Settings(FULL)
    ctx.runDir = runDir
    wrk = wrkPath(ctx)
    if wrk is None:
        raise SystemExit("bench.ab http needs wrk")
    results: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    for r in range(rounds):
        for name in variants if r % 2 == 0 else list(variants)[::-1]:
            agent = agents[name]
            cpu0 = procs.cpuSeconds(agent.pid)
            url = f"http://127.0.0.1:{agent.port}/rpc"
            result = runWrk(ctx, wrk, url, domain.token, "ab")
            cpu = (procs.cpuSeconds(agent.pid) - cpu0) / (result["rate"] * ctx["http_seconds"])
            out = results[name]
            out.setdefault("requests/s", []).append(result["rate"])
            out.setdefault("p50 ms", []).append(result["p50_ms"])
            out.setdefault("agent CPU us/request", []).append(cpu * 1e6)
            print(
                f"round {r + 1} {name}: {result['rate']:.0f} requests/s, {cpu * 1e6:.0f} us/request",
                flush=True,
            )
    print(f"\n| median of {rounds} rounds | " + " | ".join(variants) + " |")
    print("| --- | " + " | ".join("---" for _ in variants) + " |")
    for key in next(iter(results.values())):
        print(f"| {key} | " + " | ".join(f"{median(results[v][key]):.1f}" for v in variants) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
