#!/usr/bin/env bash
# Make sure bubblewrap (the sandbox every local job runs in) is installed: Debian's package.
set -euo pipefail
if command -v bwrap >/dev/null 2>&1; then echo "sandbox: $(bwrap --version)"; exit 0; fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "sandbox: bubblewrap is missing; install it (Debian: apt-get install bubblewrap)." >&2
  echo "sandbox: without it, finders run unsandboxed and notebooks and containers are refused." >&2
  exit 1
fi
echo "sandbox: installing bubblewrap from Debian"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
bwrap --version
