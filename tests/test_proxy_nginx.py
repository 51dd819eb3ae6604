"""Real nginx in front of sharedsock, configured as users configure it, and clients that forge
both families of proxy headers.

The client connects from 127.0.0.2, an address no server here trusts; 127.0.0.3 plays an outer
proxy that the servers do trust. nginx gets its listening socket already bound (the ``NGINX``
variable it uses for binary upgrades), so there is no race for a free port.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import (
    DEADLINE,
    debian_binary,
    listener_urls,
    module_server,
    parse_response,
    read_until_close,
    stop_process_group,
    wait_for,
)

CLIENT = "127.0.0.2"
OUTER_PROXY = "127.0.0.3"
ALLOW = ["--forwarded-allow-ips", f"127.0.0.1,::1,{OUTER_PROXY}"]
POLICIES = {
    "default": [],
    "x-all": ["--forwarded-headers", "x-forwarded-for,x-forwarded-proto,x-forwarded-host,x-forwarded-port"],
    "forwarded": ["--forwarded-headers", "forwarded"],
}

# What users put in their nginx location blocks (README, "Behind a proxy").
USUAL = """
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
"""
LOCATIONS = {
    "usual": USUAL,
    "x-all": USUAL + """    proxy_set_header X-Forwarded-Host $host;
    proxy_set_header X-Forwarded-Port $server_port;
""",
    "rfc7239": """
    proxy_set_header Host $host;
    proxy_set_header Forwarded $forwarded_chain;
""",
    "rfc7239-edge": """
    proxy_set_header Host $host;
    proxy_set_header Forwarded "for=\\"$remote_addr\\";proto=$scheme;host=\\"$host\\"";
""",
}

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user {user};
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_forwarded $forwarded_chain {{
        ""      "for=\\"$remote_addr\\";proto=$scheme;host=\\"$host\\"";
        default "$http_forwarded, for=\\"$remote_addr\\";proto=$scheme;host=\\"$host\\"";
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /ready {{ return 204; }}
{locations}
    }}
}}
"""

FORGED_X = ("X-Forwarded-For: 1.2.3.4", "X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example",
            "X-Forwarded-Port: 8443")
FORGED_RFC7239 = "Forwarded: for=1.2.3.4;proto=https;host=evil.example"


def nginx_binary() -> str:
    return debian_binary("nginx", "nginx-light")


