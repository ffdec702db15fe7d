"""Retention policy: which snapshots a policy keeps, and why. Pure: no I/O, no clock.

`apply_policy` takes plain `SnapshotInfo` values and a `Policy` and returns one `Decision` per
snapshot (keep or remove, with the reasons). It never reads the repository, the environment or the
system clock, so `forget`, `forget --dry-run` and `plan` (which replays history day by day) get
exactly the same answer for the same input, and tests can build any calendar they like. Every rule
is relative to the snapshots themselves (the newest one of a group stands in for "now"); that is
also what makes a gap in backups harmless.

What keeps what
---------------
Snapshots are grouped by host and source paths; each group is judged on its own. Times are
converted to the caller's local time zone before any calendar question is asked, so a backup taken
at 23:30 UTC counts as the next day in Berlin. Within a group, "newest" means the latest instant
(ties broken by id, so the result never depends on input order).

- held: a held snapshot is always kept and is never removed by any rule or by max-backups.
- keep-last N: the N newest snapshots.
- keep-business-days N: for each of the N most recent business days that have a snapshot, the
  newest snapshot of that day. A business day is a date whose weekday is in `business_days` and
  which is not in `holidays`; a snapshot taken on any other day is ignored by this rule.
- keep-daily / keep-weekly (ISO weeks) / keep-monthly N: the newest snapshot of each of the N most
  recent days / weeks / calendar months that have a snapshot. The newest of a month is its
  "month end" backup (for the current month: the newest so far).
- keep-quarterly N: the same over quarters of the fiscal year (Q1 starts in `fiscal_year_start`).
- keep-yearly N: the same over fiscal years. A fiscal year is named by the calendar year in which it
  ends: with `fiscal_year_start=7`, July 2025 to June 2026 is FY2026.
- keep-within D: every snapshot no older than D before the group's newest snapshot (inclusive).
- keep-tag T: every snapshot carrying one of the tags.
- N may be `UNLIMITED`; 0 keeps nothing (and does not count as a keep rule).
- max-backups N: applied last. If a group still keeps more than N snapshots, the oldest kept
  snapshots that are not held are removed until N remain (or only held ones are left). Held
  snapshots count toward N.

Only buckets that contain a snapshot are counted, so weeks without backups never push the newest
backups out of "the last 10 business days": the policy then reaches further back instead.
A policy without any keep rule keeps only held snapshots; callers must refuse to act on it
(`Policy.has_keep_rule`).

The package: `policy` holds the values going in and out (`Policy`, `SnapshotInfo`, `Decision`),
`periods` the calendar arithmetic (instants, durations, fiscal years), `rules` the decision
itself (`apply_policy`). Every public name is importable from `dedupe.retention`.
"""

from dedupe.retention.periods import EARLIEST as EARLIEST
from dedupe.retention.periods import LATEST as LATEST
from dedupe.retention.periods import Duration as Duration
from dedupe.retention.periods import fiscal_quarter as fiscal_quarter
from dedupe.retention.periods import fiscal_year as fiscal_year
from dedupe.retention.periods import local_time as local_time
from dedupe.retention.periods import utc_instant as utc_instant
from dedupe.retention.policy import COUNT_FIELDS as COUNT_FIELDS
from dedupe.retention.policy import MONDAY_TO_FRIDAY as MONDAY_TO_FRIDAY
from dedupe.retention.policy import UNLIMITED as UNLIMITED
from dedupe.retention.policy import WEEKDAY_NAMES as WEEKDAY_NAMES
from dedupe.retention.policy import Decision as Decision
from dedupe.retention.policy import GroupKey as GroupKey
from dedupe.retention.policy import Policy as Policy
from dedupe.retention.policy import Reason as Reason
from dedupe.retention.policy import ReasonKind as ReasonKind
from dedupe.retention.policy import SnapshotInfo as SnapshotInfo
from dedupe.retention.policy import decisions_to_json as decisions_to_json
from dedupe.retention.policy import snapshot_info as snapshot_info
from dedupe.retention.rules import apply_policy as apply_policy
