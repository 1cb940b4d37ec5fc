#!/usr/bin/env bash
# Installs what building the WASM modules needs on this machine type (Debian):
# rustup cannot download the wasm32 standard library here, so Debian's rustc with its
# std sources builds it (the recipe is in scripts/lib/wasm-build.sh); binaryen gives wasm-opt; the
# wasm-bindgen CLI must match the wasm-bindgen crate exactly and is installed once into
# $HOME/.cache/weft/tools. Idempotent and quick when everything is already there.
set -euo pipefail

packages=(rustc-web cargo-web rust-web-src lld-16 binaryen)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "wasm toolchain: installing ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

tools="${WEFT_TOOLS_DIR:-$HOME/.cache/weft/tools}"
version=0.2.130 # = the wasm-bindgen crate pinned in wasm/Cargo.toml
if ! "$tools/bin/wasm-bindgen" --version 2>/dev/null | grep -q "$version"; then
  echo "wasm toolchain: installing wasm-bindgen-cli $version into $tools (≈ 5 min, once)"
  cargo install --quiet wasm-bindgen-cli --version "$version" --root "$tools"
fi
