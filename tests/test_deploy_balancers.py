"""deploy/haproxy and deploy/nginx: the files users copy are valid as shipped, and their timeouts,
retries and health checks agree with the sharedsock command line they are written for (the one
the cluster test bed runs its hosts with)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import debian_binary

ROOT = Path(__file__).resolve().parent.parent
HAPROXY_CFG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
NGINX_CONF = ROOT / "deploy" / "nginx" / "sharedsock.conf"
sys.path.insert(0, str(ROOT / "deploy"))
from cluster import hosts  # noqa: E402  (the test bed's hosts: their command line)


def option(text: str, name: str) -> float:
    """A --option's value in the sharedsock command line the file's header shows."""
    match = re.search(rf"^#.*{name} (\S+)", text, re.M)
    assert match, f"the header shows no {name}"
    return float(match.group(1))


def directives(text: str, name: str) -> list[str]:
    return [line.strip()[len(name):].strip().rstrip(";").strip() for line in text.splitlines()
            if line.strip().startswith(name + " ")]


@pytest.mark.parametrize("path", [HAPROXY_CFG, NGINX_CONF])
def test_the_header_shows_the_command_line_the_test_bed_runs(path):
    text = path.read_text()
    assert option(text, "--keepalive") == hosts.KEEPALIVE
    assert option(text, "--shutdown-delay") == hosts.SHUTDOWN_DELAY
    assert option(text, "--graceful-timeout") == hosts.GRACEFUL_TIMEOUT
    assert re.search(rf"--metrics-bind 0.0.0.0:{hosts.FLASK.metrics_port}\b", text)
    assert re.search(rf"--bind 0.0.0.0:{hosts.FLASK.port}\b", text)


def test_haproxy_accepts_its_config_as_shipped():
    haproxy = debian_binary("haproxy", "haproxy")
    result = subprocess.run([haproxy, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_nginx_accepts_its_file_in_an_http_block(tmp_path):
    nginx = debian_binary("nginx", "nginx-light")
    main = tmp_path / "nginx.conf"
    main.write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
                    f"http {{ include {NGINX_CONF}; }}\n")
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(main)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_checks_readyz_on_the_masters_port_and_retries_elsewhere():
    text = HAPROXY_CFG.read_text()
    assert directives(text, "http-check send") == ["meth GET uri /readyz"] * 2
    checks = directives(text, "default-server")
    ports = sorted(int(re.search(r"port (\d+)", c).group(1)) for c in checks)
    assert ports == [hosts.FLASK.metrics_port, hosts.DJANGO.metrics_port]
    for check in checks:
        inter = float(re.search(r"inter (\d+)ms", check).group(1)) / 1000
        fall = int(re.search(r"fall (\d+)", check).group(1))
        # Out of rotation before the workers stop taking requests.
        assert inter * fall < option(text, "--shutdown-delay")
    retry_on = directives(text, "retry-on")[0].split()
    assert {"conn-failure", "empty-response", "503"} <= set(retry_on)
    assert directives(text, "option redispatch") == ["1"]
    assert int(directives(text, "retries")[0]) >= 2
    # The server's 504 (at --timeout, 30 s by default) reaches the client before HAProxy gives up.
    assert float(directives(text, "timeout server")[0].rstrip("s")) > 30


def test_nginx_keeps_connections_alive_shorter_than_the_server_and_retries_elsewhere():
    text = NGINX_CONF.read_text()
    assert len(directives(text, "keepalive")) == 2  # one pool per upstream
    for timeout in directives(text, "keepalive_timeout"):
        assert float(timeout.rstrip("s")) < option(text, "--keepalive")
    locations = text.count("proxy_pass ")
    assert directives(text, "proxy_http_version") == ["1.1"] * locations
    assert directives(text, "proxy_set_header Connection") == ['""'] * locations
    for retry in directives(text, "proxy_next_upstream"):
        assert {"error", "timeout", "http_503"} <= set(retry.split())
        assert "non_idempotent" not in retry
    for read_timeout in directives(text, "proxy_read_timeout"):
        assert float(read_timeout.rstrip("s")) > 30
