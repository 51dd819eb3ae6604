"""Proxy headers (``X-Forwarded-*`` or RFC 7239 ``Forwarded``), applied only for trusted peers.

A client can send any of these headers itself, and a proxy passes on whatever
it does not overwrite: nginx, for one, forwards ``Forwarded`` and
``X-Forwarded-Host`` untouched unless told otherwise. So a value means
something only if a proxy we trust wrote it. Two rules follow:

* Only the headers named in ``--forwarded-headers`` are read, and only one
  family: reading both would let the one the proxy ignores override the one
  it sets. Headers not read stay visible to the app as plain ``HTTP_*`` values.
* Values are read from the right, where each proxy appends, and never from a
  hop that no trusted proxy vouches for.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

_LOOPBACK = ("127.0.0.1", "::1")
DEFAULT_HEADERS = ("x-forwarded-for", "x-forwarded-proto")


class TrustedProxies:
    """Which peers are proxies (``--forwarded-allow-ips``) and which of their headers we read
    (``--forwarded-headers``)."""

    def __init__(self, entries: Iterable[str], headers: Iterable[str] = DEFAULT_HEADERS) -> None:
        entries = tuple(entries)
        self.trust_all = "*" in entries
        self._networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]
        self._exact = frozenset(e for e in entries if e != "*" and "/" not in e)
        self._cache: dict[str, bool] = {}
        self.trusts_unix = self.trust_all or any(self.trusts(a) for a in _LOOPBACK)
        names = frozenset(h.lower() for h in headers)
        self.forwarded = "forwarded" in names
        self.x_for = "x-forwarded-for" in names
        self.x_proto = "x-forwarded-proto" in names
        self.x_host = "x-forwarded-host" in names
        self.x_port = "x-forwarded-port" in names
        # The environ keys read, in a tuple: most requests carry none of them.
        read = (("HTTP_X_FORWARDED_FOR", self.x_for), ("HTTP_X_FORWARDED_PROTO", self.x_proto),
                ("HTTP_X_FORWARDED_HOST", self.x_host), ("HTTP_X_FORWARDED_PORT", self.x_port))
        self.environ_keys = ("HTTP_FORWARDED",) if self.forwarded else tuple(k for k, on in read if on)

    def trusts(self, address: str) -> bool:
        if self.trust_all or address in self._exact:
            return True
        cached = self._cache.get(address)
        if cached is not None:
            return cached
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            result = False
        else:
            if ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            result = any(ip in net for net in self._networks)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[address] = result
        return result


def apply_proxy_headers(environ: dict, trusted: TrustedProxies) -> None:
    """Rewrite REMOTE_ADDR, scheme, host and port from the trusted family of proxy headers.

    Call only when the peer itself is a trusted proxy.
    """
    for key in trusted.environ_keys:
        if key in environ:
            break
    else:
        return
    if trusted.forwarded:
        value = environ.get("HTTP_FORWARDED")
        if value:
            _apply_forwarded(environ, value, trusted)
        return
    if trusted.x_for:
        xff = environ.get("HTTP_X_FORWARDED_FOR")
        if xff:
            hops = [_ip_or_none(a.strip()) for a in xff.split(",") if a.strip()]
            _set_remote(environ, _walk(hops, trusted)[1])
    # Proto, host and port carry no address to walk: the rightmost value is the one the
    # nearest proxy wrote (an overwriting proxy leaves only its own; an appending one adds
    # it last). Anything left of it may come from the client, so it is never a fallback.
    proto = environ.get("HTTP_X_FORWARDED_PROTO") if trusted.x_proto else None
    host = environ.get("HTTP_X_FORWARDED_HOST") if trusted.x_host else None
    port = environ.get("HTTP_X_FORWARDED_PORT") if trusted.x_port else None
    if proto or host or port:  # most requests, even through a proxy, carry none of them
        _set_origin(environ, _valid_scheme(_rightmost(proto)), _valid_host(_rightmost(host)),
                    _valid_port(_rightmost(port)))


def _walk(hops: list[str | None], trusted: TrustedProxies) -> tuple[int, str | None]:
    """From the right, the first hop that is not a trusted proxy: (its index, the best address).

    Each hop was reported by the one to its right, so a hop is believed only while
    everything right of it is trusted. A hop that is not an IP address (``unknown``,
    an obfuscated ``_node``, garbage, missing) ends the walk too; the best address
    is then the nearest trusted proxy's, or None when there is none.
    """
    best = None
    for index in range(len(hops) - 1, -1, -1):
        address = hops[index]
        if address is None:
            return index, best
        best = address
        if not trusted.trusts(address):
            return index, best
    return 0, best


def _ip_or_none(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _set_remote(environ: dict, address: str | None) -> None:
    if address:
        environ["REMOTE_ADDR"] = address
        environ.pop("REMOTE_PORT", None)


def _rightmost(value: str | None) -> str | None:
    return value.rpartition(",")[2].strip() if value else None


def _valid_scheme(value: str | None) -> str | None:
    value = value.lower() if value else None
    return value if value in ("http", "https") else None


_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?")


def _valid_host(value: str | None) -> str | None:
    """A host[:port]; anything with userinfo, a path, spaces or other oddities is refused."""
    if not value or len(value) > 261 or not _HOST.fullmatch(value):
        return None
    port = split_host(value)[1]
    return value if port is None or _valid_port(port) else None


def _valid_port(value: str | None) -> str | None:
    if value and value.isascii() and value.isdigit() and len(value) <= 5 and 0 < int(value) < 65536:
        return str(int(value))
    return None


def _set_origin(environ: dict, scheme: str | None, host: str | None, port: str | None) -> None:
    """SERVER_PORT follows the forwarded origin: its explicit port, else the port in the
    Host, else the default port of the scheme."""
    if scheme is None and host is None and port is None:
        return
    if scheme is not None:
        environ["wsgi.url_scheme"] = scheme
    if host is not None:
        environ["HTTP_HOST"] = host
        environ["SERVER_NAME"] = split_host(host)[0]
    if port is None:
        port = split_host(environ.get("HTTP_HOST") or "")[1]
    if port is None:
        port = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
    environ["SERVER_PORT"] = port


def split_host(host: str) -> tuple[str, str | None]:
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            return host, None
        rest = host[end + 1:]
        return host[: end + 1], rest[1:] if rest.startswith(":") and rest[1:].isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return name, port
    return host, None


# -- RFC 7239 ---------------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# Unquoted values may also hold ':' and brackets: proxies commonly write for=192.0.2.1:4711
# or for=2001:db8::1 unquoted, though RFC 7239 asks for quotes there.
_VALUE = r"[!#$%&'*+.^_`|~0-9A-Za-z:\[\]-]+"
_QUOTED = r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t -~\x80-\xff])*)"'
_PAIR = re.compile(rf"({_TOKEN})=(?:({_VALUE})|{_QUOTED})")
_OWS = re.compile(r"[ \t]*")
_ESCAPED = re.compile(r"\\(.)")


def parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """RFC 7239 elements, each a dict of lower-cased parameter names to unquoted values.

    None when the header does not parse, and then the whole header is unusable: a
    client can send an unclosed quote or a stray separator so that the element the
    proxy appends after it is swallowed into the client's own, and a lenient parser
    would then read the client's values as the proxy's.
    """
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    pos, end = 0, len(value)
    while True:
        pos = _OWS.match(value, pos).end()  # type: ignore[union-attr]
        if pos == end:
            break
        ch = value[pos]
        if ch in ",;":
            if ch == "," and current:
                elements.append(current)
                current = {}
            pos += 1
            continue
        match = _PAIR.match(value, pos)
        if match is None:
            return None
        name = match.group(1).lower()
        if name in current:  # RFC 7239 4: each parameter at most once per element
            return None
        token, quoted = match.group(2), match.group(3)
        current[name] = token if token is not None else _ESCAPED.sub(r"\1", quoted)
        pos = _OWS.match(value, match.end()).end()  # type: ignore[union-attr]
        if pos < end and value[pos] not in ",;":
            return None
    if current:
        elements.append(current)
    return elements


def _node_address(node: str | None) -> str | None:
    """The IP in a ``for=`` value: ``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:80``; None for
    ``unknown``, ``_hidden`` and anything else."""
    if node is None:
        return None
    if node.startswith("["):
        end = node.find("]")
        if end == -1 or (node[end + 1:] and not node[end + 1:].startswith(":")):
            return None
        node = node[1:end]
    elif node.count(":") == 1:
        node = node.split(":", 1)[0]
    return _ip_or_none(node)


def _apply_forwarded(environ: dict, value: str, trusted: TrustedProxies) -> None:
    """Each proxy appends one element describing the hop it received: ``for`` its client,
    ``proto`` and ``host`` what that client asked for. The element to use is the one
    appended by the trusted proxy farthest out: all ``for`` values right of it are
    trusted proxies. Its proto and host are taken from it alone, never from an element
    further left (the client may have written those)."""
    elements = parse_forwarded(value)
    if not elements:
        return
    index, address = _walk([_node_address(e.get("for")) for e in elements], trusted)
    _set_remote(environ, address)
    element = elements[index]
    _set_origin(environ, _valid_scheme(element.get("proto")), _valid_host(element.get("host")), None)
