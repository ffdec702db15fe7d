"""`dedupe snapshot`: back up paths or a stream into a new snapshot.

Parses the arguments, checks the sources are worth a run, and prints; the snapshot itself (lock,
walk, write order, manifest) is dedupe.backup.session's, and the command run by
`--stdin-from-command` is dedupe.backup.command's.

On a terminal the bar shows %, files and an ETA: a quick count of the files to back up (names and
sizes only, `_FileCount`) runs beside the snapshot and gives the total. With `-v` each file's
decision (new, changed, removed) is listed after the snapshot, from the difference to the
previous snapshot of the same sources (the trees say it exactly, and no hook in the walk is
needed); unchanged files are counted, not listed."""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import stat
import sys
import threading
from typing import Any

from dedupe.backup.command import CommandStream, shown
from dedupe.backup.session import SnapshotOptions, snapshot_paths, snapshot_stream
from dedupe.backup.space import SourceSize
from dedupe.backup.walkparts import Excluder, source_problem
from dedupe.cachedir import default_cache_dir
from dedupe.cli.context import Context, ProgressBar, Subparsers, human_bytes, printable
from dedupe.cli.timearg import parse_time
from dedupe.errors import DedupeError, PartialSnapshot, UsageError
from dedupe.model.snapshot import Snapshot
from dedupe.model.tree import valid_name
from dedupe.repo import manifests, treewalk
from dedupe.repo.repository import Repository


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "snapshot",
        parents=[common],
        help="back up files, folders or a stream",
        aliases=["backup"],
        description="Back up files and folders (or a database dump read from a command or "
        "from stdin) into a new snapshot. Only what changed since the last backup is stored "
        "again. Prints the new snapshot's id (nothing with -q).",
        epilog=EXAMPLES,
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files and folders, or - for stdin (with --stdin-from-command: the command and its "
        "arguments, after --)",
    )
    p.add_argument(
        "--stdin-name",
        metavar="NAME",
        help="the name the stream is saved under (with - or --stdin-from-command), e.g. "
        "practice.sql; restore it with 'dedupe cat latest practice.sql'",
    )
    p.add_argument(
        "--stdin-from-command",
        action=_CommandFlag,
        help="run a command (such as a database dump) and back up what it writes; the command "
        "and its arguments go last, after --, e.g. --stdin-name practice.sql "
        "--stdin-from-command -- pg_dump practice. No shell is used. If the command fails, "
        "nothing is saved",
    )
    p.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="T",
        help="a label to find the snapshot by later, e.g. --tag before-update (repeatable)",
    )
    p.add_argument(
        "--host", metavar="H", help="the computer name to record (default: this computer's)"
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out matching names or paths (repeatable)",
    )
    p.add_argument(
        "--time",
        metavar="ISO8601",
        help="record this time instead of now, e.g. 2026-03-31T23:00 (for imports)",
    )
    p.set_defaults(handler=cmd_snapshot, paths_before_command=[])


EXAMPLES = """examples:
  Back up the practice folder, leaving temporary files out:
    dedupe snapshot /srv/practice --exclude '*.tmp'

  Back up the database as a dump; if pg_dump fails, nothing is saved and the exit code is 1:
    dedupe snapshot --stdin-name practice.sql --stdin-from-command -- pg_dump -U office practice

  The same dump through a pipe, and what was new or changed since last time:
    pg_dump practice | dedupe snapshot - --stdin-name practice.sql
    dedupe snapshot -v /srv/practice

exit codes: 0 saved; 1 nothing saved (error named); 3 saved, but some files could not be read
(each named on stderr); 10 no repository; 11 locked; 12 password; 13 disk full.
"""


