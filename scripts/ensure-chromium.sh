#!/usr/bin/env bash
# Make sure a Chromium for the browser tests (tests/browser, Playwright) is installed: Debian's
# package, since Playwright's own browser download is not reachable from every machine.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then echo "browser: $(chromium --version 2>/dev/null)"; exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: chromium is missing; install it (Debian: apt-get install chromium)." >&2
  exit 1
fi
echo "browser: installing chromium from Debian"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
chromium --version
