#!/usr/bin/env bash
# Builds a minimal automerge module (wasm/peer-size) with exactly the pipeline of
# scripts/build-wasm.sh and prints its sizes next to weft_wasm's, for the bundle-size
# ratio in docs/benchmarks.md. Not part of the test suite (automerge takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-wasm-toolchain.sh
source scripts/lib/wasm-build.sh
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(cd wasm/peer-size && wasm_cargo_build)
"$wasm_tools/bin/wasm-bindgen" --target web --out-dir "$out" --out-name automerge \
  "$wasm_target_dir/wasm32-unknown-unknown/release/peer_size_automerge.wasm"
wasm_optimise "$out/automerge_bg.wasm" "$out/automerge.opt.wasm"
raw=$(stat -c %s "$out/automerge_bg.wasm")
opt=$(stat -c %s "$out/automerge.opt.wasm")
gz=$(gzip -9 -c "$out/automerge.opt.wasm" | wc -c)
echo "automerge (put/merge/save/load): raw $raw B, wasm-opt $opt B, gzip -9 $gz B ($((gz / 1024)) KiB)"
if [ -f client-js/wasm/sizes.txt ]; then
  weft=$(sed -n 's/^weft_wasm: .*gzip -9 \([0-9]*\) B.*/\1/p' client-js/wasm/sizes.txt)
  echo "$(head -1 client-js/wasm/sizes.txt)"
  awk -v w="$weft" -v a="$gz" 'BEGIN { printf "weft_wasm / automerge (gzipped): %.2f×\n", w / a }'
fi
