#!/usr/bin/env bash
# Make the project's own virtual environment (.venv) and install dedupe into it, with the test
# tools unless told otherwise: `bash tools/setup.sh [EXTRAS]` (default: test).
#
# A venv because current Debian and Ubuntu refuse `pip install` into the system Python
# (PEP 668, "externally-managed-environment"). Debian's python3 has no venv module until the
# python3-venv package is installed: as root with apt this script installs it, otherwise it says
# what to run. Idempotent: an existing .venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    if ! "$python" -m venv .venv 2>/dev/null; then
        rm -rf .venv
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            export DEBIAN_FRONTEND=noninteractive
            version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            apt-get install -y -q --no-install-recommends "python${version}-venv" python3-venv \
                || { apt-get update -q && apt-get install -y -q --no-install-recommends \
                     "python${version}-venv" python3-venv; }
            "$python" -m venv .venv
        else
            echo "setup: $python cannot make a virtual environment; install the python3-venv" \
                 "package (sudo apt install python3-venv) and run this again" >&2
            exit 1
        fi
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "$extras" ] && [ "$extras" != "none" ]; then
    .venv/bin/python -m pip install -q -e ".[$extras]"
else
    .venv/bin/python -m pip install -q -e .
fi
echo "setup: dedupe installed in $(pwd)/.venv (run .venv/bin/dedupe, or add .venv/bin to PATH)"
