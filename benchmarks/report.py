"""Turn raw benchmark runs into per-tool medians, dedupe/peer ratios and the issue's targets.

Kept apart from the runner so a results JSON can be re-tabulated without re-running:
``python -m benchmarks.report bench-out/results.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIB = 1 << 20
PEERS = ("restic", "borg")


def run_metrics(run: dict[str, Any], corpus_bytes: int) -> dict[str, float]:
    """Flatten one tool-repetition into named numbers (only steps that succeeded)."""
    out: dict[str, float] = {}
    steps = {k: v for k, v in run["steps"].items() if v["rc"] == 0}
    for step, rec in steps.items():
        out[f"{step}_s"] = rec["wall_s"]
        out[f"{step}_rss_mib"] = rec["max_rss_kib"] / 1024
        if not step.startswith("restore"):
            out[f"repo_after_{step}_mib"] = rec["repo_bytes"] / MIB
    if "first" in steps:
        out["first_mb_s"] = corpus_bytes / steps["first"]["wall_s"] / 1e6
    if "first" in steps and "second" in steps:
        out["second_added_mib"] = (
            steps["second"]["repo_bytes"] - steps["first"]["repo_bytes"]
        ) / MIB
    if "restore_dump" in steps and run.get("dump_bytes"):
        out["restore_dump_mb_s"] = run["dump_bytes"] / steps["restore_dump"]["wall_s"] / 1e6
    if "restore_check" in run:
        out["restore_ok"] = float(run["restore_check"]["ok"])
    return out


def medians_and_ratios(
    result: dict[str, Any], steps: Sequence[str] = ()
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Median of each metric per tool over repetitions; dedupe/peer ratios of those medians."""
    per_tool: dict[str, dict[str, list[float]]] = {}
    for run in result["runs"]:
        for key, value in run_metrics(run, result["config"]["corpus_bytes"]).items():
            per_tool.setdefault(run["tool"], {}).setdefault(key, []).append(value)
    medians = {
        tool: {k: statistics.median(v) for k, v in metrics.items()}
        for tool, metrics in per_tool.items()
    }
    ratios: dict[str, dict[str, float]] = {}
    mine = medians.get("dedupe", {})
    for peer in PEERS:
        theirs = medians.get(peer, {})
        ratios[f"dedupe/{peer}"] = {
            k: mine[k] / theirs[k] for k in mine if theirs.get(k) and k != "restore_ok"
        }
    return medians, ratios


def _targets(med: dict[str, dict[str, float]], result: dict[str, Any]) -> list[str]:
    """The issue's targets, checked against the medians (only those whose inputs exist)."""
    d, r, b = med.get("dedupe", {}), med.get("restic", {}), med.get("borg", {})
    lines: list[str] = []

    def check(name: str, mine: str, limit: float | None) -> None:
        if mine in d and limit is not None:
            ok = d[mine] <= limit
            lines.append(f"  [{'ok' if ok else 'MISS'}] {name}: {d[mine]:.3g} <= {limit:.3g}")

    def pick(m: dict[str, float], key: str, factor: float = 1.0) -> float | None:
        return m[key] * factor if key in m else None

    check("first snapshot <= 0.4 x restic", "first_s", pick(r, "first_s", 0.4))
    check(
        "second night added <= 0.5 x restic", "second_added_mib", pick(r, "second_added_mib", 0.5)
    )
    peers_size = [m["repo_after_second_mib"] for m in (r, b) if "repo_after_second_mib" in m]
    check(
        "repo after two nights <= smaller peer",
        "repo_after_second_mib",
        min(peers_size) if peers_size else None,
    )
    check("second night <= 0.5 x restic", "second_s", pick(r, "second_s", 0.5))
    check("unchanged rerun <= 0.6 x restic", "rerun_s", pick(r, "rerun_s", 0.6))
    restores = [m["restore_s"] for m in (r, b) if "restore_s" in m]
    check("restore <= 0.5 x faster peer", "restore_s", 0.5 * min(restores) if restores else None)
    check("restore <= 0.8 x restic (issue 17)", "restore_s", pick(r, "restore_s", 0.8))
    check("first snapshot <= 0.5 x restic (issue 17)", "first_s", pick(r, "first_s", 0.5))
    if "restore_dump_mb_s" in d:
        ok = d["restore_dump_mb_s"] >= 500
        lines.append(
            f"  [{'ok' if ok else 'MISS'}] dump restored alone >= 500 MB/s (issue 17): "
            f"{d['restore_dump_mb_s']:.0f} MB/s"
            + (f" (restic {r['restore_dump_mb_s']:.0f})" if "restore_dump_mb_s" in r else "")
        )
    check("forget+gc <= restic", "forget_gc_s", pick(r, "forget_gc_s"))
    check(
        "first snapshot RSS <= restic + 256 MiB",
        "first_rss_mib",
        r["first_rss_mib"] + 256 if "first_rss_mib" in r else None,
    )
    ceil = result.get("ceilings", {}).get("ceiling_2core")
    if ceil and "first_s" in d:
        pct = 100 * ceil["snapshot_s"] / d["first_s"]
        lines.append(
            f"  [{'ok' if pct >= 75 else 'MISS'}] pipeline >= 75 % of two-core ceiling: {pct:.0f} %"
        )
    return lines


