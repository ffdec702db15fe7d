"""Where local caches live (files cache, index cache): one small leaf module, so the layers that
keep caches need not import each other to find the folder."""

from __future__ import annotations

import os


def default_cache_dir() -> str:
    """$DEDUPE_CACHE_DIR, else $XDG_CACHE_HOME/dedupe, else ~/.cache/dedupe."""
    explicit = os.environ.get("DEDUPE_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dedupe")
