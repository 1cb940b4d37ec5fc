#!/usr/bin/env bash
# The whole test suite — what CI runs (.ci/run). Installs what it needs first.
#
#   formatting and lints, every Rust test (unit, property, protocol, hostile input,
#   fuzz regressions, doc tests), the benchmarks compiled and smoke-run once, the wasm32
#   build of weft-core, and a short fuzzing run of the frame decoders.
#
# Environment: WEFT_FUZZ_SECONDS (default 30; 0 skips fuzzing), CARGO_TARGET_DIR
# (default $HOME/.cache/weft/target, kept between CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
fuzz_seconds="${WEFT_FUZZ_SECONDS:-30}"
started=$(date +%s)
step() { echo; echo "==> $* (at $(( $(date +%s) - started ))s)"; }

step "toolchain"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo --version
scripts/install-wasm-toolchain.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test (unit, property, protocol, hostile input, doc tests)"
cargo test --workspace

step "benchmarks compile and run once (figures: docs/benchmarks.md)"
cargo bench --workspace --no-run
WEFT_MERKLE_KEYS=20000 cargo bench -p weft-core --bench merkle -- --test
cargo bench -p weft-core --bench encoding -- --test

step "weft-core builds for wasm32-unknown-unknown"
scripts/build-wasm-core.sh

if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzz the frame decoders for ${fuzz_seconds}s each"
  scripts/fuzz.sh "$fuzz_seconds"
fi

step "all tests passed in $(( $(date +%s) - started ))s"
