"""The table a run prints (and, with ``--results``, writes as Markdown)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

from .bed import Bed
from .load import p99


def table(results) -> list[str]:
    rows = ["| scenario | requests | non-2xx | connection errors | p99 latency | result |",
            "|---|---:|---:|---:|---:|---|"]
    for r in results:
        if not r.available:
            rows.append(f"| {r.name} | - | - | - | - | not available |")
            continue
        latency = p99([o.latency for o in r.outcomes if o.status])
        rows.append(f"| {r.name} | {r.requests} | {len(r.non_2xx)} | {len(r.errors)} | "
                    f"{latency * 1000:.0f} ms | {'ok' if r.passed else 'FAILED'} |")
    return rows


def shares(results) -> list[str]:
    deltas = next((r.shares for r in results if r.shares), None)
    if not deltas:
        return []
    total = sum(deltas.values()) or 1
    per_host: dict[str, float] = {}
    for (host, _app, _worker, _pid), count in deltas.items():
        per_host[host] = per_host.get(host, 0) + count
    rows = ["| host | app | worker (pid) | requests | share |", "|---|---|---|---:|---:|"]
    for host in sorted(per_host):
        rows.append(f"| **{host}** | all | | {per_host[host]:.0f} | {per_host[host] / total:.1%} |")
        for (h, app, worker, pid), count in sorted(deltas.items()):
            if h == host:
                rows.append(f"| {host} | {app} | {worker} ({pid}) | {count:.0f} | {count / total:.1%} |")
    return rows


def print_report(results, bed: Bed, seconds: float, results_file: Path | None) -> None:
    lines = [f"Cluster test bed: 3 hosts x (Flask + Django, 2 workers each), HAProxy and nginx, "
             f"{len(bed.targets())} load clients; {time.strftime('%Y-%m-%d')}, Python "
             f"{platform.python_version()}, {seconds:.0f} s", "", *table(results), ""]
    for r in results:
        for note in r.notes:
            lines.append(f"- {r.name}: {note}")
    share_rows = shares(results)
    if share_rows:
        lines += ["", "Share of requests per host and worker during the steady load, from each "
                      "host's `/metrics` (`sharedsock_requests_total`, labels `worker` and `pid`):",
                  "", *share_rows]
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if results_file is not None:
        results_file.write_text(f"# Latest cluster run\n\n`python deploy/cluster.py test`, on a 2-core "
                                f"machine.\n\n{text}")
