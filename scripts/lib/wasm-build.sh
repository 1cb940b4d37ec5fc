# Sourced by scripts/build-wasm.sh and scripts/wasm-peer-size.sh: the one recipe both
# modules and the size peers are built with, so their sizes compare.
#
# opt-level 2, LTO, one codegen unit, abort on panic: applies and loads as fast as
# opt-level 3 and ≈ 1.5× faster than "s", for 230 KiB gzipped (3: 243, "s": 192; see
# docs/benchmarks.md). The native release profile stays as it is. No panic locations
# (-Zlocation-detail=none): 2 KiB less, and panics abort anyway.
# Without reference types: binaryen 108's wasm-opt mangles wasm-bindgen's externref
# table (the module then fails at init with "Table.set(): Argument 1 is invalid").

wasm_target_dir="${WEFT_WASM_TARGET_DIR:-$HOME/.cache/weft/wasm-target}"
wasm_tools="${WEFT_TOOLS_DIR:-$HOME/.cache/weft/tools}"

# wasm_cargo_build [cargo build args...] — in the current directory's package/workspace.
wasm_cargo_build() {
  mkdir -p "$wasm_target_dir"
  RUSTFLAGS="-Ctarget-feature=-reference-types -Zlocation-detail=none" \
  RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=/usr/lib/llvm-16/bin/wasm-ld \
  CARGO_TARGET_DIR="$wasm_target_dir" \
  CARGO_PROFILE_RELEASE_OPT_LEVEL=${WEFT_WASM_OPT_LEVEL:-2} CARGO_PROFILE_RELEASE_LTO=true \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 CARGO_PROFILE_RELEASE_PANIC=abort \
  CARGO_PROFILE_RELEASE_DEBUG=false \
    /usr/bin/cargo build --quiet --release --target wasm32-unknown-unknown \
    -Zbuild-std=std,panic_abort "$@"
}

# wasm_optimise IN OUT — wasm-opt -Oz with the features this rustc emits.
wasm_optimise() {
  wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals -o "$2" "$1"
}
