"""`check --read-data`: verify one pack's bytes, and choose which packs a subset run reads.

`verify_pack` holds one pack in memory at a time (the caller bounds how many run at once) and
reports what it found instead of raising, so one bad pack never hides another. The BLAKE3 of the
pack, libsodium and zstd all release the GIL, so a thread pool uses every core.

Subsets (`--read-data-subset`): `n/m` reads the packs whose position in the id-sorted list falls
in the n-th of m equal buckets, so m nightly runs with n = 1..m together read everything. `P%`
reads the P percent of packs that rank first under BLAKE3(seed || pack id): deterministic for a
given seed (the CLI passes today's date, so a re-run the same day repeats the same sample) and
different from one seed to the next.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from dedupe.crypto.seal import content_hash
from dedupe.errors import DedupeError, ObjectNotFound
from dedupe.repo.blob import BlobCodec
from dedupe.repo.pack import BlobEntry
from dedupe.repo.repository import pack_name
from dedupe.storage.base import Storage


@dataclass
class PackVerdict:
    """What reading one pack found."""

    bytes_read: int = 0
    blobs_ok: int = 0
    damaged: list[bytes] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def verify_pack(
    storage: Storage, blobs: BlobCodec, pack_id: bytes, entries: list[BlobEntry]
) -> PackVerdict:
    """Read the whole pack, check its name, then open and verify each indexed blob in it."""
    verdict = PackVerdict()
    try:
        data = storage.get(pack_name(pack_id))
    except ObjectNotFound:
        verdict.errors.append("vanished while check ran (deleted by gc?)")
        verdict.damaged = [e.blob_id for e in entries]
        return verdict
    except DedupeError as exc:
        verdict.errors.append(f"cannot be read: {exc}")
        verdict.damaged = [e.blob_id for e in entries]
        return verdict
    verdict.bytes_read = len(data)
    if content_hash(data) != pack_id:
        verdict.errors.append("its bytes do not match its name (damaged or renamed)")
    view = memoryview(data)
    first_failure = ""
    for e in entries:
        end = e.offset + e.length
        try:
            if end > len(data):
                raise DedupeError(f"blob {e.blob_id.hex()[:16]} lies past the end of the pack")
            blobs.decode(view[e.offset : end], e.blob_id, e.raw_length)
        except DedupeError as exc:
            verdict.damaged.append(e.blob_id)
            first_failure = first_failure or str(exc)
        else:
            verdict.blobs_ok += 1
    if verdict.damaged:
        verdict.errors.append(
            f"{len(verdict.damaged)} of {len(entries)} blob(s) failed verification "
            f"(first: {first_failure})"
        )
    return verdict


_BUCKET = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class Subset:
    """Which packs a `--read-data-subset` run reads."""

    bucket: int = 0  # n of n/m (1-based); 0 for a percentage
    buckets: int = 0
    percent: float = 0.0
    seed: str = ""

    @classmethod
    def parse(cls, text: str, seed: str) -> Subset:
        """'n/m' or 'P%'; ValueError with a readable message otherwise."""
        match = _BUCKET.match(text)
        if match:
            n, m = int(match.group(1)), int(match.group(2))
            if not 1 <= n <= m:
                raise ValueError(f"invalid subset {text!r}: need 1 <= n <= m in n/m")
            return cls(bucket=n, buckets=m)
        match = _PERCENT.match(text)
        if match:
            percent = float(match.group(1))
            if not 0 < percent <= 100:
                raise ValueError(f"invalid subset {text!r}: the percentage must be in (0, 100]")
            return cls(percent=percent, seed=seed)
        raise ValueError(f"invalid subset {text!r}: use n/m (e.g. 1/7) or a percentage (10%)")

    def select(self, pack_ids: list[bytes]) -> list[bytes]:
        """The chosen pack ids, in id order."""
        ordered = sorted(pack_ids)
        if self.buckets:
            count = len(ordered)
            n = self.bucket - 1
            return [p for i, p in enumerate(ordered) if i * self.buckets // count == n]
        want = math.ceil(len(ordered) * self.percent / 100)
        seed = self.seed.encode()
        ranked = sorted(ordered, key=lambda p: content_hash(seed + p))
        return sorted(ranked[:want])
