"""Key exports: a key file (the master key, still sealed by the password) for safe keeping.

An export holds the repository id and the key file's bytes; nothing in it is usable without the
password. Two encodings:
- the file form: a short text with the payload in base64 between BEGIN/END lines;
- the paper form: base32 in groups of four, 24 characters a line, each line followed by a
  checksum of its number and bytes, so a person typing it back is told which line is wrong.
  Digits a person may type for look-alike letters (0, 1, 8) are read as O, I and B.

Importing verifies the payload's own checksum, that the key file belongs to the repository and
that it opens with the password; the caller then checks that it opens the config and stores it.
An export of another repository that shares this one's key (`init --same-key-as`) is unlocked
against its own id (`unlock(export.repo_id, ...)`); `dedupe.repo.keyshare` decides whether its
key opens the target and writes a key file bound to the target's id.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from dedupe import codec
from dedupe.crypto import keys
from dedupe.crypto.seal import content_hash
from dedupe.errors import FormatError, UsageError

KIND = "dedupe-key-export"
BEGIN = "-----BEGIN DEDUPE KEY-----"
END = "-----END DEDUPE KEY-----"
MAX_EXPORT = 64 * 1024
PAPER_LINE_BYTES = 15  # 24 base32 characters: six groups of four
_PAPER_LINE = re.compile(r"^\s*(\d+)\s*[:.]\s*([A-Za-z0-9 ]+?)\s*-\s*([A-Za-z0-9 ]+?)\s*$")
_CONFUSABLE = str.maketrans({"0": "O", "1": "I", "8": "B"})


@dataclass(frozen=True)
class KeyExport:
    """What an export carries: the repository id and a key file's bytes."""

    repo_id: bytes
    key_file: bytes

    def unlock(self, repo_id: bytes, password: bytes) -> keys.MasterKey:
        """The master key, after checking this export belongs to `repo_id`.

        WrongPassword if the password does not open it; UsageError for another repository."""
        if self.repo_id != repo_id:
            raise UsageError(
                f"this key export belongs to repository {self.repo_id.hex()[:8]}, "
                f"not to {repo_id.hex()[:8]}"
            )
        master = keys.decode_key_file(self.key_file).unlock(password)
        if master.repo_id != repo_id:
            raise FormatError("the exported key file belongs to another repository")
        return master


def _payload(export: KeyExport) -> bytes:
    body = codec.pack(
        {"v": codec.FORMAT_VERSION, "kind": KIND, "repo": export.repo_id, "key": export.key_file}
    )
    return body + content_hash(body)[:8]


def _from_payload(payload: bytes) -> KeyExport:
    what = "key export"
    if len(payload) < 9 or len(payload) > MAX_EXPORT:
        raise FormatError(f"{what} has an implausible size")
    body, check = payload[:-8], payload[-8:]
    if content_hash(body)[:8] != check:
        raise FormatError(f"{what} is damaged or mistyped (its checksum does not match)")
    obj = codec.check_version(codec.unpack(body, what), what)
    if codec.field(obj, "kind", str, what) != KIND:
        raise FormatError(f"{what}: not a dedupe key export")
    repo_id = codec.field(obj, "repo", bytes, what)
    key_file = codec.field(obj, "key", bytes, what)
    if len(repo_id) != 16:
        raise FormatError(f"{what}: malformed repository id")
    keys.decode_key_file(key_file)  # a malformed key file is refused now, not at unlock time
    return KeyExport(repo_id, key_file)


# --- file form -------------------------------------------------------------------------------


def encode_file(export: KeyExport) -> str:
    b64 = base64.b64encode(_payload(export)).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "\n".join(
        [
            "dedupe key export (keep it safe; it is useless without the password)",
            f"repository {export.repo_id.hex()}",
            BEGIN,
            *lines,
            END,
            "",
        ]
    )


def decode_file(text: str) -> KeyExport:
    """Parse the file form (FormatError if malformed or altered)."""
    if len(text) > 4 * MAX_EXPORT:
        raise FormatError("key export is too large")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise FormatError("not a dedupe key export (no BEGIN/END lines)")
    armored = "".join(text[start + len(BEGIN) : end].split())
    try:
        payload = base64.b64decode(armored, validate=True)
    except (binascii.Error, ValueError):
        raise FormatError("key export: malformed base64") from None
    return _from_payload(payload)


# --- paper form ------------------------------------------------------------------------------


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def _line_check(number: int, data: bytes) -> str:
    return _b32(content_hash(number.to_bytes(4, "little") + data)[:2])[:4]


def encode_paper(export: KeyExport) -> str:
    """Short lines `NN: ABCD EFGH ... - CHCK` a person can copy by hand and type back."""
    payload = _payload(export)
    rows = [payload[i : i + PAPER_LINE_BYTES] for i in range(0, len(payload), PAPER_LINE_BYTES)]
    out = [
        "dedupe paper key (useless without the password)",
        f"repository {export.repo_id.hex()}, {len(payload)} bytes, {len(rows)} lines",
        "type back each line; the four letters after '-' check that line",
        "",
    ]
    for number, row in enumerate(rows, 1):
        text = _b32(row)
        groups = " ".join(text[i : i + 4] for i in range(0, len(text), 4))
        out.append(f"{number:02d}: {groups} - {_line_check(number, row)}")
    return "\n".join(out) + "\n"


def decode_paper(text: str) -> KeyExport:
    """Parse typed-back paper lines; FormatError names the first mistyped line."""
    if len(text) > 8 * MAX_EXPORT:
        raise FormatError("paper key is too large")
    rows: dict[int, bytes] = {}
    for raw in text.splitlines():
        match = _PAPER_LINE.match(raw)
        if match is None:
            continue
        number = int(match.group(1))
        body = match.group(2).replace(" ", "").upper().translate(_CONFUSABLE)
        check = match.group(3).replace(" ", "").upper().translate(_CONFUSABLE)
        if number in rows or not 1 <= number <= MAX_EXPORT // PAPER_LINE_BYTES:
            raise FormatError(f"paper key: line {number} appears twice or is out of range")
        try:
            row = base64.b32decode(body + "=" * (-len(body) % 8))
        except (binascii.Error, ValueError):
            raise FormatError(f"paper key: line {number} is mistyped (not base32)") from None
        if not row or _line_check(number, row) != check:
            raise FormatError(f"paper key: line {number} is mistyped (its checksum differs)")
        rows[number] = row
    if not rows:
        raise FormatError("paper key: no key lines found")
    if sorted(rows) != list(range(1, len(rows) + 1)):
        missing = sorted(set(range(1, max(rows) + 1)) - set(rows))
        raise FormatError(f"paper key: line(s) {', '.join(map(str, missing))} missing")
    return _from_payload(b"".join(rows[n] for n in sorted(rows)))


def decode_any(text: str) -> KeyExport:
    """The file form if it has BEGIN/END lines, else the paper form."""
    return decode_file(text) if BEGIN in text else decode_paper(text)
