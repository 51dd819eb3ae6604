"""Draw results/latest.png from results/latest.json.

Runs with benchmarks/.venv/bin/python (matplotlib lives there, not in the
project's environment): ``chart.py RESULTS.json OUT.png``.
"""

from __future__ import annotations

import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {
    "sharedsock": "#d62728", "gunicorn-sync": "#7f7f7f", "gunicorn-gthread": "#bcbd22",
    "waitress": "#1f77b4", "granian": "#9467bd", "nginx": "#2ca02c",
}


def main(src: str, dst: str) -> None:
    data = json.load(open(src))
    meta, cells = data["meta"], data["summary"]["cells"]
    fairness = [e for e in data["summary"]["fairness"] if e.get("max_min_stats") or e.get("inf")]
    panels = list(cells) + (["fairness"] if fairness else [])
    cols = min(3, len(panels)) or 1
    rows = math.ceil(len(panels) / cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, scenario in zip(axes.flat, panels):
        if scenario == "fairness":
            draw_fairness(ax, fairness)
            continue
        servers = [s for s in meta["servers"] if s in cells[scenario] and cells[scenario][s]["rps"]]
        med = [cells[scenario][s]["rps"]["median"] for s in servers]
        low = [m - cells[scenario][s]["rps"]["min"] for m, s in zip(med, servers)]
        high = [cells[scenario][s]["rps"]["max"] - m for m, s in zip(med, servers)]
        bars = ax.bar(range(len(servers)), med, yerr=[low, high], capsize=3,
                      color=[COLORS.get(s, "#333333") for s in servers])
        for bar, value, up in zip(bars, med, high):
            ax.annotate(f"{value:,.0f}", (bar.get_x() + bar.get_width() / 2, value + up),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(servers)))
        ax.set_xticklabels(servers, rotation=30, ha="right", fontsize=8)
        ax.set_title(scenario, fontsize=10)
        ax.set_ylabel("req/s", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.15)
    fig.suptitle(f"sharedsock and peers, {meta['mode']} mode ({meta['workers']} worker(s)): median req/s, "
                 f"bars = min-max over {meta['rounds']} round(s), {meta['duration']} s each\n"
                 f"{meta['machine']['cpu']}, {meta['machine']['cores']} cores, {meta['started']} UTC",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(dst, dpi=90)


def draw_fairness(ax, entries) -> None:
    entries = sorted(entries, key=lambda e: (e["workers"], e["concurrency"], e["server"]))
    labels, values, colors = [], [], []
    for e in entries:
        stats = e.get("max_min_stats")
        value = stats["median"] if stats and not e.get("inf") else float("nan")
        labels.append(f"{e['server']}\nw={e['workers']} c={e['concurrency']}")
        values.append(value)
        colors.append(COLORS.get(e["server"], "#333333"))
    ax.bar(range(len(values)), values, color=colors)
    ax.axhline(1.25, color="black", linestyle="--", linewidth=0.8)
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    ax.set_title("fairness: busiest / idlest worker (lower is fairer; dashed 1.25)", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
