"""The compiled accelerator under AddressSanitizer, in every CI run.

The ten-minute libFuzzer run (tests/fuzz/run_fuzz.sh) needs clang; this builds the same
target with the system C compiler and ASan and runs it over every conformance sample
and 2,000,000 random mutations of them. Any out-of-bounds read, leak or broken promise of
the scanner (the target checks them) aborts it. The rest of the extension lives inside
the interpreter, so its differential tests run once more in a Python that loads an ASan
build of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
ROOT = FUZZ.parent.parent


def test_scanner_survives_the_seed_corpus_and_mutations_under_asan(tmp_path):
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler to build the fuzz target with")
    binary = tmp_path / "fuzz_headscan"
    build = subprocess.run([cc, "-g", "-O1", "-fsanitize=address,undefined",
                            "-fno-sanitize-recover=undefined", str(FUZZ / "fuzz_headscan.c"),
                            str(FUZZ / "driver.c"), str(ROOT / "sharedsock" / "_headscan.c"),
                            "-o", str(binary)], capture_output=True, text=True, timeout=120)
    if build.returncode != 0 and "asan" in build.stderr.lower():
        pytest.skip(f"the C compiler cannot build with AddressSanitizer: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    subprocess.run([sys.executable, str(FUZZ / "write_corpus.py"), str(corpus)], check=True,
                   capture_output=True, timeout=120)
    seeds = sorted(str(p) for p in corpus.iterdir())
    assert len(seeds) > 300
    result = subprocess.run([str(binary), "2000000", *seeds], capture_output=True, text=True,
                            timeout=600, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ran {len(seeds)} seeds and 2000000 mutations" in result.stdout


# The Python-facing parts (environ builder, response head renderer, the scanner's wrapper)
# run inside the interpreter: their differential tests run again against an ASan build.
_UNDER_ASAN = ["test_accelerator.py", "test_accelerator_environ.py", "test_accelerator_response.py",
               "test_inline_watch.py"]
_RUNNER = """
import sys
sys.path.insert(0, sys.argv[1])
sys.path = [p for p in sys.path if "__editable__" not in p]
import sharedsock._speedups as s
assert s.__file__.startswith(sys.argv[1]), s.__file__
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[2:]]))
"""


def test_the_extension_passes_its_differential_tests_under_asan(tmp_path):
    import sysconfig

    cc = os.environ.get("CC") or shutil.which("gcc")
    if cc is None or "gcc" not in Path(cc).name:
        pytest.skip(f"needs gcc, to preload its ASan runtime into Python (CC is {cc})")
    runtimes = [subprocess.run([cc, f"-print-file-name={lib}"], capture_output=True, text=True,
                               check=True).stdout.strip() for lib in ("libasan.so", "libubsan.so")]
    if not all(Path(r).is_absolute() and Path(r).exists() for r in runtimes):
        pytest.skip(f"gcc has no ASan/UBSan runtime to preload: {runtimes}")
    package = tmp_path / "sharedsock"
    shutil.copytree(ROOT / "sharedsock", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    sources = sorted(str(path) for path in package.glob("_*.c"))  # every C file is the extension's
    target = package / ("_speedups" + sysconfig.get_config_var("EXT_SUFFIX"))
    build = subprocess.run([cc, "-shared", "-fPIC", "-g", "-O1", "-fsanitize=address,undefined",
                            "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
                            f"-I{sysconfig.get_paths()['include']}", *sources, "-o", str(target)],
                           capture_output=True, text=True, timeout=180)
    if build.returncode != 0 and "asan" in build.stderr.lower():
        pytest.skip(f"the C compiler cannot build with AddressSanitizer: {build.stderr[-300:]}")
    assert build.returncode == 0, build.stderr
    # PYTHONMALLOC=malloc: every object from malloc, so ASan sees an overrun of a small one too.
    env = dict(os.environ, LD_PRELOAD=" ".join(runtimes), ASAN_OPTIONS="detect_leaks=0", PYTHONMALLOC="malloc",
               REQUIRE_SHAREDSOCK_ACCELERATOR="1")
    env.pop("SHAREDSOCK_PURE_PYTHON", None)
    tests = [str(ROOT / "tests" / name) for name in _UNDER_ASAN]
    result = subprocess.run([sys.executable, "-c", _RUNNER, str(tmp_path), *tests], cwd=ROOT / "tests",
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    assert " passed" in result.stdout and "failed" not in result.stdout
