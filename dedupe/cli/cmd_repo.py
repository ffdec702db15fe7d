"""Repository commands: init, key passwd (key export/import: cmd_keyexport), unlock."""

from __future__ import annotations

import argparse
import os
import sys

from dedupe.chunker import DEFAULT_AVG
from dedupe.cli import cmd_keyexport, password
from dedupe.cli.context import Context
from dedupe.errors import UsageError
from dedupe.repo import lock as lock_mod
from dedupe.repo.repository import Repository


def parse_size(text: str) -> int:
    """'64K', '1M', '65536' -> bytes."""
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise UsageError(f"invalid size {text!r} (use e.g. 64K or 1M)") from None


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[common], help="create an encrypted repository")
    p.add_argument(
        "--chunk-size",
        default=str(DEFAULT_AVG),
        metavar="AVG",
        help="average chunk size (default 64K, chosen for database dumps)",
    )
    p.add_argument("--compression", default="zstd:3", help="zstd[:LEVEL] or none (default zstd:3)")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("key", parents=[common], help="manage the repository key")
    key_sub = p.add_subparsers(dest="key_command", metavar="SUBCOMMAND")
    key_sub.required = True
    kp = key_sub.add_parser("passwd", parents=[common], help="change the password")
    kp.set_defaults(handler=cmd_key_passwd)
    cmd_keyexport.add_subcommands(key_sub, common)

    p = sub.add_parser("unlock", parents=[common], help="remove stale locks")
    p.set_defaults(handler=cmd_unlock)


def cmd_init(ctx: Context) -> int:
    secret = password.from_environment()
    if secret is None:
        if not sys.stdin.isatty():
            return _no_password()
        secret = password.new_password("DEDUPE_PASSWORD", "new repository")
    if not secret:
        raise UsageError("the password is empty")
    storage = ctx.storage(create=True)
    repo = Repository.init(storage, secret, parse_size(ctx.args.chunk_size), ctx.args.compression)
    if ctx.json:
        ctx.emit_json(
            {
                "repo": storage.url,
                "id": repo.settings.repo_id.hex(),
                "chunk_size": repo.settings.chunker.avg_size,
                "compression": repo.settings.compression,
            }
        )
    else:
        ctx.out(f"created repository {repo.settings.repo_id.hex()[:8]} at {storage.url}")
        ctx.out("Keep the password safe: without it nobody can read this repository.")
    return 0


def _no_password() -> int:
    from dedupe.errors import WrongPassword

    raise WrongPassword(
        "no password: set DEDUPE_PASSWORD_FILE, DEDUPE_PASSWORD_COMMAND or DEDUPE_PASSWORD, "
        "or run on a terminal"
    )


def cmd_key_passwd(ctx: Context) -> int:
    repo = ctx.repo()
    new = password.new_password("DEDUPE_NEW_PASSWORD", "repository")
    name = repo.change_password(new)
    if ctx.json:
        ctx.emit_json({"key": os.path.basename(name)})
    else:
        ctx.out("password changed")
    return 0


def cmd_unlock(ctx: Context) -> int:
    repo = ctx.repo()
    removed = lock_mod.remove_stale(repo.storage, repo.sealer)
    if ctx.json:
        ctx.emit_json({"removed": removed})
    else:
        for text in removed:
            ctx.out(f"removed {text}")
        if not removed:
            ctx.out("no stale locks")
    return 0