def format_table(result: dict[str, Any]) -> str:
    """The human summary: medians per tool, ratios, ceiling percentages, targets, notes."""
    med, ratios = result["medians"], result["ratios"]
    tools = [t for t in ("dedupe", "restic", "borg") if t in med]
    keys: list[str] = []
    for m in med.values():
        keys += [k for k in m if k not in keys]
    ratio_cols = [k for k in ratios if ratios[k]]
    head = f"{'metric (median)':<28}" + "".join(f"{t:>12}" for t in tools)
    head += "".join(f"{c:>16}" for c in ratio_cols)
    lines = [
        f"corpus {result['config']['corpus_bytes'] / 1e6:.0f} MB, "
        f"{result['config']['reps']} rep(s), warm page cache",
        head,
        "-" * len(head),
    ]
    for key in keys:
        row = f"{key:<28}" + "".join(
            f"{med[t][key]:>12.3f}" if key in med[t] else f"{'-':>12}" for t in tools
        )
        row += "".join(
            f"{ratios[c][key]:>16.2f}" if key in ratios[c] else f"{'-':>16}" for c in ratio_cols
        )
        lines.append(row)
    for tool in tools:
        if "first_mb_s" in med[tool]:
            lines.append(f"{tool}: first snapshot {med[tool]['first_mb_s']:.0f} MB/s")
    ceil = result.get("ceilings", {}).get("ceiling_2core")
    if ceil:
        lines.append(
            f"two-core ceiling: snapshot {ceil['snapshot_s']:.2f} s, "
            f"restore {ceil['restore_s']:.2f} s"
        )
        for tool in tools:
            for step in ("first", "restore"):
                ref = ceil["snapshot_s" if step == "first" else "restore_s"]
                if f"{step}_s" in med[tool]:
                    pct = 100 * ref / med[tool][f"{step}_s"]
                    lines.append(f"  {tool} {step} reached {pct:.0f} % of the two-core ceiling")
    targets = _targets(med, result)
    if targets:
        lines.append("targets (issues 8 and 17):")
        lines += targets
    for run in result["runs"]:
        if "error" in run:
            lines.append(f"ERROR {run['tool']} rep {run['rep']}: {run['error']}")
        if run.get("restore_check", {}).get("ok") is False:
            lines.append(f"RESTORE MISMATCH {run['tool']} rep {run['rep']}: {run['restore_check']}")
    for name, reason in result.get("skipped", {}).items():
        lines.append(f"skipped {name}: {reason}")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Re-tabulate a results JSON written by ``benchmarks.run``."""
    path = Path((argv or sys.argv[1:] or ["bench-out/results.json"])[0])
    result = json.loads(path.read_text())
    result["medians"], result["ratios"] = medians_and_ratios(result)
    print(format_table(result))


if __name__ == "__main__":
    main()
