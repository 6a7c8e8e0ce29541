#!/usr/bin/env bash
# Install Airflow Guardian from the lock file (uv.lock): the one install path of the laptop venv
# and of the container image.
#
#   deploy/install.sh venv    .venv with Airflow 3 + providers + dev tools (what `make venv` runs)
#   deploy/install.sh image   into the current Python (the official Airflow image's), runtime only;
#                             Airflow itself is already there, the lock pins everything else
#   deploy/install.sh check   the current Python runs the lock's Airflow version and its installed
#                             packages are compatible (`pip check`); the image build runs it
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-venv}
UV_VERSION=0.13.8

uv_bin() {
  if [[ -x .tools/bin/uv ]]; then echo .tools/bin/uv; return; fi
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  python3 -m venv .tools
  .tools/bin/pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  echo .tools/bin/uv
}
UV=$(uv_bin)

case $mode in
  venv)
    export UV_PROJECT_ENVIRONMENT=${UV_PROJECT_ENVIRONMENT:-$PWD/.venv} UV_LINK_MODE=copy
    "$UV" sync --frozen --extra airflow
    ;;
  image)
    # Exactly the locked versions, without re-resolving: export the lock, install it with no deps
    # resolution beyond it, then this package itself without dependencies.
    "$UV" export --frozen --extra airflow --no-dev --no-emit-project --no-hashes -o /tmp/guardian-requirements.txt >/dev/null
    # The official image declares its virtualenv in VIRTUAL_ENV (uv installs there); an image or
    # machine without one gets pip, which honours the image's PIP_USER=true (user site-packages).
    if [[ -n ${VIRTUAL_ENV:-} ]]; then
      "$UV" pip install --no-cache --no-deps -r /tmp/guardian-requirements.txt
      "$UV" pip install --no-cache --no-deps .
    else
      python -m pip install --no-cache-dir --no-deps -r /tmp/guardian-requirements.txt
      python -m pip install --no-cache-dir --no-deps .
    fi
    rm -f /tmp/guardian-requirements.txt
    python -c "import guardian, airflow; print('guardian', guardian.__version__, 'on airflow', airflow.__version__)"
    "$0" check
    ;;
  check)
    locked=$(sed -n '/^name = "apache-airflow"$/{n;s/^version = "\(.*\)"$/\1/p;}' uv.lock)
    python -c '
import sys, airflow
if airflow.__version__ != sys.argv[1]:
    sys.exit(f"Airflow {airflow.__version__} here, {sys.argv[1]} in uv.lock: build with --build-arg AIRFLOW_VERSION={sys.argv[1]}")
print("airflow", airflow.__version__, "= uv.lock")
' "$locked"
    "$UV" pip check --python "$(command -v python)"
    ;;
  *) echo "usage: deploy/install.sh venv|image|check" >&2; exit 2 ;;
esac
