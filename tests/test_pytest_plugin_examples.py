"""The example projects' own live test suites (``example_projects/*/tests``), run as their users
run them, each in its own session: Django can be set up only once per process, and the
plugin's live servers should meet the examples exactly as a project's suite does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "example_projects"
PYTEST = str(Path(sys.executable).with_name("pytest"))


def run(args: list[str], cwd: Path, **more_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "PYTEST_ADDOPTS") and not k.startswith("SHAREDSOCK_")}
    env.update(more_env)
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    print(result.stdout[-20000:], result.stderr[-5000:])
    return result


@pytest.mark.smoke
def test_flask_example_suite_against_two_workers(start_method):
    result = run([PYTEST, "-p", "no:cacheprovider", "-q", str(EXAMPLES / "flask_app" / "tests"),
                  "--sharedsock-start-method", start_method], ROOT)
    assert result.returncode == 0
    assert "6 passed" in result.stdout


@pytest.mark.smoke
def test_django_example_suite_against_the_test_database(start_method):
    real_database = EXAMPLES / "django_site" / "db.sqlite3"
    before = real_database.stat().st_mtime_ns if real_database.exists() else None
    result = run([PYTEST, "-p", "no:cacheprovider", "-q", str(EXAMPLES / "django_site" / "tests"),
                  "--sharedsock-start-method", start_method], ROOT)
    assert result.returncode == 0
    assert "5 passed" in result.stdout
    after = real_database.stat().st_mtime_ns if real_database.exists() else None
    assert after == before  # the workers used the test database, never the project's own


@pytest.mark.smoke
def test_django_example_unittest_suite_under_manage_py_test(start_method):
    """Django's runner makes its in-memory SQLite test database; the workers still see it."""
    result = run([sys.executable, "manage.py", "test", "tests", "--pattern", "unittest_*.py", "-v", "2"],
                 EXAMPLES / "django_site", SHAREDSOCK_START_METHOD=start_method)
    assert result.returncode == 0
    assert "Ran 2 tests" in result.stderr and "OK" in result.stderr
    assert "memorydb_default" in result.stderr
