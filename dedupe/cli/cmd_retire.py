"""`dedupe retire --repo URL --yes [--from URL] [--keep-key-export FILE] [--reason TEXT]`:
make a drive's repository unreadable on purpose, and record that it was done.

A drive taken out of rotation (broken, replaced, sent for disposal) still opens with the password
forever. `retire` ends that: after it, no password opens the repository at `--repo`, and its
backups cannot be restored. In this order:
1. refuse without `--yes`, before anything is opened (it cannot be undone);
2. open the drive with its password (DEDUPE_PASSWORD_FILE, _COMMAND, DEDUPE_PASSWORD) and the
   source repository (`--from URL`, else DEDUPE_REPO) with DEDUPE_FROM_PASSWORD_FILE, _COMMAND
   or DEDUPE_FROM_PASSWORD, else the drive's password; refuse if they are one repository;
3. with `--keep-key-export FILE`, write the drive's key export (as `dedupe key export`) first;
4. journal the retirement in the source repository (`retire`: the drive, its repository id, the
   backups that become unreadable, the reason);
5. destroy (`Repository.retire`): the marker `retired`, every key file, the config's sealed part.
An interruption after 4 is finished by running the same command again (no password needed then).

The drive is named by `--repo` on the command line only: DEDUPE_REPO names the source, so an
environment variable can never make this command destroy the repository it usually backs up to.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import datetime

from dedupe.cli import password
from dedupe.cli.context import Context, Subparsers
from dedupe.cli.destination import open_second, remembered
from dedupe.crypto import export
from dedupe.errors import UsageError
from dedupe.model.snapshot import Snapshot
from dedupe.repo import journal, manifests
from dedupe.repo.repository import Repository
from dedupe.repo.retire import finish_retirement, retired_on

CANNOT_BE_UNDONE = (
    "This cannot be undone: afterwards no password opens it and none of its backups can be "
    "restored."
)


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "retire",
        parents=[common],
        help="make a drive's repository unreadable on purpose, recorded in the source's journal",
        description="Retire the repository at --repo (a drive taken out of rotation): record "
        "it in the source repository's journal (--from, else $DEDUPE_REPO), then delete the "
        "drive's key files and the sealed part of its config. " + CANNOT_BE_UNDONE,
    )
    p.add_argument("--yes", action="store_true", help="yes, destroy the drive's keys for good")
    p.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the repository whose journal records the retirement (default: $DEDUPE_REPO); "
        "its password: $DEDUPE_FROM_PASSWORD_FILE/_COMMAND/DEDUPE_FROM_PASSWORD, else the drive's",
    )
    p.add_argument(
        "--keep-key-export",
        metavar="FILE",
        help="first write the drive's key export to FILE (still sealed by its password)",
    )
    p.add_argument("--reason", metavar="TEXT", help="why, e.g. 'drive failed its check'")
    p.set_defaults(handler=cmd_retire)


def _drive_url(ctx: Context) -> str:
    if not ctx.args.repo:
        raise UsageError(
            "name the repository to retire with --repo URL on the command line (DEDUPE_REPO is "
            "taken as the source whose journal records it, never as the one destroyed)"
        )
    return str(ctx.args.repo)


def _source_url(ctx: Context, drive: str) -> str:
    url = ctx.args.source or os.environ.get("DEDUPE_REPO", "")
    if not url:
        raise UsageError(
            "retire records the retirement in the journal of the source repository: give it "
            "with --from URL (or set DEDUPE_REPO); nothing was done"
        )
    if journal.place(url) == journal.place(drive):
        raise UsageError(
            "--from names the repository to retire itself: give the source repository whose "
            "journal should record it; nothing was done"
        )
    return url


def cmd_retire(ctx: Context) -> int:
    drive_url = _drive_url(ctx)
    if not ctx.args.yes:
        raise UsageError(
            f"retire destroys the keys of the repository at {journal.place(drive_url)}. "
            f"{CANNOT_BE_UNDONE} To go ahead, run the same command with --yes (and "
            "--keep-key-export FILE to keep a copy of its key first); nothing was done"
        )
    source_url = _source_url(ctx, drive_url)
    reason = " ".join((ctx.args.reason or "taken out of rotation").split())
    storage = ctx.storage()
    when = retired_on(storage)
    if when is not None:
        finish_retirement(storage)
        ctx.out(
            f"the repository at {journal.place(drive_url)} was already retired on "
            f"{when:%Y-%m-%d %H:%M}; whatever of its keys was left is deleted now"
        )
        return 0
    drive_secret = remembered(password.source())
    drive = Repository.open(storage, drive_secret)
    ctx._repo = drive
    source = _open_source(ctx, source_url, drive_secret)
    try:
        if source.settings.repo_id == drive.settings.repo_id:
            raise UsageError(
                "--from and --repo are the same repository: give the source repository whose "
                "journal should record the retirement; nothing was done"
            )
        with drive.lock(exclusive=True):
            damaged: list[str] = []
            snaps = manifests.load_all(drive, damaged)
            if ctx.args.keep_key_export:
                _export_key(drive, ctx.args.keep_key_export)
            entry = journal.new_entry(
                "retire",
                journal.command_line(sys.argv[1:]),
                snapshots=tuple(journal.ref(s) for s in snaps),
                reason=reason,
                details={
                    "peer": journal.place(drive_url),
                    "peer_repo": drive.settings.repo_id.hex(),
                    "key_export_kept": bool(ctx.args.keep_key_export),
                },
            )
            journal.append(source, entry)
            drive.retire(datetime.now().astimezone())
    finally:
        source.storage.close()
    _report(ctx, drive, snaps, drive_url, source_url)
    return 0


def _open_source(ctx: Context, url: str, drive_secret: Callable[[], bytes]) -> Repository:
    place = journal.place(url)
    return open_second(
        url,
        ctx.args.s3_endpoint,
        "DEDUPE_FROM_",
        drive_secret,
        missing=f"there is no dedupe repository at the source {place}, whose journal must "
        "record the retirement; nothing was done",
        wrong=f"source {place}: {{}} (its password comes from DEDUPE_FROM_PASSWORD_FILE, "
        "DEDUPE_FROM_PASSWORD_COMMAND or DEDUPE_FROM_PASSWORD, else the drive's password); "
        "nothing was done",
    )


def _export_key(drive: Repository, target: str) -> None:
    """The key export (`dedupe key export` format), durable before anything is destroyed."""
    exported = export.KeyExport(drive.settings.repo_id, drive.storage.get(drive.key_name))
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{target} exists; choose another name; nothing was done") from None
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}; nothing was done") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(export.encode_file(exported))
        f.flush()
        os.fsync(f.fileno())


def _report(
    ctx: Context, drive: Repository, snaps: list[Snapshot], drive_url: str, source_url: str
) -> None:
    if ctx.json:
        ctx.emit_json(
            {
                "retired": journal.place(drive_url),
                "repo": drive.settings.repo_id.hex(),
                "snapshots": [s.id for s in snaps],
                "journalled_in": journal.place(source_url),
                "key_export": ctx.args.keep_key_export,
            }
        )
        return
    ctx.out(
        f"retired the repository at {journal.place(drive_url)} "
        f"({drive.settings.repo_id.hex()[:8]}, {len(snaps)} backup(s)): its key files and "
        "settings are destroyed; no password opens it any more"
    )
    if ctx.args.keep_key_export:
        ctx.out(f"its key export is in {ctx.args.keep_key_export}: keep it safe, or destroy it")
    ctx.out(f"recorded in the journal of {journal.place(source_url)} ('dedupe journal')")
