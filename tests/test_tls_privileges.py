"""TLS with --user: forked workers use the master's context, spawned workers read the files."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import test_privileges
from test_tls import https_get, urls
from tls_certs import make_certs

python = test_privileges.python  # fixtures: an interpreter nobody can run, a directory nobody can enter
shared_dir = test_privileges.shared_dir
serve = test_privileges.serve

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


@pytest.fixture
def root_only_key(tmp_path, shared_dir):
    certs = make_certs(tmp_path / "certs")
    cert, key = shared_dir / "cert.pem", shared_dir / "key.pem"
    shutil.copy(certs.server, cert)
    shutil.copy(certs.server_key, key)
    key.chmod(0o600)  # root's alone, as keys under /etc/ssl/private are
    return certs, cert, key


def test_forked_workers_serve_a_key_only_root_can_read(start_server, python, shared_dir,
                                                       root_only_key):
    certs, cert, key = root_only_key
    server = serve(start_server, python, ["--certfile", str(cert), "--keyfile", str(key), "--user", "nobody",
                                          "--workers", "1", "tls_app:app"], shared_dir)
    (url,) = urls(server)
    status, _, body = https_get(url, certs.client_context())
    assert status == 200 and json.loads(body)["wsgi.url_scheme"] == "https"


def test_spawned_workers_that_cannot_read_the_key_stop_the_start_in_one_line(start_server, python,
                                                                            shared_dir, root_only_key):
    _, cert, key = root_only_key
    server = serve(start_server, python, ["--certfile", str(cert), "--keyfile", str(key), "--user", "nobody",
                                          "--workers", "1", "--start-method", "spawn", "tls_app:app"],
                   shared_dir, wait=False)
    assert server.wait_exit() == 2
    log = server.log()
    assert f"the worker could not load the TLS files: --keyfile {key}: Permission denied" in log, log
    assert "Traceback" not in log
