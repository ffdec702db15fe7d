"""A deterministic pg_dump-style SQL dump of a practice database, and its nightly changes.

The dump is a pure function of (seed, target size, night): night N is regenerated from the
night-0 rows plus the cumulative mutations of nights 1..N, so it never depends on the previous
file and any night can be produced directly. Rows are generated in blocks of ``BLOCK_ROWS`` from
one ``Random`` per block, which keeps generation near 100 MB/s in pure Python.

Nightly changes cluster the way a practice database's do (``CHANGE_MODELS``): most updates land
in runs of consecutive rows among the newest appointments (today's and upcoming ones change
status) and invoices (recent ones get paid), a few are scattered singly over every table (an
address, a late correction), new rows fill free space in the middle of a table in small runs (a
page's worth), more are appended at the end, and the trailing sequence values change. The rates
are calibrated (``python -m benchmarks.calibrate_dump``) so that FastCDC re-stores about the share
of the dump per night that the speed issue measured on a real 1 GiB dump: ~77 % with 1 MiB
chunks, ~22 % with 64 KiB, ~8 % with 16 KiB. Uniformly scattered updates would make every chunk
of any practical size change every night, which real dumps do not show.
"""

from __future__ import annotations

import io
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.vocab import (
    CITIES,
    FIRST_NAMES,
    INSURERS,
    LAST_NAMES,
    PAY_METHODS,
    REASONS,
    STATUSES,
    STREETS,
    Pools,
)

BLOCK_ROWS = 1000
# Share of the dump's bytes held by each table.
TABLE_SHARES = {"patients": 0.15, "appointments": 0.50, "invoices": 0.35}


@dataclass(frozen=True)
class ChangeModel:
    """One table's nightly changes; every rate is a fraction of the table's base rows."""

    hot_window: float  # newest share of the base rows that is still "live" (0: none)
    hot_updates: float  # rows updated in runs inside the hot window
    hot_run: tuple[int, int]  # rows per run there (inclusive bounds)
    scattered: float  # rows updated one by one anywhere in the table
    inserts: float  # rows that land in free space in the middle of the table
    insert_run: tuple[int, int]  # rows per such landing site (about a page's worth)
    appends: float  # rows appended at the end


CHANGE_MODELS = {
    "patients": ChangeModel(0.0, 0.0, (1, 1), 0.0015, 0.001, (2, 12), 0.002),
    "appointments": ChangeModel(0.12, 0.011, (15, 80), 0.0001, 0.002, (10, 60), 0.006),
    "invoices": ChangeModel(0.12, 0.011, (10, 60), 0.0001, 0.002, (10, 60), 0.005),
}

_SCHEMA = {
    "patients": "id integer PRIMARY KEY, first_name text, last_name text, birth_date date, "
    "sex char(1), phone text, email text, street text, city text, zip text, insurer text, "
    "insurance_no text, created_at timestamp, notes text",
    "appointments": "id integer PRIMARY KEY, patient_id integer, provider_id integer, "
    "starts_at timestamp, duration_min integer, room text, status text, reason text, notes text",
    "invoices": "id integer PRIMARY KEY, patient_id integer, appointment_id integer, "
    "issued_on date, amount numeric(10,2), tax numeric(10,2), paid boolean, method text, "
    "due_on date, items text",
}


@dataclass(frozen=True)
class DumpPlan:
    """How many base rows each table holds; derived from the seed and the target size."""

    seed: int
    base_rows: dict[str, int]


@dataclass
class TableChanges:
    """The cumulative state of one table after some nights, relative to its base rows."""

    overrides: dict[int, str] = field(default_factory=dict)
    inserted_after: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    appended: list[str] = field(default_factory=list)


