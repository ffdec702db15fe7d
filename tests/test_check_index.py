"""check's index survey (`dedupe.check_index`) on a damaged repository: the findings and messages
check gave when it held one object per index entry.

The damage: an extra index file names one pack twice over (every entry duplicated, plus an entry
past the pack's end), and another pack is deleted.
"""

from __future__ import annotations

import os

from dedupe.check import run_check
from dedupe.check_index import IndexSurvey
from dedupe.crypto.seal import content_hash
from dedupe.repo.index import decode_index, encode_index
from dedupe.repo.pack import BlobEntry
from dedupe.repo.repository import pack_name
from dedupe.snapshots import load_all
from tests.clitools import Cli
from tests.test_check import open_repo
from tests.test_e2e_core import make_tree


def test_survey_finds_missing_pack_entry_past_end_and_duplicates(tmp_path):
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    cli("init")
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
