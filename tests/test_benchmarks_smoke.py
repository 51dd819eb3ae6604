"""The benchmark suite's one command runs end to end (tiny duration, sharedsock only).

Benchmarks are not part of the test suite; this only checks that
``python benchmarks/run.py`` still works. It never builds benchmarks/.venv
(the peers' environment): sharedsock runs from this interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "benchmarks" / "run.py"
VENV = REPO / "benchmarks" / ".venv"
EXIT_NO_WRK = 75  # run.py's code for "wrk is missing and apt-get could not install it"


def _run(cmd: list[str]) -> None:
    """Run the suite's command; skip, saying why, when wrk cannot be had on this machine."""
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    if proc.returncode == EXIT_NO_WRK:
        reason = "wrk is not installed and could not be installed: " + proc.stderr.strip()
        print(reason)
        pytest.skip(reason)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_benchmark_command_runs_end_to_end(tmp_path):
    venv_existed = VENV.exists()
    cmd = [sys.executable, str(RUN), "--duration", "1", "--rounds", "1", "--warmup", "0",
           "--scenarios", "hello-keepalive", "--servers", "sharedsock", "--threads", "1,2",
           "--output", str(tmp_path), "--no-chart"]
    _run(cmd)
    assert VENV.exists() == venv_existed, "the smoke run must not build the peers' venv"

    data = json.loads((tmp_path / "latest.json").read_text())
    one, two = data["runs"]  # each thread setting of the scenario, side by side
    assert [(r["scenario"], r["base"], r["threads"]) for r in (one, two)] == [
        ("hello-keepalive-t1", "hello-keepalive", 1), ("hello-keepalive-t2", "hello-keepalive", 2)]
    for run in (one, two):
        assert run["server"] == "sharedsock"
        assert "failure" not in run, run.get("failure")
        assert run["requests"] > 0 and run["rps"] > 0
        assert run["error_total"] == 0, run["errors"]
        assert run["rss_kib"] > 0 and run["processes"] >= 2  # master and one worker at least
        assert run["command"].startswith("taskset -c ")
        assert "--threads " + str(run["threads"]) in run["command"]
        assert run["accelerator"]
    targets = {t["id"]: t for t in data["targets"]}
    assert {"T1-t1", "T1-t2", "G-hello-keepalive-t1", "P1-hello-keepalive-t2", "P2", "S1"} <= set(targets)
    assert targets["P1-hello-keepalive-t2"]["status"] in ("pass", "FAIL")  # measured: both are sharedsock
    assert data["meta"]["machine"]["cores"] >= 1 and data["meta"]["versions"]["sharedsock"]

    report = (tmp_path / "latest.md").read_text()
    assert "## Targets" in report and "| hello-keepalive-t1 |" in report and "| hello-keepalive-t2 |" in report
    assert "## Machine" in report and "## Commands" in report


def test_benchmark_rounds_alternate_the_server_order(tmp_path):
    """A server's place in a round must not bias its ratio the same way every round."""
    cmd = [sys.executable, str(RUN), "--duration", "1", "--rounds", "2", "--warmup", "0",
           "--scenarios", "hello-keepalive", "--servers", "sharedsock,sharedsock-metrics",
           "--threads", "1", "--output", str(tmp_path), "--no-chart"]
    _run(cmd)
    data = json.loads((tmp_path / "latest.json").read_text())
    order = [(r["round"], r["server"]) for r in data["runs"]]
    assert order == [(1, "sharedsock"), (1, "sharedsock-metrics"),
                     (2, "sharedsock-metrics"), (2, "sharedsock")]
    assert "M1-t1" in {t["id"] for t in data["targets"]}


@pytest.mark.parametrize("args, message", [
    (["--fairness-workers", "0"], "--fairness-workers values must be at least 2"),
    (["--fairness-workers", "1,2"], "--fairness-workers values must be at least 2"),
    (["--fairness-workers", "two"], "--fairness-workers takes comma-separated integers"),
    (["--fairness-concurrency", "0"], "--fairness-concurrency values must be at least 1"),
    (["--workers", "0"], "--workers must be at least 1"),
    (["--threads", "0"], "--threads values must be at least 1"),
])
def test_benchmark_command_rejects_counts_that_cannot_run(args, message):
    """A count of 0 used to start servers with no workers and wait a minute for each."""
    proc = subprocess.run([sys.executable, str(RUN), *args, "--setup-only"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
