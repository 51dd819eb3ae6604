"""``--user``, ``--group``, ``--chdir``: workers run as another user, the master stays root.

These need root (the test machine runs the suite as root). The worker's user
must be able to run the interpreter: when the test environment's own Python
lives somewhere that user cannot read (a pyenv build under /root), the
system's Python of the same version runs the server instead, with the same
``sys.path`` entries, which is what an operator would use in production.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from conftest import APPS, http_get, wait_for

ROOT = Path(__file__).resolve().parent.parent
NOBODY = pwd.getpwnam("nobody")
NOGROUP_GID = NOBODY.pw_gid

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def _python_path() -> str:
    import httptools

    site_packages = str(Path(httptools.__file__).resolve().parent.parent)
    return os.pathsep.join([str(APPS), str(ROOT), site_packages])


def _runs_as_nobody(python: str) -> bool:
    try:
        result = subprocess.run([python, "-c", "import sharedsock.worker, httptools"], user=NOBODY.pw_uid,
                                group=NOBODY.pw_gid, extra_groups=[], cwd="/",
                                env={"PYTHONPATH": _python_path()}, capture_output=True, timeout=60)
    except OSError:
        return False
    return result.returncode == 0


@pytest.fixture(scope="module")
def python() -> str:
    """An interpreter that both root and nobody can run, with sharedsock importable."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for candidate in (sys.executable, shutil.which(version, path="/usr/bin:/usr/local/bin")):
        if candidate and _runs_as_nobody(candidate):
            return candidate
    pytest.skip(f"no {version} that the user nobody can run")


