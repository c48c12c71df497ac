"""
PNG plots of a bench run (matplotlib, Agg backend): one per scenario,
medians as bars with each round as a dot.
"""

from __future__ import annotations

import os
import textwrap
from typing import Any


def plot(results: dict[str, Any], directory: str) -> list[str]:
    """
    @return: the paths of the PNGs written into C{directory}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for key, outcome in results["scenarios"].items():
        rows = [r for r in outcome.get("rows", []) if r["median"] is not None]
        if not rows:
            continue
        metrics = []
        for r in rows:
            if (r["metric"], r["unit"]) not in metrics:
                metrics.append((r["metric"], r["unit"]))
        fig, axes = plt.subplots(
            1, len(metrics), figsize=(max(6, 4.2 * len(metrics)), 4.8), squeeze=False
        )
        for ax, (metric, unit) in zip(axes[0], metrics, strict=True):
            chosen = [r for r in rows if r["metric"] == metric and r["unit"] == unit]
            cases = list(dict.fromkeys(r["case"] for r in chosen))
            systems = list(dict.fromkeys(r["system"] for r in chosen))
            width = 0.8 / max(1, len(systems))
            for i, system in enumerate(systems):
                xs, ys = [], []
                for j, case in enumerate(cases):
                    match = [r for r in chosen if r["case"] == case and r["system"] == system]
                    if not match:
                        continue
                    x = j + (i - (len(systems) - 1) / 2) * width
                    xs.append(x)
                    ys.append(match[0]["median"])
                    ax.scatter(
                        [x] * len(match[0]["values"]),
                        match[0]["values"],
                        s=8,
                        color="black",
                        zorder=3,
                    )
                ax.bar(xs, ys, width * 0.95, label=system)
            ax.set_xticks(range(len(cases)))
            ax.set_xticklabels([textwrap.fill(c, 16) for c in cases], fontsize=7)
            ax.set_ylabel(unit)
            if unit == "ms":
                ax.set_yscale("log")
            ax.set_title(metric, fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(
            f"{rows[0]['scenario']} ({results['meta']['mode']}, medians of rounds; dots: rounds)",
            fontsize=11,
        )
        fig.tight_layout()
        path = os.path.join(directory, f"{key}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written
