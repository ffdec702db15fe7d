"""What one `dedupe ui` server serves, decided by the command before the server starts.

The ui package reads no environment and no argv itself (only `dedupe.cli` does): the command
hands over the profile (or the repository URL when there is none), the environment the status
page's child processes inherit, and the session timeout. Tests build one directly, with a clock
they control.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dedupe.profile import Profile

IDLE_MINUTES = 15
"""A session not used for this long is ended: a browser left open on a shared desk logs out."""


@dataclass(frozen=True)
class UiConfig:
    """`profile` is None when serving the repository named by --repo / DEDUPE_REPO (`repo_url`,
    `s3_endpoint`); with a profile, `repo_url` is its repository. `env` is what child processes
    inherit (Children scrubs its passwords) and where the state folder is found;
    `child_command` starts `dedupe` (None: this same program, as `dedupe run` does)."""

    repo_url: str
    profile: Profile | None = None
    s3_endpoint: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    state_root: Path | None = None
    child_command: Sequence[str] | None = None
    idle_seconds: float = IDLE_MINUTES * 60
    clock: Callable[[], float] = time.monotonic
    secure_cookies: bool = False  # set the cookie's Secure flag (behind a TLS reverse proxy)
    allowed_hosts: tuple[str, ...] = ()  # Host header values accepted; empty: any
