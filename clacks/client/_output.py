# -*- test-case-name: tests.test_cli -*-
"""
What the C{clacks} command prints: human text and JSON lines.

Everything here is a pure function from values to text, so it is tested
without a broker.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from clacks.agent.dispatch import AllNodesResult
from clacks.common.jsonrpc import RPCError


def jsonLine(value: Any) -> str:
    """
    @return: C{value} as one line of JSON (non-ASCII kept as is).
    """
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def errorLine(error: RPCError) -> str:
    """
    @return: the one line that reports a JSON-RPC error:
        C{error -32601: no node of the domain provides 'x'}.
    """
    message = " ".join(str(error.message).split())
    return f"error {error.code}: {message}"


def formatValue(value: Any) -> str:
    """
    @return: a command's result for a human: strings as they are, anything
        else as indented JSON.
    """
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return jsonLine(value)


def formatAllNodes(result: AllNodesResult) -> str:
    """
    @return: one line per node: its result, its error, or that it did not
        answer.
    """
    nodes = sorted(set(result.results) | set(result.errors) | set(result.missing))
    if not nodes:
        return "(no node answered)"
    width = max(len(n) for n in nodes)
    lines = []
    for node in nodes:
        if node in result.errors:
            text = errorLine(result.errors[node])
        elif node in result.results:
            text = _compact(result.results[node])
        else:
            text = "(no answer)"
        lines.append(f"{node.ljust(width)}  {text}")
    return "\n".join(lines)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """
    @return: C{rows} under C{headers}, in left-aligned columns.
    """
    rows = [list(map(str, row)) for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def age(then: Any, now: float) -> str:
    """
    @return: how long ago C{then} (epoch seconds) was, for a human.
    """
    if not isinstance(then, int | float):
        return "-"
    seconds = max(now - float(then), 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _number(value: Any, pattern: str = "{:.2f}") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return pattern.format(value)


def formatNodes(nodes: Sequence[Mapping[str, Any]], now: float | None = None) -> str:
    """
    @return: the nodes of C{getNodes} as a table: id, state, load,
        in-flight calls, last seen, version.
    """
    if not nodes:
        return "(no nodes)"
    now = time.time() if now is None else now
    rows = []
    for node in sorted(nodes, key=lambda n: str(n.get("node"))):
        state = str(node.get("state", "?"))
        if node.get("draining"):
            state += " (draining)"
        rows.append(
            [
                str(node.get("node", "?")),
                state,
                _number(node.get("load")),
                _number(node.get("inflight"), "{}"),
                age(node.get("lastSeen"), now),
                str(node.get("version") or "-"),
            ]
        )
    return table(["NODE", "STATE", "LOAD", "IN-FLIGHT", "LAST SEEN", "VERSION"], rows)


def formatMethods(methods: Sequence[Mapping[str, Any]]) -> str:
    """
    @return: the commands of C{getMethods}: name and signature, type and
        providers, then the help indented.
    """
    if not methods:
        return "(no commands)"
    blocks = []
    for method in methods:
        head = f"{method.get('name', '?')}{method.get('signature', '()')}"
        nodes = ", ".join(map(str, method.get("nodes") or [])) or "-"
        kind = str(method.get("type", "")).upper() or "NORMAL"
        lines = [head, f"    {kind}, on {nodes}"]
        text = " ".join(str(method.get("help") or "").split())
        if text:
            lines.append(f"    {text}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def brokerSummary(properties: Mapping[str, Any] | None) -> dict[str, Any]:
    """
    @return: what the broker says of itself (product, version, platform,
        cluster name), from its connection properties.
    """
    properties = properties or {}
    return {
        key: properties[key]
        for key in ("product", "version", "platform", "cluster_name")
        if properties.get(key) is not None
    }


def nodeCounts(nodes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """
    @return: how many nodes are in each state.
    """
    return dict(sorted(Counter(str(n.get("state", "?")) for n in nodes).items()))


def formatStatus(status: Mapping[str, Any]) -> str:
    """
    @return: the C{status} document for a human, one line per subject.
    """
    connection = status["connection"]
    lines = [
        f"connection  {connection['url']} as {connection['name']} "
        f"({'connected' if connection['connected'] else 'not connected'})"
    ]
    broker = status.get("broker") or {}
    if broker:
        text = " ".join(str(broker[k]) for k in ("product", "version") if k in broker)
        if "platform" in broker:
            text += f" ({broker['platform']})"
        if "cluster_name" in broker:
            text += f", cluster {broker['cluster_name']}"
        lines.append(f"broker      {text.strip()}")
    domain = status["domain"]
    if "error" in domain:
        error = RPCError(domain["error"]["code"], domain["error"]["message"])
        lines.append(f"domain      {domain['name']}: {errorLine(error)}")
    else:
        count = domain["nodes"]
        states = ", ".join(f"{n} {state}" for state, n in domain["states"].items())
        plural = "node" if count == 1 else "nodes"
        lines.append(
            f"domain      {domain['name']}: {count} {plural}" + (f" ({states})" if states else "")
        )
    return "\n".join(lines)


def _eventValue(key: str, value: Any) -> str | None:
    if key == "incarnation" and isinstance(value, str):
        return value[:8]
    if key == "rss" and isinstance(value, int):
        return f"{value / (1024 * 1024):.1f}MiB"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        return f"<{len(value)}>"
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else None
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):
        return value if value and " " not in value else json.dumps(value, ensure_ascii=False)
    return jsonLine(value)


def formatEvent(event: Mapping[str, Any], when: float) -> str:
    """
    @return: one line for an event (its JSON form): local time it arrived,
        event type, node, then its other fields as C{key=value} (long
        lists shortened to C{<count>}, empty ones left out).
    """
    stamp = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when * 1000) % 1000:03d}"
    parts = [stamp, str(event.get("event", "?")), str(event.get("node", "?"))]
    for key, value in event.items():
        if key in ("event", "node"):
            continue
        text = _eventValue(key, value)
        if text is not None:
            parts.append(f"{key}={text}")
    return " ".join(parts)


__all__ = [
    "age",
    "brokerSummary",
    "errorLine",
    "formatAllNodes",
    "formatEvent",
    "formatMethods",
    "formatNodes",
    "formatStatus",
    "formatValue",
    "jsonLine",
    "nodeCounts",
    "table",
]
