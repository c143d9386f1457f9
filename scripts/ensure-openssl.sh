#!/usr/bin/env bash
# Makes sure Debian's openssl is at /usr/bin/openssl for the TLS tests
# (test/support/certificates.ts makes a CA and certificates with it at test
# time; test/runtime/tls.test.ts and test/bridge/tls.test.ts also connect with
# `openssl s_client`). Idempotent: does nothing when it is already there.
# Installs it with apt-get when running as root; otherwise exits non-zero and
# says why.
set -euo pipefail

OPENSSL=/usr/bin/openssl

if [[ -x "$OPENSSL" ]]; then
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "ensure-openssl: $OPENSSL is missing and this is not root; install it with: sudo apt-get install -y openssl" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-openssl: $OPENSSL is missing and apt-get is not available (not a Debian-like system)" >&2
  exit 1
fi

echo "ensure-openssl: installing Debian's openssl package" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "ensure-openssl: apt-get could not install openssl (output above)" >&2
  exit 1
fi

if [[ ! -x "$OPENSSL" ]]; then
  echo "ensure-openssl: the openssl package installed but $OPENSSL is still missing" >&2
  exit 1
fi
"$OPENSSL" version >&2 || true
