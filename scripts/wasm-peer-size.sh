#!/usr/bin/env bash
# Builds a minimal automerge module (wasm/peer-size) with exactly the pipeline of
# scripts/build-wasm.sh and prints its sizes next to weft_wasm's, for the bundle-size
# ratio in docs/benchmarks.md. Not part of the test suite (automerge takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-wasm-toolchain.sh
target_dir="${WEFT_WASM_TARGET_DIR:-$HOME/.cache/weft/wasm-target}"
tools="${WEFT_TOOLS_DIR:-$HOME/.cache/weft/tools}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
(
  cd wasm/peer-size
  RUSTFLAGS="-Ctarget-feature=-reference-types -Zlocation-detail=none" \
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-16/bin/wasm-ld \
  CARGO_TARGET_DIR="$target_dir" \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=${WEFT_WASM_OPT_LEVEL:-2} CARGO_PROFILE_RELEASE_LTO=true \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort \
  CARGO_PROFILE_RELEASE_DEBUG=false \
    /usr/bin/cargo build --quiet --release --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
)
"$tools/bin/wasm-bindgen" --target web --out-dir "$out" --out-name automerge \
  "$target_dir/wasm32-unknown-unknown/release/peer_size_automerge.wasm"
wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals -o "$out/automerge.opt.wasm" "$out/automerge_bg.wasm"
raw=$(stat -c %s "$out/automerge_bg.wasm")
opt=$(stat -c %s "$out/automerge.opt.wasm")
gz=$(gzip -9 -c "$out/automerge.opt.wasm" | wc -c)
echo "automerge (put/merge/save/load): raw $raw B, wasm-opt $opt B, gzip -9 $gz B ($((gz / 1024)) KiB)"
if [ -f client-js/wasm/sizes.txt ]; then
  weft=$(sed -n 's/^weft_wasm: .*gzip -9 \([0-9]*\) B.*/\1/p' client-js/wasm/sizes.txt)
  echo "$(head -1 client-js/wasm/sizes.txt)"
  awk -v w="$weft" -v a="$gz" 'BEGIN { printf "weft_wasm / automerge (gzipped): %.2f×\n", w / a }'
fi
