#!/usr/bin/env bash
# Builds the browser/Node WASM modules of @weft/client into client-js/wasm/:
#   weft_wasm  the client replica (weft-wasm): always loaded
#   weft_sql   SQL text → query model (weft-wasm-sql): loaded on first SQL use
# Debian's rustc builds the wasm32 std (-Zbuild-std) in a target dir of its own;
# wasm-bindgen post-processes; wasm-opt -Oz shrinks. Prints raw/optimised/gzipped sizes.
# Usage: scripts/build-wasm.sh [--no-opt]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-wasm-toolchain.sh

optimise=1
if [ "${1:-}" = "--no-opt" ]; then optimise=0; fi

target_dir="${WEFT_WASM_TARGET_DIR:-$HOME/.cache/weft/wasm-target}"
tools="${WEFT_TOOLS_DIR:-$HOME/.cache/weft/tools}"
out=client-js/wasm
mkdir -p "$target_dir" "$out"

# opt-level 2, LTO, one codegen unit, abort on panic: applies and loads as fast as
# opt-level 3 and ≈ 1.5× faster than "s", for 230 KiB gzipped (3: 243, "s": 192; see
# docs/benchmarks.md). The native release profile stays as it is. No panic locations
# (-Zlocation-detail=none): 2 KiB less, and panics abort anyway.
# Without reference types: binaryen 108's wasm-opt mangles wasm-bindgen's externref
# table (the module then fails at init with "Table.set(): Argument 1 is invalid").
RUSTFLAGS="-Ctarget-feature=-reference-types -Zlocation-detail=none" \
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-16/bin/wasm-ld \
CARGO_TARGET_DIR="$target_dir" \
CARGO_PROFILE_RELEASE_OPT_LEVEL=${WEFT_WASM_OPT_LEVEL:-2} CARGO_PROFILE_RELEASE_LTO=true \
CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort \
CARGO_PROFILE_RELEASE_DEBUG=false \
  /usr/bin/cargo build --quiet --release --target wasm32-unknown-unknown \
  -Zbuild-std=std,panic_abort \
  -p weft-wasm -p weft-wasm-sql

built="$target_dir/wasm32-unknown-unknown/release"
sizes=()
for pair in weft_wasm:weft_wasm weft_wasm_sql:weft_sql; do
  crate="${pair%%:*}"
  name="${pair##*:}"
  "$tools/bin/wasm-bindgen" --target web --out-dir "$out" --out-name "$name" "$built/$crate.wasm"
  raw=$(stat -c %s "$out/${name}_bg.wasm")
  if [ "$optimise" = 1 ]; then
    wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals \
      -o "$out/${name}_bg.opt.wasm" "$out/${name}_bg.wasm"
    mv "$out/${name}_bg.opt.wasm" "$out/${name}_bg.wasm"
  fi
  opt=$(stat -c %s "$out/${name}_bg.wasm")
  gz=$(gzip -9 -c "$out/${name}_bg.wasm" | wc -c)
  sizes+=("$name: raw $raw B, wasm-opt $opt B, gzip -9 $gz B ($((gz / 1024)) KiB)")
done
printf '%s\n' "${sizes[@]}" | tee "$out/sizes.txt"
