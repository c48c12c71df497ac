"""
The bench driver: C{python -m bench [--smoke] [--only NAME,...] [--rounds N]}.

Every scenario runs its baseline(s) and the agent alternately, round after
round, in the same run, and reports medians over the rounds and the
agent/baseline ratio.  The driver itself does no load: each load
generator, agent and baseline server is a process of its own (see
L{bench.procs}), so that they compete for the 2 cores the way real
processes do.  Results: a table on stdout, C{bench/results/latest.json}
and PNG plots beside it.

Exit status: 0 when every scenario ran (missed targets included: they are
in the table), 1 when a scenario crashed, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from typing import Any

from bench import procs
from bench.agents import Agent, Domain, freePort
from bench.procs import ROOT, BenchError, Child
from bench.stats import PAYLOAD, median

RESULTS = os.path.join(ROOT, "bench", "results")
NAMEKO_VENV = os.path.join(ROOT, "bench", ".venv-nameko")
PY = sys.executable

FULL = {
    "rounds": 3,
    "seq": 1500,
    "par": 5000,
    "inflight": 100,
    "nameko_seq": 600,
    "nameko_par": 2000,
    "nameko": True,
    "http_seconds": 5,
    "http_connections": 10,
    "events": 3000,
    "fanout_sizes": [1, 10],
    "scale_calls": 4000,
    "scale_sizes": [1, 2, 4],
    "startup_rounds": 3,
    "rss_calls": 100000,
    "fail_interval": 1.0,
    "fail_timeout": 3.0,
}

SMOKE = {
    "rounds": 1,
    "seq": 40,
    "par": 200,
    "inflight": 100,
    "nameko_seq": 0,
    "nameko_par": 0,
    "nameko": False,
    "http_seconds": 1,
    "http_connections": 4,
    "events": 200,
    "fanout_sizes": [1, 2],
    "scale_calls": 200,
    "scale_sizes": [1, 2],
    "startup_rounds": 1,
    "rss_calls": 2000,
    "fail_interval": 0.5,
    "fail_timeout": 1.5,
}


class Context:
    """
    What the scenarios share: the settings, the run's directory and domain.
    """

    def __init__(self, settings: dict[str, Any], runDir: str, smoke: bool) -> None:
        self.settings = settings
        self.runDir = runDir
        self.smoke = smoke
        self.domain = Domain(runDir)
        self.agents: list[Agent] = []

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def log(self, name: str) -> str:
        directory = os.path.join(self.runDir, "logs")
        os.makedirs(directory, exist_ok=True)
        return os.path.join(directory, f"{name}.log")

    def child(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Child:
        return Child(name, argv, self.log(name.replace(" ", "-")), env=env)

    def agent(self, node: str, **kwargs: Any) -> Agent:
        agent = self.domain.startAgent(node, **kwargs)
        self.agents.append(agent)
        return agent

    def stopAgents(self, agents: list[Agent] | None = None) -> None:
        for agent in list(agents if agents is not None else self.agents):
            agent.stop()
            if agent in self.agents:
                self.agents.remove(agent)

    def rpc(self, agent: Agent, method: str, *params: Any) -> Any:
        """
        Call C{method} on C{agent} itself over its HTTP C{/rpc}.
        """
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
        request = urllib.request.Request(
            f"http://127.0.0.1:{agent.port}/rpc?node={agent.node}",
            data=body.encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.domain.token}",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        if "error" in answer:
            raise BenchError(f"{method} on {agent.node}: {answer['error']}")
        return answer["result"]


def row(
    scenario: str,
    case: str,
    system: str,
    metric: str,
    values: list[float],
    unit: str,
    better: str = "higher",
    baseline: str | None = None,
    target: str | None = None,
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "case": case,
        "system": system,
        "metric": metric,
        "unit": unit,
        "values": [round(v, 4) if isinstance(v, float) else v for v in values],
        "median": round(median(values), 4) if values else None,
        "better": better,
        "baseline": baseline,
        "ratio": None,
        "target": target,
        "met": met,
        "note": note,
    }


def ratioRows(
    rows: list[dict[str, Any]], system: str, baseline: str, minimum: float | None = None
) -> None:
    """
    Set the ratio of C{system}'s rows to C{baseline}'s rows of the same case
    and metric (medians; for lower-is-better metrics the ratio is still
    agent/baseline), and judge C{minimum} on throughput rows.
    """
    index = {(r["case"], r["metric"]): r for r in rows if r["system"] == baseline}
    for r in rows:
        if r["system"] != system:
            continue
        b = index.get((r["case"], r["metric"]))
        if b is None or not b["median"] or r["median"] is None:
            continue
        ratio = r["median"] / b["median"]
        if r["ratio"] is None:
            r["ratio"] = round(ratio, 3)
            r["baseline"] = baseline
        if minimum is not None and r["better"] == "higher":
            r.setdefault("ratios", {})[baseline] = round(ratio, 3)
            verdict = ratio >= minimum
            r["target"] = (
                (r["target"] + "; ") if r["target"] else ""
            ) + f">= {minimum:g}x {baseline}"
            r["met"] = verdict if r["met"] is None else (r["met"] and verdict)


# ---------------------------------------------------------------------------
# Scenario 1: AMQP RPC


#: The raw loop with the agent's delivery guarantees (see bench.workers.rawamqp).
RAW_CONFIRMS = "raw txAMQP + confirms"


def ensureNameko() -> tuple[str | None, str]:
    """
    Make (once) the nameko virtualenv.

    @return: its Python, or C{None} and why not.
    """
    python = os.path.join(NAMEKO_VENV, "bin", "python")
    stamp = os.path.join(NAMEKO_VENV, ".installed")
    requirements = os.path.join(ROOT, "bench", "nameko-requirements.txt")
    if os.path.exists(stamp):
        return python, ""
    print("bench: making nameko's virtualenv (bench/.venv-nameko) ...", flush=True)
    shutil.rmtree(NAMEKO_VENV, ignore_errors=True)
    try:
        subprocess.run(
            [PY, "-m", "venv", NAMEKO_VENV], check=True, capture_output=True, timeout=120
        )
        out = subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                requirements,
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if out.returncode != 0:
            lines = [x for x in (out.stderr or out.stdout).splitlines() if "is ignored" not in x]
            return None, "pip install nameko==2.14.1 failed: " + " ".join(lines[-3:])
        check = subprocess.run(
            [
                python,
                "-c",
                "import eventlet; eventlet.monkey_patch(); import nameko.standalone.rpc",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check.returncode != 0:
            return (
                None,
                "nameko does not import on this Python: " + check.stderr.strip().splitlines()[-1],
            )
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"cannot make nameko's virtualenv: {e}"
    with open(stamp, "w") as f:
        f.write("ok\n")
    return python, ""


def scenarioRPC(ctx: Context) -> dict[str, Any]:
    name = "1. AMQP RPC"
    domain = ctx.domain
    rounds, seq, par, inflight = ctx["rounds"], ctx["seq"], ctx["par"], ctx["inflight"]
    notes = []
    agent = ctx.agent("rpc1")
    rawQueue = f"{domain.name}.raw"
    aioQueue = f"{domain.name}.aiopika"
    domain.extraQueues.update([rawQueue, aioQueue])
    servers: dict[str, Child] = {}
    confirmQueue = f"{domain.name}.rawconfirms"
    domain.extraQueues.add(confirmQueue)
    servers["raw txAMQP"] = ctx.child(
        "raw-server", [PY, "-m", "bench.workers.rawamqp", "server", rawQueue]
    )
    servers[RAW_CONFIRMS] = ctx.child(
        "raw-confirms-server",
        [PY, "-m", "bench.workers.rawamqp", "server", confirmQueue, "raw", "confirms"],
    )
    servers["aio-pika"] = ctx.child(
        "aiopika-server", [PY, "-m", "bench.workers.aiopika", "server", aioQueue]
    )
    clients: dict[str, Callable[[], list[str]]] = {
        "clacks-agent": lambda: [PY, "-m", "bench.workers.clacksclient", domain.name, str(seq), str(par), str(inflight)],
        "raw txAMQP": lambda: [PY, "-m", "bench.workers.rawamqp", "client", rawQueue, str(seq), str(par), str(inflight)],
        RAW_CONFIRMS: lambda: [
            PY, "-m", "bench.workers.rawamqp", "client", confirmQueue,
            str(seq), str(par), str(inflight), "confirms",
        ],
        "aio-pika": lambda: [PY, "-m", "bench.workers.aiopika", "client", aioQueue, str(seq), str(par), str(inflight)],
    }  # fmt: skip
    nameko: str | None = None
    namekoEnv = None
    service = "bench_" + domain.name.split(".")[-1]
    if ctx["nameko"]:
        nameko, why = ensureNameko()
        if nameko is None:
            notes.append(f"nameko 2.14: not measured: {why}")
    else:
        why = "not run in smoke mode"
    if nameko is not None:
        domain.extraQueues.add(f"rpc-{service}")
        namekoEnv = dict(os.environ, PYTHONPATH=ROOT)
        script = os.path.join(ROOT, "bench", "workers", "nameko_bench.py")
        servers["nameko 2.14"] = ctx.child(
            "nameko-server", [nameko, script, "server", service], env=namekoEnv
        )
        clients["nameko 2.14"] = lambda: [
            nameko, script, "client", service,
            str(ctx["nameko_seq"]), str(ctx["nameko_par"]), str(inflight),
        ]  # fmt: skip
    agent.waitReady()
    for system, server in list(servers.items()):
        try:
            server.waitFor("READY", 60)
        except BenchError as e:
            notes.append(f"{system}: server did not start: {str(e).splitlines()[0]}")
            server.kill()
            del servers[system]
            del clients[system]
    pids = {"clacks-agent": agent.pid, **{s: c.pid for s, c in servers.items()}}
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in clients}
    systems = list(clients)
    for r in range(rounds):
        order = systems[r % len(systems) :] + systems[: r % len(systems)]
        for system in order:
            cpu0 = procs.cpuSeconds(pids[system])
            client = ctx.child(
                f"rpc-{system.replace(' ', '_')}-{r}",
                clients[system](),
                env=namekoEnv if system.startswith("nameko") else None,
            )
            result = client.result(600)
            calls = sum(result[k]["calls"] for k in ("seq", "par") if k in result) + 50
            result["server_cpu_us"] = (procs.cpuSeconds(pids[system]) - cpu0) / calls * 1e6
            results[system].append(result)
            print(
                f"  round {r + 1} {system}: seq {result.get('seq', {}).get('rate')} calls/s, "
                f"{inflight} in flight {result.get('par', {}).get('rate')} calls/s",
                flush=True,
            )
    for server in servers.values():
        server.kill()
    ctx.stopAgents([agent])
    rows = []
    for system, runs in results.items():
        for mode, case in (("seq", "sequential"), ("par", f"{inflight} in flight")):
            if not all(mode in x for x in runs):
                continue
            rows.append(
                row(name, case, system, "calls/s", [x[mode]["rate"] for x in runs], "calls/s")
            )
            rows.append(
                row(name, case, system, "p50", [x[mode]["p50_ms"] for x in runs], "ms", "lower")
            )
            rows.append(
                row(name, case, system, "p99", [x[mode]["p99_ms"] for x in runs], "ms", "lower")
            )
        rows.append(
            row(
                name,
                "all",
                system,
                "server CPU/call",
                [x["server_cpu_us"] for x in runs],
                "us",
                "lower",
            )
        )
    if nameko is None:
        for case in ("sequential", f"{inflight} in flight"):
            rows.append(
                row(
                    name, case, "nameko 2.14", "calls/s", [], "calls/s", note=f"not measured: {why}"
                )
            )
    targets = {"sequential": 0.8, f"{inflight} in flight": 0.7}
    for r_ in rows:
        if r_["system"] == "clacks-agent" and r_["metric"] == "calls/s":
            base = next(
                (
                    b
                    for b in rows
                    if b["system"] == "raw txAMQP"
                    and b["case"] == r_["case"]
                    and b["metric"] == "calls/s"
                ),
                None,
            )
            if base and base["median"]:
                ratio = r_["median"] / base["median"]
                r_["ratio"], r_["baseline"] = round(ratio, 3), "raw txAMQP"
                r_["target"] = f">= {targets[r_['case']]}x raw txAMQP"
                r_["met"] = ratio >= targets[r_["case"]]
            same = next(
                (
                    b
                    for b in rows
                    if b["system"] == RAW_CONFIRMS
                    and b["case"] == r_["case"]
                    and b["metric"] == "calls/s"
                ),
                None,
            )
            if same and same["median"]:
                r_["ratio_confirms"] = round(r_["median"] / same["median"], 3)
            nk = next(
                (
                    b
                    for b in rows
                    if b["system"] == "nameko 2.14"
                    and b["case"] == r_["case"]
                    and b["metric"] == "calls/s"
                ),
                None,
            )
            if nk and nk["median"]:
                ratio = r_["median"] / nk["median"]
                r_["ratio_nameko"] = round(ratio, 3)
                r_["target"] += "; >= 1.5x nameko"
                r_["met"] = bool(r_["met"]) and ratio >= 1.5
            elif nk:
                r_["target"] += "; >= 1.5x nameko (not measured)"
    for system in (RAW_CONFIRMS, "aio-pika", "nameko 2.14", "clacks-agent"):
        for r_ in rows:
            if r_["system"] == system and r_["ratio"] is None and r_["median"] is not None:
                base = next(
                    (
                        b
                        for b in rows
                        if b["system"] == "raw txAMQP"
                        and b["case"] == r_["case"]
                        and b["metric"] == r_["metric"]
                    ),
                    None,
                )
                if base and base["median"]:
                    r_["ratio"], r_["baseline"] = (
                        round(r_["median"] / base["median"], 3),
                        "raw txAMQP",
                    )
    return {"rows": rows, "notes": notes, "raw": results}


# ---------------------------------------------------------------------------
# Scenario 2: HTTP JSON-RPC


def wrkPath(ctx: Context) -> str | None:
    """
    @return: C{wrk}'s path, installing it (apt-get, as root, full mode
        only) if it is missing; C{None} means the Twisted load generator
        (also with C{BENCH_NO_WRK=1}).
    """
    if os.environ.get("BENCH_NO_WRK"):
        return None
    found = shutil.which("wrk")
    if found or ctx.smoke:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk (apt-get install -y wrk) ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, timeout=300)
    return shutil.which("wrk")


def _wrkLatency(text: str) -> float:
    value = float(text.rstrip("umsec"))
    if text.endswith("us"):
        return value / 1000
    if text.endswith("ms"):
        return value
    if text.endswith("s"):
        return value * 1000
    return value


def runWrk(ctx: Context, wrk: str, url: str, token: str | None, tag: str) -> dict[str, Any]:
    body = json.dumps({"jsonrpc": "2.0", "method": "echo", "params": [PAYLOAD], "id": 1})
    script = os.path.join(ctx.runDir, f"wrk-{tag}.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write(f"wrk.body = {json.dumps(body)}\n")
        f.write('wrk.headers["Content-Type"] = "application/json"\n')
        if token:
            f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    argv = [
        wrk, "-t1", f"-c{ctx['http_connections']}", f"-d{ctx['http_seconds']}s",
        "--latency", "-s", script, url,
    ]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=ctx["http_seconds"] + 60)
    text = out.stdout
    result: dict[str, Any] = {"errors": 0}
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["rate"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            result["p50_ms" if parts[0] == "50%" else "p99_ms"] = _wrkLatency(parts[1])
        elif "Non-2xx" in line or "Socket errors" in line:
            result["errors"] += sum(int(x.strip(",")) for x in parts if x.strip(",").isdigit())
    if out.returncode != 0 or "rate" not in result:
        raise BenchError(f"wrk failed ({out.returncode}): {text}\n{out.stderr}")
    if result["errors"]:
        raise BenchError(f"wrk saw errors against {url}:\n{text}")
    return result


def scenarioHTTP(ctx: Context) -> dict[str, Any]:
    name = "2. HTTP JSON-RPC"
    wrk = wrkPath(ctx)
    notes = [
        f"load generator: {'wrk' if wrk else 'Twisted/treq client (wrk not found)'}, "
        f"{ctx['http_connections']} keep-alive connections, {ctx['http_seconds']} s per round"
    ]
    agent = ctx.agent("http1")
    port = freePort()
    bare = ctx.child("http-bare", [PY, "-m", "bench.workers.httpbare", str(port)])
    agent.waitReady()
    bare.waitFor("READY", 30)
    targets = {
        "clacks-agent /rpc": (f"http://127.0.0.1:{agent.port}/rpc", ctx.domain.token),
        "bare twisted.web": (f"http://127.0.0.1:{port}/rpc", None),
    }
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in targets}
    for r in range(ctx["rounds"]):
        order = list(targets) if r % 2 == 0 else list(reversed(targets))
        for system in order:
            url, token = targets[system]
            if wrk:
                result = runWrk(ctx, wrk, url, token, system.split()[0])
            else:
                client = ctx.child(
                    f"http-{system.split()[0]}-{r}",
                    [PY, "-m", "bench.workers.httpload", url, token or "-",
                     str(ctx["http_connections"]), str(ctx["http_seconds"])],
                )  # fmt: skip
                result = client.result(ctx["http_seconds"] + 60)["http"]
                if result["errors"]:
                    raise BenchError(f"{system}: {result['errors']} failed requests")
            results[system].append(result)
            print(f"  round {r + 1} {system}: {result['rate']:.0f} requests/s", flush=True)
    bare.kill()
    ctx.stopAgents([agent])
    rows = []
    for system, runs in results.items():
        rows.append(row(name, "echo", system, "requests/s", [x["rate"] for x in runs], "req/s"))
        rows.append(row(name, "echo", system, "p50", [x["p50_ms"] for x in runs], "ms", "lower"))
        rows.append(row(name, "echo", system, "p99", [x["p99_ms"] for x in runs], "ms", "lower"))
    ratioRows(rows, "clacks-agent /rpc", "bare twisted.web", minimum=0.7)
    return {"rows": rows, "notes": notes, "raw": results}


# ---------------------------------------------------------------------------
# Scenario 3: event fan-out

#: The event the raw rounds publish: the agents subscribe to BenchEvent.#
#: only, so they stay idle while the raw subscribers work.
RAW_EVENT = "RawBenchEvent"


def scenarioFanout(ctx: Context) -> dict[str, Any]:
    name = "3. Event fan-out"
    domain = ctx.domain
    count = ctx["events"]
    agents: list[Agent] = []
    rows = []
    raw: dict[str, Any] = {}
    for subscribers in ctx["fanout_sizes"]:
        while len(agents) < subscribers:
            agents.append(ctx.agent(f"fan{len(agents) + 1}"))
        for agent in agents:
            agent.waitReady(60)
        case = f"{subscribers} subscriber{'s' if subscribers > 1 else ''}"
        results: dict[str, list[dict[str, Any]]] = {"clacks-agent": [], "raw txAMQP": []}
        for r in range(ctx["rounds"]):
            order = ["clacks-agent", "raw txAMQP"] if r % 2 == 0 else ["raw txAMQP", "clacks-agent"]
            for system in order:
                subs: list[Child] = []
                if system == "clacks-agent":
                    for agent in agents:
                        ctx.rpc(agent, "benchEvents", True)
                else:
                    for i in range(subscribers):
                        domain.extraQueues.add(f"{domain.name}.bench-sub.s{i}")
                        subs.append(
                            ctx.child(
                                f"fan-sub-{subscribers}-{r}-{i}",
                                [
                                    PY,
                                    "-m",
                                    "bench.workers.events",
                                    "subscribe",
                                    domain.name,
                                    f"s{i}",
                                    str(count),
                                    RAW_EVENT,
                                ],
                            )
                        )
                    for sub in subs:
                        sub.waitFor("READY", 60)
                publisher = ctx.child(
                    f"fan-pub-{system.split()[0]}-{subscribers}-{r}",
                    [
                        PY,
                        "-m",
                        "bench.workers.events",
                        "publish",
                        domain.name,
                        str(count),
                        "BenchEvent" if system == "clacks-agent" else RAW_EVENT,
                    ],  # fmt: skip
                )
                published = publisher.result(300)
                if system == "clacks-agent":
                    counts = _waitEvents(ctx, agents, count)
                else:
                    counts = [sub.result(120) for sub in subs]
                delivered = sum(c["events"] for c in counts)
                last = max((c["last"] or 0) for c in counts)
                rate = delivered / (last - published["start"]) if last else 0.0
                lost = subscribers * count - delivered
                results[system].append(
                    {
                        "rate": rate,
                        "lost": lost,
                        "publish_rate": count / (published["end"] - published["start"]),
                    }
                )
                print(
                    f"  {case}, round {r + 1} {system}: {rate:.0f} events/s delivered ({lost} lost)",
                    flush=True,
                )
        raw[case] = results
        for system, runs in results.items():
            rows.append(
                row(name, case, system, "events/s delivered", [x["rate"] for x in runs], "ev/s",
                    note="" if not any(x["lost"] for x in runs) else f"lost {sum(x['lost'] for x in runs)}")
            )  # fmt: skip
    ctx.stopAgents(agents)
    ratioRows(rows, "clacks-agent", "raw txAMQP")
    return {
        "rows": rows,
        "notes": [
            f"{count} events of 64-byte payload per round from one raw publisher (confirms, 500 unconfirmed)"
        ],
        "raw": raw,
    }


def _waitEvents(
    ctx: Context, agents: list[Agent], count: int, idle: float = 20.0
) -> list[dict[str, Any]]:
    last, seen = time.monotonic(), -1
    while True:
        counts = [ctx.rpc(agent, "benchEvents") for agent in agents]
        total = sum(c["events"] for c in counts)
        if total >= count * len(agents):
            return counts
        if total != seen:
            seen, last = total, time.monotonic()
        elif time.monotonic() - last > idle:
            return counts
        time.sleep(0.1)


# ---------------------------------------------------------------------------
# Scenario 4: scale-out


def scenarioScale(ctx: Context) -> dict[str, Any]:
    name = "4. Scale-out (any-node queue)"
    domain = ctx.domain
    calls, inflight = ctx["scale_calls"], ctx["inflight"]
    agents: list[Agent] = []
    servers: list[Child] = []
    queue = f"{domain.name}.rawscale"
    domain.extraQueues.add(queue)
    rows = []
    raw: dict[str, Any] = {}
    for size in ctx["scale_sizes"]:
        while len(agents) < size:
            agents.append(ctx.agent(f"scale{len(agents) + 1}"))
            servers.append(
                ctx.child(
                    f"scale-raw-server-{len(servers) + 1}",
                    [PY, "-m", "bench.workers.rawamqp", "server", queue, f"raw{len(servers) + 1}"],
                )
            )
        for agent in agents:
            agent.waitReady(60)
        for server in servers:
            server.waitFor("READY", 60)
        case = f"{size} process{'es' if size > 1 else ''}"
        results: dict[str, list[dict[str, Any]]] = {"clacks-agent": [], "raw txAMQP": []}
        for r in range(ctx["rounds"]):
            order = ["clacks-agent", "raw txAMQP"] if r % 2 == 0 else ["raw txAMQP", "clacks-agent"]
            for system in order:
                if system == "clacks-agent":
                    before = {a.node: ctx.rpc(a, "benchStats")["processed"] for a in agents}
                    client = ctx.child(
                        f"scale-clacks-{size}-{r}",
                        [
                            PY,
                            "-m",
                            "bench.workers.clacksclient",
                            domain.name,
                            "0",
                            str(calls),
                            str(inflight),
                        ],
                    )
                    result = client.result(600)
                    after = {a.node: ctx.rpc(a, "benchStats")["processed"] for a in agents}
                    spread = {n: after[n] - before[n] - 1 for n in after}
                else:
                    client = ctx.child(
                        f"scale-raw-{size}-{r}",
                        [
                            PY,
                            "-m",
                            "bench.workers.rawamqp",
                            "client",
                            queue,
                            "0",
                            str(calls),
                            str(inflight),
                        ],
                    )
                    result = client.result(600)
                    spread = result["spread"]
                total = sum(spread.values()) or 1
                shares = sorted((round(v / total, 3) for v in spread.values()), reverse=True)
                results[system].append(
                    {
                        "rate": result["par"]["rate"],
                        "p99_ms": result["par"]["p99_ms"],
                        "spread": spread,
                        "shares": shares,
                    }
                )
                print(
                    f"  {case}, round {r + 1} {system}: {result['par']['rate']:.0f} calls/s, shares {shares}",
                    flush=True,
                )
        raw[case] = results
        for system, runs in results.items():
            shares = runs[-1]["shares"]
            rows.append(
                row(name, case, system, "calls/s", [x["rate"] for x in runs], "calls/s",
                    note="shares " + "/".join(f"{100 * s:.0f}%" for s in shares))
            )  # fmt: skip
    for server in servers:
        server.kill()
    ctx.stopAgents(agents)
    ratioRows(rows, "clacks-agent", "raw txAMQP")
    return {
        "rows": rows,
        "notes": [
            f"{calls} echo calls, {inflight} in flight, per round; capacity (prefetch) 16 per process; 2 cores shared by client, broker and all processes"
        ],
        "raw": raw,
    }


# ---------------------------------------------------------------------------
# Scenario 5: start-up and memory


def scenarioStartup(ctx: Context) -> dict[str, Any]:
    name = "5. Start-up and memory"
    rows = []
    raw: dict[str, Any] = {}
    kinds = [("1 plugin (hello)", 0), ("100 plugins (hello + 99 drop-ins)", 99)]
    times: dict[str, list[float]] = {k: [] for k, _ in kinds}
    times["bare Twisted + txAMQP"] = []
    counter = [0]

    def agentStart(trivial: int) -> float:
        counter[0] += 1
        agent = ctx.agent(f"start{counter[0]}", trivial=trivial)
        try:
            return agent.waitReady(60)
        finally:
            ctx.stopAgents([agent])

    def bareStart() -> float:
        port = freePort()
        counter[0] += 1
        child = ctx.child(
            f"bare-ready-{counter[0]}", [PY, "-m", "bench.workers.bareready", str(port)]
        )
        try:
            return procs.waitHTTP(child, f"http://127.0.0.1:{port}/health/ready", 60)
        finally:
            child.stop()

    # one unmeasured start of each: Python's bytecode caches, twisted's
    # dropin.cache and the page cache are warm afterwards, as on a server
    if not ctx.smoke:
        for _, trivial in kinds:
            agentStart(trivial)
        bareStart()
    for r in range(ctx["startup_rounds"]):
        for kind, trivial in kinds:
            times[kind].append(agentStart(trivial))
        times["bare Twisted + txAMQP"].append(bareStart())
        print(
            f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()),
            flush=True,
        )
    for kind, values in times.items():
        bare = kind.startswith("bare")
        rows.append(
            row(name, "start to /health/ready 200", "baseline: " + kind if bare else "clacks-agent, " + kind,
                "seconds", values, "s", "lower",
                target="< 1 s" if kind.startswith("100") else None,
                met=median(values) < 1.0 if kind.startswith("100") else None)
        )  # fmt: skip
    # memory: idle, then after many calls
    agent = ctx.agent("memory1")
    agent.waitReady(60)
    time.sleep(2)
    idle = procs.rss(agent.pid)
    half = ctx["rss_calls"] // 2
    samples = [idle]
    for i in range(2):
        client = ctx.child(
            f"rss-calls-{i}",
            [
                PY,
                "-m",
                "bench.workers.clacksclient",
                ctx.domain.name,
                "0",
                str(half),
                str(ctx["inflight"]),
            ],
        )
        client.result(900)
        time.sleep(1)
        samples.append(procs.rss(agent.pid))
        print(f"  RSS after {half * (i + 1)} calls: {samples[-1] / 2**20:.1f} MB", flush=True)
    ctx.stopAgents([agent])
    mb = [s / 2**20 for s in samples]
    growth = mb[2] - mb[1]
    rows.append(
        row(
            name,
            "idle (ready + 2 s)",
            "clacks-agent",
            "RSS",
            [mb[0]],
            "MB",
            "lower",
            target="< 60 MB",
            met=mb[0] < 60,
        )
    )
    rows.append(row(name, f"after {half} calls", "clacks-agent", "RSS", [mb[1]], "MB", "lower"))
    rows.append(row(name, f"after {2 * half} calls", "clacks-agent", "RSS", [mb[2]], "MB", "lower"))
    rows.append(
        row(name, f"growth, calls {half}..{2 * half}", "clacks-agent", "RSS", [growth], "MB", "lower",
            target="no growth (< 2 MB)", met=growth < 2.0,
            note="the first calls fill the bounded reply cache (10000 replies)")
    )  # fmt: skip
    raw["startup"] = times
    raw["rss_mb"] = mb
    return {
        "rows": rows,
        "notes": ["start-up: process start to the first 200 of /health/ready, polled every 10 ms"],
        "raw": raw,
    }


# ---------------------------------------------------------------------------
# Scenario 6: failure detection


def scenarioFailure(ctx: Context) -> dict[str, Any]:
    name = "6. Failure detection"
    interval, timeout = ctx["fail_interval"], ctx["fail_timeout"]
    observer = ctx.agent("watch", statusInterval=interval, nodeTimeout=timeout)
    observer.waitReady(60)
    deadTimes, leaveTimes = [], []
    for r in range(ctx["rounds"]):
        killed = ctx.agent(f"victim-kill{r + 1}", statusInterval=interval, nodeTimeout=timeout)
        termed = ctx.agent(f"victim-term{r + 1}", statusInterval=interval, nodeTimeout=timeout)
        killed.waitReady(60)
        termed.waitReady(60)
        watcher = ctx.child(
            f"lifecycle-{r}",
            [
                PY,
                "-m",
                "bench.workers.lifecycle",
                ctx.domain.name,
                observer.node,
                killed.node,
                termed.node,
            ],
        )
        watcher.waitFor("ARMED", 60)
        time.sleep(0.3)
        tTerm = time.time()
        termed.child.signal(signal.SIGTERM)
        time.sleep(0.5)
        tKill = time.time()
        killed.child.kill()
        result = watcher.result(60)
        ctx.stopAgents([termed])
        ctx.agents.remove(killed)
        if killed.node not in result["dead"] or termed.node not in result["leave"]:
            raise BenchError(f"round {r + 1}: not seen: {result}")
        deadTimes.append(result["dead"][killed.node] - tKill)
        leaveTimes.append(result["leave"][termed.node] - tTerm)
        print(
            f"  round {r + 1}: dead after {deadTimes[-1]:.3f} s, NodeLeave after {1000 * leaveTimes[-1]:.1f} ms",
            flush=True,
        )
    ctx.stopAgents([observer])
    bound = timeout + interval
    rows = [
        row(name, f"SIGKILL -> dead (interval {interval:g} s, node-timeout {timeout:g} s)", "clacks-agent", "seconds",
            deadTimes, "s", "lower", target=f"<= {bound:g} s (node-timeout + interval)", met=max(deadTimes) <= bound),
        row(name, "SIGTERM -> NodeLeave seen", "clacks-agent", "milliseconds", [1000 * t for t in leaveTimes],
            "ms", "lower", target="< 200 ms", met=max(leaveTimes) < 0.2),
    ]  # fmt: skip
    return {
        "rows": rows,
        "notes": [
            "dead: the observer agent's getNodes polled every 20 ms; NodeLeave: a raw subscriber on NodeLeave.#; targets judged on the worst round"
        ],
        "raw": {"dead": deadTimes, "leave": leaveTimes},
    }


SCENARIOS: list[tuple[str, Callable[[Context], dict[str, Any]]]] = [
    ("rpc", scenarioRPC),
    ("http", scenarioHTTP),
    ("fanout", scenarioFanout),
    ("scale", scenarioScale),
    ("startup", scenarioStartup),
    ("failure", scenarioFailure),
]


# ---------------------------------------------------------------------------
# Output


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | case | system | metric | median | rounds | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario in results["scenarios"].values():
        for r in scenario.get("rows", []):
            ratio = "-"
            if r["ratio"] is not None:
                ratio = f"{r['ratio']:.2f}x {r['baseline']}"
            if r.get("ratio_confirms") is not None:
                ratio += f"; {r['ratio_confirms']:.2f}x raw + confirms"
            if r.get("ratio_nameko") is not None:
                ratio += f"; {r['ratio_nameko']:.2f}x nameko"
            median_ = (
                f"{fmt(r['median'])} {r['unit']}" if r["median"] is not None else r["note"] or "-"
            )
            met = {True: "yes", False: "**NO**", None: "-"}[r["met"]]
            values = ", ".join(fmt(v) for v in r["values"])
            note = f" ({r['note']})" if r["note"] and r["median"] is not None else ""
            lines.append(
                f"| {r['scenario']} | {r['case']} | {r['system']} | {r['metric']}{note} | {median_} | "
                f"{values} | {ratio} | {r['target'] or '-'} | {met} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, one round (CI)")
    parser.add_argument(
        "--only", default="", help="comma-separated scenarios: " + ",".join(n for n, _ in SCENARIOS)
    )
    parser.add_argument("--rounds", type=int, default=None, help="rounds per scenario")
    parser.add_argument("--no-plots", action="store_true")
    options = parser.parse_args(argv)
    settings = dict(SMOKE if options.smoke else FULL)
    if options.rounds:
        settings["rounds"] = options.rounds
    wanted = [n.strip() for n in options.only.split(",") if n.strip()]
    unknown = set(wanted) - {n for n, _ in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    procs.installCleanup()
    os.makedirs(RESULTS, exist_ok=True)
    runDir = os.path.join(RESULTS, "run")
    shutil.rmtree(runDir, ignore_errors=True)
    os.makedirs(runDir)
    started = time.time()
    ctx = Context(settings, runDir, options.smoke)
    print(
        f"bench: domain {ctx.domain.name}, {'smoke' if options.smoke else 'full'} mode, logs in {runDir}",
        flush=True,
    )
    results: dict[str, Any] = {
        "meta": {
            "mode": "smoke" if options.smoke else "full",
            "domain": ctx.domain.name,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": os.getloadavg(),
            "settings": settings,
        },
        "scenarios": {},
        "errors": {},
    }
    interrupted = False
    try:
        for key, scenario in SCENARIOS:
            if wanted and key not in wanted:
                continue
            print(f"== {key}", flush=True)
            t0 = time.time()
            try:
                outcome = scenario(ctx)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                traceback.print_exc()
                results["errors"][key] = f"{type(e).__name__}: {e}"
                outcome = {
                    "rows": [],
                    "notes": [
                        f"CRASHED: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    ],
                }
                ctx.stopAgents()
            outcome["seconds"] = round(time.time() - t0, 1)
            results["scenarios"][key] = outcome
    except KeyboardInterrupt:
        interrupted = True
    finally:
        procs.killAll()
        try:
            left = ctx.domain.cleanUp()
            results["meta"]["leftover_queues"] = left
        except Exception as e:
            results["meta"]["cleanup_error"] = str(e)
            print(f"bench: deleting the domain's queues failed: {e}", file=sys.stderr)
    results["meta"]["seconds"] = round(time.time() - started, 1)
    results["meta"]["load_after"] = os.getloadavg()
    text = table(results)
    path = os.path.join(RESULTS, "latest.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    plots: list[str] = []
    if not options.no_plots:
        try:
            from bench.plots import plot

            plots = plot(results, RESULTS)
        except Exception as e:
            results["errors"]["plots"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print()
    print(text)
    for key, outcome in results["scenarios"].items():
        for note in outcome.get("notes", []):
            print(f"- {key}: {note}")
    print(
        f"\nbench: {results['meta']['seconds']} s; results in {path}"
        + (f", plots: {', '.join(os.path.basename(p) for p in plots)}" if plots else "")
    )
    if results["meta"].get("leftover_queues"):
        print(f"bench: WARNING: queues left on the broker: {results['meta']['leftover_queues']}")
    if interrupted:
        sys.exit(130)
    if results["errors"]:
        print(f"bench: FAILED: {results['errors']}", file=sys.stderr)
        sys.exit(1)


__all__ = ["main"]
