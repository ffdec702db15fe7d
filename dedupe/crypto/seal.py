"""Authenticated encryption of objects and keyed blob ids.

`Sealer.seal` = random 24-byte nonce + XSalsa20-Poly1305 (libsodium secretbox). `open` verifies
the MAC; failure raises DamageError. Both release the GIL inside libsodium, so threads scale.
"""

from __future__ import annotations

import itertools

import blake3
import nacl.bindings
import nacl.exceptions
import nacl.secret
import nacl.utils

# pynacl's compiled libsodium binding (shipped by every pynacl release): lets blobs be sealed
# in place, without the copies of pynacl's convenience wrappers.
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

from dedupe.errors import DamageError

NONCE_BYTES = nacl.secret.SecretBox.NONCE_SIZE
MAC_BYTES = nacl.secret.SecretBox.MACBYTES
OVERHEAD = NONCE_BYTES + MAC_BYTES


class Sealer:
    """Seals and opens objects under one 32-byte key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != nacl.secret.SecretBox.KEY_SIZE:
            raise ValueError("sealing key must be 32 bytes")
        self._key = key
        # Nonces: 16 random bytes per Sealer and a 64-bit counter. Unique per key as long as
        # two Sealers never draw the same 128-bit prefix (probability ~2**-128 per pair), and
        # no system call per blob. next() on itertools.count is atomic under the GIL.
        self._prefix = nacl.utils.random(NONCE_BYTES - 8)
        self._counter = itertools.count()

    def seal(self, plaintext: bytes | memoryview) -> bytes:
        nonce = self._prefix + next(self._counter).to_bytes(8, "little")
        return nonce + nacl.bindings.crypto_secretbox_easy(bytes(plaintext), nonce, self._key)

    def seal_tagged(self, tag: int, payload: bytes | memoryview) -> bytearray:
        """`seal(bytes([tag]) + payload)`, with one copy of the payload instead of five.

        The payload is copied once into the output buffer and encrypted there in place
        (libsodium allows it; the GIL is released meanwhile): for a blob pipeline moving
        gigabytes, the copies pynacl's convenience wrapper makes cost more than the cipher.
        """
        nonce = self._prefix + next(self._counter).to_bytes(8, "little")
        out = bytearray(nonce)
        out += bytes(MAC_BYTES + 1)
        out[OVERHEAD] = tag
        out += payload
        mlen = len(out) - OVERHEAD
        # Buffers are released explicitly (`with`): a view still exported when an exception
        # unwinds is freed in whatever order the collector picks, which crashed CPython.
        with _ffi.from_buffer(out) as ptr:
            failed = _lib.crypto_secretbox_easy(
                ptr + NONCE_BYTES, ptr + OVERHEAD, mlen, ptr, self._key
            )
        if failed:
            raise DamageError("encryption failed")  # pragma: no cover - it cannot fail
        return out

    def open_fast(self, sealed: bytes | memoryview, what: str = "object") -> bytes | bytearray:
        """`open`, decrypting straight into one fresh buffer (no intermediate copies)."""
        if len(sealed) < OVERHEAD:
            raise DamageError(f"{what} is truncated")
        out = bytearray(len(sealed) - OVERHEAD)
        clen = len(sealed) - NONCE_BYTES
        with _ffi.from_buffer(sealed) as src, _ffi.from_buffer(out) as dst:
            failed = _lib.crypto_secretbox_open_easy(dst, src + NONCE_BYTES, clen, src, self._key)
        if failed:
            raise DamageError(f"{what} failed authentication (damaged or tampered)")
        return out

    def open(self, sealed: bytes | memoryview, what: str = "object") -> bytes:
        if len(sealed) < OVERHEAD:
            raise DamageError(f"{what} is truncated")
        sealed = bytes(sealed)
        try:
            return nacl.bindings.crypto_secretbox_open(
                sealed[NONCE_BYTES:], sealed[:NONCE_BYTES], self._key
            )
        except nacl.exceptions.CryptoError:
            raise DamageError(f"{what} failed authentication (damaged or tampered)") from None


class IdHasher:
    """Keyed BLAKE3: blob ids that reveal nothing without the key."""

    def __init__(self, id_key: bytes) -> None:
        self._key = id_key

    def __call__(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self._key).digest()


def content_hash(data: bytes | memoryview) -> bytes:
    """Unkeyed BLAKE3, for names of packs and index files (their bytes are ciphertext)."""
    return blake3.blake3(data).digest()
