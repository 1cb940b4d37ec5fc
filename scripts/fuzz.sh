#!/usr/bin/env bash
# Fuzzes the client and server frame decoders and the query entry points (SQL text and
# the JSON query model) with cargo-fuzz (libFuzzer, nightly).
# Usage: scripts/fuzz.sh [seconds-per-target]   (default 60)
# New crashes land in fuzz/artifacts/; copy each into core/tests/fuzz_regressions/ so
# every test run replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

export CARGO_TARGET_DIR="${WEFT_FUZZ_TARGET_DIR:-$HOME/.cache/weft/fuzz-target}"
for target in decode_client_frame decode_server_frame decode_envelope; do
  mkdir -p "fuzz/corpus/$target"
  # Seed the corpus with the regression inputs (valid and hostile frames).
  cp core/tests/fuzz_regressions/* "fuzz/corpus/$target/" 2>/dev/null || true
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048
done
# Queries: seeded with statements of every accepted form and hostile ones; longer inputs
# so operator chains can approach the parser's nesting bound.
mkdir -p fuzz/corpus/parse_query
cp core/tests/query_regressions/* fuzz/corpus/parse_query/ 2>/dev/null || true
cargo +nightly fuzz run parse_query -- -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048
