#!/usr/bin/env bash
# Make sure wrk (the HTTP load generator bench/side_by_side.py drives) is installed: Debian's package.
set -euo pipefail
if command -v wrk >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "bench: wrk is missing; install it (Debian: apt-get install wrk)." >&2
  exit 1
fi
echo "bench: installing wrk from Debian" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
