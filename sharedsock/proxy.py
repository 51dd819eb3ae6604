"""Proxy headers (``X-Forwarded-*`` and RFC 7239 ``Forwarded``), applied only for trusted peers.

A client can send these headers itself, so they mean something only when the
peer that sent them is a proxy we were told to trust. For untrusted peers the
headers stay visible to the app as plain ``HTTP_*`` values and change nothing.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

_LOOPBACK = ("127.0.0.1", "::1")


class TrustedProxies:
    """``--forwarded-allow-ips``: addresses, CIDR ranges, or ``*``."""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = tuple(entries)
        self.trust_all = "*" in entries
        self._networks = [ipaddress.ip_network(e, strict=False) for e in entries if e != "*"]
        self._exact = frozenset(e for e in entries if e != "*" and "/" not in e)
        self._cache: dict[str, bool] = {}
        self.trusts_unix = self.trust_all or any(self.trusts(a) for a in _LOOPBACK)

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
    """Rewrite REMOTE_ADDR, scheme, host and port from the proxy's headers."""
    forwarded = environ.get("HTTP_FORWARDED")
    if forwarded is not None:
        _apply_forwarded(environ, forwarded, trusted)
        return
    xff = environ.get("HTTP_X_FORWARDED_FOR")
    if xff:
        client = _client_from_chain([a.strip() for a in xff.split(",")], trusted)
        if client:
            environ["REMOTE_ADDR"] = client
            environ.pop("REMOTE_PORT", None)
    proto = environ.get("HTTP_X_FORWARDED_PROTO")
    if proto:
        _set_scheme(environ, proto.split(",")[0].strip().lower())
    host = environ.get("HTTP_X_FORWARDED_HOST")
    if host:
        _set_host(environ, host.split(",")[0].strip())
    port = environ.get("HTTP_X_FORWARDED_PORT")
    if port:
        port = port.split(",")[0].strip()
        if port.isdigit():
            environ["SERVER_PORT"] = port


def _client_from_chain(chain: list[str], trusted: TrustedProxies) -> str | None:
    """The nearest address in the chain that is not itself a trusted proxy.

    None when that entry is not an IP address (``unknown``, an obfuscated
    ``_node``, garbage): the peer address is then the best we know.
    """
    chain = [a for a in chain if a]
    client = chain[0] if chain else None
    for address in reversed(chain):
        if not trusted.trusts(address):
            client = address
            break
    if client is None:
        return None
    try:
        ipaddress.ip_address(client)
    except ValueError:
        return None
    return client


def _set_scheme(environ: dict, scheme: str) -> None:
    if scheme in ("http", "https"):
        environ["wsgi.url_scheme"] = scheme
        if "HTTP_X_FORWARDED_PORT" not in environ and "HTTP_X_FORWARDED_HOST" not in environ:
            environ["SERVER_PORT"] = "443" if scheme == "https" else "80"


def _set_host(environ: dict, host: str) -> None:
    if not host or any(c in host for c in " /\\@"):
        return
    environ["HTTP_HOST"] = host
    name, port = split_host(host)
    environ["SERVER_NAME"] = name
    if port:
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


def _parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 elements, each a dict of lower-cased parameter names to unquoted values."""
    elements = []
    for element in _split_outside_quotes(value, ","):
        params: dict[str, str] = {}
        for pair in _split_outside_quotes(element, ";"):
            name, sep, val = pair.strip().partition("=")
            if not sep:
                continue
            val = val.strip()
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = val[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            params[name.strip().lower()] = val
        elements.append(params)
    return elements


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _node_address(node: str) -> str:
    """``for=`` values: ``1.2.3.4``, ``1.2.3.4:80``, ``[2001:db8::1]:80``, ``unknown``, ``_hidden``."""
    if node.startswith("["):
        end = node.find("]")
        return node[1:end] if end != -1 else node
    if node.count(":") == 1:
        return node.split(":", 1)[0]
    return node


def _apply_forwarded(environ: dict, value: str, trusted: TrustedProxies) -> None:
    elements = _parse_forwarded(value)
    if not elements:
        return
    chain = [_node_address(e["for"]) for e in elements if "for" in e]
    client = _client_from_chain(chain, trusted)
    if client:
        environ["REMOTE_ADDR"] = client
        environ.pop("REMOTE_PORT", None)
    first = elements[0]
    if "proto" in first:
        _set_scheme(environ, first["proto"].lower())
    if "host" in first:
        _set_host(environ, first["host"])
