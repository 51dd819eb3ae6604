#!/usr/bin/env bash
# Fuzz the compiled head scanner with libFuzzer under AddressSanitizer and UBSan.
#   tests/fuzz/run_fuzz.sh [SECONDS]   (default 600; needs clang: apt-get install clang)
# The seed corpus is every conformance sample of the test suite (written by
# tests/fuzz/write_corpus.py); crashes are left in tests/fuzz/crashes/.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-600}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  fuzz_headscan.c ../../sharedsock/_headscan.c -o "$work/fuzz_headscan"
mkdir -p "$work/corpus" crashes
"${PYTHON:-python3}" write_corpus.py "$work/corpus"
"$work/fuzz_headscan" -max_total_time="$seconds" -max_len=4096 -artifact_prefix=crashes/ \
  -print_final_stats=1 "$work/corpus"
