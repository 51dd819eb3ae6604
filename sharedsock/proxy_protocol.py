"""PROXY protocol v1 (text) and v2 (binary) headers, parsed without I/O.

A load balancer working at the TCP level (HAProxy ``send-proxy``, AWS NLB, ...)
connects from its own address; the header it sends before the client's bytes
says whom it connected for. Only the header is parsed here; the connection
decides whom to believe and what to do with the bytes that follow it.

Parsing is strict and fails early: a peer that was meant to send a header and
sends anything else (a plain HTTP request, a truncated or oversized header)
is a misconfiguration or an attack, and the caller closes the connection
rather than guess. Each call to ``ProxyHeaderReader.feed`` says as soon as
the bytes so far cannot begin a valid header.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 header, CRLF included (the specification's own bound)
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version/command, family/transport, 2-byte length
_V2_MIN_ADDRESSES = {0x1: 12, 0x2: 36, 0x3: 216}  # AF_INET, AF_INET6, AF_UNIX address blocks
_V1_FAMILIES = {b"TCP4": 4, b"TCP6": 6}

__all__ = ["ProxyHeader", "ProxyHeaderError", "ProxyHeaderReader", "parse_header"]


class ProxyHeaderError(ValueError):
    """The bytes are not a valid PROXY protocol header."""


@dataclass(frozen=True)
class ProxyHeader:
    """What the header says. ``source`` is None when it names no client to believe: a v2
    ``LOCAL`` command (the proxy's own connection, e.g. a health check), v1 ``UNKNOWN``,
    or a v2 address family without an IP address (``AF_UNSPEC``, ``AF_UNIX``)."""

    version: int
    local: bool
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    length: int  # bytes the header took; what follows belongs to the application protocol


def parse_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None while it may still become one."""
    if data[:1] == b"P":
        return _parse_v1(data)
    if data[:1] == b"\r":
        return _parse_v2(data)
    if not data:
        return None
    raise ProxyHeaderError("not a PROXY protocol header")


class ProxyHeaderReader:
    """Collects a connection's first bytes until the header is complete."""

    __slots__ = ("buffer",)

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """(the header, the bytes after it) once complete; None for more; raises ProxyHeaderError."""
        buffer = self.buffer + data if self.buffer else data
        header = parse_header(buffer)
        if header is None:
            self.buffer = buffer
            return None
        self.buffer = b""
        return header, buffer[header.length:]


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end == -1:
        prefix = data[:len(V1_PREFIX)]
        if not V1_PREFIX.startswith(prefix):
            raise ProxyHeaderError("not a PROXY protocol header")
        cr = data.find(b"\r", 0, V1_MAX)
        if b"\n" in data[:V1_MAX] or (cr != -1 and cr != len(data) - 1):
            raise ProxyHeaderError("v1 header: CR and LF apart")
        if len(data) >= V1_MAX:
            raise ProxyHeaderError(f"v1 header: no CRLF in {V1_MAX} bytes")
        return None
    line = data[:end]
    if not line.startswith(V1_PREFIX):
        raise ProxyHeaderError("not a PROXY protocol header")
    if b"\r" in line or b"\n" in line:
        raise ProxyHeaderError("v1 header: CR and LF apart")
    length = end + 2
    fields = line[len(V1_PREFIX):].split(b" ")
    if fields[0] == b"UNKNOWN":  # the rest of the line is to be ignored
        return ProxyHeader(1, False, None, None, length)
    version = _V1_FAMILIES.get(fields[0])
    if version is None:
        raise ProxyHeaderError(f"v1 header: unknown protocol {fields[0][:8]!r}")
    if len(fields) != 5:
        raise ProxyHeaderError("v1 header: expected 4 fields after the protocol")
    source = _v1_address(fields[1], version), _v1_port(fields[3])
    destination = _v1_address(fields[2], version), _v1_port(fields[4])
    return ProxyHeader(1, False, source, destination, length)


def _v1_address(field: bytes, version: int) -> str:
    try:
        if b"%" in field:  # a scope id means nothing to another host
            raise ValueError
        address = ipaddress.ip_address(field.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyHeaderError(f"v1 header: bad address {field[:45]!r}") from None
    if address.version != version:
        raise ProxyHeaderError(f"v1 header: {field[:45]!r} is not an IPv{version} address")
    return str(address)


def _v1_port(field: bytes) -> int:
    if not (field.isdigit() and len(field) <= 5) or (len(field) > 1 and field[:1] == b"0") \
            or int(field) > 65535:
        raise ProxyHeaderError(f"v1 header: bad port {field[:8]!r}")
    return int(field)


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if not data.startswith(V2_SIGNATURE):
        if V2_SIGNATURE.startswith(data):
            return None
        raise ProxyHeaderError("not a PROXY protocol header")
    if len(data) < V2_FIXED:
        return None
    version_command, family_transport = data[12], data[13]
    if version_command >> 4 != 2:
        raise ProxyHeaderError(f"v2 header: unsupported version {version_command >> 4}")
    command = version_command & 0x0F
    if command > 1:
        raise ProxyHeaderError(f"v2 header: unknown command {command}")
    family, transport = family_transport >> 4, family_transport & 0x0F
    if family > 3 or transport > 2:
        raise ProxyHeaderError(f"v2 header: unknown address family/transport 0x{family_transport:02x}")
    block = int.from_bytes(data[14:16], "big")
    if command == 1 and block < _V2_MIN_ADDRESSES.get(family, 0):
        raise ProxyHeaderError(f"v2 header: {block} bytes cannot hold the addresses")
    length = V2_FIXED + block
    if len(data) < length:
        return None
    # After the addresses come TLVs (SSL details, unique ids, ...): nothing here uses them.
    if command == 0 or family not in (0x1, 0x2):
        return ProxyHeader(2, command == 0, None, None, length)
    if family == 0x1:
        inet, size = socket.AF_INET, 4
    else:
        inet, size = socket.AF_INET6, 16
    addresses = data[V2_FIXED:V2_FIXED + 2 * size + 4]
    source = socket.inet_ntop(inet, addresses[:size]), int.from_bytes(addresses[2 * size:2 * size + 2], "big")
    destination = (socket.inet_ntop(inet, addresses[size:2 * size]),
                   int.from_bytes(addresses[2 * size + 2:2 * size + 4], "big"))
    return ProxyHeader(2, False, source, destination, length)
