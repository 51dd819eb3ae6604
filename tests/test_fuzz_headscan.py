"""The compiled head scanner under AddressSanitizer, in every CI run.

The ten-minute libFuzzer run (tests/fuzz/run_fuzz.sh) needs clang; this builds the same
target with the system C compiler and ASan and runs it over every conformance sample
and 2,000,000 random mutations of them. Any out-of-bounds read, leak or broken promise of
the scanner (the target checks them) aborts it.
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
