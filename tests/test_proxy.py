"""Proxy headers change the environ only when the peer is a trusted proxy, only for the header
family chosen with --forwarded-headers, and only with values a trusted proxy wrote."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import APPS, SHAREDSOCK, ResponseReader, at, listener_urls, module_server
from sharedsock.config import build_config
from sharedsock.errors import ConfigError
from sharedsock.proxy import TrustedProxies, apply_proxy_headers, parse_forwarded

X_ALL = "x-forwarded-for,x-forwarded-proto,x-forwarded-host,x-forwarded-port"
X_FAMILY = tuple(X_ALL.split(","))
POLICIES = {
    "default": [],
    "x-all": ["--forwarded-headers", X_ALL],
    "cidr-x-all": ["--forwarded-allow-ips", "127.0.0.0/8", "--forwarded-headers", X_ALL],
    "any-x-all": ["--forwarded-allow-ips", "*", "--forwarded-headers", X_ALL],
    "any": ["--forwarded-allow-ips", "*"],
    "untrusted": ["--forwarded-allow-ips", "10.0.0.0/8,192.0.2.1", "--forwarded-headers", X_ALL],
    "rfc7239": ["--forwarded-headers", "forwarded"],
    "none": ["--forwarded-headers", "none"],
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
FORGED_RFC7239 = "Forwarded: for=198.51.100.1;proto=http;host=evil.example"


@pytest.mark.parametrize("transport", ["tcp", "unix"])
@pytest.mark.parametrize("policy", ["x-all", "cidr-x-all", "any-x-all"])
def test_trusted_peer_x_forwarded(servers, policy, transport):
    env = environ_via(servers(policy), transport, *XFF)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "shop.example", "8443")


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_default_reads_only_for_and_proto(servers, transport):
    """nginx passes X-Forwarded-Host and Forwarded through unless told otherwise: by default
    neither may change the host or the client."""
    env = environ_via(servers("default"), transport, *XFF, FORGED_RFC7239)
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("internal:8000", "internal", "8000")
    assert env["HTTP_X_FORWARDED_HOST"] == "shop.example"  # visible, not believed
    assert env["HTTP_FORWARDED"] == FORGED_RFC7239.split(": ", 1)[1]


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_untrusted_peer_headers_are_left_alone(servers, transport):
    env = environ_via(servers("untrusted"), transport, *XFF, "Forwarded: for=198.51.100.1;proto=https")
    assert env["REMOTE_ADDR"] == ("127.0.0.1" if transport == "tcp" else "")
    assert env["wsgi.url_scheme"] == "http"
    assert (env["HTTP_HOST"], env["SERVER_NAME"]) == ("internal:8000", "internal")
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"  # still visible, just not believed
    assert env["HTTP_FORWARDED"] == "for=198.51.100.1;proto=https"


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_rfc7239_forwarded_and_x_forwarded_ignored(servers, transport):
    env = environ_via(servers("rfc7239"), transport,
                      'Forwarded: for="[2001:db8::1]:4711";proto=https;host="shop.example", for=127.0.0.1',
                      "X-Forwarded-For: 203.0.113.99", "X-Forwarded-Proto: http",
                      "X-Forwarded-Host: evil.example")
    assert env["REMOTE_ADDR"] == "2001:db8::1"
    assert env["wsgi.url_scheme"] == "https"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("shop.example", "shop.example", "443")


def test_rfc7239_values_come_from_the_trusted_proxy_element(servers):
    """The client's own element (left) says https and evil.example; the trusted proxy's
    element (right) is the one to read."""
    env = environ_via(servers("rfc7239"), "tcp",
                      "Forwarded: for=1.2.3.4;proto=https;host=evil.example, "
                      "for=198.51.100.9;proto=http;host=shop.example")
    assert env["REMOTE_ADDR"] == "198.51.100.9"
    assert env["wsgi.url_scheme"] == "http"
    assert (env["HTTP_HOST"], env["SERVER_PORT"]) == ("shop.example", "80")


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_none_reads_nothing(servers, transport):
    env = environ_via(servers("none"), transport, *XFF, FORGED_RFC7239)
    assert env["REMOTE_ADDR"] == ("127.0.0.1" if transport == "tcp" else "")
    assert env["wsgi.url_scheme"] == "http"
    assert (env["HTTP_HOST"], env["SERVER_NAME"]) == ("internal:8000", "internal")
    assert "REMOTE_PORT" in env or transport == "unix"


@pytest.mark.parametrize("policy, expected", [("default", "10.1.1.1"), ("any", "203.0.113.7")])
def test_chain_stops_at_the_first_untrusted_hop(servers, policy, expected):
    env = environ_via(servers(policy), "tcp", "X-Forwarded-For: 203.0.113.7, 10.1.1.1, 127.0.0.1")
    assert env["REMOTE_ADDR"] == expected


def test_nonsense_values_are_ignored(servers):
    env = environ_via(servers("x-all"), "tcp", "X-Forwarded-Proto: javascript",
                      "X-Forwarded-Host: evil.example/path", "X-Forwarded-Port: eighty",
                      "X-Forwarded-For: not-an-address")
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "internal:8000"
    assert env["SERVER_PORT"] != "eighty"
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_forwarded_unknown_keeps_the_peer(servers):
    env = environ_via(servers("rfc7239"), "tcp", "Forwarded: for=unknown;proto=https")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "https"


# -- the option ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    (None, ("x-forwarded-for", "x-forwarded-proto")),
    ("none", ()),
    ("forwarded", ("forwarded",)),
    ("X-Forwarded-For, x-forwarded-host", ("x-forwarded-for", "x-forwarded-host")),
    (["x-forwarded-port"], ("x-forwarded-port",)),
    ([], ()),  # what a spawned worker receives for none
])
def test_forwarded_headers_option(raw, expected):
    layer = {} if raw is None else {"forwarded_headers": raw}
    assert build_config(("test", layer)).forwarded_headers == expected


@pytest.mark.parametrize("raw, message", [
    ("forwarded,x-forwarded-for", "forwarded cannot be combined with x-forwarded-*"),
    ("x-real-ip", "'x-real-ip' is not one of"),
    ("none,forwarded", "'none' is not one of"),
])
def test_forwarded_headers_option_refuses(raw, message):
    with pytest.raises(ConfigError, match=message):
        build_config(("test", {"forwarded_headers": raw}))


def test_mixing_families_on_the_command_line_is_exit_2(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(APPS))
    result = subprocess.run([SHAREDSOCK, "--bind", "127.0.0.1:0", "--forwarded-headers",
                             "x-forwarded-for,forwarded", "testapp:app"],
                            check=False, capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=60)
    assert result.returncode == 2
    assert "--forwarded-headers: forwarded cannot be combined" in result.stderr


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


def applied(headers: dict, allow=("127.0.0.1",), family=X_FAMILY) -> dict:
    """The environ of a request from 127.0.0.1 to internal:8000 after the proxy headers."""
    environ = {"REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000", "wsgi.url_scheme": "http",
               "HTTP_HOST": "internal:8000", "SERVER_NAME": "internal", "SERVER_PORT": "8000"}
    environ.update({"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    apply_proxy_headers(environ, TrustedProxies(allow, family))
    return environ


UNCHANGED = {"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http", "HTTP_HOST": "internal:8000",
             "SERVER_NAME": "internal", "SERVER_PORT": "8000"}


def seen(environ: dict) -> dict:
    return {k: environ[k] for k in UNCHANGED}


@pytest.mark.parametrize("headers, expected", [
    # appending proxies: the rightmost value is the nearest proxy's
    ({"X-Forwarded-Proto": "https, http"}, {"wsgi.url_scheme": "http", "SERVER_PORT": "8000"}),
    ({"X-Forwarded-Proto": "http, HTTPS"}, {"wsgi.url_scheme": "https", "SERVER_PORT": "8000"}),
    ({"X-Forwarded-Host": "evil.example, shop.example"},
     {"HTTP_HOST": "shop.example", "SERVER_NAME": "shop.example", "SERVER_PORT": "80"}),
    ({"X-Forwarded-Port": "1, 8443"}, {"SERVER_PORT": "8443"}),
    # an invalid rightmost value is ignored; the client's value left of it is no fallback
    ({"X-Forwarded-Proto": "https, ftp"}, {}),
    ({"X-Forwarded-Host": "shop.example, user@evil.example"}, {}),
    ({"X-Forwarded-Port": "443, 99999"}, {}),
    # the port follows the forwarded origin
    ({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example"},
     {"wsgi.url_scheme": "https", "HTTP_HOST": "shop.example", "SERVER_NAME": "shop.example",
      "SERVER_PORT": "443"}),
    ({"X-Forwarded-Host": "[2001:db8::5]:8080"},
     {"HTTP_HOST": "[2001:db8::5]:8080", "SERVER_NAME": "[2001:db8::5]", "SERVER_PORT": "8080"}),
])
def test_x_forwarded_values(headers, expected):
    assert seen(applied(headers)) == {**UNCHANGED, **expected}


@pytest.mark.parametrize("host", ["a b", "user@evil.example", "evil.example/path", "evil.example\\x",
                                  "evil.example?q", "evil.example#f", "", "evil.example:0",
                                  "evil.example:65536", "[::1", "evil.example:80:80", "é.example"])
def test_invalid_hosts_are_ignored(host):
    assert seen(applied({"X-Forwarded-Host": host})) == UNCHANGED
    quoted = host.replace("\\", "\\\\").replace('"', '\\"')
    assert seen(applied({"Forwarded": f'host="{quoted}"'}, family=["forwarded"])) == UNCHANGED


@pytest.mark.parametrize("xff, allow, remote", [
    ("203.0.113.7, 10.1.1.1", ("127.0.0.1", "10.0.0.0/8"), "203.0.113.7"),
    ("203.0.113.7, 10.1.1.1", ("127.0.0.1",), "10.1.1.1"),
    ("unknown, 10.1.1.1", ("127.0.0.1", "10.0.0.0/8"), "10.1.1.1"),  # nearest trusted hop
    ("203.0.113.7, garbage", ("127.0.0.1",), "127.0.0.1"),
    ("203.0.113.7,, 2001:DB8::1", ("127.0.0.1",), "2001:db8::1"),
])
def test_x_forwarded_for_walk(xff, allow, remote):
    environ = applied({"X-Forwarded-For": xff}, allow)
    assert environ["REMOTE_ADDR"] == remote
    assert ("REMOTE_PORT" in environ) is (remote == "127.0.0.1")


@pytest.mark.parametrize("forwarded, allow, expected", [
    # a client's forged element, then the trusted proxy's: the proxy's is read
    ("for=1.2.3.4;proto=https;host=evil.example, for=198.51.100.9;proto=http;host=shop.example",
     ("127.0.0.1",),
     {"REMOTE_ADDR": "198.51.100.9", "HTTP_HOST": "shop.example", "SERVER_NAME": "shop.example",
      "SERVER_PORT": "80"}),
    # the proxy's element without proto/host: nothing from the client's element fills the gap
    ("for=1.2.3.4;proto=https;host=evil.example, for=198.51.100.9", ("127.0.0.1",),
     {"REMOTE_ADDR": "198.51.100.9"}),
    # two trusted proxies: the outer one's element describes the client
    ("for=203.0.113.5;proto=https;host=shop.example, for=127.0.0.5;proto=http;host=inner",
     ("127.0.0.0/8",),
     {"REMOTE_ADDR": "203.0.113.5", "wsgi.url_scheme": "https", "HTTP_HOST": "shop.example",
      "SERVER_NAME": "shop.example", "SERVER_PORT": "443"}),
    # the same chain when the inner proxy is not trusted: its element is the one to read
    ("for=203.0.113.5;proto=https;host=shop.example, for=127.0.0.5;proto=http;host=inner",
     ("127.0.0.1",),
     {"REMOTE_ADDR": "127.0.0.5", "HTTP_HOST": "inner", "SERVER_NAME": "inner", "SERVER_PORT": "80"}),
    # an obfuscated client: proto still read from the proxy's element, the address stays the peer's
    ("for=_hidden;proto=https", ("127.0.0.1",), {"wsgi.url_scheme": "https", "SERVER_PORT": "8000"}),
    # an element without for= ends the walk: the proxy's proto, not the client's
    ("for=1.2.3.4;proto=https, proto=http", ("127.0.0.1",), {}),
    ("for=2001:db8::1", ("127.0.0.1",), {"REMOTE_ADDR": "2001:db8::1"}),
    ('for="[2001:db8::1]:4711"', ("127.0.0.1",), {"REMOTE_ADDR": "2001:db8::1"}),
    ("for=198.51.100.7:4711;proto=javascript", ("127.0.0.1",), {"REMOTE_ADDR": "198.51.100.7"}),
    # unparsable headers are ignored whole: an unclosed quote would swallow the proxy's element
    ('for=1.2.3.4;host="evil.example, for=198.51.100.9;proto=http', ("127.0.0.1",), {}),
    ('for=1.2.3.4;host="a, for="198.51.100.9";proto=http', ("127.0.0.1",), {}),
    ("for=1.2.3.4;for=5.6.7.8", ("127.0.0.1",), {}),
    ("for=1.2.3.4 proto=https", ("127.0.0.1",), {}),
])
def test_forwarded_walk(forwarded, allow, expected):
    environ = applied({"Forwarded": forwarded}, allow, ["forwarded"])
    assert seen(environ) == {**UNCHANGED, **expected}


def test_one_family_at_a_time():
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
               "Forwarded": "for=198.51.100.1;proto=http;host=shop.example"}
    x_only = applied(headers)
    assert (x_only["REMOTE_ADDR"], x_only["wsgi.url_scheme"], x_only["HTTP_HOST"]) == (
        "203.0.113.7", "https", "internal:8000")
    rfc_only = applied(headers, family=["forwarded"])
    assert (rfc_only["REMOTE_ADDR"], rfc_only["wsgi.url_scheme"], rfc_only["HTTP_HOST"]) == (
        "198.51.100.1", "http", "shop.example")
    assert seen(applied(headers, family=[])) == UNCHANGED


def test_quoted_forwarded_values_with_separators():
    assert parse_forwarded('for="198.51.100.7";host="a.example:8080";proto="https"; by="x,y;z", '
                           'for=_p;by="\\"q\\""') == [
        {"for": "198.51.100.7", "host": "a.example:8080", "proto": "https", "by": "x,y;z"},
        {"for": "_p", "by": '"q"'}]
    environ = applied({"Forwarded": 'for="198.51.100.7";host="a.example:8080";proto="https"; by="x,y"'},
                      family=["forwarded"])
    assert environ["REMOTE_ADDR"] == "198.51.100.7"
    assert (environ["HTTP_HOST"], environ["SERVER_NAME"], environ["SERVER_PORT"]) == (
        "a.example:8080", "a.example", "8080")
    assert environ["wsgi.url_scheme"] == "https"
