"""What the commands that open a second repository share (`copy`, `archive`, `retire`): a
password asked at most once, and the destination opened with its own password or this one."""

from __future__ import annotations

from collections.abc import Callable

from dedupe.cli import password
from dedupe.cli.context import Context
from dedupe.errors import NoRepository, WrongPassword
from dedupe.repo.repository import Repository
from dedupe.storage import open_storage
from dedupe.storage.base import redact_url


def remembered(source: Callable[[], bytes]) -> Callable[[], bytes]:
    """The password source, asked at most once (the destination may fall back to it)."""
    cache: list[bytes] = []

    def get() -> bytes:
        if not cache:
            cache.append(source())
        return cache[0]

    return get


def open_destination(
    ctx: Context, source_secret: Callable[[], bytes], what: str = "destination"
) -> Repository:
    """The repository named by `--to` (with `--to-s3-endpoint`), unlocked with
    DEDUPE_TO_PASSWORD_FILE / _COMMAND / DEDUPE_TO_PASSWORD, else with `source_secret`. `what`
    names it in messages ("destination", "archive destination")."""
    url = ctx.args.to
    shown = redact_url(url)
    return open_second(
        url,
        ctx.args.to_s3_endpoint or ctx.args.s3_endpoint,
        "DEDUPE_TO_",
        source_secret,
        missing=f"there is no dedupe repository at the {what} {shown} (if it is a drive: is it "
        "mounted? a new destination is created once with 'dedupe init --same-key-as "
        "SOURCE', so that copies move only what is missing); nothing was done",
        wrong=f"{what} {shown}: {{}} (its password comes from DEDUPE_TO_PASSWORD_FILE, "
        "DEDUPE_TO_PASSWORD_COMMAND or DEDUPE_TO_PASSWORD, else this repository's password)",
    )


def open_second(
    url: str,
    s3_endpoint: str | None,
    prefix: str,
    fallback: Callable[[], bytes],
    *,
    missing: str,
    wrong: str,
) -> Repository:
    """A second repository at `url`, unlocked with the password from `prefix`PASSWORD_FILE /
    _COMMAND / `prefix`PASSWORD, else with `fallback`. `missing` is the whole message when there
    is no repository (exit 10); `wrong` the message for a wrong password, `{}` standing for the
    reason (exit 12). The storage is closed on any failure."""
    storage = open_storage(url, s3_endpoint=s3_endpoint)

    def secret() -> bytes:
        found = password.from_environment(prefix, "second repository")
        return fallback() if found is None else found

    try:
        return Repository.open(storage, secret)
    except NoRepository:
        storage.close()
        raise NoRepository(missing) from None
    except WrongPassword as exc:
        storage.close()
        raise WrongPassword(wrong.format(exc)) from None
    except BaseException:
        storage.close()
        raise
