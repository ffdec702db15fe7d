"""A scaled-down `benchmarks.gc_scale` (20k chunks instead of 10M): the synthetic nights are
real, gc deletes and repacks what the forgotten ones leave, and the kept snapshots read back.
`python -m benchmarks.gc_scale` runs the full-size version (wall time and peak RSS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import gc_scale


@pytest.mark.timeout(300)
def test_gc_scale_benchmark_in_small(tmp_path, monkeypatch):
    monkeypatch.setattr(gc_scale, "PACKS_PER_INDEX_FILE", 16)  # several index files
    source = Path(gc_scale.__file__).resolve().parents[1]
    result = gc_scale.run(tmp_path, 20_000, nights=5, forget=2, sources=[source])
    (run,) = result["runs"]
    facts = run["gc"]
    assert facts["packs_deleted"] > 0 and facts["packs_rewritten"] > 0
    assert facts["live_blobs"] >= 10_000 + 3 * 2_000 and facts["missing_blobs"] == 0
    assert run["verify"]["chunks_read_back"] == 3 * 2 * gc_scale.FILE_CHUNKS
    assert run["verify"]["entries"] >= facts["live_blobs"]
    assert run["rss_mib"] > 0 and run["wall_s"] > 0
