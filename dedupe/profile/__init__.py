"""The profile (`dedupe.toml`): what the nightly job backs up, keeps, copies and warns about.

    path = find_profile(args.profile, os.environ, os.getcwd())   # None when there is none
    profile = load_profile(path)                                 # UsageError (exit 2) if bad

`model` holds the frozen values (`Profile`, `RepositoryConfig`, `Source`, `Drive`, `Offsite`,
`Alerts`); `load` finds and checks the file; `policy` turns policy settings (a `[policy]` table,
a `--policy` file, the POLICY flags) into a `retention.Policy`; `tomlfile` reads a TOML file with
messages naming the file and line. A pure layer: it reads files, never a repository or storage,
and is imported by the commands (`dedupe run`, `status`), never the other way.
"""

from dedupe.profile.load import find_profile, load_profile
from dedupe.profile.model import Alerts, Drive, Offsite, Profile, RepositoryConfig, Source

__all__ = [
    "Alerts",
    "Drive",
    "Offsite",
    "Profile",
    "RepositoryConfig",
    "Source",
    "find_profile",
    "load_profile",
]
