#!/usr/bin/env bash
# The main job: builds and runs the sync server with its embedded storage (WAL + SQLite in
# ./weft-data), in development mode (no auth, loopback only), serving the example todo app
# (examples/todo: React + @weft/client, the WASM replica) at http://127.0.0.1:7070.
# The first run installs the WASM toolchain and npm packages (a few minutes).
# Extra arguments go to `weft serve` (e.g. --listen 127.0.0.1:8080, --config weft.toml;
# for a server with auth, drop --dev via WEFT_RUN_DEV=0 and pass --config).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft/target}"
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi
cargo build --release -q -p weft-server
scripts/build-web.sh
dev=()
if [ "${WEFT_RUN_DEV:-1}" = "1" ]; then dev=(--dev); fi
exec "$CARGO_TARGET_DIR/release/weft" serve "${dev[@]}" --data-dir "${WEFT_DATA_DIR:-./weft-data}" \
  --static-dir examples/todo/dist "$@"