def _rows(
    table: str, rng: random.Random, ids: Sequence[int], pools: Pools, n_patients: int
) -> list[str]:
    """Render one INSERT line per id; all columns are drawn in bulk with ``choices``."""
    k = len(ids)
    ch = rng.choices
    notes_a = ch(pools.phrases, k=k)
    notes_b = ch(pools.phrases, k=k)
    pids = ch(range(1, max(2, n_patients)), k=k)
    if table == "patients":
        firsts = ch(FIRST_NAMES, k=k)
        lasts = ch(LAST_NAMES, k=k)
        fmt = (
            "INSERT INTO public.patients VALUES (%d, '%s', '%s', '%s', '%s', '%s', "
            "'%s.%s@mail.example', '%d %s', '%s', '%05d', '%s', 'INS%09d', '%s %s', '%s');\n"
        )
        return list(
            map(
                fmt.__mod__,
                zip(
                    ids,
                    firsts,
                    lasts,
                    ch(pools.dates[:4000], k=k),
                    ch("FM", k=k),
                    ch(pools.phones, k=k),
                    map(str.lower, firsts),
                    map(str.lower, lasts),
                    ch(range(1, 300), k=k),
                    ch(STREETS, k=k),
                    ch(CITIES, k=k),
                    ch(range(10000, 99999), k=k),
                    ch(INSURERS, k=k),
                    ch(range(10**8, 10**9), k=k),
                    ch(pools.dates, k=k),
                    ch(pools.times, k=k),
                    notes_a,
                    strict=True,
                ),
            )
        )
    if table == "appointments":
        fmt = (
            "INSERT INTO public.appointments VALUES (%d, %d, %d, '%s %s', %d, 'Room %d', "
            "'%s', '%s', '%s %s');\n"
        )
        return list(
            map(
                fmt.__mod__,
                zip(
                    ids,
                    pids,
                    ch(range(1, 9), k=k),
                    ch(pools.dates, k=k),
                    ch(pools.times, k=k),
                    ch((15, 20, 30, 45, 60, 90), k=k),
                    ch(range(1, 7), k=k),
                    ch(STATUSES, k=k),
                    ch(REASONS, k=k),
                    notes_a,
                    notes_b,
                    strict=True,
                ),
            )
        )
    fmt = (
        "INSERT INTO public.invoices VALUES (%d, %d, %d, '%s', %s, %s, %s, '%s', '%s', "
        "'%s: %s; %s: %s');\n"
    )
    return list(
        map(
            fmt.__mod__,
            zip(
                ids,
                pids,
                ch(range(1, 10**7), k=k),
                ch(pools.dates, k=k),
                ch(pools.amounts, k=k),
                ch(pools.amounts[:2000], k=k),
                ch(("true", "false", "true"), k=k),
                ch(PAY_METHODS, k=k),
                ch(pools.dates, k=k),
                ch(REASONS, k=k),
                ch(pools.amounts, k=k),
                ch(REASONS, k=k),
                ch(pools.amounts, k=k),
                strict=True,
            ),
        )
    )


