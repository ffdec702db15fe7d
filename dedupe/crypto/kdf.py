"""Argon2id password hashing (libsodium via pynacl), parameters stored beside the salt."""

from __future__ import annotations

from dataclasses import dataclass

from nacl import pwhash

from dedupe.errors import FormatError

SALT_BYTES = pwhash.argon2id.SALTBYTES
KEY_BYTES = 32

# Refuse key files that ask for more than this: a hostile key file must not make unlocking
# allocate unbounded memory or run for hours.
MAX_OPS = 64
MAX_MEM = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters."""

    ops: int
    mem: int


# pynacl's MODERATE limits: about 0.3 s and 256 MiB on this kind of machine.
DEFAULT = KdfParams(ops=pwhash.argon2id.OPSLIMIT_MODERATE, mem=pwhash.argon2id.MEMLIMIT_MODERATE)

# What `init` uses. Tests replace this in-process (tests/dedupe_cheap_kdf.py); there is no flag,
# variable or file by which a user can select weaker parameters.
params_for_new_keys: KdfParams = DEFAULT


def validate(params: KdfParams) -> KdfParams:
    """Reject parameters out of libsodium's range or above our caps."""
    if not (pwhash.argon2id.OPSLIMIT_MIN <= params.ops <= MAX_OPS):
        raise FormatError("key file: Argon2id ops limit out of range")
    if not (pwhash.argon2id.MEMLIMIT_MIN <= params.mem <= MAX_MEM):
        raise FormatError("key file: Argon2id memory limit out of range")
    return params


# How many derivations this process has run: tests read it to show that opening a repository
# never pays for a planted expensive key file (a count, unlike a time, is exact on a busy machine).
derivations = 0


def derive(password: bytes, salt: bytes, params: KdfParams) -> bytes:
    """The 32-byte key that seals a key file."""
    global derivations
    validate(params)
    if len(salt) != SALT_BYTES:
        raise FormatError("key file: salt has the wrong length")
    derivations += 1
    return pwhash.argon2id.kdf(KEY_BYTES, password, salt, opslimit=params.ops, memlimit=params.mem)
