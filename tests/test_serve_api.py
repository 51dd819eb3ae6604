"""``sharedsock.serve()``: the embedding API, run in a child process as a user script would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from conftest import APPS, http_get, pid_of, wait_for

SCRIPT = textwrap.dedent("""
    import signal, sys
    import sharedsock
    from testapp import app

    def mine(signum, frame):
        pass

    signal.signal(signal.SIGHUP, mine)
    sharedsock.serve({target}, bind=["127.0.0.1:0"], workers=2, start_method={method!r})
    assert signal.getsignal(signal.SIGHUP) is mine, "SIGHUP handler not restored"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "SIGTERM handler not restored"
    print("serve returned, handlers restored", flush=True)
""")


def _run_script(tmp_path, code: str):
    log = tmp_path / "serve.log"
    out = open(log, "wb")
    env = dict(os.environ, PYTHONPATH=str(APPS), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp_path)
    return proc, log


def _check_serve(tmp_path, target: str, method: str) -> None:
    proc, log = _run_script(tmp_path, SCRIPT.format(target=target, method=method))
    try:
        wait_for(lambda: log.read_text().count("Booted worker") >= 2, message="serve() workers")
        from conftest import Server

        server = Server.__new__(Server)
        server.url = log.read_text().split("Listening at: ")[1].split()[0]
        pids = {pid_of(http_get(server, "/")[2]) for _ in range(60)}
        assert pids and os.getpid() not in pids and proc.pid not in pids
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
        assert "serve returned, handlers restored" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_callable_fork(tmp_path):
    _check_serve(tmp_path, "app", "fork")


def test_serve_import_string_spawn(tmp_path):
    _check_serve(tmp_path, "'testapp:app'", "spawn")


def test_serve_raises_config_error_instead_of_exiting():
    code = textwrap.dedent("""
        import sharedsock
        from sharedsock.errors import ConfigError
        for kwargs in ({"workers": 0}, {"wokers": 2}, {"bind": ["999.1.1.1:x"]}):
            try:
                sharedsock.serve("testapp:app", **kwargs)
            except ConfigError as exc:
                print("ConfigError:", exc)
            else:
                raise SystemExit("no error for %r" % kwargs)
        def app(e, s): pass
        try:
            sharedsock.serve(app, start_method="spawn", bind=["127.0.0.1:0"])
        except ConfigError as exc:
            print("ConfigError:", exc)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(APPS)))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert "--workers" in lines[0] or "workers" in lines[0]
    assert "unknown option 'wokers'" in lines[1]
    assert "999.1.1.1:x" in lines[2]
    assert "import string" in lines[3]


def test_serve_off_main_thread_refuses():
    code = textwrap.dedent("""
        import threading, sharedsock
        from sharedsock.errors import ConfigError
        result = []
        def run():
            try:
                sharedsock.serve("testapp:app", bind=["127.0.0.1:0"])
            except ConfigError as exc:
                result.append(str(exc))
        t = threading.Thread(target=run); t.start(); t.join()
        print(result[0])
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PYTHONPATH=str(APPS)))
    assert result.returncode == 0, result.stderr
    assert "main thread" in result.stdout


def test_import_sharedsock_is_cheap():
    code = ("import sys, sharedsock; heavy = [m for m in ('httptools', 'sharedsock.master', "
            "'sharedsock.connection', 'subprocess', 'selectors') if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"
