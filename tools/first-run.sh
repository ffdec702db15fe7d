#!/usr/bin/env bash
# Install dedupe (and its test tools) into the project's own .venv on a fresh machine (Debian's
# system Python included: see tools/setup.sh), then make a real first backup of a sample folder
# into a local repository, restore it, and verify every byte.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh test
export PATH="$(pwd)/.venv/bin:$PATH"
work=$(mktemp -d /tmp/dedupe-first-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/sample/docs" "$work/sample/empty"
printf 'patient,visit\n1,2026-05-29\n' > "$work/sample/docs/visits.csv"
head -c 3000000 /dev/urandom > "$work/sample/scan.pdf"
ln -s docs/visits.csv "$work/sample/latest.csv"
export DEDUPE_REPO="$work/repo" DEDUPE_PASSWORD="first-run-demo-password" DEDUPE_CACHE_DIR="$work/cache"
dedupe init
dedupe snapshot "$work/sample"
printf 'INSERT INTO visits VALUES (1);\n%.0s' $(seq 1000) | dedupe snapshot - --stdin-name practice.sql
dedupe snapshots
dedupe restore latest --target "$work/restore-dump"
dedupe restore "$(dedupe snapshots --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')" --target "$work/restore"
diff -r --no-dereference "$work/sample" "$work/restore$work/sample"
cmp <(printf 'INSERT INTO visits VALUES (1);\n%.0s' $(seq 1000)) "$work/restore-dump/practice.sql"
echo "first run OK: backup and restore verified bit for bit"
