"""Run every atheris harness (tests/fuzz/fuzz_*.py) for a bounded number of inputs.

CI runs DEDUPE_FUZZ_RUNS inputs per harness (default 300000: under a minute or two for all of them);
set it higher for a long run, e.g. DEDUPE_FUZZ_RUNS=2000000. A crash fails the test with the
harness's output; the crashing input is kept in the test's temporary folder. Without atheris the
test is skipped, except under CI=true, where a missing fuzzer must not pass silently.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest

from tests.clitools import ROOT

RUNS = int(os.environ.get("DEDUPE_FUZZ_RUNS", "300000"))
HARNESSES = sorted(glob.glob(os.path.join(ROOT, "tests", "fuzz", "fuzz_*.py")))


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("harness", HARNESSES, ids=lambda p: os.path.basename(p)[:-3])
def test_atheris_harness(harness: str, tmp_path) -> None:
    if not _have_atheris():
        if os.environ.get("CI") == "true":
            pytest.fail("atheris is not installed (pip install atheris)")
        pytest.skip("atheris is not installed (pip install atheris)")
    # Wall-clock cap as well as a run count: a slow machine ends early rather than timing out.
    max_time = max(30, RUNS // 2000)
    proc = subprocess.run(
        [
            sys.executable,
            harness,
            f"-runs={RUNS}",
            f"-max_total_time={max_time}",
            f"-artifact_prefix={tmp_path}/",
            "-rss_limit_mb=2048",
            "-timeout=10",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=max_time + 120,
        # The harness's seed corpus goes to a temporary folder: this test's, not /tmp.
        env=os.environ | {"PYTHONPATH": ROOT, "TMPDIR": str(tmp_path)},
    )
    tail = proc.stderr[-4000:]
    assert proc.returncode == 0, f"fuzzer found a crash:\n{tail}"
    done = re.search(r"Done (\d+) runs in (\d+) second", proc.stderr)
    assert done, tail
    print(f"{os.path.basename(harness)}: {done.group(1)} runs in {done.group(2)} s")
