"""The `dedupe` command: argument parsing, dispatch, and the one place errors become exit codes.

What it guarantees to a user and to the scripts around it:
- options are taken only as written: argparse's abbreviations are refused everywhere (a
  `--keep-m` that today means `--keep-monthly` would change meaning when a flag is added);
- `dedupe --help` lists the commands in the order a user needs them, grouped, with the password
  variables, the profile search order and the exit codes; a mistyped command gets "did you mean";
- output that ends in a closed pipe (`dedupe ls ... | head`) is a quiet exit 0;
- logging is configured once, here: what the library logs (storage retries, slow storage) goes to
  stderr as `warning: ...`; `-q` leaves only errors, `-v` adds the notes.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import logging
import os
import pkgutil
import re
import sys
from types import ModuleType
from typing import Any, NoReturn

import dedupe.cli
from dedupe import __version__
from dedupe.cli.context import Context, printable
from dedupe.cli.registry import chosen_module
from dedupe.errors import DedupeError, OutOfSpace, UsageError


def command_modules(only: str | None = None) -> list[ModuleType]:
    """Every `dedupe.cli.cmd_*` module (or just `only`); each has `register(subparsers, common)`."""
    if only is not None:
        return [importlib.import_module(f"dedupe.cli.{only}")]
    names = sorted(
        m.name for m in pkgutil.iter_modules(dedupe.cli.__path__) if m.name.startswith("cmd_")
    )
    return [importlib.import_module(f"dedupe.cli.{name}") for name in names]


# --- the help's layout ---------------------------------------------------------------------


class HelpFormatter(argparse.HelpFormatter):
    """argparse's layout, except that description and epilog lines that start with a space
    are kept as written (examples, tables); other paragraphs are wrapped as usual."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        paragraph: list[str] = []

        def flush() -> None:
            if paragraph:
                out.append(
                    super(HelpFormatter, self)._fill_text(" ".join(paragraph), width, indent)
                )
                paragraph.clear()

        for line in text.splitlines():
            if not line.strip():
                flush()
                out.append("")
            elif line.startswith(" "):
                flush()
                out.append(indent + line)
            else:
                paragraph.append(line.strip())
        flush()
        return "\n".join(out)


TOP_DESCRIPTION = (
    "Encrypted, deduplicating backups of a practice's server: to a local disk, rotating "
    "drives and an off-site bucket. Every command takes --help with examples."
)

# The order a user needs the commands in; a command missing here is listed under "Other".
COMMAND_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Back up", ("init", "snapshot")),
    ("Look and restore", ("snapshots", "ls", "find", "restore", "cat", "mount", "diff", "ui")),
    ("Keep and clean up", ("forget", "hold", "release", "gc", "journal")),
    ("Check and repair", ("check", "repair", "unlock")),
    ("Copies and the nightly job", ("copy", "run", "status", "schedule", "alert")),
    ("Drives taken out of rotation", ("archive", "retire")),
    ("Sizes and forecasts", ("stats", "plan")),
    ("The key", ("key",)),
    ("Shell and manual", ("completion",)),
)

TOP_EPILOG = """\
SNAP names a snapshot: its id, a unique prefix of at least 4 hex digits, or 'latest'.

The password, first found wins:
  DEDUPE_PASSWORD_FILE     a file holding it (readable by the backup user only)
  DEDUPE_PASSWORD_COMMAND  a command that prints it (run by the shell)
  DEDUPE_PASSWORD          the password itself
  else it is asked for on the terminal; with no terminal, exit 12.
  'copy --to' takes the destination's from DEDUPE_TO_PASSWORD_FILE, _COMMAND or
  DEDUPE_TO_PASSWORD (else the same one); 'key passwd' the new one from DEDUPE_NEW_PASSWORD.

Other settings:
  DEDUPE_REPO              the repository, when --repo is not given
  DEDUPE_S3_ENDPOINT       the S3 server; credentials from the usual AWS_* variables
  DEDUPE_SFTP_IDENTITY     an SSH key for sftp:// (else ~/.ssh/config, ssh-agent, ~/.ssh/id_*)
  DEDUPE_SSH_COMMAND       the ssh that sftp:// runs, with options (default ssh; e.g. 'ssh -F FILE')
  DEDUPE_CACHE_DIR         local caches (default $XDG_CACHE_HOME/dedupe; safe to delete)
  DEDUPE_STATE_DIR         run records and logs (default $XDG_STATE_HOME/dedupe)

The profile (dedupe.toml, for run, status, schedule), first found wins:
  --profile FILE, $DEDUPE_PROFILE, ./dedupe.toml, $XDG_CONFIG_HOME/dedupe/dedupe.toml
  (default ~/.config/dedupe/dedupe.toml), /etc/dedupe/dedupe.toml

Exit codes: 0 done; 1 error; 2 wrong usage; 3 saved, but some files could not be read;
10 no repository there; 11 locked by another process; 12 wrong or no password;
13 out of disk space (nothing half-written); 14 damage found.
"""


