"""runserver's ``addrport`` argument, turned into a sharedsock ``--bind`` address."""

from __future__ import annotations

from django.core.management.commands.runserver import naiveip_re

DEFAULT_PORT = "8000"


def addrport_to_bind(addrport: str | None, ipv6: bool = False) -> str:
    """``8000``, ``0.0.0.0:8000``, ``[::1]:8000``, ``localhost:8000`` or nothing -> ``HOST:PORT``.

    Django's own pattern decides what is valid, so anything runserver accepts
    is accepted here and means the same address. Raises ValueError with
    runserver's wording otherwise.
    """
    if not addrport:
        return f"[::1]:{DEFAULT_PORT}" if ipv6 else f"127.0.0.1:{DEFAULT_PORT}"
    match = naiveip_re.fullmatch(addrport)
    if match is None:
        raise ValueError(f'"{addrport}" is not a valid port number or address:port pair.')
    addr, _ipv4, ipv6_literal, fqdn, port = match.groups()
    if not addr:
        addr = "::1" if ipv6 else "127.0.0.1"
    elif ipv6_literal:
        addr = addr[1:-1]
    elif ipv6 and not fqdn:
        raise ValueError(f'"{addr}" is not a valid IPv6 address.')
    elif addr == "0":
        addr = "::" if ipv6 else "0.0.0.0"  # runserver's shorthand for every interface
    if int(port) > 65535:
        raise ValueError(f"{port!r} is not a valid port number.")
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
