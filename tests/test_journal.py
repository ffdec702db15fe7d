"""The retention journal (issue 20): every snapshot, forget, gc, hold and release is journalled;
`dedupe journal` tells it in office words; `check` verifies the chain and compares the journal
with the manifests and hold records, so a manifest deleted by hand, an older manifest put back or
a silently removed hold is reported (exit 14); concurrent writers lose no entry; a repository
that had snapshots before it had a journal keeps working."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from tests.clitools import ROOT, Cli
from tests.support import files_under, wait_for_new_file

PAUSE_ENTRY = str(Path(__file__).with_name("journal_pause_entry.py"))

# Many commands in one process: the real CLI's `main`, one call after another, so a quarter of
# nights costs seconds instead of minutes of interpreter start-ups.
BATCH_ENTRY = """\
import contextlib, io, json, sys

import tests.cli_entry  # cheap Argon2id for new keys
from dedupe.cli.main import main


def run(plan, done):
    with open(plan) as f:
        steps = json.load(f)
    results = []
    for argv in steps:
        out = io.StringIO()
        sys.argv = ["dedupe", *argv]
        with contextlib.redirect_stdout(out):
            code = main(argv)
        results.append({"argv": argv, "code": code, "out": out.getvalue()})
    with open(done, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":  # a snapshot's helper process imports this module again
    run(sys.argv[1], sys.argv[2])
"""

POLICY = ["--keep-business-days", "10", "--keep-monthly", "unlimited"]


def run_batch(cli: Cli, tmp_path: Path, steps: list[list[str]]) -> list[dict]:
    entry, plan, done = tmp_path / "batch.py", tmp_path / "steps.json", tmp_path / "results.json"
    entry.write_text(BATCH_ENTRY)
    plan.write_text(json.dumps(steps))
    proc = subprocess.run(
        [sys.executable, str(entry), str(plan), str(done)],
        env=cli.env | {"TZ": "UTC", "PYTHONPATH": ROOT},
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    results = json.loads(done.read_text())
    failed = [r for r in results if r["code"] != 0]
    assert not failed, (failed[:1], proc.stderr.decode()[-2000:])
    return results


def make_source(root: Path) -> Path:
    root.mkdir()
    (root / "patients.db").write_bytes(b"practice database\n" * 500)
    (root / "scan.pdf").write_bytes(bytes(range(256)) * 40)
    return root


def test_a_quarter_of_nights_journals_every_removal_with_its_rule(cli, tmp_path):
    source = make_source(tmp_path / "practice")
    steps: list[list[str]] = []
    first = date(2026, 1, 5)  # a Monday
    for night in range(91):
        day = first + timedelta(days=night)
        when = f"{day.isoformat()}T23:00:00+00:00"
        steps.append(["snapshot", str(source), "--time", when, "--json"])
        steps.append(["forget", *POLICY, "--json"])
        if day.weekday() == 6:
            steps.append(["gc", "--json"])
    results = run_batch(cli, tmp_path, steps)
    created = [json.loads(r["out"])["id"] for r in results if r["argv"][0] == "snapshot"]
    env = {"TZ": "UTC"}
    remaining = {s["id"] for s in cli("snapshots", "--json", env=env).json()}
    removed_by_forget = set()
    for r in results:
        if r["argv"][0] == "forget":
            removed_by_forget |= {s["id"] for s in json.loads(r["out"])["remove"]}
    assert removed_by_forget == set(created) - remaining and removed_by_forget

    entries = cli("journal", "--json", env=env).json()
    saved = [e["snapshots"] for e in entries if e["action"] == "snapshot"]
    assert saved == [[sid] for sid in created]  # every night, in order
    forgets = [e for e in entries if e["action"] == "forget"]
    assert len(forgets) == 91
    journalled_removals = [s for e in forgets for s in e["snapshot_details"]]
    assert sorted(s["id"] for s in journalled_removals) == sorted(removed_by_forget)
    assert {s["why"] for s in journalled_removals} == {"no rule keeps it"}
    assert {e["reason"] for e in forgets} == {
        "policy --keep-business-days 10 --keep-monthly unlimited"
    }
    gcs = [e for e in entries if e["action"] == "gc"]
    assert len(gcs) == 13 and all(isinstance(e["freed_bytes"], int) for e in gcs)
    assert all(set(e) >= {"time", "action", "host", "user", "snapshots", "reason"} for e in entries)

    page = cli("journal", env=env).text
    for e in forgets:
        for s in e["snapshot_details"]:
            assert f"    {s['id'][:8]}  " in page
    assert "no rule keeps (policy --keep-business-days 10 --keep-monthly unlimited):" in page
    assert "gc recovered" in page
    checked = cli("check", env=env)
    assert "journal starts at" in checked.text and "no errors found" in checked.text


def snapshot(cli: Cli, source: Path, when: str) -> str:
    return cli("snapshot", str(source), "--time", when, "--json").json()["id"]


def test_a_manifest_deleted_by_hand_is_reported(cli, tmp_path):
    source = make_source(tmp_path / "practice")
    kept = snapshot(cli, source, "2026-03-02T23:00:00+00:00")
    lost = snapshot(cli, source, "2026-03-03T23:00:00+00:00")
    assert cli("check").code == 0
    os.unlink(os.path.join(cli.repo, "snapshots", lost))
    result = cli("check", check=False)
    assert result.code == 14, result.err
    assert f"snapshot {lost[:8]}" in result.err and "deleted without dedupe" in result.err
    assert kept[:8] not in result.err
    assert "Traceback" not in result.err
    assert "dedupe gc --accept-snapshot-count 1" in result.out.decode()
    # Removed on purpose after all: accepting the loss records it, and check is content.
    cli("gc", "--accept-snapshot-count", "1")
    assert cli("check").code == 0
    (accepted,) = [e for e in cli("journal", "--json").json() if e["action"] == "gc"]
    assert accepted["snapshots"] == [lost]
    assert accepted["reason"] == "accepted as lost with gc --accept-snapshot-count 1"
    assert "the loss of 1 backup whose manifests had disappeared" in cli("journal").text


def test_an_older_manifest_put_back_is_reported(cli, tmp_path):
    source = make_source(tmp_path / "practice")
    held = snapshot(cli, source, "2026-03-02T23:00:00+00:00")
    manifest = os.path.join(cli.repo, "snapshots", held)
    unheld_copy = Path(manifest).read_bytes()
    cli("hold", held[:8], "--reason", "legal hold 2026-17")
    # The hold removed behind dedupe's back: the older, unheld manifest put back and the hold
    # record deleted (the record alone would be caught by the hold check; both need the journal).
    Path(manifest).write_bytes(unheld_copy)
    os.unlink(os.path.join(cli.repo, "holds", held))
    result = cli("check", check=False)
    assert result.code == 14, result.err
    assert f"the hold on snapshot {held[:8]}" in result.err
    assert "legal hold 2026-17" in result.err and "without 'dedupe release'" in result.err

    # A forgotten snapshot whose older manifest is put back is reported as well.
    cli("hold", held[:8], "--reason", "legal hold 2026-17")
    assert cli("check").code == 0
    gone = snapshot(cli, source, "2026-03-03T23:00:00+00:00")
    old_manifest = Path(cli.repo, "snapshots", gone).read_bytes()
    newest = snapshot(cli, source, "2026-03-04T23:00:00+00:00")
    cli("forget", "--keep-last", "1")
    assert {s["id"] for s in cli("snapshots", "--json").json()} == {held, newest}
    Path(cli.repo, "snapshots", gone).write_bytes(old_manifest)
    result = cli("check", check=False)
    assert result.code == 14
    assert f"snapshot {gone[:8]}" in result.err and "is there again" in result.err


def test_a_removed_or_replaced_entry_breaks_the_chain(cli, tmp_path):
    source = make_source(tmp_path / "practice")
    for day in (2, 3, 4):
        snapshot(cli, source, f"2026-03-0{day}T23:00:00+00:00")
    entries = cli("journal", "--json").json()
    folder = Path(cli.repo, "journal")
    middle = folder / entries[1]["id"]
    saved = middle.read_bytes()
    middle.unlink()
    result = cli("check", check=False)
    assert result.code == 14
    assert f"journal entry {entries[1]['id'][:8]} is missing" in result.err
    assert cli("journal", check=False).code == 14
    # Replaced: another entry's bytes under its name (both genuine, sealed with the key).
    middle.write_bytes((folder / entries[0]["id"]).read_bytes())
    result = cli("check", check=False)
    assert result.code == 14 and "does not match its name" in result.err
    middle.write_bytes(saved)
    assert cli("check").code == 0


def test_two_concurrent_snapshots_are_both_journalled(cli, tmp_path):
    first = make_source(tmp_path / "practice")
    start = snapshot(cli, first, "2026-03-02T23:00:00+00:00")
    (head,) = [e["id"] for e in cli("journal", "--json").json()]
    pause = tmp_path / "pause"
    pause.touch()
    procs, reached = [], []
    for n in (1, 2):
        source = make_source(tmp_path / f"source{n}")
        mark = tmp_path / f"reached{n}"
        env = cli.env | {"JOURNAL_TEST_REACHED": str(mark), "JOURNAL_TEST_PAUSE_FILE": str(pause)}
        procs.append(
            subprocess.Popen(
                [sys.executable, PAUSE_ENTRY, "snapshot", str(source), "--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
        reached.append(mark)
    # Both have read the journal's newest entry and neither has written its own yet.
    for proc, mark in zip(procs, reached, strict=True):
        before = files_under(str(tmp_path))
        while proc.poll() is None and not mark.exists():
            if not wait_for_new_file(str(tmp_path), proc, before, timeout=120):
                break
            before = files_under(str(tmp_path))
        assert mark.exists(), proc.communicate()[1].decode()
    pause.unlink()
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        ids.append(json.loads(out)["id"])
    entries = cli("journal", "--json").json()
    racing = [e for e in entries if e["action"] == "snapshot" and e["snapshots"][0] in ids]
    assert sorted(e["snapshots"][0] for e in racing) == sorted(ids)
    assert [e["prev"] for e in racing] == [[head], [head]]  # both after the same entry
    cli("hold", start[:8], "--reason", "audit")
    last = cli("journal", "--json").json()[-1]
    assert last["action"] == "hold" and sorted(last["prev"]) == sorted(e["id"] for e in racing)
    assert cli("check").code == 0


def test_a_repository_from_before_the_journal_starts_one(cli, tmp_path):
    source = make_source(tmp_path / "practice")
    old = [snapshot(cli, source, f"2026-03-0{d}T23:00:00+00:00") for d in (2, 3)]
    # What a repository written before the journal existed looks like: no journal folder.
    shutil.rmtree(os.path.join(cli.repo, "journal"))
    shutil.rmtree(cli.env["DEDUPE_CACHE_DIR"])
    checked = cli("check")
    assert "no journal yet" in checked.text
    assert "the journal is empty" in cli("journal").text
    cli("hold", old[0][:8], "--reason", "audit")
    checked = cli("check")
    assert "journal starts at" in checked.text and "2 snapshot(s) existed then" in checked.text
    (entry,) = cli("journal", "--json").json()
    assert entry["action"] == "hold" and entry["snapshots"] == [old[0]]
    os.unlink(os.path.join(cli.repo, "snapshots", old[1]))
    result = cli("check", check=False)
    assert result.code == 14 and f"snapshot {old[1][:8]}" in result.err


def test_journal_since_and_release(cli, tmp_path):
    source = make_source(tmp_path / "practice")
    sid = snapshot(cli, source, "2026-03-02T23:00:00+00:00")
    cli("hold", sid[:8], "--reason", "fiscal year end")
    cli("release", sid[:8])
    entries = cli("journal", "--json").json()
    assert [e["action"] for e in entries] == ["snapshot", "hold", "release"]
    assert entries[1]["reason"] == "fiscal year end"
    assert cli("journal", "--since", "2999-01-01", "--json").json() == []
    page = cli("journal").text
    assert "held backup" in page and "fiscal year end" in page and "released backup" in page
    bad = cli("journal", "--since", "last tuesday", check=False)
    assert bad.code == 2 and "invalid --since" in bad.err
    assert cli("check").code == 0
