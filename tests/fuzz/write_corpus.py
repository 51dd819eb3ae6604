"""Write the fuzz seed corpus: every conformance sample, whole, behind a limits byte.

The samples come from tests/test_accelerator.py (which gathers the parser, RFC 9112 and
reject suites' samples); each is written once with default and once with small limits.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import test_accelerator


def main(out: str) -> None:
    folder = Path(out)
    raws = [raw for _, raw, _ in test_accelerator.SAMPLES] + test_accelerator.COMMON
    for i, raw in enumerate(raws):
        for limits in (0, 1):
            (folder / f"sample-{i}-{limits}").write_bytes(bytes([limits]) + raw)
    print(f"wrote {2 * len(raws)} seeds to {folder}")


if __name__ == "__main__":
    main(sys.argv[1])
