"""What every command needs: the parsed arguments, output helpers, the repository, progress.

Only `dedupe.cli` prints, reads the environment or draws progress bars.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from dedupe.cli import password
from dedupe.repo.repository import Repository
from dedupe.storage import Storage, open_storage


class Context:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.json = bool(getattr(args, "json", False))
        self.quiet = bool(getattr(args, "quiet", False))
        self._storage: Storage | None = None
        self._repo: Repository | None = None
        self.warnings: list[str] = []

    # --- output ---------------------------------------------------------------------------

    def out(self, text: str = "") -> None:
        """Human output on stdout (suppressed with --json, which prints JSON instead)."""
        if not self.json:
            print(text)

    def emit_json(self, value: Any) -> None:
        # ASCII escapes keep the output valid JSON even for file names that are not UTF-8
        # (they appear as \udcXX surrogates, which os.fsencode turns back into the bytes).
        json.dump(value, sys.stdout, indent=2, ensure_ascii=True)
        sys.stdout.write("\n")

    def info(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        print(f"warning: {text}", file=sys.stderr)

    def progress_bar(self, total: int | None, desc: str, unit: str = "B") -> tqdm | None:
        """A tqdm bar on a terminal's stderr, else None."""
        if self.quiet or not sys.stderr.isatty():
            return None
        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )

    # --- repository -----------------------------------------------------------------------

    @property
    def repo_url(self) -> str:
        return self.args.repo or os.environ.get("DEDUPE_REPO", "")

    def storage(self, create: bool = False) -> Storage:
        if self._storage is None:
            self._storage = open_storage(
                self.repo_url, s3_endpoint=self.args.s3_endpoint, create=create
            )
        return self._storage

    def repo(self) -> Repository:
        """The unlocked repository (asks for the password once)."""
        if self._repo is None:
            self._repo = Repository.open(self.storage(), password.source())
        return self._repo

    def index_problems(self) -> list[str]:
        """Index files the repository skipped as damaged (reported after the command)."""
        return list(self._repo.index_errors) if self._repo is not None else []

    def close(self) -> None:
        if self._storage is not None:
            self._storage.close()


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


Handler = Callable[[Context], int]