def plan_dump(seed: int, target_bytes: int, pools: Pools) -> DumpPlan:
    """Size each table from a sample block so the dump lands close to ``target_bytes``."""
    base_rows: dict[str, int] = {}
    for table, share in TABLE_SHARES.items():
        sample = _rows(
            table, random.Random(f"{seed}-{table}-sample"), range(BLOCK_ROWS), pools, 1000
        )
        avg = sum(map(len, sample)) / len(sample)
        base_rows[table] = max(BLOCK_ROWS // 10, int(target_bytes * share / avg))
    return DumpPlan(seed, base_rows)


def _new_id_base(plan: DumpPlan, table: str, night: int) -> int:
    """First id handed out in ``night``; each night gets its own id range."""
    n = plan.base_rows[table]
    model = CHANGE_MODELS[table]
    stride = int(n * (model.inserts + model.appends)) + model.insert_run[1] + 10
    return n + (night - 1) * stride + 1


def _runs(rng: random.Random, lo: int, hi: int, total: int, run: tuple[int, int]) -> set[int]:
    """Row ids in ``[lo, hi)`` covered by random runs until about ``total`` rows are hit."""
    ids: set[int] = set()
    span = hi - lo
    if span <= 0 or total <= 0:
        return ids
    total = min(total, span)
    while len(ids) < total:
        length = min(span, rng.randint(*run))
        start = lo + rng.randrange(span - length + 1)
        ids.update(range(start, start + length))
    return ids


def night_update_ids(plan: DumpPlan, table: str, night: int) -> list[int]:
    """The base rows ``night`` updates: runs in the hot window plus scattered single rows."""
    n = plan.base_rows[table]
    model = CHANGE_MODELS[table]
    rng = random.Random(f"{plan.seed}-{table}-night-{night}-updates")
    hot = _runs(rng, n - int(n * model.hot_window), n, int(n * model.hot_updates), model.hot_run)
    hot.update(rng.sample(range(n), max(1, int(n * model.scattered))))
    return sorted(hot)


def table_changes(plan: DumpPlan, table: str, night: int, pools: Pools) -> TableChanges:
    """Accumulate nights 1..night for one table; later nights override earlier updates."""
    changes = TableChanges()
    n = plan.base_rows[table]
    n_pat = plan.base_rows["patients"]
    model = CHANGE_MODELS[table]
    for nt in range(1, night + 1):
        rng = random.Random(f"{plan.seed}-{table}-night-{nt}")
        upd_ids = night_update_ids(plan, table, nt)
        # Inserts fill free space left by deleted rows: a few sites, a page's worth each.
        sites: list[tuple[int, int]] = []
        n_ins = 0
        while n_ins < max(1, int(n * model.inserts)):
            sites.append((rng.randrange(n), rng.randint(*model.insert_run)))
            n_ins += sites[-1][1]
        n_app = max(1, int(n * model.appends))
        first_new = _new_id_base(plan, table, nt)
        new_ids = range(first_new, first_new + n_ins + n_app)
        upd_rows = _rows(
            table, random.Random(f"{plan.seed}-{table}-upd-{nt}"), upd_ids, pools, n_pat
        )
        changes.overrides.update(zip(upd_ids, upd_rows, strict=True))
        new_rows = _rows(
            table, random.Random(f"{plan.seed}-{table}-new-{nt}"), new_ids, pools, n_pat
        )
        used = 0
        for pos, count in sites:
            changes.inserted_after[pos].extend(new_rows[used : used + count])
            used += count
        changes.appended.extend(new_rows[n_ins:])
    return changes


def _write_table(out: io.TextIOBase, plan: DumpPlan, table: str, night: int, pools: Pools) -> int:
    """Write one table's CREATE and INSERT lines; returns the highest id written."""
    n = plan.base_rows[table]
    changes = table_changes(plan, table, night, pools)
    touched_blocks: dict[int, list[int]] = defaultdict(list)
    for row_id in set(changes.overrides) | set(changes.inserted_after):
        touched_blocks[row_id // BLOCK_ROWS].append(row_id)
    out.write(
        f"\n--\n-- Data for Name: {table}; Type: TABLE DATA; Schema: public\n--\n\n"
        f"CREATE TABLE public.{table} ({_SCHEMA[table]});\n\n"
    )
    n_pat = plan.base_rows["patients"]
    for block in range((n + BLOCK_ROWS - 1) // BLOCK_ROWS):
        start = block * BLOCK_ROWS
        ids = range(start, min(n, start + BLOCK_ROWS))
        rows = _rows(table, random.Random(f"{plan.seed}-{table}-{block}"), ids, pools, n_pat)
        # Patch from the highest id down so earlier list indices stay valid.
        for row_id in sorted(touched_blocks.get(block, ()), reverse=True):
            idx = row_id - start
            if row_id in changes.overrides:
                rows[idx] = changes.overrides[row_id]
            if row_id in changes.inserted_after:
                rows[idx + 1 : idx + 1] = changes.inserted_after[row_id]
        out.write("".join(rows))
    out.write("".join(changes.appended))
    return _new_id_base(plan, table, night + 1) - 1 if night else n


def write_dump(path: Path, plan: DumpPlan, night: int, pools: Pools) -> None:
    """Write the whole dump for ``night`` to ``path`` (via a temp file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="ascii", buffering=8 << 20) as out:
        out.write(
            "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.4\n"
            "SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n"
            "SET standard_conforming_strings = on;\n"
        )
        last_ids = {t: _write_table(out, plan, t, night, pools) for t in TABLE_SHARES}
        out.write("\n")
        for table, last in last_ids.items():
            out.write(f"SELECT pg_catalog.setval('public.{table}_id_seq', {last}, true);\n")
            out.write(f"CREATE INDEX {table}_idx ON public.{table} USING btree (id);\n")
        out.write("\n--\n-- PostgreSQL database dump complete\n--\n")
    tmp.replace(path)
