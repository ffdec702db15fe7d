"""The `dedupe` command: argument parsing, dispatch, and the one place errors become exit codes."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import pkgutil
import sys
from types import ModuleType
from typing import NoReturn

import dedupe.cli
from dedupe import __version__
from dedupe.cli.context import Context, printable
from dedupe.errors import DedupeError, OutOfSpace, UsageError


def command_modules() -> list[ModuleType]:
    """Every `dedupe.cli.cmd_*` module; each has `register(subparsers, common)`."""
    names = sorted(
        m.name for m in pkgutil.iter_modules(dedupe.cli.__path__) if m.name.startswith("cmd_")
    )
    return [importlib.import_module(f"dedupe.cli.{name}") for name in names]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 itself; keep it short
        self.print_usage(sys.stderr)
        print(f"dedupe: error: {message}", file=sys.stderr)
        raise SystemExit(2)


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
        help="repository: a path, sftp://user@host/path or s3://bucket/prefix ($DEDUPE_REPO)",
    )
    parser.add_argument(
        "--s3-endpoint", metavar="URL", default=d(None), help="S3 endpoint ($DEDUPE_S3_ENDPOINT)"
    )
    parser.add_argument("--json", action="store_true", default=d(False), help="print JSON")
    parser.add_argument(
        "--quiet", "-q", action="store_true", default=d(False), help="no progress or notes"
    )


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, suppress=True)
    parser = _Parser(prog="dedupe", description="Encrypted, deduplicating backups.")
    _add_common(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"dedupe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in command_modules():
        module.register(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    # paramiko logs dropped connections itself; our errors say it once, clearly, instead.
    paramiko_log = logging.getLogger("paramiko")
    paramiko_log.addHandler(logging.NullHandler())
    paramiko_log.propagate = False
    # File names that are not UTF-8 are printed as their original bytes, not as an error.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args)
    try:
        code: int = args.handler(ctx)
        for problem in ctx.index_problems():
            print(f"warning: {problem}; run 'dedupe check'", file=sys.stderr)
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
        # stdout closed early (e.g. `dedupe cat ... | head`): not an error of ours. Caught before
        # OSError, of which it is a kind.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
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
