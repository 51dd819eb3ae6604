"""Proxy headers change the environ only when the peer is a trusted proxy."""

from __future__ import annotations

import json

import pytest

from conftest import ResponseReader, at, listener_urls, module_server
from sharedsock.proxy import TrustedProxies, apply_proxy_headers

POLICIES = {
    "default": [],
    "cidr": ["--forwarded-allow-ips", "127.0.0.0/8"],
    "any": ["--forwarded-allow-ips", "*"],
    "untrusted": ["--forwarded-allow-ips", "10.0.0.0/8,192.0.2.1"],
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    started = {}

    def get(policy):
        if policy not in started:
            started[policy] = module_server(tmp_path_factory, ["--workers", "1", *POLICIES[policy],
                                                               "http_apps:app"])
        return started[policy]

    yield get
    for srv in started.values():
        srv.kill()
        assert "AssertionError" not in srv.log()


def environ_via(server, transport: str, *headers: str) -> dict:
    endpoint = at(server, listener_urls(server)[transport])
    lines = ["GET /environ HTTP/1.1", "Host: internal:8000", *headers, "", ""]
    with endpoint.connect() as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1"))
        status, _, body = ResponseReader(sock).next()
    assert status == 200
    return json.loads(body)


XFF = ("X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https", "X-Forwarded-Host: shop.example",
       "X-Forwarded-Port: 8443")


@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("policy", ["default", "cidr", "any"])
def test_trusted_peer_x_forwarded(servers, policy, transport):
    env = environ_via(servers(policy), transport, *XFF)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "shop.example", "8443")


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_untrusted_peer_headers_are_left_alone(servers, transport):
    env = environ_via(servers("untrusted"), transport, *XFF, "Forwarded: for=198.51.100.1;proto=https")
    assert env["REMOTE_ADDR"] == ("127.0.0.1" if transport == "tcp" else "")
    assert env["wsgi.url_scheme"] == "http"
    assert (env["HTTP_HOST"], env["SERVER_NAME"]) == ("internal:8000", "internal")
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"  # still visible, just not believed
    assert env["HTTP_FORWARDED"] == "for=198.51.100.1;proto=https"


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_rfc7239_forwarded(servers, transport):
    env = environ_via(servers("default"), transport,
                      'Forwarded: for="[2001:db8::1]:4711";proto=https;host="shop.example", for=127.0.0.1',
                      "X-Forwarded-For: 203.0.113.99")
    assert env["REMOTE_ADDR"] == "2001:db8::1"  # Forwarded wins over X-Forwarded-For
    assert env["wsgi.url_scheme"] == "https"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "shop.example", "443")


@pytest.mark.parametrize("policy, expected", [("default", "10.1.1.1"), ("any", "203.0.113.7")])
def test_chain_stops_at_the_first_untrusted_hop(servers, policy, expected):
    env = environ_via(servers(policy), "tcp", "X-Forwarded-For: 203.0.113.7, 10.1.1.1, 127.0.0.1")
    assert env["REMOTE_ADDR"] == expected


def test_nonsense_values_are_ignored(servers):
    env = environ_via(servers("default"), "tcp", "X-Forwarded-Proto: javascript",
                      "X-Forwarded-Host: evil.example/path", "X-Forwarded-Port: eighty",
                      "X-Forwarded-For: not-an-address")
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "internal:8000"
    assert env["SERVER_PORT"] != "eighty"
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_forwarded_unknown_keeps_the_peer(servers):
    env = environ_via(servers("default"), "tcp", "Forwarded: for=unknown;proto=https")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "https"


# -- the pieces ----------------------------------------------------------------------------------


@pytest.mark.parametrize("entries, address, trusted", [
    (["127.0.0.1"], "127.0.0.1", True),
    (["127.0.0.1"], "127.0.0.2", False),
    (["10.0.0.0/8"], "10.200.3.4", True),
    (["10.0.0.0/8"], "11.0.0.1", False),
    (["::1"], "::1", True),
    (["2001:db8::/32"], "2001:db8:1::5", True),
    (["127.0.0.1"], "::ffff:127.0.0.1", True),
    (["*"], "198.51.100.4", True),
    (["10.0.0.0/8"], "garbage", False),
])
def test_trusted_proxies(entries, address, trusted):
    assert TrustedProxies(entries).trusts(address) is trusted


@pytest.mark.parametrize("entries, unix", [(["127.0.0.1"], True), (["::1"], True), (["*"], True),
                                           (["10.0.0.0/8"], False)])
def test_unix_peers_trusted_like_loopback(entries, unix):
    assert TrustedProxies(entries).trusts_unix is unix


def test_quoted_forwarded_values_with_separators():
    environ = {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "SERVER_PORT": "80",
               "HTTP_FORWARDED": 'for="198.51.100.7";host="a.example:8080";proto="https"; by="x,y"'}
    apply_proxy_headers(environ, TrustedProxies(["127.0.0.1"]))
    assert environ["REMOTE_ADDR"] == "198.51.100.7"
    assert (environ["HTTP_HOST"], environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("a.example:8080", "a.example", "8080")
    assert environ["wsgi.url_scheme"] == "https"
