"""Listening sockets: parsing ``--bind``, binding once in the master, adopting in workers.

Every failure here is a configuration error with one line that names the
address and the reason: nobody should have to read a traceback to learn that
port 8000 is taken.
"""

from __future__ import annotations

import _socket
import errno
import os
import socket
import ssl
import stat
import struct
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .logs import log
from .tls import TLSSettings, TLSSocket


@dataclass
class Listener:
    sock: socket.socket
    is_unix: bool
    server_name: str
    server_port: str
    unlink_path: str | None = None  # a unix socket file we created and must remove at exit
    tls: bool | None = None  # None: the address named no scheme (tls.attach_contexts decides)
    tls_settings: TLSSettings | None = None
    tls_context: ssl.SSLContext | None = None  # set in the master; forked workers inherit it

    @property
    def url(self) -> str:
        if self.is_unix:
            return f"unix:{self.server_name}"
        host = self.server_name
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if self.tls else 'http'}://{host}:{self.server_port}"

    def accept(self) -> tuple[_socket.socket, Any]:
        """accept(2) into a bare ``_socket.socket``, the C type under ``socket.socket``.

        ``socket.accept`` wraps each connection in Python: it reads the listener's
        family and type as enums and runs a Python ``__init__``, and its ``close``
        goes through two more Python calls. Connections need none of that, and it
        was a fifth of the cost of a connection that carries one request.
        """
        fd, peer = self.sock._accept()  # type: ignore[attr-defined]
        sock = _socket.socket(self._family, socket.SOCK_STREAM, 0, fd)
        if self.tls_context is not None:
            return TLSSocket(sock, self.tls_context), peer  # type: ignore[return-value]
        return sock, peer

    def __post_init__(self) -> None:
        self._family = int(self.sock.family)

    def describe(self) -> dict:
        """What a spawned worker needs besides the fd itself."""
        return {"is_unix": self.is_unix, "server_name": self.server_name,
                "server_port": self.server_port, "unlink_path": self.unlink_path, "tls": self.tls,
                "tls_settings": self.tls_settings.to_dict() if self.tls_settings else None}


@dataclass(frozen=True)
class BindSpec:
    text: str
    kind: str  # "tcp", "unix" or "fd"
    host: str = ""
    port: int = 0
    path: str = ""
    fd: int = -1
    tls: bool | None = None  # https:// True, http:// False, no scheme None


_SCHEMES = {"https://": (True, 443), "http://": (False, 80)}


def parse_bind(text: str) -> BindSpec:
    text = text.strip()
    for scheme, (tls, default_port) in _SCHEMES.items():
        if text.lower().startswith(scheme):
            address = text[len(scheme):].rstrip("/")
            if not address or address.startswith(("unix:", "fd:")) or "/" in address:
                raise ConfigError(f"--bind {text}: expected {scheme}HOST:PORT")
            if (address.startswith("[") and address.endswith("]")) or \
                    (":" not in address and not address.isdigit()):
                address = f"{address}:{default_port}"
            spec = parse_bind(address)
            return BindSpec(text, spec.kind, spec.host, spec.port, tls=tls)
    if text.startswith("unix:"):
        path = text[5:]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ConfigError(f"--bind {text}: a unix socket needs a path, e.g. unix:/run/app.sock")
        return BindSpec(text, "unix", path=path)
    if text.startswith("fd://"):
        try:
            fd = int(text[5:])
        except ValueError:
            raise ConfigError(f"--bind {text}: expected fd://N with a file descriptor number") from None
        if fd < 0:
            raise ConfigError(f"--bind {text}: file descriptor must not be negative")
        return BindSpec(text, "fd", fd=fd)
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ConfigError(f"--bind {text}: missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ConfigError(f"--bind {text}: expected [IPV6]:PORT")
        port_text = rest[1:] if rest else "8000"
    else:
        if text.count(":") > 1:
            raise ConfigError(f"--bind {text}: write IPv6 addresses in brackets, e.g. [::1]:8000")
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = (text, "8000") if not text.isdigit() else ("127.0.0.1", text)
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"--bind {text}: {port_text!r} is not a port number (0-65535)")
    return BindSpec(text, "tcp", host=host or "0.0.0.0", port=int(port_text))


def somaxconn() -> int | None:
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def systemd_fds() -> list[int]:
    """File descriptors passed by systemd socket activation, if they are meant for us."""
    try:
        if int(os.environ.get("LISTEN_PID", "-1")) != os.getpid():
            return []
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return []
    return list(range(3, 3 + count))


def open_listeners(binds: tuple[str, ...], backlog: int, umask: int | None,
                   owner: tuple[int, int] | None = None) -> list[Listener]:
    """Bind every address (or adopt systemd's sockets); on failure close what was opened.

    ``owner`` (uid, gid): who the unix socket files created here belong to (``--user``)."""
    specs = [parse_bind(b) for b in binds]
    limit = somaxconn()
    if limit is not None and backlog > limit:
        log.warning("--backlog %d is above net.core.somaxconn (%d); the kernel will use %d",
                    backlog, limit, limit)
    opened: list[Listener] = []
    try:
        activated = systemd_fds()
        if activated:
            for fd in activated:
                opened.append(_adopt_fd(fd, f"LISTEN_FDS fd {fd}"))
            for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                os.environ.pop(name, None)
            return opened
        for spec in specs:
            if spec.kind == "tcp":
                opened.append(_bind_tcp(spec, backlog))
            elif spec.kind == "unix":
                opened.append(_bind_unix(spec, backlog, umask, owner))
            else:
                opened.append(_adopt_fd(spec.fd, f"--bind {spec.text}"))
    except BaseException:
        close_listeners(opened)
        raise
    return opened


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this machine"
    return exc.strerror or str(exc)