@pytest.fixture
def shared_dir():
    """A directory the workers' user can enter (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="ss-priv-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve(start_server, python: str, args: list[str], cwd: Path, wait: bool = True, **kwargs):
    env = {"PYTHONPATH": _python_path(), "HOME": "/"}
    return start_server(["--bind", "127.0.0.1:0", *args], command=[python, "-m", "sharedsock"], env=env,
                        cwd=cwd, wait=wait, **kwargs)


def proc_ids(pid: int, field: str) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no {field} for {pid}")


def identity(server) -> dict:
    status, _, body = http_get(server, "/")
    assert status == 200, body
    return json.loads(body)


def test_workers_run_as_the_user_and_cannot_regain_root(start_server, python, shared_dir, start_method):
    server = serve(start_server, python, ["--start-method", start_method, "--user", "nobody", "--workers", "2",
                                          "ops_app:app"], shared_dir, workers=2)
    seen = identity(server)
    assert (seen["uid"], seen["euid"], seen["gid"], seen["egid"]) == (NOBODY.pw_uid, NOBODY.pw_uid,
                                                                      NOGROUP_GID, NOGROUP_GID)
    assert seen["groups"] == sorted(set(os.getgrouplist("nobody", NOGROUP_GID)))
    assert seen["regained_root"] is False
    assert proc_ids(seen["pid"], "Uid") == [NOBODY.pw_uid] * 4  # real, effective, saved, filesystem
    assert proc_ids(seen["pid"], "Gid") == [NOGROUP_GID] * 4
    assert proc_ids(server.proc.pid, "Uid") == [0] * 4  # the master stays root
    for pid in server.booted_pids():
        assert proc_ids(pid, "Uid")[0] == NOBODY.pw_uid


def test_supplementary_groups_are_the_users(start_server, python, shared_dir, start_method):
    name = "ss" + uuid.uuid4().hex[:8]
    extra = name + "x"
    subprocess.run(["groupadd", extra], check=True)
    try:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-g", "nogroup",
                        "-G", extra, name], check=True)
        try:
            server = serve(start_server, python, ["--start-method", start_method, "--workers", "1",
                                                  "--user", name, "ops_app:app"], shared_dir)
            seen = identity(server)
            user = pwd.getpwnam(name)
            assert seen["uid"] == user.pw_uid and seen["gid"] == NOGROUP_GID
            assert grp.getgrnam(extra).gr_gid in seen["groups"] and 0 not in seen["groups"]
            server.stop()
        finally:
            subprocess.run(["userdel", name], check=False)
    finally:
        subprocess.run(["groupdel", extra], check=False)


def test_group_by_id_and_unix_socket_given_to_the_workers(start_server, python, shared_dir, start_method):
    sock = shared_dir / "app.sock"
    server = serve(start_server, python, ["--start-method", start_method, "--workers", "1", "--user",
                                          str(NOBODY.pw_uid), "--group", str(NOGROUP_GID), "--umask", "007",
                                          "--bind", f"unix:{sock}", "ops_app:app"], shared_dir)
    server.wait_log(r"Listening at: unix:")
    info = os.stat(sock)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY.pw_uid, NOGROUP_GID, 0o770)
    seen = identity(server)
    assert (seen["uid"], seen["gid"]) == (NOBODY.pw_uid, NOGROUP_GID)


def test_log_files_are_given_to_the_workers(start_server, python, shared_dir, start_method):
    server = serve(start_server, python, ["--start-method", start_method, "--workers", "1", "--user",
                                          "nobody", "--access-log", "access.log", "ops_app:app"], shared_dir)
    identity(server)
    access = shared_dir / "access.log"
    wait_for(lambda: access.exists() and b"GET / " in access.read_bytes(), message="the access log line")
    assert os.stat(access).st_uid == NOBODY.pw_uid


def test_chdir_comes_before_the_app_import_and_relative_paths(start_server, python, shared_dir, start_method):
    project = shared_dir / "project"
    project.mkdir()
    (project / "chdir_app.py").write_text("import os\nfrom ops_app import app\n")
    elsewhere = shared_dir / "elsewhere"
    elsewhere.mkdir()
    server = serve(start_server, python, ["--start-method", start_method, "--workers", "1", "--chdir",
                                          str(project), "--pid", "master.pid", "chdir_app:app"], elsewhere)
    assert identity(server)["cwd"] == str(project)
    assert (project / "master.pid").read_text().strip() == str(server.proc.pid)
    assert not (elsewhere / "master.pid").exists()


@pytest.mark.parametrize("args, expected", [
    (["--user", "no-such-user-here"], "--user: no such user 'no-such-user-here'"),
    (["--group", "no-such-group-here"], "--group: no such group 'no-such-group-here'"),
    (["--chdir", "/no/such/dir"], "--chdir /no/such/dir: No such file or directory"),
])
def test_bad_identity_or_directory_is_one_line_exit_2(start_server, python, shared_dir, args, expected):
    server = serve(start_server, python, [*args, "ops_app:app"], shared_dir, wait=False)
    assert server.wait_exit() == 2
    lines = server.log().strip().splitlines()
    assert lines == [f"sharedsock: error: {expected}"]


def test_switching_user_needs_a_root_master(python, shared_dir):
    result = subprocess.run([python, "-m", "sharedsock", "--user", "root", "--bind", "127.0.0.1:0",
                             "ops_app:app"], user=NOBODY.pw_uid, group=NOGROUP_GID, extra_groups=[],
                            cwd=shared_dir, env={"PYTHONPATH": _python_path()}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("sharedsock: error: --user root:0: switching the workers' identity "
                                     f"needs the master to run as root (it runs as uid {NOBODY.pw_uid})")


def test_check_config_loads_the_app_as_the_user(python, shared_dir):
    """An app its workers' user cannot read fails the check, though root can import it."""
    private = shared_dir / "private"
    private.mkdir(mode=0o700)
    (private / "secret_app.py").write_text("from ops_app import app\n")
    env = {"PYTHONPATH": os.pathsep.join([_python_path(), str(private)])}

    def check(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([python, "-m", "sharedsock", "--check-config", *extra, "secret_app:app"],
                              cwd=shared_dir, env=env, capture_output=True, text=True, timeout=60)

    as_root = check()
    assert as_root.returncode == 0, as_root.stderr
    as_nobody = check("--user", "nobody")
    assert as_nobody.returncode == 2, as_nobody.stderr
    assert "app failed to load:" in as_nobody.stderr
