"""Every option sharedsock understands, declared exactly once.

The command line, ``SHAREDSOCK_*`` environment variables, ``serve(**options)``,
the Flask and Django commands and the README table are all generated from
``OPTIONS``, so an option can never exist in one front end and not another.
"""

from __future__ import annotations

import dataclasses
import difflib
import grp
import ipaddress
import os
import pwd
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

ENV_PREFIX = "SHAREDSOCK_"


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _default_start_method() -> str:
    return "fork" if hasattr(os, "fork") else "spawn"


# Converters take a raw value (a string from the command line or the
# environment, or a Python value from serve()) and return the typed value or
# raise ValueError with a message that fits after "--option: ".


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number of seconds, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
    if result != result or result in (float("inf"), float("-inf")):
        raise ValueError(f"expected a finite number, got {value!r}")
    return result


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def to_str_list(value: Any) -> tuple[str, ...]:
    """Lists come as a Python list (items kept whole: a path may contain a comma), or as one
    comma-separated string from the environment or a single flag."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, Iterable):
        items = []
        for v in value:
            if not isinstance(v, str):
                raise ValueError(f"expected strings, got {v!r}")
            items.append(v.strip())
    else:
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(v for v in items if v)


def to_bind_list(value: Any) -> tuple[str, ...]:
    """A string (an environment variable, a ``serve(bind="...")``) lists addresses separated by
    commas or whitespace; no address contains either (IPv6 literals are bracketed and have no
    comma). Each item of a Python list, and each ``--bind`` flag, is one address kept whole:
    the way to give a unix socket path that contains a comma or a space."""
    if isinstance(value, str):
        items = value.replace(",", " ").split()
        if not items:
            raise ValueError(f"expected an address, got {value!r}")
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise ValueError(f"expected an address or a list of addresses, got {value!r}")
    for v in items:
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"expected an address, got {v!r}")
    return tuple(v.strip() for v in items)


def to_umask(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        result = value
    else:
        try:
            result = int(str(value).strip(), 8)
        except ValueError:
            raise ValueError(f"expected an octal mask such as 007, got {value!r}") from None
    if not 0 <= result <= 0o777:
        raise ValueError(f"expected an octal mask between 000 and 777, got {value!r}")
    return result


def to_log_level(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return text


def to_forwarded_ips(value: Any) -> tuple[str, ...]:
    items = to_str_list(value)
    for item in items:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or CIDR range") from None
    return items


FORWARDED_HEADERS = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port",
                     "forwarded")


def to_forwarded_headers(value: Any) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(v.lower() for v in to_str_list(value)))
    if items == ("none",):
        return ()
    for item in items:
        if item not in FORWARDED_HEADERS:
            raise ValueError(f"{item!r} is not one of {', '.join(FORWARDED_HEADERS)} (or none)")
    if "forwarded" in items and len(items) > 1:
        raise ValueError("forwarded cannot be combined with x-forwarded-*: trust the one family your "
                         "proxy sets")
    return items


def to_queue_limit(value: Any) -> int | None:
    """``--max-queue``: a count of requests, 0 included (no waiting at all), or off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none", "")):
        return None
    result = to_int(value)
    if result < 0:
        raise ValueError(f"expected a number of requests (0 or more) or off, got {value!r}")
    return result


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def to_path(value: Any) -> str:
    """A path, made absolute now: the process may change directory later (``--chdir``), and a
    spawned worker or the Django hand-over must read it the same way."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a path, got {value!r}")
    return os.path.abspath(os.path.expanduser(value.strip()))


def to_config_path(value: Any) -> str:
    """Like ``to_path``, but an empty string is kept: it means "read no config file"."""
    if isinstance(value, str) and not value.strip():
        return ""
    return to_path(value)


def _to_identity(value: Any, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"expected a {what} name or id, got {value!r}")
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a {what} name or id, got {value!r}")
    return value.strip()


def to_user(value: Any) -> str:
    """A user name or uid, kept as written; a name must exist (an id need not, as with chown)."""
    text = _to_identity(value, "user")
    if not text.isdigit():
        try:
            pwd.getpwnam(text)
        except KeyError:
            raise ValueError(f"no such user {text!r}") from None
    return text


def to_group(value: Any) -> str:
    text = _to_identity(value, "group")
    if not text.isdigit():
        try:
            grp.getgrnam(text)
        except KeyError:
            raise ValueError(f"no such group {text!r}") from None
    return text


CERT_REQS = ("none", "optional", "required")
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")


def to_tls_version(value: Any) -> str:
    text = str(value).strip().lower().replace("_", ".")
    for version in TLS_VERSIONS:
        if text in (version.lower(), version[4:]):
            return version
    raise ValueError(f"expected TLSv1.2 or TLSv1.3, got {value!r}")


def _at_least(minimum: float) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value < minimum:
            raise ValueError(f"must be at least {minimum:g}, got {value:g}")

    return check


def _between(minimum: float, maximum: float) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if not minimum <= value <= maximum:
            raise ValueError(f"must be from {minimum:g} to {maximum:g}, got {value:g}")

    return check


def _one_of(*choices: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")

    return check


@dataclass(frozen=True)
class Option:
    """One setting: its type, default, flag, environment variable and help text."""

    name: str
    convert: Callable[[Any], Any]
    default: Any
    help: str
    section: str
    short: str | None = None
    metavar: str | None = None
    check: Callable[[Any], None] | None = None
    is_flag: bool = False
    multiple: bool = False
    choices: tuple[str, ...] | None = None
    default_text: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def describe_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        value = self.default_value()
        if isinstance(value, tuple):
            return ",".join(value) or "(none)"
        if value is None or value == "":
            return "(none)"
        if isinstance(value, bool):
            return "on" if value else "off"
        return str(value)

    def split_text(self, text: str) -> tuple[str, ...]:
        """The items of a list option written as one string, as an environment variable holds it."""
        try:
            return tuple(self.convert(text))
        except ValueError:
            return (text,)  # parse() reports it, with the variable's name

    def parse(self, raw: Any, source: str) -> Any:
        try:
            value = self.convert(raw)
            if self.choices is not None:
                _one_of(*self.choices)(value)
            if self.check is not None:
                self.check(value)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        return value


OPTIONS: tuple[Option, ...] = (
    # Sockets
    Option("bind", to_bind_list, ("127.0.0.1:8000",), section="Sockets", short="-b", metavar="ADDRESS",
           multiple=True,
           help="Where to listen (repeatable): HOST:PORT, [IPV6]:PORT, unix:/PATH, or fd://N; "
                "https://HOST:PORT for TLS, http://HOST:PORT for plain HTTP (see --certfile). "
                "Port 0 picks a free port. Systemd socket activation (LISTEN_FDS) is used when present."),
    Option("backlog", to_int, 2048, section="Sockets", metavar="N", check=_at_least(1),
           help="Length of the kernel's queue of connections waiting to be accepted."),
    Option("umask", to_umask, None, section="Sockets", metavar="MASK", default_text="process umask",
           help="Octal umask applied when creating unix sockets, e.g. 007 for owner and group only."),
    # Workers
    Option("workers", to_int, _default_workers, section="Workers", short="-w", metavar="N",
           check=_at_least(1), default_text="CPUs available to this process",
           help="Number of worker processes."),
    Option("threads", to_int, 1, section="Workers", metavar="N", check=_at_least(1),
           help="Requests each worker runs in the app at once. Idle connections never hold a thread."),
    Option("switch_interval", to_float, 0.0005, section="Workers", metavar="SECONDS",
           check=_between(0.000001, 1.0),
           help="With --threads above 1: how long one thread may keep the interpreter lock while "
                "another waits for it (sys.setswitchinterval, set in each worker; an app that sets its "
                "own at import keeps it). Python's own 5 ms lets a request ready on one thread wait "
                "out several turns of the others: at 0.5 ms the slowest requests of a Flask or "
                "Django app come back sooner. 0.005 restores Python's default; from 1e-06 to 1."),
    Option("worker_connections", to_int, 1000, section="Workers", metavar="N", check=_at_least(1),
           help="Connections (busy or idle keep-alive) each worker holds at most. At the limit the "
                "longest-idle keep-alive connection is closed to make room; when none is idle, new "
                "clients wait in the kernel backlog for a worker with room."),
    Option("start_method", to_str, _default_start_method, section="Workers", metavar="METHOD",
           choices=("fork", "spawn"), default_text="fork",
           help="fork: workers inherit the listening sockets. spawn: each worker is a fresh interpreter "
                "that receives the sockets over a unix socket (SCM_RIGHTS)."),
    Option("preload", to_bool, False, section="Workers", is_flag=True,
           help="Load the app in the master before forking workers (fork only; saves memory, "
                "but code changes then need a full restart)."),
    Option("strict_fork_safety", to_bool, False, section="Workers", is_flag=True,
           help="Refuse to start (exit 2) when an app built in the master (--preload, or serve(app)) "
                "started threads or opened network or SQLite connections, which forked workers "
                "cannot use; without it they are warned about."),
    Option("max_requests", to_int, 0, section="Workers", metavar="N", check=_at_least(0),
           help="Retire a worker gracefully after about N requests (0: never)."),
    Option("max_requests_jitter", to_int, 0, section="Workers", metavar="N", check=_at_least(0),
           help="Add a random 0..N to --max-requests per worker so they do not all retire at once."),
    # Timeouts
    Option("timeout", to_float, 30.0, section="Timeouts", short="-t", metavar="SECONDS",
           check=_at_least(0),
           help="Worker liveness and request duration: a worker silent for this long, or with a request "
                "running this long, is killed (its stacks logged, stuck requests answered 504) and "
                "replaced. 0 disables."),
    Option("graceful_timeout", to_float, 30.0, section="Timeouts", metavar="SECONDS", check=_at_least(0),
           help="On stop or reload, how long in-flight requests may take to finish before their worker "
                "is killed."),
    Option("keepalive", to_float, 5.0, section="Timeouts", metavar="SECONDS", check=_at_least(0),
           help="How long an idle keep-alive connection is kept open (0 disables keep-alive). Behind a "
                "load balancer, set this above the balancer's idle timeout (AWS ALB: 60 s)."),
    Option("header_timeout", to_float, 10.0, section="Timeouts", metavar="SECONDS", check=_at_least(0.001),
           help="The request line and headers must arrive within this time, else 408: counted from the "
                "connection's accept for its first request, and on a kept-alive connection from the first "
                "byte of the next request (which must come within --keepalive). Blank lines start no clock."),
    Option("body_timeout", to_float, 10.0, section="Timeouts", metavar="SECONDS", check=_at_least(0.001),
           help="Longest wait for the next piece of a request body, and longest a client may take none of "
                "a response that is waiting for it to read; either way the request fails."),
    Option("min_body_rate", to_int, 1024, section="Timeouts", metavar="BYTES", check=_at_least(0),
           help="After the first --body-timeout seconds, a request body must average at least this many "
                "bytes per second; and while a response waits for the client to read, the client must "
                "read this many bytes per second over each --body-timeout of the wait (0 disables)."),
    # Limits
    Option("limit_request_line", to_int, 8190, section="Limits", metavar="BYTES", check=_at_least(64),
           help="Longest request line (method, target, version); longer gets 414."),
    Option("limit_request_fields", to_int, 100, section="Limits", metavar="N", check=_at_least(1),
           help="Most header fields in a request; more gets 431."),
    Option("limit_request_field_size", to_int, 8190, section="Limits", metavar="BYTES", check=_at_least(64),
           help="Longest header field (name, colon and value); longer gets 431."),
    Option("limit_request_body", to_int, 1 << 30, section="Limits", metavar="BYTES", check=_at_least(0),
           help="Largest request body; larger gets 413. 0 means unlimited."),
    # Health and metrics
    Option("metrics_bind", to_str, None, section="Health and metrics", metavar="ADDRESS",
           default_text="off",
           help="Where the master serves GET /metrics (Prometheus), /livez, /readyz, the status page "
                "/ and /status.json (read by 'sharedsock status' and 'top'), itself, so they answer "
                "while every worker is busy: HOST:PORT or unix:/PATH."),
    Option("ready_workers", to_int, 0, section="Health and metrics", metavar="N", check=_at_least(0),
           default_text="all (--workers)",
           help="/readyz answers 200 while at least this many workers are ready, else 503."),
    Option("shutdown_delay", to_float, 0.0, section="Health and metrics", metavar="SECONDS",
           check=_at_least(0),
           help="On SIGTERM, /readyz turns 503 at once and the workers keep serving this long "
                "before they drain, so a load balancer stops sending traffic first."),
    Option("max_worker_memory", to_int, 0, section="Health and metrics", metavar="MIB",
           check=_at_least(0),
           help="Retire a worker gracefully (its replacement starts first) once its resident "
                "memory exceeds this many MiB, checked every 2 s (0: never)."),
    # Load shedding
    Option("max_queue", to_queue_limit, None, section="Load shedding", metavar="N", default_text="off",
           help="Per worker: a request that would wait behind N others for a thread is answered 503 "
                "Service Unavailable (with Retry-After and Connection: close) without reaching the app, "
                "and the worker accepts no new connection while its queue is full, leaving them to "
                "workers with room. With --threads 1, the others are the requests ready while one runs. "
                "0: no request waits; off: no limit."),
    Option("max_queue_wait", to_float, 0.0, section="Load shedding", metavar="SECONDS",
           check=_at_least(0), default_text="off",
           help="A request that has waited longer than this for a thread (counted from when its last "
                "bytes reached the server, so time in the kernel's accept queue counts on TCP) is "
                "answered 503 as for --max-queue instead of reaching the app (0: off)."),
    Option("retry_after", to_int, 1, section="Load shedding", metavar="SECONDS", check=_at_least(0),
           help="The Retry-After value, in seconds, of a 503 from --max-queue or --max-queue-wait."),
    # HTTP
    Option("forwarded_allow_ips", to_forwarded_ips, ("127.0.0.1", "::1"), section="HTTP", metavar="IPS",
           help="Peers whose X-Forwarded-* and Forwarded headers are trusted: addresses or CIDR ranges, "
                "comma separated, or * for all. Unix-socket peers are trusted when loopback is."),
    Option("forwarded_headers", to_forwarded_headers, ("x-forwarded-for", "x-forwarded-proto"),
           section="HTTP", metavar="HEADERS",
           help="Which headers from those peers are read: any of x-forwarded-for, x-forwarded-proto, "
                "x-forwarded-host, x-forwarded-port; or forwarded (RFC 7239) alone; or none. List only "
                "headers your proxy sets or overwrites: one it passes through is the client's word."),
    Option("proxy_protocol", to_bool, False, section="HTTP", is_flag=True,
           help="Expect a PROXY protocol header (v1 or v2, as HAProxy send-proxy and send-proxy-v2 "
                "write it) before the request; REMOTE_ADDR and REMOTE_PORT become the client it "
                "names. A malformed or missing header closes the connection."),
    Option("proxy_allow_ips", to_forwarded_ips, ("127.0.0.1", "::1"), section="HTTP", metavar="IPS",
           help="With --proxy-protocol, the peers that may send the header: addresses or CIDR ranges, "
                "comma separated, or * for all. Others are closed at once. Unix-socket peers are "
                "allowed when loopback is."),
    Option("root_path", to_str, "", section="HTTP", metavar="PATH",
           help="SCRIPT_NAME of the app when it is mounted below a path prefix, e.g. /api."),
    Option("server_header", to_str, "sharedsock", section="HTTP", metavar="TEXT",
           help="Value of the Server response header; an empty string suppresses it."),
    # TLS
    Option("certfile", to_path, None, section="TLS", metavar="FILE", default_text="none (plain HTTP)",
           help="PEM certificate (chain) to serve TLS with; the key too, unless --keyfile is given. "
                "Every address is then TLS, unless some are written https://HOST:PORT: then only "
                "those are. SIGHUP loads the files again."),
    Option("keyfile", to_path, None, section="TLS", metavar="FILE", default_text="in --certfile",
           help="PEM private key of --certfile."),
    Option("keyfile_password", to_str, None, section="TLS", metavar="PASSWORD", default_text="none",
           help="Password of an encrypted --keyfile. Prefer the environment variable: a flag is "
                "visible to every user in ps."),
    Option("ca_certs", to_path, None, section="TLS", metavar="FILE", default_text="none",
           help="PEM certificates of the CAs that client certificates must be signed by "
                "(with --cert-reqs)."),
    Option("cert_reqs", to_str, "none", section="TLS", metavar="MODE", choices=CERT_REQS,
           help="Client certificates (mutual TLS): none, optional (checked if sent) or required. "
                "The subject of a checked one is SSL_CLIENT_S_DN in the environ."),
    Option("ssl_min_version", to_tls_version, "TLSv1.2", section="TLS", metavar="VERSION",
           help="Oldest TLS version accepted: TLSv1.2 or TLSv1.3."),
    Option("ciphers", to_str, None, section="TLS", metavar="CIPHERS", default_text="OpenSSL's default",
           help="OpenSSL cipher list for TLS 1.2, e.g. ECDHE+AESGCM (TLS 1.3 suites are OpenSSL's)."),
    # Development
    Option("reload", to_bool, False, section="Development", is_flag=True,
           help="Watch the files of every module the workers loaded and gracefully replace the workers "
                "when one changes. The listening sockets stay open."),
    Option("reload_extra_files", to_str_list, (), section="Development", metavar="FILE", multiple=True,
           help="More files to watch with --reload (repeatable)."),
    # Logging
    Option("log_level", to_log_level, "info", section="Logging", metavar="LEVEL", choices=LOG_LEVELS,
           help="Error log level: debug, info, warning, error or critical."),
    Option("error_log", to_str, "-", section="Logging", metavar="FILE",
           help="Error log file; - for stderr."),
    Option("access_log", to_str, None, section="Logging", metavar="FILE", default_text="off",
           help="Access log file; - for stdout."),
    Option("access_log_format", to_str, "combined", section="Logging", metavar="FORMAT",
           help="combined (Apache), common, json, or a format with gunicorn-style atoms such as "
                "'%(h)s %(r)s %(s)s %(D)s'."),
    Option("pid", to_str, None, section="Logging", metavar="FILE", default_text="none",
           help="Write the master's PID to this file."),
    Option("proc_name", to_str, None, section="Logging", metavar="NAME", default_text="the app",
           help="Name shown in process titles (needs setproctitle)."),
    # Process
    Option("config", to_config_path, None, section="Process", short="-c", metavar="FILE",
           default_text="./sharedsock.conf.py if present",
           help="Python config file: module-level names are options (workers = 4) and functions "
                "named after hooks are hooks (see Config file and hooks). The command line and "
                "SHAREDSOCK_* win over it; it wins over the framework's settings. \"\" reads none."),
    Option("chdir", to_path, None, section="Process", metavar="DIR", default_text="stay",
           help="Change to this directory before anything else: the app is imported from it, and "
                "relative paths (logs, pid file, unix sockets) are resolved in it."),
    Option("user", to_user, None, section="Process", metavar="USER", default_text="unchanged",
           help="Run workers as this user (name or uid); the master stays root to bind and "
                "supervise. Supplementary groups are the user's. Needs the master to run as root."),
    Option("group", to_group, None, section="Process", metavar="GROUP",
           default_text="the user's primary group",
           help="Run workers with this group (name or gid)."),
)

OPTIONS_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Config:
    """The resolved configuration; built only through ``build_config`` so every value is checked."""

    bind: tuple[str, ...]
    backlog: int
    umask: int | None
    workers: int
    threads: int
    switch_interval: float
    worker_connections: int
    start_method: str
    preload: bool
    strict_fork_safety: bool
    max_requests: int
    max_requests_jitter: int
    timeout: float
    graceful_timeout: float
    keepalive: float
    header_timeout: float
    body_timeout: float
    min_body_rate: int
    limit_request_line: int
    limit_request_fields: int
    limit_request_field_size: int
    limit_request_body: int
    metrics_bind: str | None
    ready_workers: int
    shutdown_delay: float
    max_worker_memory: int
    max_queue: int | None
    max_queue_wait: float
    retry_after: int
    forwarded_allow_ips: tuple[str, ...]
    forwarded_headers: tuple[str, ...]
    proxy_protocol: bool
    proxy_allow_ips: tuple[str, ...]
    root_path: str
    server_header: str
    certfile: str | None
    keyfile: str | None
    keyfile_password: str | None
    ca_certs: str | None
    cert_reqs: str
    ssl_min_version: str
    ciphers: str | None
    reload: bool
    reload_extra_files: tuple[str, ...]
    log_level: str
    error_log: str
    access_log: str | None
    access_log_format: str
    pid: str | None
    proc_name: str | None
    config: str | None
    chdir: str | None
    user: str | None
    group: str | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy, the form a spawned worker receives."""
        data = {o.name: getattr(self, o.name) for o in OPTIONS}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def env_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Raw values of every ``SHAREDSOCK_*`` variable that names an option."""
    environ = os.environ if environ is None else environ
    return {o.name: environ[o.env] for o in OPTIONS if o.env in environ}


# Set by sharedsock itself for the processes it starts, never by a user.
INTERNAL_ENV = frozenset({"SHAREDSOCK_CONTROL_FD", "SHAREDSOCK_SYS_PATH", "SHAREDSOCK_DJANGO_BOOT",
                          "SHAREDSOCK_UPGRADE_FD"})
# Read before any configuration exists (sharedsock.speedups), so they are switches, not options.
SWITCH_ENV = frozenset({"SHAREDSOCK_PURE_PYTHON"})


def unknown_env_warnings(environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX,
                         known: Iterable[str] | None = None) -> list[str]:
    """One line per ``PREFIX*`` variable that names no option, with the closest option.

    A typo in the environment (``SHAREDSOCK_WROKERS=4``) must not pass silently, but the
    environment is shared with other programs, so it is a warning, not an error.
    ``known`` are the lower-case option names valid after ``prefix``.
    """
    environ = os.environ if environ is None else environ
    names = sorted(o.name for o in OPTIONS) if known is None else sorted(known)
    lines = []
    for variable in sorted(environ):
        if not variable.startswith(prefix) or variable in INTERNAL_ENV or variable in SWITCH_ENV:
            continue
        name = variable[len(prefix):].lower()
        if name in names:
            continue
        guess = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean {prefix}{guess[0].upper()}?" if guess else "see --help for the options"
        lines.append(f"{variable} is not an option and is ignored; {hint}")
    return lines


def build_config(*layers: tuple[str, Mapping[str, Any]]) -> Config:
    """Resolve layers of raw values, later layers winning.

    Each layer is ``(source_name, {option_name: raw_value})``; the source name
    is used in error messages ("SHAREDSOCK_WORKERS: ..."). Unknown names are
    errors: a typo in ``serve(wokers=4)`` must not silently run one worker.
    """
    values: dict[str, Any] = {}
    for source, layer in layers:
        for name, raw in layer.items():
            option = OPTIONS_BY_NAME.get(name)
            if option is None:
                raise ConfigError(f"{source}: unknown option {name!r}")
            if raw is None:
                continue
            label = option.env if source == "environment" else (
                option.flag if source == "command line" else f"{source} option {name!r}")
            values[name] = option.parse(raw, label)
    resolved = {o.name: values[o.name] if o.name in values else o.default_value() for o in OPTIONS}
    config = Config(**resolved)
    _check_consistency(config)
    return config


def _check_consistency(config: Config) -> None:
    if config.preload and config.start_method != "fork":
        raise ConfigError("--preload needs --start-method fork: spawned workers cannot share "
                          "the master's app")
    if config.start_method == "fork" and not hasattr(os, "fork"):
        raise ConfigError(f"--start-method fork is not available on {sys.platform}")
    if not config.bind:
        raise ConfigError("--bind: at least one address is needed")
    _check_tls(config)


def _check_tls(config: Config) -> None:
    if config.metrics_bind and config.metrics_bind.strip().lower().startswith("https://"):
        raise ConfigError(f"--metrics-bind {config.metrics_bind}: the health and metrics address "
                          "speaks plain HTTP; write HOST:PORT")
    if config.certfile is None:
        for name in ("keyfile", "keyfile_password", "ca_certs", "ciphers"):
            if getattr(config, name) is not None:
                raise ConfigError(f"{OPTIONS_BY_NAME[name].flag} needs --certfile")
        if config.cert_reqs != "none":
            raise ConfigError("--cert-reqs needs --certfile")
        https = [b for b in config.bind if b.strip().lower().startswith("https://")]
        if https:
            raise ConfigError(f"--bind {https[0]}: an https:// address needs --certfile (and --keyfile)")
    if config.cert_reqs != "none" and config.ca_certs is None:
        raise ConfigError(f"--cert-reqs {config.cert_reqs} needs --ca-certs, the CAs that client "
                          "certificates are checked against")


def format_config(config: Config) -> str:
    """Human-readable dump for ``--print-config``."""
    width = max(len(o.name) for o in OPTIONS)
    lines = []
    for option in OPTIONS:
        value = getattr(config, option.name)
        if isinstance(value, tuple):
            value = ", ".join(value) if value else "(none)"
        elif option.name == "umask" and value is not None:
            value = f"{value:03o}"
        elif value is None:
            value = "(none)"
        elif option.name == "keyfile_password":
            value = "(set)"
        lines.append(f"{option.name.ljust(width)} = {value}")
    return "\n".join(lines)
