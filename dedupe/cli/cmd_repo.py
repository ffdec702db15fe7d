"""Repository commands: init, key passwd (key export/import: keyexport), unlock.

`init --same-key-as URL` makes a repository (a drive, an off-site copy) that shares the whole
key of the one at URL (`dedupe.repo.keyshare`); `--copy-chunker-params-from URL` shares only its
chunker parameters and id key. Either unlocks URL before anything is created.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from dedupe.chunker import DEFAULT_AVG
from dedupe.cli import keyexport, password
from dedupe.cli.context import Context, Subparsers
from dedupe.errors import DamageError, DedupeError, NoRepository, UsageError, WrongPassword
from dedupe.profile import Profile, find_profile, load_profile
from dedupe.repo import foreign
from dedupe.repo import lock as lock_mod
from dedupe.repo.repository import Repository
from dedupe.run.media import Medium, profile_media
from dedupe.storage import Storage, open_storage
from dedupe.storage.local import LocalStorage


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


INIT_EXAMPLES = """\
examples:
  A repository on the backup disk; the password is asked twice (keep it somewhere safe: without
  it nobody, not even us, can read the backups):
    dedupe init --repo /srv/backup/repo

  The same for a script, with the password in a file only the backup user can read:
    DEDUPE_PASSWORD_FILE=/etc/dedupe/password dedupe init --repo /srv/backup/repo

  A rotating drive that the nightly copies go to, sharing the key of the main repository (so
  one key export opens both and copies move only what is missing):
    dedupe init --repo /media/backup-monday/repo --same-key-as /srv/backup/repo

