"""End-to-end tests of the core through the real CLI: snapshot, restore, cat, ls, diff, keys."""

from __future__ import annotations

import os
import random
import subprocess

from tests.support import all_stored_bytes, assert_same_tree, make_tree, repo_size


def test_round_trip_varied_tree(cli, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src)
    result = cli("snapshot", src, "--json", "--tag", "nightly").json()
    assert len(result["id"]) == 64 and result["files"] == 7 and result["bytes_added"] > 0
    target = str(tmp_path / "restore")
    cli("restore", result["id"][:8], "--target", target)
    assert_same_tree(src, target + src)
    listed = {e["path"]: e for e in cli("ls", "latest", "--json").json()}
    assert listed[src + "/plain.txt"]["size"] == 1200
    assert listed[src + "/link-to-plain"]["type"] == "symlink"
    assert listed[src + "/empty-dir"]["type"] == "dir"
    assert listed[src + "/run.sh"]["mode"] == 0o750
    snaps = cli("snapshots", "--json").json()
    assert snaps[0]["tags"] == ["nightly"] and snaps[0]["paths"] == [src]
    assert snaps[0]["held"] is False


def test_stdin_stream_and_cat(cli, tmp_path):
    dump = b"".join(
        b"INSERT INTO patients VALUES (%d, 'name %d');\n" % (i, i) for i in range(50000)
    )
    sid = cli("snapshot", "-", "--stdin-name", "practice.sql", "--json", input=dump).json()["id"]
    assert cli("cat", sid, "practice.sql").out == dump
    assert cli("cat", "latest", "/practice.sql").out == dump
    listed = cli("ls", "latest", "--json").json()
    assert [e["path"] for e in listed] == ["/practice.sql"]
    target = tmp_path / "r"
    cli("restore", "latest", "--target", str(target))
    assert (target / "practice.sql").read_bytes() == dump


def test_unchanged_second_snapshot_grows_under_one_percent(cli, tmp_path):
    src = str(tmp_path / "src")
    make_tree(src)
    with open(os.path.join(src, "big.bin"), "wb") as f:
        f.write(random.Random(1).randbytes(8 << 20))
    cli("snapshot", src)
    before = repo_size(cli.repo)
    second = cli("snapshot", src, "--json").json()
    grown = repo_size(cli.repo) - before
    assert grown < 0.01 * before
    assert second["bytes_added"] == grown
    # Without the files cache, the same holds (dedup by content, not by cache).
    import shutil

    shutil.rmtree(cli.env["DEDUPE_CACHE_DIR"])
    before = repo_size(cli.repo)
    cli("snapshot", src)
    assert repo_size(cli.repo) - before < 0.01 * before


def test_insert_at_front_of_48mib_file_stores_little(cli, tmp_path):
    data = random.Random(3).randbytes(48 << 20)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    cli("snapshot", str(path))
    before = repo_size(cli.repo)
    path.write_bytes(b"a few new bytes" + data)
    cli("snapshot", str(path))
    added = repo_size(cli.repo) - before
    assert added < 0.15 * len(data)


def test_compressible_text_stores_under_half(cli, tmp_path):
    rng = random.Random(5)
    words = ["patient", "visit", "invoice", "dental", "review", "x-ray", "appointment", "notes"]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(200000))
    path = tmp_path / "notes.txt"
    path.write_text(text)
    before = repo_size(cli.repo)
    cli("snapshot", str(path))
    assert repo_size(cli.repo) - before < 0.5 * len(text.encode())


def test_no_plaintext_in_storage(cli, tmp_path):
    src = tmp_path / "Patient-Records-Marker"
    src.mkdir()
    (src / "smith-john-MARKERNAME.txt").write_bytes(b"CONTENTMARKER-4711 " * 5000)
    (src / "short.txt").write_bytes(b"SHORTMARKER")
    cli("snapshot", str(src), "--tag", "TAGMARKER", "--host", "HOSTMARKER")
    stored = all_stored_bytes(cli.repo)
    for marker in [
        b"Patient-Records-Marker",
        b"MARKERNAME",
        b"CONTENTMARKER",
        b"SHORTMARKER",
        b"TAGMARKER",
        b"HOSTMARKER",
        os.fsencode(str(tmp_path)),
        b"correct horse",
    ]:
        assert marker not in stored, marker


def test_wrong_password_and_no_repository(cli, tmp_path):
    result = cli("snapshots", env={"DEDUPE_PASSWORD": "wrong password!"}, check=False)
    assert result.code == 12
    assert "wrong password!" not in result.err and "wrong" in result.err
    env = {k: v for k, v in cli.env.items() if not k.startswith("DEDUPE_PASSWORD")}
    proc = subprocess.run(
        cli.command("snapshots"), env=env, stdin=subprocess.DEVNULL, capture_output=True
    )
    assert proc.returncode == 12 and b"no password" in proc.stderr
    missing = cli("snapshots", env={"DEDUPE_REPO": str(tmp_path / "nothing-here")}, check=False)
    assert missing.code == 10 and "Traceback" not in missing.err
    bad_snap = cli("restore", "zzzz", "--target", str(tmp_path / "t"), check=False)
    assert bad_snap.code == 2 and "Traceback" not in bad_snap.err


