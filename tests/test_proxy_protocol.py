"""The PROXY protocol parser, fed whole headers and the same headers byte by byte."""

from __future__ import annotations

import socket
import struct

import pytest

from sharedsock.proxy_protocol import V2_SIGNATURE, ProxyHeader, ProxyHeaderError, ProxyHeaderReader

REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def v2(command: int = 1, family: int = 0x11, addresses: bytes = b"", tlvs: bytes = b"",
       length: int | None = None) -> bytes:
    block = addresses + tlvs
    size = len(block) if length is None else length
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", size) + block


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst) + \
        struct.pack("!HH", sport, dport)


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + \
        struct.pack("!HH", sport, dport)


def whole(data: bytes) -> tuple[ProxyHeader, bytes]:
    result = ProxyHeaderReader().feed(data)
    assert result is not None
    return result


def bytewise(data: bytes) -> tuple[ProxyHeader, bytes]:
    """Feeds one byte at a time; the header must complete exactly at its last byte."""
    reader = ProxyHeaderReader()
    for index in range(len(data)):
        result = reader.feed(data[index:index + 1])
        if result is not None:
            header, rest = result
            assert rest == b""
            return header, data[index + 1:]
    raise AssertionError("the header never completed")


FEEDS = pytest.mark.parametrize("feed", [whole, bytewise], ids=["whole", "bytewise"])

VALID = {
    "v1-tcp4": (b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n",
                ProxyHeader(1, False, ("192.0.2.7", 56324), ("198.51.100.1", 443), 45)),
    "v1-tcp6": (b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n",
                ProxyHeader(1, False, ("2001:db8::7", 65535), ("2001:db8::1", 0), 44)),
    "v1-unknown": (b"PROXY UNKNOWN\r\n", ProxyHeader(1, False, None, None, 15)),
    "v1-unknown-107-bytes": (b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n", ProxyHeader(1, False, None, None, 107)),
    "v1-unknown-with-rest": (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(1, False, None, None, 35)),
    "v1-longest": (b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                   b"65535 65535\r\n",
                   ProxyHeader(1, False, ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
                               ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535), 104)),
    "v2-inet": (v2(addresses=inet("192.0.2.7", "198.51.100.1", 56324, 443)),
                ProxyHeader(2, False, ("192.0.2.7", 56324), ("198.51.100.1", 443), 28)),
    "v2-inet6": (v2(family=0x21, addresses=inet6("2001:db8::7", "2001:db8::1", 1, 2)),
                 ProxyHeader(2, False, ("2001:db8::7", 1), ("2001:db8::1", 2), 52)),
    "v2-tlvs-skipped": (v2(addresses=inet("192.0.2.7", "198.51.100.1", 1, 2),
                           tlvs=b"\x04\x00\x03abc" + b"\x05\x00\x10" + b"u" * 16),
                        ProxyHeader(2, False, ("192.0.2.7", 1), ("198.51.100.1", 2), 28 + 6 + 19)),
    "v2-local": (v2(command=0, family=0x00), ProxyHeader(2, True, None, None, 16)),
    "v2-local-addresses-ignored": (v2(command=0, family=0x11, addresses=inet("192.0.2.7", "1.1.1.1", 1, 2)),
                                   ProxyHeader(2, True, None, None, 28)),
    "v2-unspec": (v2(family=0x00, addresses=b"anything"), ProxyHeader(2, False, None, None, 24)),
    "v2-unix": (v2(family=0x31, addresses=b"/a".ljust(108, b"\0") + b"/b".ljust(108, b"\0")),
                ProxyHeader(2, False, None, None, 232)),
}


@FEEDS
@pytest.mark.parametrize("name", list(VALID))
def test_valid_header_then_the_request(feed, name):
    data, expected = VALID[name]
    header, rest = feed(data + REQUEST)
    assert header == expected
    assert rest == REQUEST


INVALID = {
    "plain-http": REQUEST,
    "lowercase": b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1-bare-lf": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    "v1-cr-inside": b"PROXY TCP4 1.2.3.4\r 5.6.7.8 1 2\r\n",
    "v1-too-long": b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n",
    "v1-unknown-protocol": b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
    "v1-missing-field": b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
    "v1-extra-field": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
    "v1-double-space": b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
    "v1-family-mismatch": b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
    "v1-tcp6-with-v4": b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n",
    "v1-bad-address": b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
    "v1-hostname": b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n",
    "v1-scoped-v6": b"PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n",
    "v1-port-too-big": b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "v1-port-leading-zero": b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
    "v1-port-sign": b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
    "v1-empty": b"PROXY \r\n",
    "v2-bad-signature": V2_SIGNATURE[:-1] + b"X" + b"\x21\x11\x00\x0c" + bytes(12),
    "v2-version-1": V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12),
    "v2-version-3": V2_SIGNATURE + b"\x31\x11\x00\x0c" + bytes(12),
    "v2-command-2": V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12),
    "v2-family-4": V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12),
    "v2-transport-3": V2_SIGNATURE + b"\x21\x13\x00\x0c" + bytes(12),
    "v2-inet-too-short": v2(addresses=bytes(11)),
    "v2-inet6-too-short": v2(family=0x21, addresses=bytes(35)),
    "v2-unix-too-short": v2(family=0x31, addresses=bytes(215)),
}


@FEEDS
@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_header_is_an_error(feed, name):
    with pytest.raises(ProxyHeaderError):
        feed(INVALID[name] + REQUEST)


@pytest.mark.parametrize("data, within", [
    (b"GET / HTTP/1.1\r\n", 1), (b"PROXX", 5), (b"\r\n\r\n\x00\r\nQUIX", 11), (b"PROXY TCP4 1.2\n", 15),
    (b"PROXY TCP4 1.2.3.4\r 5", 20), (b"PROXY " + b"x" * 101, 107),
])
def test_a_wrong_start_is_refused_as_soon_as_it_is_seen(data, within):
    """Byte by byte, the error comes at the first byte that cannot begin a header, not at a
    CRLF or a byte count that a peer could withhold."""
    reader = ProxyHeaderReader()
    for index in range(within - 1):
        assert reader.feed(data[index:index + 1]) is None
    with pytest.raises(ProxyHeaderError):
        reader.feed(data[within - 1:within])


def test_an_incomplete_header_waits():
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r") is None
    assert reader.feed(b"") is None
    big = v2(addresses=inet("1.2.3.4", "5.6.7.8", 1, 2), tlvs=bytes(60000))
    reader = ProxyHeaderReader()
    assert reader.feed(big[:-1]) is None
    header, rest = reader.feed(big[-1:] + b"x")  # type: ignore[misc]
    assert header.source == ("1.2.3.4", 1) and header.length == len(big) and rest == b"x"
