"""What a user gets from the package, which an editable install hides.

A subpackage missing from pyproject still imports from a checkout but is absent from the
wheel; a file missing from MANIFEST.in is there in the checkout but not in the sdist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def build_warnings(output: str) -> list[str]:
    """Lines of a build log a user would take as a packaging mistake."""
    return re.findall(r"(?im)^.*(?:deprecat|no previously-included|no files found).*$", output)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v",
                             "-w", str(out), str(ROOT)], capture_output=True, text=True,
                            check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not build_warnings(result.stdout + result.stderr)
    (path,) = out.glob("sharedsock-*.whl")
    return zipfile.ZipFile(path)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> list[str]:
    """The sdist's file names, built the way pip builds a project: the backend pyproject asks
    for, installed on its own (the test venv need not have setuptools)."""
    backend = tmp_path_factory.mktemp("backend")
    out = tmp_path_factory.mktemp("sdist")
    requires = re.search(r'requires = \[(.*?)\]', (ROOT / "pyproject.toml").read_text()).group(1)
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(backend),
                              *re.findall(r'"([^"]+)"', requires)],
                             capture_output=True, text=True, check=False, timeout=300)
    assert install.returncode == 0, install.stderr
    source = tmp_path_factory.mktemp("source") / "sharedsock"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "*.egg-info", "__pycache__", ".venv", "build", "dist", ".pytest_cache", "raw"))
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(out)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True,
                            check=False,
                            env=dict(os.environ, PYTHONPATH=str(backend)), timeout=300)
    assert result.returncode == 0, result.stderr
    assert not build_warnings(result.stdout + result.stderr)
    (path,) = out.glob("sharedsock-*.tar.gz")
    with tarfile.open(path) as archive:
        return [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]


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
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sharedsock.integrations.django.apps"


def _metadata(wheel: zipfile.ZipFile) -> str:
    name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    return wheel.read(name).decode()


def test_wheel_is_typed_and_carries_its_license(wheel):
    names = wheel.namelist()
    assert "sharedsock/py.typed" in names
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(license_file).decode()
    assert text.startswith("MIT License") and "the sharedsock authors" in text
    metadata = _metadata(wheel)
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "Classifier: Typing :: Typed" in metadata.splitlines()


def _relative_links(markdown: str) -> list[str]:
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]


def test_sdist_carries_what_the_readme_links_to_and_the_test_suite(sdist):
    names = set(sdist)
    readme = (ROOT / "README.md").read_text()
    links = _relative_links(readme)
    assert "benchmarks/results/latest.png" in links  # the parser still finds the chart
    for link in links:
        assert link in names, f"README links to {link}, which the sdist lacks"
    for needed in ("LICENSE", "CHANGELOG.md", "tests/conftest.py", "tests/apps/testapp.py",
                   "example_projects/flask_app/wsgi.py", "example_projects/flask_app/.flaskenv",
                   "example_projects/django_site/manage.py", "benchmarks/run.py"):
        assert needed in names, f"{needed} is missing from the sdist"
    tracked = [p.relative_to(ROOT).as_posix() for folder in ("tests", "example_projects")
               for p in ROOT.joinpath(folder).rglob("*.py") if "__pycache__" not in p.parts]
    assert not [t for t in tracked if t not in names]
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".sqlite3"))]


def test_readme_says_where_its_relative_links_live():
    """On a package index the README is the long description, and its relative links lead
    nowhere; it must say where those files are instead of pointing at an invented host."""
    readme = (ROOT / "README.md").read_text()
    assert _relative_links(readme)
    assert "in the `benchmarks/` folder of the repository and of\nthe source distribution" in readme


def test_readme_install_section_names_every_user_extra():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install\n", 1)[1].split("\n## ", 1)[0]
    for extra in ("flask", "django", "proctitle"):
        assert f'pip install "sharedsock[{extra}]"' in section
    assert readme.index("## Install\n") < readme.index("## Serving an app\n")


def test_the_wheel_carries_the_compiled_accelerator_and_its_types(wheel):
    names = wheel.namelist()
    assert any(n.startswith("sharedsock/_speedups.") and n.endswith(".so") for n in names), names
    assert "sharedsock/_speedups.pyi" in names


def test_without_a_c_compiler_the_install_falls_back_to_pure_python(tmp_path):
    """An sdist built where there is no compiler: the install succeeds, without the extension."""
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "*.egg-info", "__pycache__", ".venv", "build", "dist", ".pytest_cache", "raw", "*.so"))
    out = tmp_path / "wheel"
    env = dict(os.environ, CC="/bin/false", LDSHARED="/bin/false")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(out),
                             str(source)], capture_output=True, text=True, check=False, timeout=300,
                            env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = out.glob("sharedsock-*.whl")
    names = zipfile.ZipFile(path).namelist()
    assert not [n for n in names if n.endswith(".so")], "an extension was built with no compiler"
    assert "sharedsock/speedups.py" in names and "sharedsock/http/parser.py" in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(path)], check=True, capture_output=True, timeout=300)
    code = "import sharedsock.speedups as s; print(s.describe())"
    # -S: no site-packages, where the editable install of this checkout (built) would win.
    described = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                               env=dict(os.environ, PYTHONPATH=str(target)), cwd=str(tmp_path),
                               timeout=60)
    assert described.stdout.strip() == "pure Python (the compiled accelerator is not built)"