class Nginx:
    """nginx in the foreground, everything it writes under ``directory``."""

    def __init__(self, binary: str, directory: Path, tcp_upstream: str, unix_upstream: str) -> None:
        self.directory = directory
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        upstreams = {"tcp": f"http://{tcp_upstream}/", "unix": f"http://unix:{unix_upstream}:/"}
        blocks = [f"location /{name}/{transport}/ {{\n    proxy_pass {url};{headers}}}"
                  for name, headers in LOCATIONS.items() for transport, url in upstreams.items()]
        conf = directory / "nginx.conf"
        conf.write_text(NGINX_CONF.format(d=directory, port=self.port, locations="\n".join(blocks),
                                          user=pwd.getpwuid(os.geteuid()).pw_name))
        with listener, open(directory / "stderr.log", "wb") as stderr:
            self.proc = subprocess.Popen(
                [binary, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
                stdout=subprocess.DEVNULL, stderr=stderr,
                env=dict(os.environ, NGINX=f"{listener.fileno()};"), pass_fds=(listener.fileno(),),
                start_new_session=True)
        try:
            wait_for(self._ready, message="nginx to answer /ready")
        except BaseException:
            print(self.log())
            self.stop()
            raise

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.directory / "error.log",
                                                                self.directory / "stderr.log") if p.exists())

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.log()}")
        try:
            status, _, _ = request(self.port, "/ready", timeout=2)
        except OSError:
            return False
        return status == 204

    def stop(self) -> None:
        stop_process_group(self.proc)
        wait_for(lambda: not _group_alive(self.proc.pid), message="nginx's processes to be gone")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def request(port: int, path: str, *headers: str, source: str = CLIENT,
            timeout: float = DEADLINE) -> tuple[int, dict, bytes]:
    lines = [f"GET {path} HTTP/1.1", "Host: shop.example", "Connection: close", *headers, "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout, source_address=(source, 0)) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        return parse_response(read_until_close(sock))


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    """``stacks(policy, start_method)`` -> a sharedsock server with its own nginx in front."""
    binary = nginx_binary()
    started: dict[tuple[str, str], tuple] = {}

    def get(policy: str, start_method: str):
        key = (policy, start_method)
        if key not in started:
            server = module_server(tmp_path_factory, ["--workers", "1", "--start-method", start_method,
                                                      *ALLOW, *POLICIES[policy], "http_apps:app"])
            urls = listener_urls(server)
            try:
                nginx = Nginx(binary, tmp_path_factory.mktemp("nginx"), urls["tcp"].split("://", 1)[1],
                              urls["unix"][len("unix:"):])
            except BaseException:
                server.kill()
                raise
            started[key] = (server, nginx)
        return started[key]

    yield get
    for server, nginx in started.values():
        nginx.stop()
        server.kill()
        assert "AssertionError" not in server.log()


def seen_by_app(stack, location: str, upstream: str, *headers: str, source: str = CLIENT) -> dict:
    server, nginx = stack
    status, _, body = request(nginx.port, f"/{location}/{upstream}/environ", *headers, source=source)
    assert status == 200, (body, nginx.log(), server.log())
    return json.loads(body)


def origin(env: dict) -> tuple:
    return (env.get("REMOTE_ADDR"), env["wsgi.url_scheme"], env["HTTP_HOST"], env["SERVER_NAME"],
            env["SERVER_PORT"])


@pytest.fixture(params=["tcp", "unix"])
def upstream(request) -> str:
    """How nginx reaches sharedsock."""
    return request.param


@pytest.mark.parametrize("forged", ["both", "x-forwarded"])
def test_usual_nginx_config_and_default_options(stacks, start_method, upstream, forged):
    headers = FORGED_X + ((FORGED_RFC7239,) if forged == "both" else ())
    env = seen_by_app(stacks("default", start_method), "usual", upstream, *headers)
    assert origin(env) == (CLIENT, "http", "shop.example", "shop.example", "80")
    assert env["HTTP_X_FORWARDED_FOR"] == f"1.2.3.4, {CLIENT}"
    assert env["HTTP_X_FORWARDED_HOST"] == "evil.example"  # nginx passed it on; visible, not believed
    if forged == "both":
        assert env["HTTP_FORWARDED"] == FORGED_RFC7239.split(": ", 1)[1]


def test_nginx_setting_every_x_forwarded_header(stacks, start_method, upstream):
    _, nginx = stack = stacks("x-all", start_method)
    env = seen_by_app(stack, "x-all", upstream, *FORGED_X, FORGED_RFC7239)
    assert origin(env) == (CLIENT, "http", "shop.example", "shop.example", str(nginx.port))


@pytest.mark.parametrize("location", ["rfc7239", "rfc7239-edge"])
def test_nginx_writing_forwarded(stacks, start_method, upstream, location):
    env = seen_by_app(stacks("forwarded", start_method), location, upstream, *FORGED_X, FORGED_RFC7239)
    assert origin(env) == (CLIENT, "http", "shop.example", "shop.example", "80")
    # nginx passed the client's X-Forwarded-* on: visible, never applied
    assert (env["HTTP_X_FORWARDED_FOR"], env["HTTP_X_FORWARDED_PROTO"]) == ("1.2.3.4", "https")


def test_forwarded_that_swallows_the_proxys_element_is_ignored(stacks, start_method, upstream):
    """An unclosed quote turns the element nginx appends into the tail of the client's host value."""
    env = seen_by_app(stacks("forwarded", start_method), "rfc7239", upstream,
                      'Forwarded: for=1.2.3.4;proto=https;host="evil.example')
    peer = "127.0.0.1" if upstream == "tcp" else ""
    assert origin(env)[:4] == (peer, "http", "shop.example", "shop.example")


@pytest.mark.parametrize("policy, location, headers", [
    ("default", "usual", ("X-Forwarded-For: 203.0.113.5", "X-Forwarded-Proto: https")),
    ("forwarded", "rfc7239", ("Forwarded: for=203.0.113.5;proto=https;host=shop.example",)),
])
def test_trusted_outer_proxy_in_front_of_nginx(stacks, start_method, upstream, policy, location, headers):
    """Through a trusted hop the walk goes one further: the outer proxy's word about its client."""
    env = seen_by_app(stacks(policy, start_method), location, upstream, *headers, source=OUTER_PROXY)
    assert env["REMOTE_ADDR"] == "203.0.113.5"
    # nginx overwrites X-Forwarded-Proto with its own hop's scheme (README: chains of proxies);
    # Forwarded keeps the outer proxy's element, which says https.
    assert env["wsgi.url_scheme"] == ("http" if policy == "default" else "https")
    assert env["HTTP_HOST"] == "shop.example"
