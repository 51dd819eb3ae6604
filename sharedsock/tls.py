"""TLS: the server's SSLContext, and a connection's TLS layer over its non-blocking socket.

The layer is an ``ssl.SSLObject`` over memory BIOs, not an ``ssl.SSLSocket``, so
every byte that crosses the socket goes through code that knows the socket is
non-blocking: ``recv`` and ``send`` keep the plain socket's contract
(``BlockingIOError`` to wait, ``b""`` at the end, ``OSError`` when the client is
gone), and the rest of the server reads and writes a TLS connection as it does a
plain one. Two consequences the callers rely on:

- ``recv`` decrypts every whole record it has, so no plaintext ever waits inside
  the TLS layer while the selector or ``poll`` sees a quiet socket: a kept-alive
  connection that looks idle is idle.
- bytes read before the handshake (what followed a PROXY header) can be handed to
  the layer with ``push``.

Contexts are built by the master (it checks the files at start and before a
reload); forked workers inherit the master's context, spawned ones build their
own from the same settings at boot.
"""

from __future__ import annotations

import select
import ssl
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config
    from .listeners import Listener

MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
SEND_CHUNK = 256 * 1024  # plaintext encrypted per send(): bounds the ciphertext held at once
FLIGHT_WAIT = 1.0  # longest the selector waits to hand the kernel a handshake flight (see _flush_flight)
_TLS_HANDSHAKE_RECORD = 0x16

__all__ = ["TLSError", "TLSSettings", "TLSSocket", "attach_contexts", "check_files", "reload_contexts"]


