#!/usr/bin/env bash
# Builds weft-core for wasm32-unknown-unknown with Debian's rustc and -Zbuild-std, in a
# target directory of its own (a different compiler than the rustup one).
# Usage: scripts/build-wasm-core.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."

profile_flag=()
if [ "${1:-}" = "--release" ]; then profile_flag=(--release); fi

target_dir="${WEFT_WASM_TARGET_DIR:-$HOME/.cache/weft/wasm-target}"
mkdir -p "$target_dir"

RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-16/bin/wasm-ld \
CARGO_TARGET_DIR="$target_dir" \
  /usr/bin/cargo build "${profile_flag[@]}" --target wasm32-unknown-unknown \
  -Zbuild-std=std,panic_abort -p weft-core --lib

echo "weft-core builds for wasm32-unknown-unknown (artifacts in $target_dir)"
