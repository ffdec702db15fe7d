"""What the profile commands (`run`, `status`, `key passwd --profile`) share: finding the
profile as the contract says, and how each medium's password reaches the steps."""

from __future__ import annotations

import os

from dedupe.cli import password
from dedupe.errors import UsageError, WrongPassword
from dedupe.profile import Profile, find_profile, load_profile
from dedupe.run.children import Password
from dedupe.run.media import Medium


def load(explicit: str | None) -> Profile:
    """The profile (`--profile`, `DEDUPE_PROFILE`, ./dedupe.toml, the config folder, /etc), or
    exit 2 saying where it was looked for."""
    path = find_profile(explicit, os.environ, os.getcwd())
    if path is None:
        raise UsageError(
            "no profile found: give --profile FILE, set DEDUPE_PROFILE, or create ./dedupe.toml, "
            "~/.config/dedupe/dedupe.toml or /etc/dedupe/dedupe.toml (the README shows one)"
        )
    return load_profile(path)


def repository_password(profile: Profile) -> Password:
    """How child steps get the repository's password: the profile's password-file or
    -command, else the DEDUPE_PASSWORD_* variables, else asked once on a terminal; else exit 12
    before anything runs."""
    settings = profile.repository
    if settings.password_file is not None:
        if not os.access(settings.password_file, os.R_OK):
            raise WrongPassword(
                f"cannot read the password-file of the profile's [repository] "
                f"({settings.password_file}); nothing was done"
            )
        return Password(file=settings.password_file)
    if settings.password_command is not None:
        return Password(command=settings.password_command)
    inherited = {
        suffix: os.environ[f"DEDUPE_PASSWORD{suffix}"]
        for suffix in ("_FILE", "_COMMAND", "")
        if os.environ.get(f"DEDUPE_PASSWORD{suffix}") is not None
    }
    if inherited:
        return Password(inherited=inherited)
    return Password(secret=password.source()())


def medium_password(medium: Medium, repository: Password) -> Password:
    """A medium's own password-file or -command, else the repository's."""
    if medium.password_file is not None:
        return Password(file=medium.password_file)
    if medium.password_command is not None:
        return Password(command=medium.password_command)
    return repository
