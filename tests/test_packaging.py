"""The wheel carries every package: an editable install hides a subpackage missing from pyproject."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "-q", "-w", str(out), str(ROOT)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("sharedsock-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_contains_engine_and_integrations(wheel):
    names = set(wheel.namelist())
    sources = [p for p in ROOT.joinpath("sharedsock").rglob("*.py")]
    sources += [p for p in ROOT.joinpath("integrations").rglob("*.py")]
    for source in sources:
        relative = source.relative_to(ROOT).as_posix()
        if relative.startswith("integrations/"):
            relative = "sharedsock/" + relative
        assert relative in names, f"{relative} is missing from the wheel"


def test_wheel_registers_console_script_and_flask_command(wheel):
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    text = wheel.read(entry_points).decode()
    assert "sharedsock = sharedsock.cli:main" in text
    assert "[flask.commands]" in text and "runshared = sharedsock.integrations.flask.cli" in text


def test_integrations_importable_under_clean_names():
    code = ("import sharedsock.integrations.flask, sharedsock.integrations.django.apps as a; "
            "print(a.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sharedsock.integrations.django.apps"
