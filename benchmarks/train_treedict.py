"""How `dedupe/model/treedict.py` was made (run once; its output is frozen into the format).

``python -m benchmarks.train_treedict [--size 8192] [--out dedupe/model/treedict.py] ROOT...``

Walks the given folders (by default this Python's standard library and site-packages without
jedi and django, the benchmark corpora, and /usr/share), encodes each folder as a format 2 tree
column map (`dedupe.model.treecols.columns`; blob ids random, as real ones look) and trains a
zstd dictionary on them. The dictionary is part of tree format 2: a new one would be a new tree
format version (docs/FORMAT-trees.md), so this script documents the old one's origin; it does not
replace it in a release.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import sysconfig
import textwrap
from pathlib import Path

import zstandard

SKIP = {"jedi", "django", "__pycache__", "dedupe"}


def samples(root: str) -> list[bytes]:
    from dedupe import codec
    from dedupe.model.tree import DIR, FILE, Node
    from dedupe.model.treecols import columns

    out: list[bytes] = []

    def walk(path: str) -> bytes:
        nodes = []
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            return os.urandom(32)
        for e in entries:
            if e.name in SKIP:
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            common = {"mode": st.st_mode & 0o7777, "mtime_ns": st.st_mtime_ns, "uid": st.st_uid,
                      "gid": st.st_gid, "user": "root", "group": "root"}  # fmt: skip
            name = os.fsencode(e.name)
            if e.is_dir(follow_symlinks=False):
                nodes.append(Node(name, DIR, subtree=walk(e.path), **common))  # type: ignore[arg-type]
            elif e.is_file(follow_symlinks=False):
                ids = tuple(os.urandom(32) for _ in range((st.st_size + 65535) // 65536))
                nodes.append(Node(name, FILE, size=st.st_size, content=ids, **common))  # type: ignore[arg-type]
        out.append(codec.pack(columns(sorted(nodes, key=lambda n: n.name))))
        return os.urandom(32)

    walk(root)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.train_treedict")
    ap.add_argument("roots", nargs="*")
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--out", type=Path, default=Path("dedupe/model/treedict.py"))
    args = ap.parse_args(argv)
    roots = args.roots or [sysconfig.get_paths()["stdlib"], "/usr/share"]
    found = [s for root in roots for s in samples(root)]
    data = zstandard.train_dictionary(args.size, found, level=3).as_bytes()
    text = base64.b64encode(data).decode()
    body = "\n".join(f'    "{line}"' for line in textwrap.wrap(text, 92))
    args.out.write_text(
        '"""The zstd dictionary of tree format 2 (docs/FORMAT-trees.md). Frozen: never regenerate\n'
        "it for format 2 (trees already stored need exactly these bytes to be read).\n\n"
        f"Made by benchmarks/train_treedict.py from {len(found)} folders of\n"
        + "".join(f"{root}\n" for root in roots)
        + f"({len(data)} bytes, SHA-256 {hashlib.sha256(data).hexdigest()}).\n"
        '"""\n\nimport base64\n\nTREE_DICT_V2 = base64.b64decode(\n'
        f"{body}\n)\n"
    )
    print(
        f"{len(found)} samples, {sum(map(len, found))} bytes -> {len(data)} bytes", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
