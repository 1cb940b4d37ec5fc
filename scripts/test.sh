#!/usr/bin/env bash
# The whole test suite — what CI runs (.ci/run). Installs what it needs first.
#
#   formatting and lints, every Rust test (unit, property, protocol, hostile input,
#   fuzz regressions, doc tests, server integration tests over real sockets, crash
#   tests), the benchmarks compiled and smoke-run once, the load generator against a
#   real server, the WASM modules built, the @weft/client package's Node tests and
#   headless-Chromium tests against real servers, and a short fuzzing run of the
#   frame decoders.
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

step "load generator smoke run: weft bench against a real weft serve"
weft="$CARGO_TARGET_DIR/debug/weft"
smoke_dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WEFT_LOG=warn "$weft" serve --dev --listen "127.0.0.1:$port" --data-dir "$smoke_dir/data" &
server_pid=$!
trap 'kill $server_pid 2>/dev/null || true; rm -rf "$smoke_dir"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
"$weft" bench write --url "http://127.0.0.1:$port" --connections 4 --batch 50 --inflight 2 --duration 2 --json
"$weft" bench sync --url "http://127.0.0.1:$port" --records 2000 --json
curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^weft_wal_sync_seconds_count'
kill -TERM $server_pid && wait $server_pid
trap - EXIT
rm -rf "$smoke_dir"

step "WASM modules (weft-wasm, weft-wasm-sql) built, optimised and measured"
scripts/build-wasm.sh

step "@weft/client package and the example app built"
scripts/build-web.sh

step "@weft/client: npm test (Node tests against real weft serve processes; headless Chromium on the example app)"
scripts/install-browser.sh
export WEFT_BIN="$weft"
(cd client-js && npm test)

if [ "$fuzz_seconds" -gt 0 ]; then
  step "fuzz the frame decoders for ${fuzz_seconds}s each"
  scripts/fuzz.sh "$fuzz_seconds"
fi

step "all tests passed in $(( $(date +%s) - started ))s"
