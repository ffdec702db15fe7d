"""Where a forecast's error comes from: the real repository size on a later night, by source,
next to the same parts of the forecast made earlier.

``python -m benchmarks.plan_decompose REPO_AT_FORECAST REPO_AT_CHECK [--policy ...]``

Both repositories are copies `benchmarks.size_my_drive --keep --keep-at` made of one replayed
history (password ``size-my-drive``). The real size on the later night splits into:

- other files (index files, manifests, keys): the forecast holds them at today's size;
- pack overhead (pack headers, per-blob sealing beyond the index lengths);
- garbage: blob bytes in packs that no snapshot references (gc's `--max-unused` leaves them);
- carried: live blobs already stored at the forecast night, split as the model carries them
  (referenced by the newest snapshot then and first by it: its night's data, curve S; by it and
  older ones: the standing data, curve R; not by it: data only older kept snapshots held);
- new: live blobs stored after the forecast night.

The forecast's parts are the same (`projection.forecast` keeps them per day), and "added" is
what the model assumed the nights in between would add against what they really added (the
manifests' `bytes_added` of the nights, from the run's JSON report when given).
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from dedupe import stats
from dedupe.cli.policy_args import add_policy_arguments, policy_from_args
from dedupe.plan import projection
from dedupe.plan.history import history_from_stats
from dedupe.repo import manifests
from dedupe.repo.repository import Repository
from dedupe.storage.local import LocalStorage

PASSWORD = b"size-my-drive"
PRACTICE = (
    "--keep-business-days 10 --keep-monthly unlimited --keep-quarterly unlimited "
    "--keep-yearly unlimited"
)


def open_repo(path: Path) -> Repository:
    repo = Repository.open(LocalStorage(str(path)), lambda: PASSWORD)
    repo.cache_dir = None
    return repo


@dataclass
class Parts:
    stored: int
    other: int
    overhead: int
    garbage: int
    carried_newest_night: int
    carried_standing: int
    carried_older_only: int
    new: int

    def rows(self) -> list[tuple[str, int]]:
        return [
            ("other files (index, manifests)", self.other),
            ("pack overhead", self.overhead),
            ("garbage left by gc", self.garbage),
            ("carried: newest night's data (S)", self.carried_newest_night),
            ("carried: standing data (R)", self.carried_standing),
            ("carried: older snapshots only", self.carried_older_only),
            ("new since the forecast", self.new),
        ]


def real_parts(before: Path, after: Path) -> Parts:
    """The later repository's size by source (module docstring)."""
    old = open_repo(before)
    old_snaps = manifests.load_all(old)
    old_masks = stats.reference_masks(old, old_snaps)
    newest = len(old_snaps) - 1
    old_live = {blob: mask for blob, mask in old_masks.items() if mask}
    repo = open_repo(after)
    result = stats.collect(repo)
    masks = stats.reference_masks(repo, manifests.load_all(repo))
    blob_bytes: dict[bytes, int] = {}
    garbage = night = standing = older = new = 0
    for blob_id, loc in repo.index.items():
        blob_bytes[loc.pack_id] = blob_bytes.get(loc.pack_id, 0) + loc.length
        if not masks.get(blob_id, 0):
            garbage += loc.length
            continue
        was = old_live.get(blob_id, 0)
        if not was:
            new += loc.length
        elif not was >> newest & 1:
            older += loc.length
        elif was == 1 << newest:
            night += loc.length
        else:
            standing += loc.length
    overhead = sum(size - blob_bytes.get(pid, 0) for pid, size in result.pack_sizes.items())
    return Parts(
        stored=result.stored_bytes,
        other=result.stored_bytes - result.pack_bytes,
        overhead=overhead,
        garbage=garbage,
        carried_newest_night=night,
        carried_standing=standing,
        carried_older_only=older,
        new=new,
    )


@dataclass(frozen=True)
class RealNights(projection.GroupEstimate):
    """The estimate with the nights' real additions instead of its level and trend."""

    real: tuple[float, ...] = ()

    def added_on(self, day: int) -> float:
        return self.real[day - 1]


def forecast_parts(
    before: Path,
    policy_flags: list[str],
    days: int,
    max_unused: float,
    real_added: tuple[float, ...] | None = None,
) -> dict:
    """The forecast made on `before` for `days` days on, with its parts on the last day; with
    `real_added` (one group), fed the nights' real additions instead of its estimate."""
    ap = argparse.ArgumentParser()
    add_policy_arguments(ap)
    policy = policy_from_args(ap.parse_args(policy_flags))
    history, _left_out = history_from_stats(stats.collect(open_repo(before)))
    estimates = projection.estimate_groups(history)
    if real_added is not None:
        fields = {
            f: getattr(estimates[0], f) for f in projection.GroupEstimate.__dataclass_fields__
        }
        estimates = (RealNights(**fields, real=real_added),)
    result = projection.forecast(history, policy, days, max_unused=max_unused, estimates=estimates)
    point = result.final
    added = sum(e.added_on(d) for e in estimates for d in range(1, days + 1))
    return {
        "stored": point.stored_bytes,
        "parts": dict(point.parts),
        "added": added,
        "nightly": [round(e.nightly_bytes) for e in estimates],
        "trend": [round(e.nightly_trend) for e in estimates],
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="plan_decompose", description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path, help="the repository as the forecast saw it")
    ap.add_argument("after", type=Path, help="the repository on the night checked")
    ap.add_argument("--days", type=int, required=True, help="nights between the two")
    ap.add_argument("--policy", default=PRACTICE)
    ap.add_argument("--max-unused", type=float, default=10.0)
    ap.add_argument("--report", type=Path, help="size_my_drive's JSON report (real additions)")
    args = ap.parse_args(argv)
    real = real_parts(args.before, args.after)
    model = forecast_parts(args.before, shlex.split(args.policy), args.days, args.max_unused / 100)
    mb = 1e6
    print(f"{'part':<36} {'real MB':>9} {'forecast MB':>12}")
    for name, value in real.rows():
        print(f"{name:<36} {value / mb:9.2f} {model['parts'].get(name, 0) / mb:12.2f}")
    print(f"{'total':<36} {real.stored / mb:9.2f} {model['stored'] / mb:12.2f}")
    print(f"model: nightly {model['nightly']} B, trend {model['trend']} B/day")
    print(f"added over the {args.days} nights, model: {model['added'] / mb:.2f} MB")
    if args.report:
        report = json.loads(args.report.read_text())
        nights = report["nights"]
        start = next(i for i, n in enumerate(nights) if n["night"] == report["forecast_night"])
        added = tuple(float(n["bytes_added"]) for n in nights[start + 1 : start + 1 + args.days])
        print(f"added over the {args.days} nights, real:  {sum(added) / mb:.2f} MB")
        fed = forecast_parts(
            args.before, shlex.split(args.policy), args.days, args.max_unused / 100, added
        )
        error = (fed["stored"] - real.stored) / real.stored
        print(
            f"the model fed the real additions: {fed['stored'] / mb:.2f} MB ({error * 100:+.1f} %);"
            f" new since the forecast {fed['parts'][projection.PARTS[6]] / mb:.2f} MB, garbage "
            f"{fed['parts'][projection.PARTS[2]] / mb:.2f} MB"
        )


if __name__ == "__main__":
    main()
