"""The contract's POLICY flags and `--policy FILE` (TOML), turned into a `retention.Policy`.

Used by every command that takes a policy (`forget`, `plan`):

    add_policy_arguments(parser)          # while building the parser
    policy = policy_from_args(namespace)  # after parsing; raises UsageError (exit 2)

Flags are stored raw and validated in one place, `dedupe.profile.policy` (shared with the
profile's `[policy]` table), so a bad value reads the same whether it came from the command line
or from the file. A policy file holds the same names as the flags
without the dashes in front (`keep-business-days = 10`, `business-days = ["tue", "sat"]`,
`holidays = ["2026-12-25"]`, `holidays-file = "holidays.txt"`, `fiscal-year-start = 7`, ...);
a flag given on the command line replaces the file's value for that setting.

`parse_max_unused` reads gc's `--max-unused`, which `plan` takes too (the gc setting it
forecasts with), so both commands accept and refuse the same values.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dedupe.errors import UsageError
from dedupe.profile import find_profile, load_profile
from dedupe.profile.policy import (
    COUNT_SETTINGS,
    OTHER_SETTINGS,
    POLICY_KEYS,
    PolicySetting,
    policy_from_settings,
)
from dedupe.profile.tomlfile import read_toml_file
from dedupe.retention import Policy


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the POLICY flags to `parser` (all default to None: "not given")."""
    group = parser.add_argument_group("retention policy")
    helps = {
        "keep-last": "keep the N newest snapshots",
        "keep-business-days": "keep the newest snapshot of each of the N most recent business days",
        "keep-daily": "keep the newest snapshot of each of the N most recent days",
        "keep-weekly": "keep the newest snapshot of each of the N most recent ISO weeks",
        "keep-monthly": "keep the newest snapshot of each of the N most recent months",
        "keep-quarterly": "keep the newest snapshot of each of the N most recent fiscal quarters",
        "keep-yearly": "keep the newest snapshot of each of the N most recent fiscal years",
    }
    for name in COUNT_SETTINGS:
        group.add_argument(f"--{name}", metavar="N", help=f"{helps[name]} (N or 'unlimited')")
    group.add_argument(
        "--business-days",
        metavar="DAYS",
        help="weekdays counted as business days, e.g. mon,tue,wed or tue-sat (default mon-fri)",
    )
    group.add_argument(
        "--holidays",
        metavar="FILE",
        help="file of dates that are not business days: one ISO date a line, # comments",
    )
    group.add_argument(
        "--fiscal-year-start",
        metavar="M",
        help="first month (1-12) of the fiscal year, for quarters and years (default 1)",
    )
    group.add_argument(
        "--keep-within",
        metavar="DURATION",
        help="keep every snapshot within DURATION of the newest (14d, 2w, 6m, 1y, 12h)",
    )
    group.add_argument(
        "--keep-tag",
        metavar="TAG",
        action="append",
        help="keep snapshots carrying TAG (repeatable)",
    )
    group.add_argument(
        "--max-backups",
        metavar="N",
        help="after the keep rules, remove the oldest until N remain per group (held ones stay)",
    )
    group.add_argument(
        "--policy",
        metavar="FILE",
        help="read the policy from a TOML file; flags given here override its settings",
    )
    group.add_argument(
        "--profile",
        metavar="FILE",
        help="use the [policy] of this profile (dedupe.toml), and its repository unless --repo "
        "names another: what 'dedupe run' applies each night",
    )


def policy_from_args(namespace: argparse.Namespace) -> Policy:
    """Build the Policy from parsed POLICY flags and the `--policy` file (UsageError if bad).

    Missing attributes count as "not given", so a command may add only some of the flags.
    With `--profile`, the profile's [policy] is the whole policy: no other policy option may
    be given with it (one place decides what the nightly job keeps).
    """
    profile_file = getattr(namespace, "profile", None)
    if profile_file is not None:
        return _profile_policy(namespace, profile_file)
    settings: dict[str, PolicySetting] = {}
    policy_file = getattr(namespace, "policy", None)
    if policy_file is not None:
        settings.update(_read_policy_file(Path(policy_file)))
    cwd = Path.cwd()
    for name in (*COUNT_SETTINGS, *OTHER_SETTINGS):
        value = getattr(namespace, name.replace("-", "_"), None)
        if value is None:
            continue
        if name == "holidays":
            # --holidays names a file; it replaces both of the policy file's holiday settings.
            settings.pop("holidays", None)
            settings["holidays-file"] = PolicySetting(value, "--holidays", cwd)
        else:
            settings[name] = PolicySetting(value, f"--{name}", cwd)
    return policy_from_settings(settings)


def parse_max_unused(text: str) -> float:
    """--max-unused: '10', '10%', '0', '2.5' -> a fraction of 1."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise UsageError(f"invalid --max-unused {text!r}: give a percentage, e.g. 10") from None
    if not 0.0 <= value <= 100.0:
        raise UsageError("--max-unused must be between 0 and 100 (percent)")
    return value / 100.0


def _profile_policy(namespace: argparse.Namespace, profile_file: str) -> Policy:
    given = [
        f"--{name}"
        for name in (*COUNT_SETTINGS, *OTHER_SETTINGS, "policy")
        if getattr(namespace, name.replace("-", "_"), None) is not None
    ]
    if given:
        raise UsageError(
            f"--profile takes the whole policy from the profile; leave out {', '.join(given)} "
            "(or change the profile's [policy])"
        )
    path = find_profile(profile_file, os.environ, os.getcwd())
    assert path is not None  # an explicit --profile is found or refused
    profile = load_profile(path)
    if profile.policy is None:
        raise UsageError(
            f"the profile {path} has no [policy] table, so it says nothing about what to keep; "
            "add one (e.g. keep-business-days = 10) or give the policy options"
        )
    return profile.policy


def _read_policy_file(path: Path) -> dict[str, PolicySetting]:
    table = read_toml_file(path, "policy file")
    unknown = sorted(set(table) - set(POLICY_KEYS))
    if unknown:
        raise UsageError(
            f"policy file {path}: unknown setting {', '.join(map(repr, unknown))}; "
            f"known settings: {', '.join(POLICY_KEYS)}"
        )
    return {
        name: PolicySetting(value, f"{path}: {name}", path.parent) for name, value in table.items()
    }