class TLSError(Exception):
    """A client's handshake failed. ``plain_http``: it spoke plain HTTP to a TLS address."""

    def __init__(self, reason: str, plain_http: bool = False, certificate: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.plain_http = plain_http
        self.certificate = certificate  # the client's certificate was refused (worth an info line)


# -- the server's context -------------------------------------------------------------


@dataclass(frozen=True)
class TLSSettings:
    """The TLS options, JSON-able so a spawned worker can build the same context."""

    certfile: str
    keyfile: str | None = None
    password: str | None = None
    ca_certs: str | None = None
    cert_reqs: str = "none"
    min_version: str = "TLSv1.2"
    ciphers: str | None = None

    @classmethod
    def from_config(cls, config: Config) -> TLSSettings | None:
        if config.certfile is None:
            return None
        return cls(config.certfile, config.keyfile, config.keyfile_password, config.ca_certs,
                   config.cert_reqs, config.ssl_min_version, config.ciphers)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TLSSettings:
        return cls(**data)

    def context(self) -> ssl.SSLContext:
        """A server context from the files as they are now; ConfigError (one line) if they do
        not load. OpenSSL says "PEM lib" for most problems, so the files are looked at first."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = MIN_VERSIONS[self.min_version]
        context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
        context.set_alpn_protocols(["http/1.1"])
        if self.ciphers is not None:
            try:
                context.set_ciphers(self.ciphers)
            except ssl.SSLError:
                raise ConfigError(f"--ciphers {self.ciphers!r}: no cipher matches it") from None
        self._load_chain(context)
        if self.ca_certs is not None:
            if b"-----BEGIN CERTIFICATE-----" not in _read(self.ca_certs, "--ca-certs"):
                raise ConfigError(f"--ca-certs {self.ca_certs}: no PEM certificate in it")
            try:
                context.load_verify_locations(cafile=self.ca_certs)
            except ssl.SSLError as exc:
                raise ConfigError(f"--ca-certs {self.ca_certs}: cannot load it ({_reason(exc)})") from None
        context.verify_mode = CERT_REQS[self.cert_reqs]
        return context

    def _load_chain(self, context: ssl.SSLContext) -> None:
        cert = _read(self.certfile, "--certfile")
        if b"-----BEGIN CERTIFICATE-----" not in cert:
            raise ConfigError(f"--certfile {self.certfile}: no PEM certificate in it")
        key = _read(self.keyfile, "--keyfile") if self.keyfile else cert
        if b"PRIVATE KEY-----" not in key:
            if self.keyfile:
                raise ConfigError(f"--keyfile {self.keyfile}: no PEM private key in it")
            raise ConfigError(f"--certfile {self.certfile} holds no private key: give --keyfile")
        asked = []
        password = self.password

        def give_password() -> bytes:  # never OpenSSL's own prompt on the terminal
            asked.append(True)
            return password.encode() if password else b""

        key_label = f"--keyfile {self.keyfile}" if self.keyfile else f"--certfile {self.certfile}"
        try:
            context.load_cert_chain(self.certfile, self.keyfile, password=give_password)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise ConfigError(f"{key_label}: the key does not match the certificate in "
                                  f"--certfile {self.certfile}") from None
            if asked and password:
                raise ConfigError(f"--keyfile-password: wrong password for {key_label}") from None
            if asked:
                raise ConfigError(f"{key_label}: the key is encrypted; give --keyfile-password "
                                  "(or SHAREDSOCK_KEYFILE_PASSWORD)") from None
            raise ConfigError(f"{key_label}: cannot load the certificate and key "
                              f"({_reason(exc)})") from None


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None


def _reason(exc: ssl.SSLError) -> str:
    return exc.reason or str(exc)


def check_files(config: Config) -> None:
    """The TLS files load (before anything starts, and for --check-config)."""
    settings = TLSSettings.from_config(config)
    if settings is not None:
        settings.context()


def marked_https(config: Config) -> bool:
    """Some address says https://: then only those are TLS, the rest plain."""
    return any(b.strip().lower().startswith("https://") for b in config.bind)


def attach_contexts(listeners: list[Listener], config: Config) -> None:
    """Settle which listeners are TLS and give them the context (ConfigError if it fails).

    An address written without a scheme (and a socket from systemd) is TLS when
    --certfile is given and no address says https://, as in gunicorn."""
    settings = TLSSettings.from_config(config)
    default = settings is not None and not marked_https(config)
    context = None
    for listener in listeners:
        if listener.tls is None:
            listener.tls = default
        if listener.tls:
            if settings is None:
                raise ConfigError(f"{listener.url} is TLS but --certfile is not given")
            if context is None:
                context = settings.context()
            listener.tls_settings = settings
            listener.tls_context = context


def reload_contexts(listeners: list[Listener], config: Config) -> str | None:
    """Before a reload: load the files again for the new generation; the reason if they fail
    (then nothing changes, and the workers serving keep their certificate)."""
    settings = TLSSettings.from_config(config)
    if settings is None or not any(listener.tls for listener in listeners):
        return None
    try:
        context = settings.context()
    except ConfigError as exc:
        return str(exc)
    for listener in listeners:
        if listener.tls:
            listener.tls_context = context
    return None


def client_subject(peer: dict | None) -> str | None:
    """The client certificate's subject as RFC 4514 text (what nginx's $ssl_client_s_dn and
    Apache's SSL_CLIENT_S_DN give): most specific part first, e.g. ``CN=alice,O=Example``."""
    if not peer or "subject" not in peer:
        return None
    parts = []
    for rdn in reversed(peer["subject"]):
        parts.append("+".join(f"{_SHORT_NAMES.get(name, name)}={_escape_dn(value)}" for name, value in rdn))
    return ",".join(parts)


_SHORT_NAMES = {"commonName": "CN", "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
                "organizationName": "O", "organizationalUnitName": "OU", "streetAddress": "STREET",
                "domainComponent": "DC", "userId": "UID"}


def _escape_dn(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


# -- a connection's TLS layer ---------------------------------------------------------------


class TLSSocket:
    """A server-side TLS connection over a non-blocking socket, with the socket's contract.

    ``handshake`` is driven by the worker's selector; after it, ``recv`` and ``send``
    behave as on the plain socket. ``shutdown(SHUT_WR)`` and ``close`` send a
    close_notify first, without waiting for the client's (an ``unwrap`` would wait),
    and after a shutdown ``recv`` hands back raw bytes, which the lingering close only
    counts and drops.
    """

    __slots__ = ("raw", "obj", "incoming", "outgoing", "done", "peer_closed", "pending", "pending_for",
                 "shut", "seen_bytes")

    def __init__(self, raw: Any, context: ssl.SSLContext) -> None:
        self.raw = raw
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.done = False  # handshake complete
        self.peer_closed = False  # the client sent close_notify
        self.pending: memoryview | None = None  # ciphertext the kernel has not taken yet
        self.pending_for = 0  # plaintext bytes that ``pending`` carries
        self.shut = False
        self.seen_bytes = False

    # -- plain socket calls ------------------------------------------------------

    def fileno(self) -> int:
        return self.raw.fileno()

    def setblocking(self, flag: bool) -> None:
        self.raw.setblocking(flag)

    def setsockopt(self, *args: Any) -> None:
        self.raw.setsockopt(*args)

    # -- handshake -----------------------------------------------------------------

    def push(self, data: bytes) -> None:
        """Bytes of this connection read before the layer existed (after a PROXY header)."""
        if data:
            self._check_first(data)
            self.incoming.write(data)

    def handshake(self, size: int = 65536) -> None:
        """Go as far as the bytes that have arrived allow: returns once complete, raises
        BlockingIOError to wait for more, TLSError if the handshake failed."""
        obj = self.obj
        while True:
            try:
                obj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush_flight()
                data = self.raw.recv(size)  # BlockingIOError: wait for the selector
                if not data:
                    raise TLSError("closed during the TLS handshake") from None
                self._check_first(data)
                self.incoming.write(data)
                continue
            except ssl.SSLCertVerificationError as exc:
                self._flush_flight(quiet=True)
                raise TLSError(f"client certificate refused: {exc.verify_message}",
                               certificate=True) from None
            except ssl.SSLError as exc:
                self._flush_flight(quiet=True)  # the alert tells the client why
                reason = exc.reason or str(exc)
                if reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "NO_CERTIFICATE_RETURNED"):
                    raise TLSError("client certificate refused: the client sent none",
                                   certificate=True) from None
                raise TLSError(f"TLS handshake failed: {reason}") from None
            except OSError as exc:
                raise TLSError(f"TLS handshake failed: {exc}") from None
            self._flush_flight()
            self.done = True
            return

    def _check_first(self, data: bytes) -> None:
        """A TLS client starts with a handshake record; a plain HTTP request with a letter."""
        if self.seen_bytes:
            return
        self.seen_bytes = True
        if data[0] != _TLS_HANDSHAKE_RECORD:
            raise TLSError("plain HTTP on a TLS address" if data[:1].isalpha() else "not a TLS client",
                           plain_http=data[:1].isalpha())

    def _flush_flight(self, quiet: bool = False) -> None:
        """Hand the kernel what the handshake wrote. A flight fits in a new socket's send buffer
        (Linux starts it at 16 KiB or more; a certificate chain is a few KiB), so the wait below
        only runs for chains larger than that, and is bounded."""
        data = self.outgoing.read()
        if not data:
            return
        view = memoryview(data)
        deadline = time.monotonic() + FLIGHT_WAIT
        while view:
            try:
                view = view[self.raw.send(view):]
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not _writable(self.raw.fileno(), remaining):
                    if quiet:
                        return
                    raise TLSError("the client took none of the handshake") from None
            except OSError:
                if quiet:
                    return
                raise TLSError("the client went away during the TLS handshake") from None

    def peer_certificate(self) -> dict | None:
        return self.obj.getpeercert()

    def version(self) -> str | None:
        return self.obj.version()

    # -- after the handshake -------------------------------------------------------

    def recv(self, size: int) -> bytes:
        """Every byte of plaintext that whole records give, at least one; BlockingIOError if none
        has arrived, b"" at the end (close_notify, or the client closed), OSError on a bad record."""
        if self.shut:
            return self.raw.recv(size)
        if self.peer_closed:
            return b""
        obj = self.obj
        parts = []
        while True:
            try:
                data = obj.read(size)
                if not data:  # the client's close_notify (the ssl module reports it so)
                    self.peer_closed = True
                    break
                parts.append(data)
            except ssl.SSLWantReadError:
                if parts:
                    break
                data = self.raw.recv(size)  # BlockingIOError: nothing yet; OSError: gone
                if not data:
                    return b""  # a close without close_notify: the framing tells what was complete
                self.incoming.write(data)
            except ssl.SSLZeroReturnError:
                self.peer_closed = True
                break
            except ssl.SSLError as exc:
                raise ConnectionResetError(f"TLS: {exc.reason or exc}") from None
        if self.outgoing.pending:  # a TLS 1.3 key update wants its answer
            self._try_send(self.outgoing.read())
        return b"".join(parts)

    def send(self, data: Any) -> int:
        """Plaintext bytes taken, as socket.send; BlockingIOError means: call again with the same
        data once writable (the ciphertext made from it is kept and sent first)."""
        if self.pending is not None:
            self._send_pending()
            taken, self.pending_for = self.pending_for, 0
            return taken
        if not self.done or self.shut:
            raise BrokenPipeError("TLS connection not open for writing")
        chunk = data[:SEND_CHUNK] if len(data) > SEND_CHUNK else data
        try:
            self.obj.write(chunk)
        except ssl.SSLError as exc:
            raise BrokenPipeError(f"TLS: {exc.reason or exc}") from None
        self.pending = memoryview(self.outgoing.read())
        self.pending_for = len(chunk)
        self._send_pending()
        self.pending_for = 0
        return len(chunk)

    def _send_pending(self) -> None:
        view = self.pending
        assert view is not None
        while view:
            try:
                view = view[self.raw.send(view):]
            except BlockingIOError:
                self.pending = view
                raise
        self.pending = None

    def _try_send(self, data: bytes) -> None:
        try:
            self.raw.send(data)
        except OSError:
            pass

    def _close_notify(self) -> None:
        """Tell the client we are done writing, in the same non-blocking send as anything else."""
        if not self.done or self.shut or self.pending is not None:
            return
        try:
            self.obj.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # SSLWantReadError: sent ours; the client's close_notify is not awaited
        if self.outgoing.pending:
            self._try_send(self.outgoing.read())

    def shutdown(self, how: int) -> None:
        self._close_notify()
        self.shut = True
        self.raw.shutdown(how)

    def close(self) -> None:
        self._close_notify()
        self.shut = True
        self.raw.close()


def _writable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return bool(poller.poll(timeout * 1000.0))


def https_base(base: dict, _cache: dict[int, tuple[dict, dict]] = {}) -> dict:  # noqa: B006
    """The listener's environ template for a TLS connection (built once per listener)."""
    entry = _cache.get(id(base))
    if entry is None or entry[0] is not base:
        from .wsgi import with_room  # the request path's: the master, which imports this, has none
        entry = _cache[id(base)] = (base, with_room({**base, "wsgi.url_scheme": "https", "HTTPS": "on"}))
    return entry[1]



ADHOC = ("--cert adhoc is not supported: sharedsock serves a certificate from a file. Make one, e.g. "
         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem "
         "-out cert.pem -subj /CN=localhost, then give --cert cert.pem --key key.pem")


def cert_key_options(cert: str | None, key: str | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """``flask run``'s ``--cert``/``--key`` (offered by both framework commands) as --certfile and
    --keyfile; ``given`` are the options already given at the same level."""
    from .config import OPTIONS_BY_NAME

    options: dict[str, Any] = {}
    if cert is not None:
        if cert.strip() == "adhoc":
            raise ConfigError(ADHOC)
        if "certfile" in given:
            raise ConfigError("give --cert or --certfile, not both")
        options["certfile"] = OPTIONS_BY_NAME["certfile"].parse(cert, "--cert")
    if key is not None:
        if cert is None and "certfile" not in given:
            raise ConfigError("--key needs --cert")
        if "keyfile" in given:
            raise ConfigError("give --key or --keyfile, not both")
        options["keyfile"] = OPTIONS_BY_NAME["keyfile"].parse(key, "--key")
    return options