def command_list(summaries: dict[str, tuple[str, list[str]]]) -> str:
    """The grouped list of commands for `dedupe --help` (every registered command appears)."""
    placed = {name for _title, names in COMMAND_GROUPS for name in names}
    groups = [(title, [n for n in names if n in summaries]) for title, names in COMMAND_GROUPS]
    others = [name for name in summaries if name not in placed]
    if others:
        groups.append(("Other", others))
    lines: list[str] = []
    for title, names in groups:
        if not names:
            continue
        lines.append(f"{title}:")
        for name in names:
            summary, aliases = summaries[name]
            shown = name + (f" ({', '.join(aliases)})" if aliases else "")
            lines.append(f"  {shown:<18} {summary}" if len(shown) <= 18 else f"  {shown}")
            if len(shown) > 18:
                lines.append(f"  {'':<18} {summary}")
        lines.append("")
    return "\n".join(lines).rstrip()


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)$")


class _Parser(argparse.ArgumentParser):
    """Every parser of the command line: no abbreviations, our help layout, short errors."""

    known_options: list[str] = []  # every long option of every command, for "did you mean"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # argparse exits 2 itself; keep it short
        self.print_usage(sys.stderr)
        hint = _did_you_mean(message, self.known_options, self.prog)
        print(f"dedupe: error: {hint}", file=sys.stderr)
        raise SystemExit(2)


def _did_you_mean(message: str, options: list[str], prog: str = "dedupe") -> str:
    """argparse's message with the closest command or option named: 'invalid choice' lists
    the closest choices (else all); 'unrecognized arguments' names the closest long options
    (abbreviations are refused, so `--keep-m` is told `--keep-monthly`)."""
    if message.startswith("unrecognized arguments: "):
        hints = []
        for token in message.removeprefix("unrecognized arguments: ").split():
            name = token.split("=", 1)[0]
            if name.startswith("--"):
                close = [o for o in options if o.startswith(name)] or difflib.get_close_matches(
                    name, options, n=3, cutoff=0.7
                )
                if close:
                    hints.append(f"{name}: did you mean {' or '.join(close[:3])}?")
        return "; ".join([message, *hints])
    found = _INVALID_CHOICE.search(message)
    if found is None:
        return message
    given = found[1]
    choices = [c.strip().strip("'\"") for c in found[2].split(",")]  # quoted before 3.12.8
    close = difflib.get_close_matches(given, choices, n=3, cutoff=0.6)
    head = message[: found.start()] + f"invalid choice: '{given}'"
    if close:
        return f"{head}; did you mean {' or '.join(repr(c) for c in close)}? ('{prog} --help')"
    return f"{head} (choose from {', '.join(choices)})"


class _Commands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """The subcommands action, remembering each command's one-line help for the grouped list.

    A command registered without a `description` gets its help line as one, so every
    `dedupe COMMAND --help` says what the command is for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.summaries: dict[str, tuple[str, list[str]]] = {}

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        summary = kwargs.get("help") or ""
        if summary and not kwargs.get("description"):
            kwargs["description"] = summary[0].upper() + summary[1:] + "."
        self.summaries[name] = (summary, list(kwargs.get("aliases", ())))
        parser: argparse.ArgumentParser = super().add_parser(name, **kwargs)
        return parser


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """The long options `parser` takes (argparse keeps them only in its private tables)."""
    return {o for a in parser._actions for o in a.option_strings if o.startswith("--")}


def _add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Global options, accepted before or after the command name.

    The copy on each subcommand uses SUPPRESS defaults so that it does not overwrite a value
    given before the command name.
    """

    def d(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--repo",
        "-r",
        metavar="URL",
        default=d(None),
        help="the repository: a folder, sftp://user@host/path or s3://bucket/prefix "
        "(default: $DEDUPE_REPO, or the profile's)",
    )
    parser.add_argument(
        "--s3-endpoint",
        metavar="URL",
        default=d(None),
        help="the S3 server for s3:// repositories, e.g. https://s3.example.net "
        "($DEDUPE_S3_ENDPOINT)",
    )
    parser.add_argument(
        "--json", action="store_true", default=d(False), help="print the result as JSON"
    )
    parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=d(False),
        help="print nothing on success (no progress, notes or storage retries; listings "
        "still print what they list); warnings (unreadable files, low disk) and errors still "
        "go to stderr",
    )


