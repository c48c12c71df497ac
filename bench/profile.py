"""
Profile the agent's RPC hot path: one agent under the bench's AMQP echo
load (sequential, then 100 in flight), through L{clacks.client}.

    python -m bench.profile [CALLS]          # make bench-profile

With C{py-spy} on the PATH (C{pip install py-spy}) the agent is sampled
while it serves (no profiler overhead in the figures); otherwise it runs
under C{clacks-agent --profile} (cProfile).  Prints the functions where the
agent spends its time, self and inclusive; files go to
C{bench/results/profile/}.
"""

from __future__ import annotations

import collections
import glob
import os
import pstats
import re
import shutil
import subprocess
import sys
import time

from bench import procs
from bench.agents import Domain
from bench.procs import Child
from bench.run import PY, RESULTS

_TRIM = re.compile(
    r" \((/.*?/site-packages/|/.*?/lib/python3\.\d+/|" + re.escape(procs.ROOT) + "/)"
)


def summarise(raw: str, top: int = 30) -> str:
    """
    @return: self and inclusive shares of the functions in py-spy's
        C{--format raw} output (collapsed stacks).
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if "Thread._bootstrap" in stack:  # idle worker threads
                continue
            n = int(count)
            total += n
            frames = [_TRIM.sub(" (", frame) for frame in stack.split(";")]
            own[frames[-1]] += n
            for frame in set(frames):
                inclusive[frame] += n
    lines = [f"{total} samples of the reactor thread", "--- self"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["--- inclusive"]
    lines += [f"{100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(2 * top)]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    calls = int(argv[0]) if argv else 20000
    procs.installCleanup()
    directory = os.path.join(RESULTS, "profile")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    domain = Domain(directory)
    spy = shutil.which("py-spy") or shutil.which(os.path.join(os.path.dirname(PY), "py-spy"))
    agent = domain.startAgent("prof1", profile=spy is None)
    try:
        agent.waitReady()
        client = Child(
            "load",
            [
                PY,
                "-m",
                "bench.workers.clacksclient",
                domain.name,
                str(calls // 4),
                str(calls),
                "100",
            ],
            os.path.join(directory, "load.log"),
        )
        sampler = None
        if spy:
            time.sleep(1)
            raw = os.path.join(directory, "agent-pyspy.txt")
            sampler = subprocess.Popen(
                [
                    spy,
                    "record",
                    "-r",
                    "250",
                    "-d",
                    "10",
                    "-f",
                    "raw",
                    "-o",
                    raw,
                    "-p",
                    str(agent.pid),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        print("load:", client.result(900))
        if sampler is not None:
            sampler.wait(60)
    finally:
        agent.stop()
        domain.cleanUp()
    if spy:
        print(summarise(os.path.join(directory, "agent-pyspy.txt")))
        print(f"\npy-spy samples: {directory}/agent-pyspy.txt")
    else:
        path = glob.glob(os.path.join(agent.directory, "*.prof"))[0]
        stats = pstats.Stats(path)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats("clacks|txamqp", 40)
        print(f"pstats file: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
