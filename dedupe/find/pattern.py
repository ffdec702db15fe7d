"""The `find` glob: what it matches, as steps taken one folder level at a time.

A glob without `/` matches a base name at any depth (`letter.docx`, `*.docx`). A glob with `/`
matches the whole path from the root (`/srv/practice/letters/*.docx`), or below any folders
when it starts with `**/`; `**` as a whole component stands for any number of folders (none
included). Within a component: `*` any run of characters, `?` one character, `[abc]`, `[a-z]`
and `[!abc]` one of (or none of) a set, `\\` makes the next character literal. `*` never
crosses a `/`. Matching is on the stored bytes of names, case-sensitive, as the files were.

The pattern is a small automaton over path components: a *state* is the set of component
positions still to be matched (`len(parts)` means matched). `step` takes a state and one name;
because a state depends only on the folders above, never on their names once stepped through,
the matches inside a tree depend only on (tree id, state): `search` memoises on that pair.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from dedupe.errors import UsageError

State = frozenset[int]

_ANY_FOLDERS = None
"""A `**` component: any number of folders."""


@dataclass(frozen=True)
class Pattern:
    """A compiled glob: `parts` are compiled components, None for `**`."""

    text: str
    parts: tuple[re.Pattern[bytes] | None, ...]
    done: int = field(init=False)
    """The position that means "matched" (len(parts))."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "done", len(self.parts))

    def start(self) -> State:
        """The state at a snapshot's root."""
        return self._closure({0})

    def step(self, state: State, name: bytes) -> tuple[bool, State]:
        """(does the entry `name` match, the state inside it if it is a folder). An empty
        state means nothing below can match: the folder need not be searched."""
        after: set[int] = set()
        for position in state:
            if position == self.done:
                continue
            part = self.parts[position]
            if part is _ANY_FOLDERS:
                after.add(position)  # `**` takes this folder and may take more
            elif part.fullmatch(name):
                after.add(position + 1)
        closed = self._closure(after)
        return self.done in closed, frozenset(p for p in closed if p != self.done)

    def _closure(self, positions: set[int]) -> State:
        """`positions` plus those reached by letting each `**` stand for no folder."""
        result = set(positions)
        for position in range(self.done):
            if position in result and self.parts[position] is _ANY_FOLDERS:
                result.add(position + 1)
        return frozenset(result)


def compile_pattern(glob: str) -> Pattern:
    """The Pattern for `glob`, or UsageError (exit 2) saying what is wrong with it and how to
    write it instead."""
    if not glob:
        raise UsageError(
            "find needs a file name or a pattern, e.g. dedupe find letter.docx, or "
            "dedupe find '*.docx' (quoted, so the shell leaves the * alone)"
        )
    if "\0" in glob:
        raise UsageError("the pattern contains a NUL character, which no file name has")
    if "/" not in glob:
        return Pattern(glob, (_ANY_FOLDERS, _component(glob, glob)))
    if not glob.startswith(("/", "**/")):
        raise UsageError(
            f"pattern {glob!r}: a pattern with '/' is matched against the whole path, so it "
            "starts at the root with '/' (e.g. /srv/practice/*/letter.docx) or with '**/' for "
            f"any folders above (e.g. **/{glob})"
        )
    words = [w for w in glob.split("/") if w]
    if not words:
        raise UsageError(f"pattern {glob!r} matches no file: give a name after the '/'")
    for word in words:
        if word in (".", ".."):
            raise UsageError(
                f"pattern {glob!r}: paths in a snapshot have no '.' or '..' components; "
                "write the path from the root, as 'dedupe ls' shows it"
            )
    return Pattern(glob, tuple(None if w == "**" else _component(w, glob) for w in words))


def _component(word: str, glob: str) -> re.Pattern[bytes]:
    """One component of a glob as a regular expression over name bytes."""
    raw = os.fsencode(word)
    out: list[bytes] = []
    i = 0
    while i < len(raw):
        c = raw[i : i + 1]
        if c == b"*":
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\":
            if i + 1 == len(raw):
                raise UsageError(
                    f"pattern {glob!r} ends with '\\', which escapes nothing: write '\\\\' for "
                    "a backslash"
                )
            i += 1
            out.append(re.escape(raw[i : i + 1]))
        elif c == b"[":
            end, members = _bracket(raw, i, glob)
            out.append(members)
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile(b"".join(out), re.DOTALL)
    except re.error as exc:  # a reversed range such as [z-a]
        raise UsageError(f"pattern {glob!r} is not a valid glob ({exc})") from None


def _bracket(raw: bytes, start: int, glob: str) -> tuple[int, bytes]:
    """The set `[...]` opening at `start`: (index of its `]`, the regular expression)."""
    i = start + 1
    negate = raw[i : i + 1] in (b"!", b"^")
    if negate:
        i += 1
    members: list[bytes] = []
    first = True
    while i < len(raw):
        c = raw[i : i + 1]
        if c == b"]" and not first:
            body = b"".join(members)
            return i, (b"[^" if negate else b"[") + body + b"]"
        if c == b"\\" and i + 1 < len(raw):
            i += 1
            c = raw[i : i + 1]
        if c == b"-" and members and i + 1 < len(raw) and raw[i + 1 : i + 2] != b"]":
            members.append(b"-")
        else:
            members.append(re.escape(c))
        first = False
        i += 1
    raise UsageError(
        f"pattern {glob!r} has a '[' that is never closed: a set of characters is written "
        "[abc] or [0-9]; write \\[ for a literal ["
    )
