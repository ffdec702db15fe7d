"""The run log is rotated so a nightly job never fills the server's disk with its own log."""

from __future__ import annotations

from pathlib import Path

from dedupe.run.state import LOG_LIMIT, State


def test_a_log_past_the_limit_moves_to_dot_1_and_the_new_night_starts_fresh(
    tmp_path: Path,
) -> None:
    state = State(tmp_path / "state", tmp_path / "dedupe.toml")
    state.start_log("=== night 1")
    state.append_log("x" * LOG_LIMIT)
    state.start_log("=== night 2")
    state.append_log("step output of night 2")
    old = state.log_file.with_name(state.log_file.name + ".1")
    assert old.read_text().startswith("=== night 1\n")
    assert state.log_file.read_text() == "=== night 2\nstep output of night 2\n"
    # A small log is appended to, not rotated; a later rotation replaces the older `.1`.
    state.start_log("=== night 3")
    assert state.log_file.read_text().count("=== night") == 2
    state.append_log("y" * LOG_LIMIT)
    state.start_log("=== night 4")
    assert old.read_text().startswith("=== night 2\n")
    assert state.log_file.read_text() == "=== night 4\n"