def _bind_tcp(spec: BindSpec, backlog: int) -> Listener:
    try:
        infos = socket.getaddrinfo(spec.host, spec.port, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot bind {spec.text}: unknown host {spec.host!r} ({exc.strerror})") from None
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {spec.text}: {_reason(exc)}") from None
    sock.setblocking(False)
    name = sock.getsockname()
    return Listener(sock, False, name[0], str(name[1]), tls=spec.tls)


def _bind_unix(spec: BindSpec, backlog: int, umask: int | None,
               owner: tuple[int, int] | None = None) -> Listener:
    path = spec.path
    if os.path.exists(path) or os.path.islink(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"cannot bind {spec.text}: {path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            try:
                os.unlink(path)  # stale: nobody is listening on it
            except OSError as exc:
                raise ConfigError(f"cannot bind {spec.text}: cannot remove the stale socket "
                                  f"({exc.strerror})") from None
        else:
            raise ConfigError(f"cannot bind {spec.text}: another server is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(umask) if umask is not None else None
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {spec.text}: {_reason(exc)}") from None
    finally:
        if old_umask is not None:
            os.umask(old_umask)
    if owner is not None:
        try:
            os.chown(path, *owner)
        except OSError as exc:
            sock.close()
            os.unlink(path)
            raise ConfigError(f"cannot bind {spec.text}: cannot give it to the workers' user "
                              f"({exc.strerror})") from None
    sock.setblocking(False)
    return Listener(sock, True, path, "", unlink_path=path)


def _adopt_fd(fd: int, label: str) -> Listener:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"{label}: not a usable socket ({exc.strerror or exc})") from None
    try:
        accepting = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError:
        accepting = 0
    if sock.type != socket.SOCK_STREAM or not accepting:
        sock.detach()
        raise ConfigError(f"{label}: not a listening stream socket")
    sock.setblocking(False)
    return listener_from_socket(sock)


def listener_from_socket(sock: socket.socket, unlink_path: str | None = None) -> Listener:
    if sock.family == socket.AF_UNIX:
        name = sock.getsockname()
        path = name if isinstance(name, str) else name.decode("utf-8", "replace")
        return Listener(sock, True, path or "localhost", "", unlink_path)
    name = sock.getsockname()
    return Listener(sock, False, name[0], str(name[1]))


def adopt_in_worker(fds: list[int], infos: list[dict]) -> list[Listener]:
    """Rebuild Listener objects from fds received over SCM_RIGHTS (a worker, or a new master)."""
    listeners = []
    for fd, info in zip(fds, infos):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        listener = Listener(sock, info["is_unix"], info["server_name"], info["server_port"],
                            info.get("unlink_path"), tls=info.get("tls"))
        if info.get("tls_settings"):
            # A spawned worker reads the files itself; the master checked them just before.
            listener.tls_settings = TLSSettings.from_dict(info["tls_settings"])
            listener.tls_context = listener.tls_settings.context()
        listeners.append(listener)
    return listeners


def close_listeners(listeners: list[Listener], unlink: bool = False) -> None:
    for listener in listeners:
        try:
            listener.sock.close()
        except OSError:
            pass
        if unlink and listener.unlink_path:
            try:
                os.unlink(listener.unlink_path)
            except OSError:
                pass


# Classic BPF run on each packet that reaches a listening TCP socket, at the TCP header:
# drop a SYN that opens a connection (the client retries, and is refused once the socket
# closes), let everything else through, so handshakes already under way still complete.
_TCP_FLAGS, _SYN, _ACK = 13, 0x02, 0x10
_REFUSE_NEW_SYN = (
    (0x30, 0, 0, _TCP_FLAGS),  # ldb [13]
    (0x45, 0, 2, _SYN),        # jset #SYN ? next : accept
    (0x45, 1, 0, _ACK),        # jset #ACK ? accept : drop
    (0x06, 0, 0, 0),           # drop: ret #0
    (0x06, 0, 0, 0xFFFFFFFF),  # accept: ret #-1
)
_SO_ATTACH_FILTER = 26


def stop_new_connections(listener: Listener) -> None:
    """The server stops: refuse new clients, keep the queued ones (and those mid-handshake)
    for the workers to take. Closing a socket with clients queued would reset them.

    TCP gets a socket filter that drops new SYNs; where that fails (and for unix sockets)
    the accept queue is cut to its minimum instead.
    """
    sock = listener.sock
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        import ctypes

        code = b"".join(struct.pack("=HBBI", *op) for op in _REFUSE_NEW_SYN)
        program = ctypes.create_string_buffer(code, len(code))
        fprog = struct.pack("@HP", len(_REFUSE_NEW_SYN), ctypes.addressof(program))
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
            return
        except OSError:
            pass
    try:
        sock.listen(0)
    except OSError:
        pass
