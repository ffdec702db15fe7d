"""Repository commands: init, key passwd (key export/import: keyexport), unlock.

`init --same-key-as URL` makes a repository (a drive, an off-site copy) that shares the whole
key of the one at URL (`dedupe.repo.keyshare`); `--copy-chunker-params-from URL` shares only its
chunker parameters and id key. Either unlocks URL before anything is created.
"""

from __future__ import annotations

import argparse
import os
import sys

from dedupe.chunker import DEFAULT_AVG
from dedupe.cli import keyexport, password
from dedupe.cli.context import Context, Subparsers
from dedupe.errors import NoRepository, UsageError, WrongPassword
from dedupe.repo import lock as lock_mod
from dedupe.repo.repository import Repository
from dedupe.storage import open_storage


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


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[common], help="create an encrypted repository")
    p.add_argument(
        "--chunk-size",
        default=None,
        metavar="AVG",
        help="average chunk size (default 64K, chosen for database dumps)",
    )
    p.add_argument("--compression", default="zstd:3", help="zstd[:LEVEL] or none (default zstd:3)")
    p.add_argument(
        "--copy-chunker-params-from",
        "--copy-params-from",
        dest="copy_params_from",
        metavar="URL",
        help="share this repository's chunker seed, chunk sizes and id key (not its password "
        "or encryption key), so 'copy' between the two moves only missing chunks; its password "
        "comes from DEDUPE_FROM_PASSWORD_FILE/_COMMAND/DEDUPE_FROM_PASSWORD, else the new one",
    )
    p.add_argument(
        "--same-key-as",
        dest="same_key_as",
        metavar="URL",
        help="share the whole key of this repository (a drive or off-site copy of it): its "
        "key export or paper key then opens both, and 'copy' between them moves only missing "
        "chunks; the new repository keeps its own id and password; the password of URL comes "
        "from DEDUPE_FROM_PASSWORD_FILE/_COMMAND/DEDUPE_FROM_PASSWORD, else the new one",
    )
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("key", parents=[common], help="manage the repository key")
    key_sub = p.add_subparsers(dest="key_command", metavar="SUBCOMMAND")
    key_sub.required = True
    kp = key_sub.add_parser("passwd", parents=[common], help="change the password")
    kp.set_defaults(handler=cmd_key_passwd)
    keyexport.add_subcommands(key_sub, common)

    p = sub.add_parser("unlock", parents=[common], help="remove stale locks")
    p.set_defaults(handler=cmd_unlock)


def cmd_init(ctx: Context) -> int:
    template_url = _template_url(ctx.args)
    secret = password.from_environment()
    if secret is None:
        if not sys.stdin.isatty():
            return _no_password()
        secret = password.new_password("DEDUPE_PASSWORD", "new repository")
    if not secret:
        raise UsageError("the password is empty")
    template = _template(ctx, template_url, secret) if template_url else None
    storage = ctx.storage(create=True)
    chunk_avg = parse_size(ctx.args.chunk_size or str(DEFAULT_AVG))
    share_key = template is not None and bool(ctx.args.same_key_as)
    repo = Repository.init(
        storage, secret, chunk_avg, ctx.args.compression, template, share_key=share_key
    )
    if ctx.json:
        result = {
            "repo": storage.url,
            "id": repo.settings.repo_id.hex(),
            "chunk_size": repo.settings.chunker.avg_size,
            "compression": repo.settings.compression,
        }
        if share_key and template is not None:
            result["same_key_as"] = template.settings.repo_id.hex()
        ctx.emit_json(result)
        return 0
    ctx.out(f"created repository {repo.settings.repo_id.hex()[:8]} at {storage.url}")
    if share_key and template is not None:
        ctx.out(
            f"It shares the key of repository {template.settings.repo_id.hex()[:8]} at "
            f"{template_url}: a key export or paper key of either opens both "
            "('dedupe key import'). Its password is the one it was created with."
        )
    ctx.out("Keep the password safe: without it nobody can read this repository.")
    return 0


def _template_url(args: argparse.Namespace) -> str | None:
    """The URL of --same-key-as or --copy-chunker-params-from; exit 2 when combined with
    each other or with --chunk-size (both take the chunk sizes from that repository)."""
    same_key, params_from = args.same_key_as, args.copy_params_from
    if same_key and params_from:
        raise UsageError(
            "--same-key-as and --copy-chunker-params-from cannot be combined: --same-key-as "
            "already shares the chunker parameters (and the rest of the key)"
        )
    if (same_key or params_from) and args.chunk_size is not None:
        option = "--same-key-as" if same_key else "--copy-chunker-params-from"
        raise UsageError(
            f"--chunk-size cannot be combined with {option}: the chunk size is taken from "
            "that repository"
        )
    url: str | None = same_key or params_from
    return url


def _template(ctx: Context, url: str, new_secret: bytes) -> Repository:
    """The repository named by --same-key-as or --copy-chunker-params-from, unlocked (before
    anything is created, so a wrong URL or password leaves no empty repository folder)."""

    def secret() -> bytes:
        found = password.from_environment("DEDUPE_FROM_", "source repository")
        return new_secret if found is None else found

    option = "--same-key-as" if ctx.args.same_key_as else "--copy-chunker-params-from"
    storage = open_storage(url, s3_endpoint=ctx.args.s3_endpoint)
    try:
        return Repository.open(storage, secret)
    except NoRepository as exc:
        raise NoRepository(
            f"{option} {url}: {exc}; nothing was created (it must name an existing repository)"
        ) from None
    except WrongPassword as exc:
        raise WrongPassword(
            f"{option}: the repository at {url} did not open, nothing was created. Its "
            "password comes from DEDUPE_FROM_PASSWORD_FILE, DEDUPE_FROM_PASSWORD_COMMAND or "
            f"DEDUPE_FROM_PASSWORD, else it is the new repository's password ({exc})"
        ) from None
    finally:
        storage.close()  # only the key and settings are needed from here on


def _no_password() -> int:
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
