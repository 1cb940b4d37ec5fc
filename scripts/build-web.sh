#!/usr/bin/env bash
# Builds what the browser needs: the WASM modules (skipped when newer than every Rust
# source they come from), the @weft/client package, and the example app
# (examples/todo/dist, what `weft serve --static-dir` serves).
set -euo pipefail
cd "$(dirname "$0")/.."

wasm=client-js/wasm/weft_wasm_bg.wasm
if [ ! -f "$wasm" ] || [ -n "$(find core/src wasm Cargo.lock -newer "$wasm" -type f -print -quit)" ]; then
  scripts/build-wasm.sh
else
  echo "wasm modules: up to date ($(cat client-js/wasm/sizes.txt | head -1))"
fi
(cd client-js && npm ci --no-fund --no-audit --loglevel=error && npm run --silent build)
(cd examples/todo && npm ci --no-fund --no-audit --loglevel=error && npx vite build --logLevel warn)
echo "example app built: examples/todo/dist"
