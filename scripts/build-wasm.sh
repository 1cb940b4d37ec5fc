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

source scripts/lib/wasm-build.sh
out=client-js/wasm
mkdir -p "$out"
wasm_cargo_build -p weft-wasm -p weft-wasm-sql

built="$wasm_target_dir/wasm32-unknown-unknown/release"
sizes=()
for pair in weft_wasm:weft_wasm weft_wasm_sql:weft_sql; do
  crate="${pair%%:*}"
  name="${pair##*:}"
  "$wasm_tools/bin/wasm-bindgen" --target web --out-dir "$out" --out-name "$name" "$built/$crate.wasm"
  raw=$(stat -c %s "$out/${name}_bg.wasm")
  if [ "$optimise" = 1 ]; then
    wasm_optimise "$out/${name}_bg.wasm" "$out/${name}_bg.opt.wasm"
    mv "$out/${name}_bg.opt.wasm" "$out/${name}_bg.wasm"
  fi
  opt=$(stat -c %s "$out/${name}_bg.wasm")
  gz=$(gzip -9 -c "$out/${name}_bg.wasm" | wc -c)
  sizes+=("$name: raw $raw B, wasm-opt $opt B, gzip -9 $gz B ($((gz / 1024)) KiB)")
done
printf '%s\n' "${sizes[@]}" | tee "$out/sizes.txt"
