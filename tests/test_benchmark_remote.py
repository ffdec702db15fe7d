"""The remote benchmark (benchmarks/remote.py) runs end to end on a tiny corpus: both tools
complete every step against the real loopback sshd and SeaweedFS it starts, and the report
prints target 6 for each step. Timings are not asserted (the machine is shared)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import remote


@pytest.mark.slow
def test_remote_benchmark_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("restic") is None:
        pytest.skip("restic is not installed")
    out = tmp_path / "remote.json"
    argv = ["--size", "4M", "--reps", "1", "--workdir", str(tmp_path / "w"), "--out", str(out)]
    assert remote.main(argv) == 0
    result = json.loads(out.read_text())
    for run in result["runs"]:
        assert "error" not in run, run
        assert set(run["steps"]) == set(remote.STEPS)
    assert {run["tool"] for run in result["runs"]} == {"dedupe", "restic"}
    printed = capsys.readouterr().out
    assert all(f"target 6: {step} " in printed for step in remote.STEPS), printed
