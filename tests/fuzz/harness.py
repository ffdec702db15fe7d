"""The shared body of the atheris harnesses `tests/fuzz/fuzz_<family>.py`.

A harness fuzzes a family of targets from `tests/fuzz/targets.py` (a decoder's stored form and
its sealed plaintext): the first input byte picks the target, the rest is its input. Only
`DedupeError` may escape a target; anything else is reported by atheris as a crash (and its input
saved under -artifact_prefix). Valid objects are written to a fresh corpus folder as seeds, so
the fuzzer starts from inputs that reach deep into each decoder.

Run one by hand: `python tests/fuzz/fuzz_tree.py -runs=100000` (libFuzzer flags pass through).
"""

from __future__ import annotations

import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(names: list[str]) -> None:
    import atheris

    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    with atheris.instrument_imports(include=["dedupe"]):
        from dedupe.errors import DedupeError
        from tests.fuzz import targets

    chosen = [targets.TARGETS[n] for n in names]

    def test_one_input(data: bytes) -> None:
        if not data:
            return
        target = chosen[data[0] % len(chosen)]
        try:
            target(data[1:])
        except DedupeError:
            pass

    corpus = tempfile.mkdtemp(prefix="dedupe-fuzz-corpus-")
    for i, name in enumerate(names):
        for j, seed in enumerate(targets.seeds(name)):
            with open(os.path.join(corpus, f"seed-{i}-{j}"), "wb") as f:
                f.write(bytes([i]) + seed)
    args = [a for a in sys.argv if a != "--"]
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(corpus)
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()
