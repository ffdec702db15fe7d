"""`dedupe.plan.simulate` on real folders with known contents: the first backup measured (a
duplicate counted once, text compressed, random bytes not), the nightly change read from the
modification times as a line (rewritten every night + kept), and the given change rate."""

from __future__ import annotations

import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dedupe.plan import projection, simulate
from dedupe.retention import UNLIMITED, Policy

DAY = 86400


def folder(root: Path, now: float) -> Path:
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    noise = random.Random(1).randbytes(2_000_000)
    (data / "scan.pdf").write_bytes(noise)
    (data / "sub" / "copy.pdf").write_bytes(noise)  # the same bytes: stored once
    (data / "letters.txt").write_bytes(b"Dear patient, your results are fine.\n" * 50_000)
    (data / "link").symlink_to(data / "scan.pdf")  # stored as a link, not read
    old = now - 400 * DAY
    for path in (data / "scan.pdf", data / "sub" / "copy.pdf", data / "letters.txt"):
        os.utime(path, (old, old))
    return data


def test_the_first_backup_is_measured(tmp_path):
    now = time.time()
    data = folder(tmp_path, now)
    measure = simulate.measure_folder(data, now)
    assert measure.files == 3 and measure.raw_bytes == 4_000_000 + 37 * 50_000
    assert measure.unique_raw_bytes == 2_000_000 + 37 * 50_000
    # Random bytes do not compress, letters do: the store is a little over the one scan.
    assert 2_000_000 < measure.stored_bytes - simulate.FIXED_BYTES < 2_000_000 * 1.02
    assert measure.changed == (0,) * simulate.MEASURE_DAYS
    change = simulate.nightly_change(measure)
    assert change.nightly_bytes == 0


def test_the_nightly_change_is_a_line_through_the_modification_times(tmp_path):
    now = time.time()
    data = folder(tmp_path, now)
    rng = random.Random(2)
    for i in range(30):  # a 50 kB scan a day for 30 days, one rewritten dump of 80 kB
        path = data / f"scan-{i}.pdf"
        path.write_bytes(rng.randbytes(50_000))
        when = now - i * DAY - 3600
        os.utime(path, (when, when))
    (data / "dump.sql").write_bytes(rng.randbytes(80_000))
    os.utime(data / "dump.sql", (now - 3600, now - 3600))
    measure = simulate.measure_folder(data, now)
    assert measure.changed[0] == 130_000 and measure.changed[-1] == 80_000 + 30 * 50_000
    change = simulate.nightly_change(measure)
    ratio = measure.changed_ratio
    assert ratio == 1.0  # random bytes are stored as they are
    assert change.rewritten_bytes == pytest.approx(80_000 * ratio)
    assert change.kept_bytes == pytest.approx(50_000 * ratio)
    history, (estimate,) = simulate.simulated_history(
        measure, change, datetime(2026, 3, 2, 23, tzinfo=UTC)
    )
    assert estimate.nightly_bytes == pytest.approx(130_000 * ratio)
    assert estimate.survive(1) == pytest.approx(50 / 130)
    assert estimate.stand(365) == 1.0  # nothing replaced in place: the base stays
    # Keeping everything, the packs grow by exactly the nightly bytes and their overhead.
    result = projection.forecast(history, Policy(), 100, tz=UTC, estimates=(estimate,))
    parts = [dict(p.parts) for p in (result.series[1], result.final)]
    in_packs = [sum(v for k, v in part.items() if k != projection.PARTS[0]) for part in parts]
    overhead = measure.chunks * simulate.BLOB_OVERHEAD / measure.data_bytes
    assert in_packs[1] - in_packs[0] == pytest.approx(99 * 130_000 * (1 + overhead), rel=1e-4)


def test_a_given_change_rate_replaces_the_base_in_place(tmp_path):
    now = time.time()
    measure = simulate.measure_folder(folder(tmp_path, now), now)
    change = simulate.nightly_change(measure, 0.01)
    assert change.kept_bytes == pytest.approx(measure.raw_bytes * 0.01 * simulate.REWRITE_COST)
    assert change.replaced_share == pytest.approx(0.01 * simulate.REWRITE_COST)
    history, (estimate,) = simulate.simulated_history(
        measure, change, datetime(2026, 3, 2, 23, tzinfo=UTC)
    )
    assert estimate.stand(10) == pytest.approx(0.98**10)
    # A policy that forgets old nights frees what was replaced; keeping everything does not.
    policy = Policy(keep_business_days=10, keep_monthly=UNLIMITED)
    pruned = projection.forecast(history, policy, 200, tz=UTC, estimates=(estimate,))
    everything = projection.forecast(history, Policy(), 200, tz=UTC, estimates=(estimate,))
    assert pruned.final.stored_bytes < 0.8 * everything.final.stored_bytes


def test_what_cannot_be_measured_is_said(tmp_path):
    with pytest.raises(simulate.SimulateError, match="not a folder"):
        simulate.measure_folder(tmp_path / "nothing", time.time())
    (tmp_path / "empty").mkdir()
    with pytest.raises(simulate.SimulateError, match="no file that could be read"):
        simulate.measure_folder(tmp_path / "empty", time.time())
