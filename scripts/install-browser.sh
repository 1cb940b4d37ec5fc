#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (playwright-core drives it; Playwright's
# own browser download does not work here). Idempotent.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "browser: installing chromium"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