def test_password_file_and_command(cli, tmp_path):
    pw_file = tmp_path / "pw"
    pw_file.write_text(cli.env["DEDUPE_PASSWORD"] + "\n")
    env = {"DEDUPE_PASSWORD": "ignored-wrong", "DEDUPE_PASSWORD_FILE": str(pw_file)}
    assert cli("snapshots", env=env).code == 0
    env = {"DEDUPE_PASSWORD": "ignored-wrong", "DEDUPE_PASSWORD_COMMAND": f"cat {pw_file}"}
    assert cli("snapshots", env=env).code == 0


def test_key_passwd_keeps_data(cli, tmp_path):
    src = tmp_path / "f.txt"
    src.write_text("keep me")
    cli("snapshot", str(src))
    cli("key", "passwd", env={"DEDUPE_NEW_PASSWORD": "new secret"})
    assert cli("snapshots", check=False).code == 12
    out = cli("cat", "latest", str(src), env={"DEDUPE_PASSWORD": "new secret"})
    assert out.out == b"keep me"
    assert len(os.listdir(os.path.join(cli.repo, "keys"))) == 1


def test_exclude_and_diff(cli, tmp_path):
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "keep" / "a.txt").write_text("a")
    (src / "junk.tmp").write_text("tmp")
    (src / "cache").mkdir()
    (src / "cache" / "c").write_text("c")
    first = cli(
        "snapshot", str(src), "--exclude", "*.tmp", "--exclude", f"{src}/cache", "--json"
    ).json()
    paths = {e["path"] for e in cli("ls", "latest", "--json").json()}
    assert f"{src}/keep/a.txt" in paths
    assert f"{src}/junk.tmp" not in paths and f"{src}/cache" not in paths
    (src / "keep" / "a.txt").write_text("changed")
    (src / "keep" / "b.txt").write_text("new")
    second = cli("snapshot", str(src), "--exclude", "*.tmp", "--json").json()
    changes = cli("diff", first["id"], second["id"], "--json").json()
    assert f"{src}/keep/b.txt" in changes["added"]
    assert f"{src}/keep/a.txt" in changes["changed"]
    assert f"{src}/cache" in changes["added"]


def test_restore_include(tree_snapshot_copy, tmp_path):
    cli, src, _sid = tree_snapshot_copy
    target = tmp_path / "t"
    cli("restore", "latest", "--target", str(target), "--include", f"{src}/deep")
    restored = target / str(src).lstrip("/")
    assert (restored / "deep" / "er" / "est" / "random.bin").exists()
    assert not (restored / "plain.txt").exists()


def test_unreadable_file_gives_exit_3_and_saves_rest(cli, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("fine")
    # /proc/self/mem is a regular file that fails to read at offset 0 even for root.
    result = cli("snapshot", str(src), "/proc/self/mem", "--json", check=False)
    assert result.code == 3, result.err
    assert "mem" in result.err
    paths = {e["path"] for e in cli("ls", "latest", "--json").json()}
    assert f"{src}/ok.txt" in paths


def test_snapshot_time_and_host(cli, tmp_path):
    f = tmp_path / "x"
    f.write_text("x")
    cli("snapshot", str(f), "--time", "2026-03-31T22:00:00+02:00", "--host", "frontdesk")
    snap = cli("snapshots", "--json").json()[0]
    assert snap["time"] == "2026-03-31T22:00:00+02:00" and snap["host"] == "frontdesk"
    bad = cli("snapshot", str(f), "--time", "yesterday", check=False)
    assert bad.code == 2


def test_usage_errors_do_not_trace(cli, tmp_path):
    for args in (
        ["snapshot", str(tmp_path / "missing")],
        ["snapshot", "-"],
        ["cat", "latest", "/nope"],
        ["init"],
        ["ls", "ab"],
    ):
        result = cli(*args, check=False)
        assert result.code in (1, 2), (args, result.code, result.err)
        assert "Traceback" not in result.err


def test_damaged_index_file_is_skipped_with_a_warning(cli, tmp_path):
    src = tmp_path / "src"
    make_tree(str(src))
    cli("snapshot", str(src))
    index_dir = os.path.join(cli.repo, "index")
    (name,) = os.listdir(index_dir)
    with open(os.path.join(index_dir, name), "r+b") as f:
        f.seek(30)
        byte = f.read(1)
        f.seek(30)
        f.write(bytes([byte[0] ^ 0xFF]))
    again = cli("snapshot", str(src), "--json")
    assert "warning" in again.err and "check" in again.err
    target = tmp_path / "t"
    cli("restore", again.json()["id"], "--target", str(target))
    assert_same_tree(str(src), str(target) + str(src))
    assert cli("check", check=False).code == 14
