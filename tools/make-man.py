#!/usr/bin/env python3
"""Write docs/dedupe.1 (the man page) and the bash, zsh and fish completion scripts in tools/
from dedupe's own parser.

    python3 tools/make-man.py            write them all
    python3 tools/make-man.py --check    exit 1 if one is out of date (for CI)

The texts are what `dedupe completion bash|zsh|fish` and `dedupe completion --man DIR` produce
(dedupe/cli/cmd_completion.py), so a checkout and an installed dedupe offer the same thing, and
`--check` (for CI, on committed files) says when the copies in the checkout are due.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dedupe.cli import cmd_completion  # noqa: E402
from dedupe.cli.main import build_parser  # noqa: E402

MAN_PAGE = ROOT / "docs" / "dedupe.1"
COMPLETIONS = {
    "bash": ROOT / "tools" / "dedupe.bash-completion",
    "zsh": ROOT / "tools" / "dedupe.zsh-completion",
    "fish": ROOT / "tools" / "dedupe.fish-completion",
}


def man_page() -> str:
    return cmd_completion.man_page(build_parser())


def completion(shell: str = "bash") -> str:
    return cmd_completion.script(shell, build_parser())


def main() -> int:
    os.environ["COLUMNS"] = "80"  # help texts wrap the same on every terminal
    check = "--check" in sys.argv[1:]
    outputs = [(MAN_PAGE, man_page())]
    outputs += [(path, completion(shell)) for shell, path in COMPLETIONS.items()]
    stale = []
    for path, text in outputs:
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python3 tools/make-man.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
