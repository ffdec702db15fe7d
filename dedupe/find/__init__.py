"""`dedupe find`: every version of the files whose names match a pattern, across snapshots.

`pattern` turns the user's glob into per-folder steps (and refuses a glob it cannot mean);
`search` walks the snapshots' trees with each (tree, pattern state) searched once, however many
snapshots share it, so a year of nightly snapshots costs about what its changed folders cost.
"""

from dedupe.find.pattern import Pattern, compile_pattern
from dedupe.find.search import Finder, FindResult, Match, find

__all__ = ["FindResult", "Finder", "Match", "Pattern", "compile_pattern", "find"]
