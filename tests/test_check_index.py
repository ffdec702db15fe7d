"""check's index survey (`dedupe.check.index`) on a damaged repository: the findings and messages
check gave when it held one object per index entry.

The damage: an extra index file names one pack twice over (every entry duplicated, plus an entry
past the pack's end), and another pack is deleted.
"""

from __future__ import annotations

import os

from dedupe.check.checker import run_check
from dedupe.check.index import IndexSurvey
from dedupe.crypto.seal import content_hash
from dedupe.repo.index import decode_index, encode_index
from dedupe.repo.manifests import load_all
from dedupe.repo.pack import BlobEntry
from dedupe.repo.repository import pack_name
from tests.clitools import initialized_cli
from tests.support import make_tree, open_repo


def test_survey_finds_missing_pack_entry_past_end_and_duplicates(tmp_path):
    cli = initialized_cli(tmp_path)
    make_tree(str(tmp_path / "src1"))
    cli("snapshot", str(tmp_path / "src1"))
    (tmp_path / "src2").mkdir()
    (tmp_path / "src2" / "other.bin").write_bytes(bytes(range(256)) * 500)
    cli("snapshot", str(tmp_path / "src2"))
    repo = open_repo(cli.repo)
    storage = repo.storage
    packs = []
    for info in storage.list("index/"):
        packs += decode_index(storage.get(info.name), repo.sealer, "x").packs
    assert len(packs) >= 2
    # The lost pack holds the second snapshot's root tree (a writer spreads its blobs over two
    # packs at random, so a pack of data blobs alone would lose no tree); any other is kept.
    root = next(s.tree for s in load_all(repo) if os.fsencode(str(tmp_path / "src2")) in s.paths)
    lost_id, lost = next((p, e) for p, e in packs if any(b.blob_id == root for b in e))
    kept_id, kept = next((p, e) for p, e in packs if p != lost_id)
    size = len(storage.get(pack_name(kept_id)))
    past_end = BlobEntry(b"\xee" * 32, size + 10, 100, 100)
    distinct = len({e.blob_id for _p, entries in packs for e in entries})

    extra = encode_index([(kept_id, [*kept, past_end, kept[0]])], [], repo.sealer)
    storage.put(f"index/{content_hash(extra).hex()}", extra)
    storage.delete(pack_name(lost_id))

    survey = IndexSurvey(repo)
    assert survey.load(lambda t: None, lambda t: None) == 2 + 1
    survey.seal()
    assert len(survey) == distinct + 1
    assert list(survey.entries(kept_id).values()) == [*kept, past_end]
    first = survey.lookup(kept[0].blob_id)
    assert first is not None and first.pack_id == kept_id and first.offset == kept[0].offset
    assert past_end.blob_id in survey and b"\x00" * 32 not in survey
    assert survey.entries(b"\x01" * 32) == {}

    report = run_check(repo)
    assert report.blobs_indexed == distinct + 1
    assert report.index_files == 3
    assert report.errors[:2] == [
        f"pack {lost_id.hex()[:16]} is missing ({len(lost)} blobs the index names)",
        f"pack {kept_id.hex()[:16]}: 1 of {len(kept) + 1} index entries disagree with the "
        "pack's header (damaged, or packs renamed)",
    ]
    assert len(report.errors) == 3 and "cannot be read: not found" in report.errors[2]
    assert report.damaged_blobs >= {e.blob_id for e in lost} | {past_end.blob_id}
    assert list(report.damaged_snapshots) and report.warnings == []

    read = run_check(repo, read_data=True)
    assert f"pack {kept_id.hex()[:16]}: 1 of {len(kept) + 1} blob(s) failed verification " in (
        "\n".join(read.errors)
    )
    assert f"blob {past_end.blob_id.hex()[:16]} lies past the end of the pack" in (
        "\n".join(read.errors)
    )


def test_survey_ignores_a_put_back_file_with_a_warning_and_names_repair_for_damage(tmp_path):
    """Files below the floor (put back from an old copy) count for nothing and are warnings,
    not damage (check passes); a damaged file is an error naming `dedupe repair index`."""
    cli = initialized_cli(tmp_path)
    make_tree(str(tmp_path / "src1"))
    cli("snapshot", str(tmp_path / "src1"))
    repo = open_repo(cli.repo)
    storage = repo.storage
    packs = []
    old = []
    for info in storage.list("index/"):
        old.append(info.name.split("/")[-1])
        packs += decode_index(storage.get(info.name), repo.sealer, "x").packs
    # A put-back file naming a pack that is gone, and a full replacement's last file (floor 1)
    # naming every real pack: the snapshot's own file (generation 0) is now below it too.
    ghost = encode_index([(b"\x01" * 32, [BlobEntry(b"\x02" * 32, 0, 100, 100)])], [], repo.sealer)
    floor = encode_index(packs, [], repo.sealer, gen=1, floor=1)
    for data in (ghost, floor):
        storage.put(f"index/{content_hash(data).hex()}", data)
    errors: list[str] = []
    warnings: list[str] = []
    survey = IndexSurvey(repo)
    assert survey.load(errors.append, warnings.append) == 1
    survey.seal()
    assert b"\x02" * 32 not in survey and survey.names(packs[0][0])
    assert errors == []
    below = [content_hash(ghost).hex(), *old]
    assert sorted(warnings) == sorted(
        f"index file {name[:16]} is older than the current index and is ignored: it was put "
        "back from an old copy; 'dedupe gc' removes it"
        for name in below
    )
    report = run_check(repo)
    assert report.ok and report.errors == [] and len(report.warnings) == len(below)
    damaged = bytearray(floor)
    damaged[50] ^= 1
    storage.put(f"index/{'f' * 64}", bytes(damaged))
    report = run_check(repo)
    assert not report.ok
    assert all("f" * 16 in e and "'dedupe repair index'" in e for e in report.errors), report.errors
