#!/usr/bin/env bash
# Browser tests drive Debian's chromium through playwright-core (no browser download).
# Installs it when missing and we are root; otherwise says what to do.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "[ensure-chromium] installing Debian chromium for the browser tests…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
echo "[ensure-chromium] chromium is missing: install it (Debian: sudo apt-get install -y chromium) or set CHROMIUM_PATH" >&2
exit 1
