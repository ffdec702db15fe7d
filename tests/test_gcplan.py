"""gc's pure plan (`dedupe.gc.plan`) through the real entry table: which packs are kept,
deleted, adopted or repacked, which copy of a duplicated blob is kept, and agreement with the
plain rules (an object per entry, as the old planner) on random repositories."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from dedupe.gc.mark import TableMarks
from dedupe.gc.plan import GcPlan, make_plan, with_young
from dedupe.gc.survey import packs_of
from dedupe.repo.entrytable import EntryTable
from dedupe.repo.pack import BlobEntry


@dataclasses.dataclass(frozen=True)
class PackSpec:
    pack_id: bytes
    size: int
    entries: tuple[BlobEntry, ...]
    indexed: bool


def entry(blob: int, offset: int, length: int = 100) -> BlobEntry:
    return BlobEntry(bytes([blob]) * 32, offset, length, length)


def pack(pid: int, blobs: list[int], indexed: bool = True) -> PackSpec:
    entries = tuple(entry(b, i * 100) for i, b in enumerate(blobs))
    return PackSpec(bytes([pid]) * 32, 100 * len(blobs) + 50, entries, indexed)


def ids(*blobs: int) -> set[bytes]:
    return {bytes([b]) * 32 for b in blobs}


def table_of(packs: list[PackSpec]) -> EntryTable:
    table = EntryTable()
    for p in packs:
        fields = np.array([(e.offset, e.length, e.raw_length) for e in p.entries], np.uint32)
        ids_bytes = b"".join(e.blob_id for e in p.entries)
        table.add_pack(p.pack_id, p.size, p.indexed, ids_bytes, fields.reshape(-1, 3))
    table.seal()
    return table


def plan_of(packs: list[PackSpec], live: set[bytes], max_unused: float) -> tuple[GcPlan, list]:
    """The plan through the real table (sorting, groups, marking); and the pack ids by number."""
    table = table_of(packs)
    marks = TableMarks(table)
    marks.add_data(sorted(live))
    missing = marks.finish()
    return make_plan(marks.entries(), packs_of(table), max_unused, missing), table.pack_ids


def first_bytes(numbers, pack_ids) -> list[int]:
    return [pack_ids[int(n)][0] for n in numbers]


def test_plan_deletes_garbage_repacks_above_threshold_keeps_the_rest():
    packs = [pack(1, [1, 2]), pack(2, [3, 4, 5, 6, 7, 8, 9, 10]), pack(3, [11, 12, 13, 14])]
    live = ids(3, 4, 5, 6, 7, 8, 9, 11)  # pack 1 dead, pack 2 7/8 live, pack 3 1/4 live
    plan, pack_ids = plan_of(packs, live, 0.10)
    assert first_bytes(plan.delete, pack_ids) == [1]
    assert [r.pack_id[0] for r in plan.repack] == [3, 2]  # most freed per written first
    assert len(plan.keep) == 0
    plan, pack_ids = plan_of(packs, live, 0.50)
    assert [r.pack_id[0] for r in plan.repack] == [3]
    assert first_bytes(plan.keep, pack_ids) == [2]
    assert plan.unused_kept_bytes == 100


def test_plan_zero_threshold_repacks_any_unused_byte_but_not_full_packs():
    plan, pack_ids = plan_of([pack(1, [1, 2, 3]), pack(2, [4, 5])], ids(1, 2, 4, 5), 0.0)
    assert [r.pack_id[0] for r in plan.repack] == [1]
    assert first_bytes(plan.keep, pack_ids) == [2]


def test_plan_keeps_one_copy_of_a_duplicate_and_prefers_indexed_packs():
    packs = [pack(1, [1, 2, 3]), pack(2, [3]), pack(3, [1], indexed=False)]
    plan, pack_ids = plan_of(packs, ids(1, 2, 3), 0.10)
    assert first_bytes(plan.keep, pack_ids) == [1]
    assert first_bytes(plan.delete, pack_ids) == [2]
    assert first_bytes(plan.orphans, pack_ids) == [3]
    assert plan.live_blobs == 3 and not plan.missing


def test_plan_adopts_an_unindexed_pack_holding_the_only_copy_and_reports_missing():
    plan, pack_ids = plan_of([pack(1, [1]), pack(2, [2], indexed=False)], ids(1, 2, 9), 0.10)
    assert first_bytes(plan.adopted, pack_ids) == [2]
    assert plan.missing == 1


def test_plan_tells_ids_sharing_a_prefix_apart_and_counts_repeats_once():
    """Ids whose first 8 bytes (the sort key) are equal are different blobs; a blob listed
    twice in a pack, or a pack named by two index files, is one entry."""
    a, b, c = (b"\x07" * 8 + bytes([x]) * 24 for x in (1, 2, 3))
    p1 = PackSpec(
        b"\x01" * 32,
        450,
        (BlobEntry(a, 0, 100, 100), BlobEntry(b, 100, 100, 100), BlobEntry(a, 200, 100, 100)),
        True,
    )
    p2 = PackSpec(b"\x02" * 32, 250, (BlobEntry(c, 0, 100, 100), BlobEntry(b, 100, 100, 100)), True)
    plan, pack_ids = plan_of([p1, p2, p1], {a, c}, 0.10)  # p1 named twice
    assert plan.live_blobs == 2 and plan.missing == 0
    assert int(plan.named_count[pack_ids.index(p1.pack_id)]) == 2
    # p1: 200 named bytes, a kept (100): 100 / 450 unused; p2: 100 / 250 unused
    assert sorted(r.pack_id[0] for r in plan.repack) == [1, 2]
    plan, pack_ids = plan_of([p1, p2], {a, b, c}, 0.10)
    assert first_bytes(plan.keep, pack_ids) == [1]  # b: the pack with more live bytes
    assert [r.pack_id[0] for r in plan.repack] == [2]


def reference_plan(packs: list[PackSpec], live: set[bytes], max_unused: float) -> dict:
    """The rules of dedupe.gc.plan written plainly, with an object per entry (the old planner)."""
    tables: dict[bytes, dict[bytes, BlobEntry]] = {}
    info = {}
    for p in packs:
        table = tables.setdefault(p.pack_id, {})
        for e in p.entries:
            table.setdefault(e.blob_id, e)
        old = info.get(p.pack_id)
        info[p.pack_id] = (p.size, p.indexed or (old is not None and old[1]))
    live_bytes = {
        pid: sum(e.length for e in t.values() if e.blob_id in live) for pid, t in tables.items()
    }
    best: dict[bytes, tuple] = {}
    for pid, t in tables.items():
        rank = (info[pid][1], live_bytes[pid], bytes(255 - x for x in pid))
        for blob_id in t:
            if blob_id in live and (blob_id not in best or rank > best[blob_id][0]):
                best[blob_id] = (rank, pid)
    out: dict = {"keep": set(), "delete": set(), "orphans": set(), "repack": set(), "unused": {}}
    for pid, t in tables.items():
        kept = [e for b, e in t.items() if best.get(b, (None, None))[1] == pid]
        size, indexed = info[pid]
        if not kept:
            out["delete" if indexed else "orphans"].add(pid)
            continue
        unused = sum(e.length for e in t.values()) - sum(e.length for e in kept)
        out["unused"][pid] = unused
        rewrite = unused > 0 and unused / size > max_unused
        out["repack" if rewrite else "keep"].add(pid)
    out["live"] = len(best)
    out["missing"] = len(live - best.keys())
    return out


@pytest.mark.parametrize("seed", range(30))
def test_plan_agrees_with_the_plain_rules_on_random_repositories(seed):
    rng = random.Random(seed)
    # Few distinct ids, some sharing the 8-byte sort key: many copies, repeats and collisions.
    blobs = [bytes([rng.randrange(4)]) * 8 + rng.randbytes(24) for _ in range(40)]
    packs = []
    for _ in range(rng.randrange(1, 12)):
        chosen = [rng.choice(blobs) for _ in range(rng.randrange(0, 10))]
        entries = tuple(
            BlobEntry(b, 64 * i, rng.randrange(41, 64), 100) for i, b in enumerate(chosen)
        )
        spec = PackSpec(rng.randbytes(32), 64 * len(chosen) + 50, entries, rng.random() < 0.8)
        packs.append(spec)
        if rng.random() < 0.2:
            packs.append(spec)  # named by two index files
    live = set(rng.sample(blobs, rng.randrange(0, 30))) | {rng.randbytes(32)}
    max_unused = rng.choice([0.0, 0.1, 0.5])
    plan, pack_ids = plan_of(packs, live, max_unused)
    want = reference_plan(packs, live, max_unused)
    got = {
        "keep": {pack_ids[p] for p in plan.keep},
        "delete": {pack_ids[p] for p in plan.delete},
        "orphans": {pack_ids[p] for p in plan.orphans},
        "repack": {r.pack_id for r in plan.repack},
        "unused": {
            pack_ids[p]: int(plan.unused[p]) for p in [*plan.keep, *(r.pack for r in plan.repack)]
        },
        "live": plan.live_blobs,
        "missing": plan.missing,
    }
    assert got == want


def young_plan(packs: list[PackSpec], live: set[bytes], young: set[int], now: float = 1e9):
    """The plan with the packs numbered in `young` written an hour before `now`, the others two
    days before (by the storage's clock), and gc's 24-hour grace period."""
    table = table_of(packs)
    marks = TableMarks(table)
    marks.add_data(sorted(live))
    missing = marks.finish()
    mtimes = {p.pack_id: now - (3600 if p.pack_id[0] in young else 2 * 86400) for p in packs}
    with_times = with_young(packs_of(table), mtimes, now, 86400)
    return make_plan(marks.entries(), with_times, 0.0, missing), table.pack_ids


def test_young_unindexed_packs_are_left_alone_whole():
    packs = [
        pack(1, [1, 2], indexed=False),  # old, unreferenced: deleted
        pack(2, [3, 4], indexed=False),  # young, unreferenced: a running backup's, kept
        pack(3, [5, 6], indexed=False),  # young, half referenced: not repacked either
        pack(4, [7, 8]),  # indexed and unreferenced: deleted whatever its age
        pack(5, [9]),
    ]
    plan, pack_ids = young_plan(packs, ids(5, 9), young={2, 3, 4})
    assert first_bytes(plan.young, pack_ids) == [2, 3]
    assert first_bytes(plan.orphans, pack_ids) == [1]
    assert first_bytes(plan.delete, pack_ids) == [4]
    assert first_bytes(plan.keep, pack_ids) == [5]
    assert plan.repack == () and len(plan.adopted) == 0  # young packs are named by no new index


def test_a_copy_outside_a_young_pack_is_kept_and_unknown_ages_count_as_young():
    packs = [pack(1, [1, 2], indexed=False), pack(2, [1], indexed=False)]
    plan, pack_ids = young_plan(packs, ids(1), young={1})
    # Blob 1 is kept in the old pack 2 (adopted), though pack 1 holds more live bytes.
    assert first_bytes(plan.adopted, pack_ids) == [2] and first_bytes(plan.young, pack_ids) == [1]
    table = table_of(packs)
    TableMarks(table).finish()
    unknown = with_young(packs_of(table), {packs[0].pack_id: None}, 1e9, 86400)
    assert unknown.young.tolist() == [True, True]  # no mtime, and one not listed at all
    assert with_young(packs_of(table), {}, None, 86400).young.tolist() == [True, True]  # no clock
