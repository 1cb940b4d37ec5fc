#!/usr/bin/env bash
# The main job. Until `weft serve` lands (issue: the sync server), this runs the core's
# end-to-end demo: replicas writing offline, syncing through frames, converging, and
# repairing a divergence by merkle reconciliation.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weft/target}"
exec cargo run --release -q -p weft-core --example offline_sync -- "$@"
