"""TLS under ``flask runshared --cert/--key`` and ``manage.py runshared --cert/--key``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_django_runshared import MANAGE, migrated_db, runshared, site_env  # noqa: F401 - a fixture
from test_flask_command import FLASK, clean_env
from test_tls import https_get, urls
from tls_certs import make_certs

from conftest import DEADLINE

FLASK_APP = '''
from flask import Flask, request

app = Flask(__name__)


@app.get("/")
def index():
    return {"scheme": request.scheme, "secure": request.is_secure}
'''


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def flask_dir(tmp_path) -> Path:
    (tmp_path / "tlsflask.py").write_text(FLASK_APP)
    return tmp_path


def flask_command(flask_dir: Path, *args: str) -> list[str]:
    return [FLASK, "--app", "tlsflask", "runshared", *args]


def test_flask_runshared_cert_and_key(start_server, certs, flask_dir, start_method):
    server = start_server(["--port", "0", "--workers", "1", "--start-method", start_method,
                           "--cert", str(certs.server), "--key", str(certs.server_key)],
                          command=flask_command(flask_dir), cwd=flask_dir, env=clean_env())
    (url,) = urls(server)
    assert url.startswith("https://127.0.0.1:")
    status, _, body = https_get(url, certs.client_context())
    assert status == 200 and json.loads(body) == {"scheme": "https", "secure": True}


@pytest.mark.parametrize(("args", "message"), [
    (["--cert", "adhoc"], "--cert adhoc is not supported"),
    (["--key", "k.pem"], "--key needs --cert"),
    (["--cert", "{dir}/server.pem", "--certfile", "{dir}/server.pem"], "give --cert or --certfile, not both"),
    (["--cert", "{dir}/nope.pem"], "--certfile {dir}/nope.pem: No such file or directory"),
])
def test_flask_runshared_refuses_bad_tls_input_in_one_line(certs, flask_dir, args, message):
    args = [a.format(dir=certs.dir) for a in args]
    result = subprocess.run(flask_command(flask_dir, "--port", "0", *args), cwd=flask_dir, env=clean_env(),
                            capture_output=True, text=True, timeout=DEADLINE, stdin=subprocess.DEVNULL)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert message.format(dir=certs.dir) in result.stderr.strip().splitlines()[-1], result.stderr


def test_flask_print_config_shows_the_certificate(certs, flask_dir):
    result = subprocess.run(flask_command(flask_dir, "--print-config", "--cert", str(certs.server),
                                          "--key", str(certs.server_key)),
                            cwd=flask_dir, env=clean_env(), capture_output=True, text=True, timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    assert f"= {certs.server}" in result.stdout and f"= {certs.server_key}" in result.stdout


def test_django_runshared_cert_and_key(start_server, certs, migrated_db):  # noqa: F811
    server = runshared(start_server, ["127.0.0.1:0", "--workers", "1", "--cert", str(certs.server),
                                      "--key", str(certs.server_key)], env=site_env(migrated_db), workers=1)
    (url,) = urls(server)
    assert url.startswith("https://")
    assert f"at {url}: 1 worker(s)" in server.log()  # the banner names the https address
    status, _, body = https_get(url, certs.client_context(), "/api/entries/")
    assert status == 200 and "count" in json.loads(body)


@pytest.mark.parametrize(("args", "message"), [
    (["--cert", "adhoc"], "--cert adhoc is not supported"),
    (["--key", "k.pem"], "--key needs --cert"),
    (["--cert", "{dir}/server.pem", "--cert-reqs", "required"], "--cert-reqs required needs --ca-certs"),
])
def test_django_runshared_refuses_bad_tls_input_in_one_line(certs, tmp_path, args, message):
    args = [a.format(dir=certs.dir) for a in args]
    result = subprocess.run([sys.executable, str(MANAGE), "runshared", "127.0.0.1:0", *args],
                            env=site_env(tmp_path / "db.sqlite3"), cwd=str(MANAGE.parent),
                            capture_output=True, text=True, timeout=DEADLINE * 2)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr

