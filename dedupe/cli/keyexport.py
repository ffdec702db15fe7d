"""`dedupe key export` and `key import`: keep a copy of the key file, and put it back.

The `key` command group lives in `cmd_repo`; it adds these subcommands with `add_subcommands`.
Import works on a repository whose key files are all lost or damaged: it reads only the config
envelope, unlocks the exported key file with the password, proves that key opens the config, and
only then writes it as a new `keys/<id>` object.

An export of another repository imports only when the two share their key (`init --same-key-as`,
`dedupe.repo.keyshare`): the server's paper key then opens every drive. Its key must open this
repository's sealed settings, and a key file bound to this repository's id is written under the
export's password; an unrelated export is refused (exit 2) whatever its password.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys

from dedupe.cli import password
from dedupe.cli.context import Context, Subparsers
from dedupe.crypto import export, keys
from dedupe.errors import DedupeError, NoRepository, ObjectNotFound, UsageError, WrongPassword
from dedupe.repo import config as config_mod
from dedupe.repo import keyshare
from dedupe.repo.retire import refuse_retired


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
    refuse_retired(storage)  # its key was destroyed on purpose: say so, not "truncated"
    try:
        repo_id, box = config_mod.read_envelope(storage.get("config"))
    except ObjectNotFound:
        raise NoRepository(f"there is no dedupe repository at {storage.url}") from None
    if exported.repo_id != repo_id:
        return _import_shared(ctx, exported, repo_id, box)
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
    return _store(ctx, exported.key_file, repo_id)


def _import_shared(ctx: Context, exported: export.KeyExport, repo_id: bytes, box: bytes) -> int:
    """The export of another repository: it opens this one only if the two share their key
    (`init --same-key-as`); then a key file for this repository is written under the export's
    password and KDF cost (`keyshare.adopt_key`). Any other key is refused (exit 2)."""
    ours, theirs = repo_id.hex()[:8], exported.repo_id.hex()[:8]
    secret = password.source()()
    try:
        master = exported.unlock(exported.repo_id, secret)
    except WrongPassword:
        raise WrongPassword(
            f"wrong password for this key export (of repository {theirs}; this repository is "
            f"{ours}): give the password of the repository it was exported from"
        ) from None
    params = keys.decode_key_file(exported.key_file).params
    key_file = keyshare.adopt_key(master, repo_id, box, secret, params)
    if key_file is None:
        raise UsageError(
            f"this key export belongs to repository {theirs}, not to {ours}, and its key does "
            "not open this repository (they do not share a key: only a repository made with "
            "'init --same-key-as' shares one). Use an export of this repository."
        )
    if not ctx.json:
        ctx.out(f"repository {ours} shares the key of repository {theirs}")
    return _store(ctx, key_file, repo_id)


def _store(ctx: Context, key_file: bytes, repo_id: bytes) -> int:
    storage = ctx.storage()
    name = f"keys/{secrets.token_hex(8)}"
    storage.put(name, key_file, exclusive=True)
    if ctx.json:
        ctx.emit_json({"key": os.path.basename(name), "repo": repo_id.hex()})
    else:
        ctx.out(f"key imported as {name}; the repository opens with that key's password")
    return 0