def _add_verbose(parser: argparse.ArgumentParser, suppress: bool) -> None:
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="say more: what a snapshot found new, changed or removed (unchanged files are "
        "counted), and storage notes",
    )


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every command, or only those of the module `only`
    (dedupe.cli.registry: a launch imports just the command it runs)."""
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _add_common(common, suppress=True)
    parser = _Parser(
        prog="dedupe",
        usage="dedupe [OPTIONS] COMMAND [ARGS...]",
        description=TOP_DESCRIPTION,
        epilog=TOP_EPILOG,
    )
    _add_common(parser, suppress=False)
    _add_verbose(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"dedupe {__version__}")
    parser.register("action", "parsers", _Commands)
    sub = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        parser_class=_Parser,
        help=argparse.SUPPRESS,
        prog="dedupe",
    )
    assert isinstance(sub, _Commands)
    sub.required = True
    for module in command_modules(only):
        module.register(sub, common)
    for command in sub.choices.values():
        try:
            _add_verbose(command, suppress=True)
        except argparse.ArgumentError:
            pass  # the command has its own -v/--verbose ('plan': the day table), same idea
    _Parser.known_options = sorted(
        {option for command in sub.choices.values() for option in _option_strings(command)}
    )
    parser.description = TOP_DESCRIPTION + "\n\n" + command_list(sub.summaries)
    return parser


class _LogFormatter(logging.Formatter):
    """'warning: ...' on stderr, control characters escaped (messages carry remote names)."""

    def format(self, record: logging.LogRecord) -> str:
        level = "warning" if record.levelno >= logging.WARNING else "note"
        if record.levelno >= logging.ERROR:
            level = "error"
        return f"{level}: {printable(record.getMessage())}"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the current sys.stderr at each record (tests and pipes may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


def configure_logging(quiet: bool, verbose: bool) -> None:
    """The one logging set-up: the `dedupe` loggers to stderr; -q errors only, -v notes too."""
    log = logging.getLogger("dedupe")
    for old in [h for h in log.handlers if isinstance(h, _StderrHandler)]:
        log.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(_LogFormatter())
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)


def _quiet_pipe() -> int:
    """stdout's reader went away (`dedupe ls | head`): not an error of ours, exit 0 quietly.
    Whatever is still buffered goes to /dev/null so the interpreter's last flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    # File names that are not UTF-8 are printed as their original bytes, not as an error.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    try:
        words = sys.argv[1:] if argv is None else argv
        parser = build_parser(chosen_module(words))
        if not words:  # a bare `dedupe`: the commands
            parser.print_help(sys.stderr)
            return 2
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, a usage error: flushed here, as below
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # `dedupe --help | head`
            _quiet_pipe()
        raise done
    except BrokenPipeError:
        return _quiet_pipe()
    configure_logging(bool(args.quiet), bool(getattr(args, "verbose", False)))
    ctx = Context(args)
    try:
        code: int = args.handler(ctx)
        for problem in ctx.index_problems():
            print(f"warning: {problem}; run 'dedupe check'", file=sys.stderr)
        # Flushed here, not at interpreter exit, so a reader that went away is seen below.
        sys.stdout.flush()
        return code
    except OutOfSpace as exc:
        print(f"dedupe: {printable(str(exc))}", file=sys.stderr)
        print(
            "dedupe: the repository is intact. To make room: 'dedupe forget POLICY' to remove "
            "old snapshots, then 'dedupe gc' (it needs no free space).",
            file=sys.stderr,
        )
        return exc.exit_code
    except UsageError as exc:
        print(f"dedupe: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except DedupeError as exc:
        print(f"dedupe: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # Caught before OSError, of which it is a kind.
        return _quiet_pipe()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"dedupe: out of disk space: {exc.filename or ''}", file=sys.stderr)
            return OutOfSpace.exit_code
        where = f" ({os.fsdecode(exc.filename)})" if exc.filename else ""
        print(f"dedupe: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dedupe: interrupted", file=sys.stderr)
        return 130
    finally:
        ctx.close()
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _quiet_pipe()  # the exit code already decided stands
