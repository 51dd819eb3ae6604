"""``--user``/``--group``: the master keeps its identity (root, to bind port 80 and to signal
every worker); each worker gives it up for good before it runs any of the app's code.

A forked worker switches in the child, right after fork. A spawned worker is
switched by ``subprocess`` between fork and exec (``user``/``group``/
``extra_groups``, done in C): the new interpreter never runs a line as root,
not even site-packages' ``.pth`` files. Either way the real, effective and saved
ids all change, so the worker cannot switch back.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Any

from .config import Config
from .errors import ConfigError


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups
    label: str  # for messages: "nobody:nogroup"


def worker_identity(config: Config) -> Identity | None:
    """Who the workers run as, or None when ``--user``/``--group`` ask for no change."""
    if config.user is None and config.group is None:
        return None
    uid, name, primary = os.getuid(), None, os.getgid()
    if config.user is not None:
        uid, name, primary = _user(config.user)
    gid = _group(config.group) if config.group is not None else primary
    if name is not None:
        groups = tuple(os.getgrouplist(name, gid))  # the user's groups, as a login would have
    else:
        groups = (gid,)
    identity = Identity(uid, gid, groups, f"{config.user or uid}:{config.group or gid}")
    current = Identity(os.getuid(), os.getgid(), tuple(os.getgroups()), "")
    if (identity.uid, identity.gid) == (current.uid, current.gid) and os.geteuid() != 0:
        return None  # already that identity, and not root: nothing to give up
    return identity


def _user(text: str) -> tuple[int, str | None, int]:
    """(uid, name or None, primary gid)."""
    try:
        entry = pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
    except KeyError:
        if text.isdigit():
            return int(text), None, os.getgid()
        raise ConfigError(f"--user: no such user {text!r}") from None
    return entry.pw_uid, entry.pw_name, entry.pw_gid


def _group(text: str) -> int:
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ConfigError(f"--group: no such group {text!r}") from None


def check_identity(config: Config) -> Identity | None:
    """Before anything starts: only root can hand workers another identity."""
    identity = worker_identity(config)
    if identity is not None and os.geteuid() != 0:
        flag = "--user" if config.user is not None else "--group"
        raise ConfigError(f"{flag} {identity.label}: switching the workers' identity needs the "
                          f"master to run as root (it runs as uid {os.geteuid()})")
    return identity


def become(identity: Identity) -> None:
    """In a forked worker, before anything else: switch for good, and prove it."""
    os.setgroups(list(identity.groups))
    os.setresgid(identity.gid, identity.gid, identity.gid)
    os.setresuid(identity.uid, identity.uid, identity.uid)
    if os.getresuid() != (identity.uid,) * 3 or os.getresgid() != (identity.gid,) * 3:
        raise OSError(f"could not become {identity.label}")
    if identity.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise OSError(f"became {identity.label} but could switch back to root")


def popen_arguments(identity: Identity | None) -> dict[str, Any]:
    """``subprocess.Popen`` arguments that start a spawned worker as ``identity``."""
    if identity is None:
        return {}
    return {"user": identity.uid, "group": identity.gid, "extra_groups": list(identity.groups)}


def give_files(paths: list[str], identity: Identity | None) -> None:
    """Log files the master created must stay writable by workers that reopen them (SIGUSR1)
    or open them themselves (spawned workers, the access log)."""
    if identity is None:
        return
    for path in paths:
        try:
            os.chown(path, identity.uid, identity.gid)
        except OSError:
            pass  # /dev/null, a file on a filesystem without owners: the open will tell


def socket_owner(config: Config) -> tuple[int, int] | None:
    """(uid, gid) the master gives the unix sockets it creates, so the workers' group (nginx in
    it, say) reaches them as the umask allows."""
    identity = worker_identity(config)
    return None if identity is None else (identity.uid, identity.gid)
