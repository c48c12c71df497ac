"""
Print the reliability suite's figures as one table.

    python -m tests.reliability.report [RESULTS]

C{RESULTS} is the JSON-lines file the tests wrote (default: the suite's,
see L{tests.reliability.harness.RESULTS_PATH}).  The table is also written
next to it as C{table.md}.  Exit status 1 if there are no figures or if a
scenario lost calls.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

#: The order of the rows: by the start of the scenario's name.
ORDER = [
    "(a)",
    "(b)",
    "(c)",
    "(d)",
    "(2)",
    "(2b)",
    "limits",
    "poison",
    "overload",
    "fuzz",
    "security",
]

#: Figures beyond the table's columns worth a note, by key.
NOTES = [
    ("inFlightAtStrike", "unanswered at the fault"),
    ("resent", "resent after reconnect"),
    ("answeredFromCache", "from reply cache"),
    ("requeued", "handed back"),
    ("servedByA", "served by A"),
    ("exitCode", "exit"),
    ("stopSeconds", "stopped in s"),
    ("refusedCounted", "NodeStatus.refused"),
    ("deliveries", "deliveries"),
    ("deadReason", "dead-letter reason"),
    ("waitingInBroker", "waiting in broker"),
    ("maxInflight", "max in flight"),
    ("maxLag", "max status lag s"),
    ("nodePingSeconds", "node ping s"),
    ("anyPingSeconds", "any ping s"),
    ("channelErrors", "channels closed by broker"),
    ("rssStartMB", "RSS at start MB"),
    ("rssBaselineMB", "RSS half-way MB"),
    ("rssEndMB", "RSS end MB"),
    ("rssGrowth", "RSS growth"),
    ("seed", "seed"),
    ("hostileRefused", "hostile refused"),
    ("hostileAttempts", "of"),
    ("untrustedConnected", "no-CA connected"),
    ("otherCAConnected", "other-CA connected"),
]

COLUMNS = [
    ("scenario", "scenario"),
    ("calls", "calls"),
    ("answered", "answered"),
    ("failedClear", "failed-clear"),
    ("lost", "lost"),
    ("ranTwice", "ran-twice"),
    ("duration", "duration s"),
]


def load(path: str) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return sorted(rows, key=_rank)


def _rank(row: Mapping[str, Any]) -> tuple[int, str]:
    name = str(row.get("scenario", ""))
    for i, prefix in enumerate(ORDER):
        if name.startswith(prefix):
            return (i, name)
    return (len(ORDER), name)


def notes(row: Mapping[str, Any]) -> str:
    parts = []
    for key, label in NOTES:
        if key in row and row[key] is not None:
            parts.append(f"{label} {row[key]}")
    return "; ".join(parts)


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = [title for _, title in COLUMNS] + ["notes"]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for row in rows:
        cells = [str(row.get(key, "")) for key, _ in COLUMNS] + [notes(row)]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    from tests.reliability.harness import RESULTS_PATH

    path = argv[0] if argv else RESULTS_PATH
    if not os.path.exists(path):
        print(f"reliability: no results in {path}: did the suite run?")
        return 1
    rows = load(path)
    if not rows:
        print(f"reliability: {path} is empty: did the suite run?")
        return 1
    text = table(rows)
    with open(os.path.join(os.path.dirname(os.path.abspath(path)), "table.md"), "w") as f:
        f.write(text + "\n")
    print()
    print("Reliability figures (lost must be 0):")
    print(text)
    lost = [row["scenario"] for row in rows if row.get("lost")]
    if lost:
        print(f"reliability: calls LOST in: {', '.join(lost)}")
        return 1
    print(f"reliability: {len(rows)} scenarios, lost = 0 in every one")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
