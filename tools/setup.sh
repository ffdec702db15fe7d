#!/usr/bin/env bash
# Make the project's own virtual environment (.venv) and install dedupe into it, with the test
# tools unless told otherwise: `bash tools/setup.sh [EXTRAS]` (default: test; `none`: without).
#
# A venv because current Debian and Ubuntu refuse `pip install` into the system Python
# (PEP 668, "externally-managed-environment"). Their python3 makes no venv until the
# python3-venv package is installed (ensurepip is split off): as root with apt this script
# installs it, otherwise it says the one line to run. Idempotent: a working .venv is reused, a
# half-made one (a venv attempt without ensurepip leaves one) is made again.
# Checked on a fresh Debian 12 (debootstrap, then only `apt-get install git python3`).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup: $python was not found; install Python 3.11 or newer (Debian: apt-get install" \
         "python3 python3-venv) and run this again" >&2
    exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "setup: dedupe needs Python 3.11 or newer; $python is $("$python" -V 2>&1)." \
         "Set PYTHON=/path/to/python3.11 (or newer) and run this again" >&2
    exit 1
fi

if [ -x .venv/bin/python ] && ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    rm -rf .venv  # made by a venv attempt that had no ensurepip: no pip inside
fi
if [ ! -x .venv/bin/python ]; then
    if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        version=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "setup: installing python3-venv ($python makes no virtual environment without it)"
            export DEBIAN_FRONTEND=noninteractive
            packages=("python${version}-venv" python3-venv)
            apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
                || { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
                     "${packages[@]}" >/dev/null; }
        else
            echo "setup: $python cannot make a virtual environment yet. On Debian and Ubuntu" \
                 "install its venv package first:" >&2
            echo "    sudo apt-get install python3-venv" >&2
            echo "then run this again (nothing was changed)." >&2
            exit 1
        fi
    fi
    if ! "$python" -m venv .venv; then
        rm -rf .venv
        echo "setup: $python -m venv .venv failed (see above); nothing was installed" >&2
        exit 1
    fi
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "$extras" ] && [ "$extras" != "none" ]; then
    .venv/bin/python -m pip install -q -e ".[$extras]"
else
    .venv/bin/python -m pip install -q -e .
fi
echo "setup: dedupe installed in $(pwd)/.venv (run .venv/bin/dedupe, or add .venv/bin to PATH)"
