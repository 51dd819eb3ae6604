"""Config-file hooks: each called in the process its documentation names, with its arguments,
under fork and spawn; and what happens when one raises."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

from conftest import http_get, wait_for
from sharedsock.appspec import AppSpec
from sharedsock.config import build_config
from sharedsock.hooks import Hooks, ServerView, WorkerView, request_hooks, with_hooks

RECORDING_HOOKS = '''
import json
import os

bind = "127.0.0.1:0"
workers = 2

def _note(name, **data):
    with open(os.environ["HOOK_LOG"], "a") as f:
        f.write(json.dumps({"hook": name, "pid": os.getpid(), **data}) + "\\n")

def on_starting(server):
    _note("on_starting", server_pid=server.pid, workers=len(server.workers))

def when_ready(server):
    _note("when_ready", server_pid=server.pid, generation=server.generation,
          ready=[w.pid for w in server.workers if w.ready], num=server.num_workers)

def pre_fork(server, worker):
    _note("pre_fork", server_pid=server.pid, worker_pid=worker.pid, index=worker.index)

def post_fork(server, worker):
    _note("post_fork", server_pid=server.pid, worker_pid=worker.pid, index=worker.index,
          generation=worker.generation, app=worker.app is not None, workers=worker.config.workers)

def post_worker_init(worker):
    worker.marker = f"set by post_worker_init in {os.getpid()}"
    _note("post_worker_init", worker_pid=worker.pid, app=worker.app is not None)

def pre_request(worker, environ):
    environ["ops.pre_request"] = worker.marker
    _note("pre_request", path=environ["PATH_INFO"])

def post_request(worker, environ, status):
    _note("post_request", path=environ["PATH_INFO"], status=status)

def worker_exit(server, worker):
    _note("worker_exit", worker_pid=worker.pid, exit_code=worker.exit_code)

def on_reload(server):
    _note("on_reload", generation=server.generation)

def on_exit(server):
    _note("on_exit")
'''


def notes(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def of(entries: list[dict], hook: str) -> list[dict]:
    return [e for e in entries if e["hook"] == hook]


def test_every_hook_runs_in_its_process(start_server, tmp_path, start_method):
    (tmp_path / "sharedsock.conf.py").write_text(RECORDING_HOOKS)
    log = tmp_path / "hooks.jsonl"
    server = start_server(["--start-method", start_method, "ops_app:app"], workers=2,
                          env={"HOOK_LOG": str(log)})
    master = server.proc.pid

    status, _, body = http_get(server, "/")
    assert status == 200
    served_by = json.loads(body)
    assert served_by["pre_request"] == f"set by post_worker_init in {served_by['pid']}"
    assert http_get(server, "/error")[0] == 500

    server.send(signal.SIGHUP)
    server.wait_log(r"Booted worker \d+ \(generation 2\)", count=2)
    wait_for(lambda: len(of(notes(log), "worker_exit")) >= 2, message="the old workers' worker_exit")
    assert server.stop() == 0

    entries = notes(log)
    first, last = entries[0], entries[-1]
    assert (first["hook"], first["pid"], first["server_pid"], first["workers"]) == ("on_starting", master,
                                                                                     master, 0)
    assert (last["hook"], last["pid"]) == ("on_exit", master)

    forked = of(entries, "post_fork")
    worker_pids = {e["worker_pid"] for e in forked}
    assert len(forked) == 4 and len(worker_pids) == 4 and master not in worker_pids
    assert all(e["pid"] == e["worker_pid"] and e["server_pid"] == master and not e["app"]
               and e["workers"] == 2 for e in forked)
    assert sorted((e["generation"], e["index"]) for e in forked) == [(1, 0), (1, 1), (2, 0), (2, 1)]

    inits = of(entries, "post_worker_init")
    assert {e["pid"] for e in inits} == worker_pids and all(e["app"] for e in inits)

    (ready,) = of(entries, "when_ready")
    assert (ready["pid"], ready["generation"], ready["num"], len(ready["ready"])) == (master, 1, 2, 2)
    assert set(ready["ready"]) <= worker_pids

    pre_forks = of(entries, "pre_fork")
    if start_method == "fork":
        assert len(pre_forks) == 4
        assert all(e["pid"] == master and e["worker_pid"] == 0 for e in pre_forks)
    else:
        assert pre_forks == []

    requests = of(entries, "pre_request") + of(entries, "post_request")
    assert {e["pid"] for e in requests} <= worker_pids
    assert [(e["path"], e["status"]) for e in of(entries, "post_request")] == [
        ("/", "200 OK"), ("/error", "500 Internal Server Error")]

    (reload_,) = of(entries, "on_reload")
    assert (reload_["pid"], reload_["generation"]) == (master, 2)

    exits = of(entries, "worker_exit")
    assert all(e["pid"] == master for e in exits)
    assert {e["worker_pid"] for e in exits} == worker_pids
    assert [e["exit_code"] for e in exits] == [0] * len(exits)  # reload and stop are graceful, spawned too


def _hook_file(tmp_path: Path, body: str) -> None:
    (tmp_path / "sharedsock.conf.py").write_text('bind = "127.0.0.1:0"\n' + textwrap.dedent(body))


def test_post_fork_that_raises_halts_the_first_boot(start_server, tmp_path, start_method):
    _hook_file(tmp_path, """
        def post_fork(server, worker):
            raise RuntimeError("no database today")
    """)
    server = start_server(["--start-method", start_method, "testapp:app"], wait=False)
    assert server.wait_exit() == 2
    log = server.log()
    assert "Traceback" in log and 'raise RuntimeError("no database today")' in log
    assert "app failed to load: post_fork hook in" in log
    assert "raised RuntimeError: no database today" in log
    assert "Listening at" not in log


def test_on_starting_that_raises_stops_the_start(start_server, tmp_path):
    _hook_file(tmp_path, """
        def on_starting(server):
            raise ValueError("not today")
    """)
    server = start_server(["testapp:app"], wait=False)
    assert server.wait_exit() == 2
    log = server.log()
    assert "Traceback" in log
    assert "sharedsock: error: on_starting hook in" in log and "raised ValueError: not today" in log
    assert "Listening at" not in log and "Booted worker" not in log


def test_when_ready_that_raises_stops_the_start(start_server, tmp_path):
    _hook_file(tmp_path, """
        def when_ready(server):
            raise ValueError("cannot register with the load balancer")
    """)
    server = start_server(["testapp:app"], wait=False)
    assert server.wait_exit() == 2
    assert "when_ready hook in" in server.log() and "Traceback" in server.log()


def test_request_hooks_that_raise(start_server, tmp_path, start_method):
    _hook_file(tmp_path, """
        def pre_request(worker, environ):
            if environ["PATH_INFO"] == "/refused":
                raise PermissionError("pre_request says no")

        def post_request(worker, environ, status):
            raise KeyError("post_request broke")
    """)
    server = start_server(["--start-method", start_method, "testapp:app"])
    assert http_get(server, "/refused")[0] == 500
    server.wait_log("PermissionError: pre_request says no")
    status, _, body = http_get(server, "/fine")
    assert status == 200 and b"path=/fine" in body
    server.wait_log(r"post_request hook in .* raised KeyError: 'post_request broke'")
    assert http_get(server, "/again")[0] == 200  # the worker carries on


def test_worker_hook_failing_on_reload_keeps_the_old_workers(start_server, tmp_path, start_method):
    _hook_file(tmp_path, """
        def post_worker_init(worker):
            if worker.generation > 1:
                raise RuntimeError("generation %d refused" % worker.generation)
    """)
    server = start_server(["--start-method", start_method, "--workers", "1", "testapp:app"])
    pid = int(http_get(server)[2].split(b"pid=")[1].split()[0])
    server.send(signal.SIGHUP)
    server.wait_log(r"reload failed: post_worker_init hook in .* raised RuntimeError: generation 2 refused")
    assert f"pid={pid}".encode() in http_get(server)[2]


def test_undefined_hooks_leave_the_worker_as_it_was():
    """No hook in the worker: the boot is the plain AppSpec and no request hook is installed."""
    config = build_config()
    spec = AppSpec.from_target("testapp:app")
    server = ServerView.snapshot(config, 1, 1, 1)
    worker = WorkerView(2, 0, 1, config)
    master_only = Hooks({"on_starting": lambda server: None, "worker_exit": lambda s, w: None})
    assert with_hooks(spec, master_only, server, worker) is spec
    assert request_hooks(spec) == (None, None)
    boot = with_hooks(spec, Hooks({"post_request": lambda w, e, s: None}), server, worker)
    pre, post = request_hooks(boot)
    assert pre is None and callable(post)


def test_readme_example_reopens_the_database_in_post_fork(start_server, tmp_path):
    """--preload opens the connection in the master; post_fork gives each worker its own."""
    _hook_file(tmp_path, """
        preload = True
        workers = 2

        def post_fork(server, worker):
            from db_app import db
            db.connection.close()  # the master's: never use it from two processes
            db.connect()
    """)
    env = {"DB_APP_PATH": str(tmp_path / "app.db")}
    server = start_server(["db_app:app"], workers=2, env=env)
    seen = {}
    wait_for(lambda: seen.update({d["pid"]: d for d in [json.loads(http_get(server)[2])]}) or len(seen) == 2,
             message="both workers answering")
    for pid, data in seen.items():
        assert data["opened_in"] == pid != server.proc.pid