The folder must be empty or new: init refuses a folder that already holds files (such as the
folder being backed up) or another tool's repository.
"""


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "init",
        parents=[common],
        help="create an encrypted repository",
        description="Create a new, encrypted repository in an empty (or new) folder, on an "
        "SFTP server or in an S3 bucket. Everything stored there is encrypted with a key that "
        "only the password opens.",
        epilog=INIT_EXAMPLES,
    )
    p.add_argument(
        "--chunk-size",
        default=None,
        metavar="AVG",
        help="average chunk size (default 64K, chosen for database dumps)",
    )
    p.add_argument("--compression", default="zstd:3", help="zstd[:LEVEL] or none (default zstd:3)")
    p.add_argument(
        "--force",
        action="store_true",
        help="create the repository even though the folder holds other files (never over "
        "another tool's repository or a dedupe one)",
    )
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

    p = sub.add_parser(
        "key",
        parents=[common],
        help="manage the repository key",
        description="Change the password, or export the key to keep it safe (and import it "
        "back) in case the password is lost.",
        epilog="examples:\n"
        "  dedupe key passwd                    change the password (asked twice)\n"
        "  dedupe key export /root/key.backup   keep a copy of the key, off this server\n"
        "  dedupe key passwd --profile /etc/dedupe/dedupe.toml\n"
        "      change it on the repository and every attached drive of the profile\n",
    )
    key_sub = p.add_subparsers(dest="key_command", metavar="SUBCOMMAND")
    key_sub.required = True
    kp = key_sub.add_parser(
        "passwd",
        parents=[common],
        help="change the password",
        description="Change the password of the repository (the new one from "
        "DEDUPE_NEW_PASSWORD, else asked twice on the terminal). With --profile: of the "
        "profile's repository and of every attached drive and off-site copy that uses its "
        "password.",
    )
    kp.add_argument(
        "--profile",
        metavar="FILE",
        help="change it on every medium of this profile (dedupe.toml) that uses the "
        "repository's password and is attached now; the others are named",
    )
    kp.set_defaults(handler=cmd_key_passwd)
    keyexport.add_subcommands(key_sub, common)

    p = sub.add_parser(
        "unlock",
        parents=[common],
        help="remove stale locks",
        description="Remove the locks left by a dedupe that was killed or whose machine "
        "crashed. A lock of a dedupe still running is left alone.",
        epilog="example:\n  dedupe unlock      after 'the repository is locked' (exit 11) "
        "and no backup is running\n",
    )
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
    _refuse_occupied(storage, force=ctx.args.force)
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
    ctx.done(f"created repository {repo.settings.repo_id.hex()[:8]} at {storage.url}")
    if share_key and template is not None:
        ctx.done(
            f"It shares the key of repository {template.settings.repo_id.hex()[:8]} at "
            f"{template_url}: a key export or paper key of either opens both "
            "('dedupe key import'). Its password is the one it was created with."
        )
    ctx.done("Keep the password safe: without it nobody can read this repository.")
    return 0


def _refuse_occupied(storage: Storage, force: bool = False) -> None:
    """A repository goes into an empty folder only: not into another tool's repository, nor
    into a folder of files (the folder being backed up, a drive's documents), nor over a
    dedupe repository (which `Repository.init` names)."""
    if storage.exists("config") and foreign.identify(storage) is None:
        return  # a dedupe repository (or what is left of one): Repository.init says so
    other = foreign.identify(storage)
    if other is not None:
        raise UsageError(other.message(storage.url) + " Nothing was created.")
    found = foreign.occupant(storage, storage.root if isinstance(storage, LocalStorage) else None)
    if found is not None and not force:
        raise UsageError(
            f"the folder {storage.url} is not empty (it holds {found!r}): a repository needs "
            "an empty or new folder of its own, outside the folders that are backed up. "
            "Choose another folder (or add --force if this folder is meant to hold it); "
            "nothing was created."
        )


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
    except (NoRepository, DamageError) as exc:
        other = foreign.identify(storage)
        if other is not None:
            raise NoRepository(f"{option} {url}: {other.message(url)}") from None
        if isinstance(exc, DamageError):
            raise
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
    if ctx.args.profile is not None:
        return _passwd_profile(ctx)
    repo = ctx.repo()
    new = password.new_password("DEDUPE_NEW_PASSWORD", "repository")
    name = repo.change_password(new)
    if ctx.json:
        ctx.emit_json({"key": os.path.basename(name)})
    else:
        ctx.done("password changed")
    return 0


def cmd_unlock(ctx: Context) -> int:
    repo = ctx.repo()
    removed = lock_mod.remove_stale(repo.storage, repo.sealer)
    if ctx.json:
        ctx.emit_json({"removed": removed})
    else:
        for text in removed:
            ctx.done(f"removed {text}")
        if not removed:
            ctx.done("no stale locks")
    return 0


# --- key passwd --profile --------------------------------------------------------------------


@dataclass
class _Opened:
    """A medium of the profile whose repository opened with the old password."""

    medium: Medium
    repo: Repository


def _passwd_profile(ctx: Context) -> int:
    """Change the password of the profile's repository and of every attached medium that uses
    it (drives always; an off-site copy unless it has its own password-file or -command).

    Every one is opened with the old password before anything changes: the repository must
    open (else exit 12, nothing changed); a medium that does not is named and the others are
    still changed (exit 12 at the end). Media not attached, and off-site copies with their own
    password, are named with what to do. The profile's password-file is never written: the
    office is told to put the new password there."""
    if ctx.args.repo:
        raise UsageError("--repo and --profile cannot be combined: the profile names the media")
    path = find_profile(ctx.args.profile, os.environ, os.getcwd())
    assert path is not None  # an explicit --profile is found or refused (UsageError)
    profile = load_profile(path)
    settings = profile.repository
    old = password.from_settings(
        settings.password_file, settings.password_command, "the profile's [repository]"
    )
    secret = old if old is not None else password.source()()
    opened: list[_Opened] = []
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    storages: list[Storage] = []

    def open_medium(medium: Medium) -> Repository:
        storage = open_storage(medium.url, s3_endpoint=medium.s3_endpoint)
        storages.append(storage)
        return Repository.open(storage, lambda: secret)

    try:
        media = profile_media(profile, os.environ)
        try:
            opened.append(_Opened(media[0], open_medium(media[0])))
        except WrongPassword as exc:
            where = "DEDUPE_PASSWORD_*" if old is None else "the profile's [repository]"
            raise WrongPassword(
                f"the old password (from {where}) does not open the profile's repository "
                f"{settings.url}; nothing was changed ({exc})"
            ) from None
        for medium in media[1:]:
            why = _passwd_skipped(medium)
            if why is not None:
                skipped[medium.name] = why
                continue
            try:
                opened.append(_Opened(medium, open_medium(medium)))
            except DedupeError as exc:
                failed[medium.name] = _did_not_open(medium, exc)
        new = password.new_password("DEDUPE_NEW_PASSWORD", "profile's repository and media")
        changed: list[str] = []
        for each in opened:
            try:
                each.repo.change_password(new)
                changed.append(each.medium.name)
            except DedupeError as exc:
                failed[each.medium.name] = (
                    f"the password could not be changed ({exc}); it still opens with the old "
                    f"one: {_passwd_hint(each.medium)}"
                )
    finally:
        for storage in storages:
            storage.close()
    return _report_passwd(ctx, profile, changed, failed, skipped)


def _passwd_skipped(medium: Medium) -> str | None:
    """Why `key passwd --profile` leaves this medium alone, or None to change it."""
    if medium.password_file is not None or medium.password_command is not None:
        return (
            "has its own password (password-file or password-command in the profile), left "
            f"alone; to change that one: {_passwd_hint(medium)} (with its own password)"
        )
    if not medium.attached:
        return (
            f"not attached: {medium.why_not}. Change it when it is plugged in: "
            f"{_passwd_hint(medium)}"
        )
    if medium.new:
        return "holds no repository yet, nothing to change"
    return None


def _passwd_hint(medium: Medium) -> str:
    endpoint = f" --s3-endpoint {medium.s3_endpoint}" if medium.s3_endpoint else ""
    return f"dedupe key passwd --repo {medium.url}{endpoint}"


def _did_not_open(medium: Medium, exc: DedupeError) -> str:
    if isinstance(exc, WrongPassword):
        return (
            "the old password does not open it (it has another password?), not changed; "
            f"to change it: {_passwd_hint(medium)} (with the password it has)"
        )
    return f"could not be opened, not changed: {exc}"


def _report_passwd(
    ctx: Context,
    profile: Profile,
    changed: list[str],
    failed: dict[str, str],
    skipped: dict[str, str],
) -> int:
    settings = profile.repository
    if settings.password_file is not None:
        update = (
            f"The profile's password-file {settings.password_file} still holds the OLD "
            "password: put the new one there now, or the nightly run cannot open the backups."
        )
    elif settings.password_command is not None:
        update = (
            "The profile's password-command still gives the OLD password: make it give the "
            "new one now, or the nightly run cannot open the backups."
        )
    else:
        update = (
            "Wherever the nightly job takes the password from (DEDUPE_PASSWORD_FILE, "
            "DEDUPE_PASSWORD_COMMAND or DEDUPE_PASSWORD) still gives the OLD password: "
            "update it now."
        )
    if ctx.json:
        ctx.emit_json(
            {
                "changed": changed,
                "failed": [{"name": n, "message": m} for n, m in failed.items()],
                "skipped": [{"name": n, "message": m} for n, m in skipped.items()],
                "update": update,
            }
        )
    else:
        for name in changed:
            ctx.out(f"{name}: password changed")
        for name, message in skipped.items():
            ctx.out(f"{name}: {message}")
        for name, message in failed.items():
            ctx.out(f"{name}: {message}")
        ctx.out(update)
    if failed:
        raise WrongPassword(
            f"the password was not changed on {', '.join(failed)} (see above); "
            f"it was changed on {', '.join(changed) or 'nothing'}"
        )
    return 0
