#!/usr/bin/env bash
# Makes sure Debian's Chromium is at /usr/bin/chromium for the browser tests
# (test/dev/demo.test.ts). Idempotent: does nothing when it is already there. Installs
# it with apt-get when running as root; otherwise exits non-zero and says why.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ -x "$CHROMIUM" ]]; then
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "ensure-chromium: $CHROMIUM is missing and this is not root; install it with: sudo apt-get install -y chromium" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available (not a Debian-like system)" >&2
  exit 1
fi

echo "ensure-chromium: installing Debian's chromium package" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "ensure-chromium: apt-get could not install chromium (output above)" >&2
  exit 1
fi

if [[ ! -x "$CHROMIUM" ]]; then
  echo "ensure-chromium: the chromium package installed but $CHROMIUM is still missing" >&2
  exit 1
fi
"$CHROMIUM" --version >&2 || true