class _CommandFlag(argparse.Action):
    """`--stdin-from-command`: a flag; the command is whatever comes after `--` (the positional
    arguments, so that the command's own options are never read as dedupe's). PATHs given before
    the flag are remembered here so that they are refused instead of run as the command."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True)
        namespace.paths_before_command = list(getattr(namespace, "paths", None) or [])


def cmd_snapshot(ctx: Context) -> int:
    args = ctx.args
    when = parse_time(args.time)
    command: list[str] = []
    if args.stdin_from_command:
        command = _command_argv(args.paths, args.paths_before_command, args.stdin_name)
    elif not args.paths:
        raise UsageError(
            "name the files and folders to back up, '-' to read stdin, or --stdin-from-command"
        )
    stdin_mode = args.paths == ["-"] or bool(command)
    paths: tuple[bytes, ...]
    if "-" in args.paths and not stdin_mode:
        raise UsageError("'-' (stdin) cannot be combined with other paths")
    if stdin_mode:
        if not args.stdin_name:
            raise UsageError("reading stdin needs --stdin-name NAME")
        name = os.fsencode(args.stdin_name.strip("/"))
        if not valid_name(name):
            raise UsageError("--stdin-name must be a plain file name")
        paths = (b"/" + name,)
    else:
        if args.stdin_name:
            raise UsageError("--stdin-name is only for '-' (stdin) or --stdin-from-command")
        paths = tuple(os.path.normpath(os.path.abspath(os.fsencode(p))) for p in args.paths)
        # A missing or unusable source is named (by the archiver) and the rest is saved, exit 3;
        # with none usable nothing is saved (exit 1): one missing folder must not cost the night.
        given_paths = zip(args.paths, paths, strict=True)
        problems = [(given, source_problem(path)) for given, path in given_paths]
        if all(problem is not None for _given, problem in problems):
            for given, problem in problems:
                ctx.warn(f"{given}: {problem}")
            raise DedupeError(
                "nothing was backed up: none of the given sources is a file, folder or symlink "
                "that exists. Check the paths (and that their drive is mounted), then run the "
                "snapshot again."
            )

    options = SnapshotOptions(
        time=when,
        host=args.host or socket.gethostname(),
        user=_user(),
        tags=tuple(args.tag),
        excludes=tuple(args.exclude),
        cache_root=default_cache_dir(),
    )
    # The free-space warning may need the sources' size (a first snapshot): counted while the
    # password's key is derived, which leaves the other core (and the GIL) free.
    counted = None if stdin_mode else SourceSize(paths)
    try:
        repo = ctx.repo()
    except BaseException:
        if counted is not None:
            counted.cancel()
        raise
    bars: list[ProgressBar | None] = []  # made at the first byte read (after the space warning)
    last = [0]
    count = None if stdin_mode else _FileCount(paths, Excluder(args.exclude))

    def progress(bytes_read: int, files: int) -> None:
        if not bars:
            unit = "B" if count is None else "files"
            bars.append(ctx.progress_bar(None, "snapshot", unit))
            if count is not None and bars[0] is not None:
                count.start()
        bar = bars[0]
        if bar is None:
            return
        done = bytes_read if count is None else files
        if count is not None:
            bar.note = f"{human_bytes(bytes_read)} read"
            if count.total is not None and bar.total != count.total:
                bar.total = count.total
            if bar.total is not None and done > bar.total:
                bar.total = done  # files that appeared since the count
        bar.update(done - last[0])
        last[0] = done

    try:
        if command:
            # Started only now that the repository opened: a wrong password runs no dump.
            with CommandStream(command, os.fsdecode(name)) as child:
                result = snapshot_stream(
                    repo, name, child.start(), options, ctx.warn, progress, finish=child.finish
                )
        elif stdin_mode:
            result = snapshot_stream(repo, name, sys.stdin.buffer, options, ctx.warn, progress)
        else:
            result = snapshot_paths(repo, paths, options, ctx.warn, progress, counted)
    finally:
        if count is not None:
            count.stop()
        if bars and bars[0] is not None:
            bars[0].refresh()  # the last state, however short the run was
            bars[0].close()
    snap, stats, bytes_added = result.snapshot, result.stats, result.bytes_added
    warnings: list[str] = []
    if stdin_mode and stats.bytes_total == 0:
        what = (
            f"the command {shown(command)} succeeded but wrote nothing"
            if command
            else "nothing arrived on stdin (the program piped into dedupe wrote nothing)"
        )
        warnings.append(
            f"the stream {os.fsdecode(name)} was empty: {what}, so this backup holds no data. "
            "Check that the dump works (for a database: that it exists and holds data)."
        )
        for text in warnings:
            ctx.warn(text)
    if ctx.json:
        ctx.emit_json(
            {
                "id": snap.id,
                "time": snap.time.isoformat(),
                "files": stats.files,
                "dirs": stats.dirs,
                "bytes_read": stats.bytes_read,
                "bytes_total": stats.bytes_total,
                "bytes_added": bytes_added,
                "errors": stats.errors,
                "warnings": warnings,
            }
        )
    else:
        if ctx.verbose:
            _list_decisions(ctx, repo, snap, stats.files_unchanged)
        ctx.info(
            f"{stats.files} files ({human_bytes(stats.bytes_total)}), read "
            f"{human_bytes(stats.bytes_read)}, added {human_bytes(bytes_added)}"
        )
        ctx.done(f"snapshot {snap.id} saved")
    if stats.errors:
        raise PartialSnapshot(
            f"snapshot {snap.id[:8]} was saved, but {len(stats.errors)} file(s) could not be read "
            "(listed above)"
        )
    if warnings:
        raise PartialSnapshot(
            f"snapshot {snap.id[:8]} was saved, but it holds an empty stream (see the warning "
            "above)"
        )
    return 0


class _FileCount:
    """Counts the files under the sources (names and sizes only, the walk's exclusions
    applied) in a thread beside the snapshot, for the bar's total; `total` is None until done.
    Only an estimate for the bar: files that appear or vanish meanwhile just move the %."""

    def __init__(self, paths: tuple[bytes, ...], excluder: Excluder) -> None:
        self.paths = paths
        self.excluder = excluder
        self.total: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="file-count", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        files = 0
        folders: list[bytes] = []
        for path in self.paths:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                folders.append(path)
            else:
                files += 1
        while folders and not self._stop.is_set():
            folder = folders.pop()
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if self.excluder.excluded(entry.path, entry.name):
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            folders.append(entry.path)
                        else:
                            files += 1
            except OSError:
                continue  # the snapshot names what it cannot read
        if not self._stop.is_set():
            self.total = files


_DECISIONS = {"+": "new", "M": "changed", "-": "removed"}


def _list_decisions(ctx: Context, repo: Repository, snap: Snapshot, unchanged: int) -> None:
    """`-v`: each path that is new, changed or removed since the previous snapshot of the same
    sources and host (on stderr, after the snapshot: stdout keeps only its id)."""
    earlier = [
        s
        for s in manifests.load_all(repo)
        if s.id != snap.id and s.host == snap.host and s.paths == snap.paths and s.time <= snap.time
    ]
    parent = max(earlier, key=lambda s: s.time) if earlier else None
    counts = dict.fromkeys(_DECISIONS.values(), 0)
    for sign, path in treewalk.diff(repo, parent.tree if parent else None, snap.tree):
        decision = _DECISIONS[sign]
        counts[decision] += 1
        print(f"{decision:<8} {printable(os.fsdecode(path))}", file=sys.stderr)
    since = f"since snapshot {parent.short_id()}" if parent else "(no earlier snapshot of these)"
    print(
        f"{counts['new']} new, {counts['changed']} changed, {counts['removed']} removed {since}; "
        f"{unchanged} files unchanged (not read again)",
        file=sys.stderr,
    )


def _command_argv(
    positionals: list[str], before_flag: list[str], stdin_name: str | None
) -> list[str]:
    """The command of --stdin-from-command: every positional argument, which argparse only
    collects after the flag when they follow `--`; PATHs before the flag are refused."""
    if before_flag:
        raise UsageError(
            "--stdin-from-command backs up a command's output, not files: give no PATH (or '-') "
            "with it, and put the command last, after --, e.g. dedupe snapshot --stdin-name "
            "practice.sql --stdin-from-command -- pg_dump practice"
        )
    if not stdin_name:
        raise UsageError(
            "--stdin-from-command needs --stdin-name NAME: the name the command's output is "
            "saved under, e.g. --stdin-name practice.sql"
        )
    if not positionals:
        raise UsageError(
            "--stdin-from-command needs the command to run, last and after --, e.g. "
            "dedupe snapshot --stdin-name practice.sql --stdin-from-command -- pg_dump practice"
        )
    return positionals


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError, DedupeError):
        return str(os.getuid())
