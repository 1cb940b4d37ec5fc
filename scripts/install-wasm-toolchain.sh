#!/usr/bin/env bash
# Installs what building weft-core for wasm32-unknown-unknown needs on this machine type
# (Debian): rustup cannot download the wasm32 standard library here, so Debian's rustc
# with its std sources builds it (see ../shared/TOOLCHAIN.md). Idempotent and quick when
# everything is already installed.
set -euo pipefail

packages=(rustc-web cargo-web rust-web-src lld-16)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "wasm toolchain: already installed (${packages[*]})"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "wasm toolchain: installing ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
