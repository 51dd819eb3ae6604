"""deploy/docker/Dockerfile: it cannot be built here, so its instructions are parsed and its CMD is
run as a dry run (``sharedsock --check-config``) against the files it copies."""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
from pathlib import Path

from conftest import SHAREDSOCK
from sharedsock.cli import build_parser, given_options
from sharedsock.config import build_config

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), with comments dropped and continuation lines joined, as Docker
    reads the file."""
    result, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        word, _, rest = pending.strip().partition(" ")
        result.append((word, rest.strip()))
        pending = ""
    assert not pending, "the file ends inside a continued line"
    return result


def only(name: str) -> str:
    found = [rest for word, rest in instructions() if word == name]
    assert len(found) == 1, f"{len(found)} {name} instructions"
    return found[0]


def command() -> list[str]:
    argv = json.loads(only("CMD"))  # exec form: sharedsock is PID 1 and gets docker stop's SIGTERM
    assert isinstance(argv, list) and argv[0] == "sharedsock"
    return argv


def here(argv: list[str]) -> list[str]:
    """The command's arguments with --user and --group naming the user running the test: the
    image's user does not exist here, and sharedsock checks that the user it is given does."""
    me, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    return [me if prev == "--user" else group if prev == "--group" else arg
            for prev, arg in zip([""] + argv[1:], argv[1:])]


def config_of(argv: list[str]):
    """(the options as written, the configuration they give here)."""
    written = build_parser().parse_args(argv[1:])
    return written, build_config(("command line", given_options(build_parser().parse_args(here(argv)))))


def test_every_instruction_is_one_docker_knows_and_from_comes_first():
    found = instructions()
    assert found[0][0] == "FROM"
    assert {word for word, _ in found} <= INSTRUCTIONS


def test_every_copied_path_exists_in_the_build_context():
    for word, rest in instructions():
        if word == "COPY":
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_workers_run_as_the_unprivileged_user_the_image_creates():
    written, _ = config_of(command())
    created = [rest for word, rest in instructions() if word == "RUN" and "useradd" in rest]
    assert created, "no RUN useradd"
    assert written.user == "app" and written.group == "app"
    assert created[0].split("&&")[0].split()[-1] == written.user
    assert "--uid 10001" in created[0]
    assert not [rest for word, rest in instructions() if word == "USER"]  # --user needs a root master


def test_ports_health_check_and_stop_timing_agree_with_the_command():
    _, config = config_of(command())
    bind_port = int(config.bind[0].rsplit(":", 1)[1])
    metrics_port = int(config.metrics_bind.rsplit(":", 1)[1])
    assert sorted(int(p) for p in only("EXPOSE").split()) == sorted([bind_port, metrics_port])
    assert f"127.0.0.1:{metrics_port}/livez" in only("HEALTHCHECK")
    # docker stop sends SIGKILL 10 s after SIGTERM.
    assert config.shutdown_delay + config.graceful_timeout < 10


def test_the_command_checks_out_against_the_copied_app(tmp_path):
    """The CMD, run with --check-config in the directory the image copies the app to: the
    options are valid and the app loads as a worker would. The image's user does not exist
    here, so the check drops to the user running the test instead."""
    argv = command()
    copies = {rest.split()[-1]: rest.split()[0] for word, rest in instructions() if word == "COPY"}
    workdir = only("WORKDIR")
    app_dir = ROOT / copies[workdir]
    args = here(argv)
    env = dict(os.environ)
    for word, rest in instructions():
        if word == "ENV" and rest.startswith("NOTES_DATA_DIR="):
            env["NOTES_DATA_DIR"] = str(tmp_path / "notes")
    assert "NOTES_DATA_DIR" in env
    result = subprocess.run([SHAREDSOCK, "--check-config", *args], cwd=app_dir, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
