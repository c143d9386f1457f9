#!/usr/bin/env bash
# Makes sure a binary from a Debian package is present for the tests:
#   ensure-debian-package.sh <binary path> <package> <what needs it>
# (/usr/bin/chromium for the demo page test, /usr/bin/openssl for the TLS
# tests' certificates). Idempotent: does nothing when it is already there.
# Installs the package with apt-get when running as root; otherwise exits
# non-zero and says why.
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: ensure-debian-package.sh <binary path> <package> <what needs it>" >&2
  exit 2
fi
BINARY=$1
PACKAGE=$2
NEEDED_BY=$3
name="ensure-$PACKAGE"

if [[ -x "$BINARY" ]]; then
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "$name: $BINARY ($NEEDED_BY) is missing and this is not root; install it with: sudo apt-get install -y $PACKAGE" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "$name: $BINARY ($NEEDED_BY) is missing and apt-get is not available (not a Debian-like system)" >&2
  exit 1
fi

echo "$name: installing Debian's $PACKAGE package" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$PACKAGE"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "$name: apt-get could not install $PACKAGE (output above)" >&2
  exit 1
fi

if [[ ! -x "$BINARY" ]]; then
  echo "$name: the $PACKAGE package installed but $BINARY is still missing" >&2
  exit 1
fi
