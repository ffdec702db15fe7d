"""What `check` reports: every finding, what it costs (snapshots and paths), and how much was
looked at. Filled by `dedupe.check.checker`; the CLI prints it or emits `to_json`, and raises
`damage_message` as its DamageError (exit 14) when there are errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CheckReport:
    """Everything check found, and how much it looked at."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Plain information (where the journal starts), neither damage nor a warning."""
    damaged_blobs: set[bytes] = field(default_factory=set)
    # snapshot id -> display paths (files, or folders whose tree is unreadable) that lose data
    damaged_snapshots: dict[str, list[str]] = field(default_factory=dict)
    snapshot_info: dict[str, str] = field(default_factory=dict)
    snapshots: int = 0
    index_files: int = 0
    packs: int = 0
    blobs_indexed: int = 0
    trees: int = 0
    data_blobs_referenced: int = 0
    packs_read: int = 0
    bytes_read: int = 0
    blobs_verified: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
            "damaged_snapshots": [
                {"id": sid, "paths": paths} for sid, paths in self.damaged_snapshots.items()
            ],
            "snapshots": self.snapshots,
            "index_files": self.index_files,
            "packs": self.packs,
            "blobs": self.blobs_indexed,
            "packs_read": self.packs_read,
            "bytes_read": self.bytes_read,
            "blobs_verified": self.blobs_verified,
        }

    def damage_message(self) -> str:
        """The text of the DamageError the CLI raises: each error, then what it costs."""
        lines = [f"check found {len(self.errors)} problem(s):"]
        lines += [f"  {e}" for e in self.errors]
        for sid, paths in self.damaged_snapshots.items():
            label = self.snapshot_info.get(sid, sid[:8])
            lines.append(f"snapshot {label} is damaged; affected paths:")
            lines += [f"  {p}" for p in paths]
        if not self.damaged_snapshots and self.damaged_blobs:
            lines.append("no snapshot references the damaged data")
        return "\n".join(lines)
