"""`dedupe key export` and `key import`: keep a copy of the key file, and put it back.

The `key` command group lives in `cmd_repo`; it adds these subcommands with `add_subcommands`.
Import works on a repository whose key files are all lost or damaged: it reads only the config
envelope, unlocks the exported key file with the password, proves that key opens the config, and
only then writes it as a new `keys/<id>` object.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from dedupe.cli import password
from dedupe.cli.context import Context, Subparsers
from dedupe.crypto import export
from dedupe.errors import DedupeError, NoRepository, ObjectNotFound, UsageError
from dedupe.repo import config as config_mod


def add_subcommands(key_sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = key_sub.add_parser(
        "export", parents=[common], help="save the key (still sealed by the password)"
    )
    p.add_argument("file", nargs="?", metavar="FILE", help="where to write it (- for stdout)")
    p.add_argument(
        "--paper", action="store_true", help="short checksummed lines to print and type back"
    )
    p.set_defaults(handler=cmd_key_export)
    p = key_sub.add_parser("import", parents=[common], help="restore a key from an export")
    p.add_argument("file", metavar="FILE", help="the export (- for stdin)")
    p.add_argument(
        "--paper", action="store_true", help="FILE holds typed-back paper lines (detected anyway)"
    )
    p.set_defaults(handler=cmd_key_import)


def cmd_key_export(ctx: Context) -> int:
    target = ctx.args.file
    if target is None and not ctx.args.paper:
        raise UsageError("give a FILE to write the key export to (or --paper to print it)")
    repo = ctx.repo()
    exported = export.KeyExport(repo.settings.repo_id, repo.storage.get(repo.key_name))
    text = export.encode_paper(exported) if ctx.args.paper else export.encode_file(exported)
    if target is None or target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        # Exclusive create: an export never overwrites a file (it may be an older good copy).
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{target} exists; choose another name") from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    if ctx.json:
        ctx.emit_json({"file": target, "repo": exported.repo_id.hex()})
    else:
        ctx.out(f"key of repository {exported.repo_id.hex()[:8]} exported to {target}")
    return 0


def _read_text(path: str) -> str:
    try:
        if path == "-":
            return sys.stdin.read(4 * export.MAX_EXPORT)
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(4 * export.MAX_EXPORT)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def cmd_key_import(ctx: Context) -> int:
    text = _read_text(ctx.args.file)
    exported = export.decode_paper(text) if ctx.args.paper else export.decode_any(text)
    storage = ctx.storage()
    try:
        repo_id, box = config_mod.read_envelope(storage.get("config"))
    except ObjectNotFound:
        raise NoRepository(f"there is no dedupe repository at {storage.url}") from None
    master = exported.unlock(repo_id, password.source()())
    # Proof that this key is the repository's: it must open the sealed settings.
    config_mod.decode_settings(box, repo_id, master.sealer())
    for info in storage.list("keys/"):
        try:
            if storage.get(info.name) == exported.key_file:
                ctx.out(f"the repository already has this key file ({info.name})")
                return 0
        except DedupeError:
            continue
    name = f"keys/{secrets.token_hex(8)}"
    storage.put(name, exported.key_file, exclusive=True)
    if ctx.json:
        ctx.emit_json({"key": os.path.basename(name), "repo": repo_id.hex()})
    else:
        ctx.out(f"key imported as {name}; the repository opens with that key's password")
    return 0
