"""The master key and key files (the master key sealed by a password-derived key)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from dedupe import codec
from dedupe.crypto import kdf
from dedupe.crypto.seal import IdHasher, Sealer
from dedupe.errors import DamageError, FormatError, UnsupportedVersion, WrongPassword


class UnknownKeyVersion(FormatError):
    """A key file of a format version this dedupe does not know (written by a newer dedupe?).

    A FormatError, so that `Repository.open` skips it like any undecodable key file and tries
    the others: one such file must not lock out every command."""


@dataclass(frozen=True)
class MasterKey:
    """Everything secret about a repository. Never written anywhere unsealed."""

    repo_id: bytes
    enc_key: bytes
    id_key: bytes
    chunker_seed: int

    @classmethod
    def generate(cls, repo_id: bytes) -> MasterKey:
        seed = 0
        while seed == 0:  # 0 would select pyfastcdc's public default gear table
            seed = secrets.randbits(63)  # pyfastcdc shifts it left by one in 64 bits
        return cls(repo_id, secrets.token_bytes(32), secrets.token_bytes(32), seed)

    def sealer(self) -> Sealer:
        return Sealer(self.enc_key)

    def id_hasher(self) -> IdHasher:
        return IdHasher(self.id_key)

    def __repr__(self) -> str:  # never print key material
        return f"MasterKey(repo_id={self.repo_id.hex()})"


def encode_key_file(key: MasterKey, password: bytes, params: kdf.KdfParams | None = None) -> bytes:
    """A key file sealing `key` under `password` with fresh salt."""
    params = params or kdf.params_for_new_keys
    salt = secrets.token_bytes(kdf.SALT_BYTES)
    wrapping = kdf.derive(password, salt, params)
    inner = codec.pack(
        {
            "v": codec.FORMAT_VERSION,
            "repo": key.repo_id,
            "enc": key.enc_key,
            "id": key.id_key,
            "seed": key.chunker_seed,
        }
    )
    return codec.pack(
        {
            "v": codec.FORMAT_VERSION,
            "kdf": "argon2id",
            "salt": salt,
            "ops": params.ops,
            "mem": params.mem,
            "box": Sealer(wrapping).seal(inner),
        }
    )


@dataclass(frozen=True)
class KeyFile:
    """A decoded (still sealed) key file."""

    salt: bytes
    params: kdf.KdfParams
    box: bytes

    @property
    def cost(self) -> int:
        """Argon2id's ops x memory: what trying this file costs, in time and memory."""
        return self.params.ops * self.params.mem

    def unlock(self, password: bytes) -> MasterKey:
        """The master key, or WrongPassword."""
        wrapping = kdf.derive(password, self.salt, self.params)
        try:
            inner = Sealer(wrapping).open(self.box, "key file")
        except DamageError:
            raise WrongPassword("wrong password (or a damaged key file)") from None
        return _decode_master(inner)


def decode_key_file(data: bytes) -> KeyFile:
    """Parse a key file's envelope; FormatError if malformed."""
    what = "key file"
    try:
        obj = codec.check_version(codec.unpack(data, what), what)
    except UnsupportedVersion as exc:
        raise UnknownKeyVersion(f"{exc} (written by a newer dedupe?)") from None
    if codec.field(obj, "kdf", str, what) != "argon2id":
        raise FormatError("key file: unknown KDF")
    salt = codec.field(obj, "salt", bytes, what)
    params = kdf.validate(
        kdf.KdfParams(codec.field(obj, "ops", int, what), codec.field(obj, "mem", int, what))
    )
    if len(salt) != kdf.SALT_BYTES:
        raise FormatError("key file: salt has the wrong length")
    return KeyFile(salt, params, codec.field(obj, "box", bytes, what))


def _decode_master(inner: bytes) -> MasterKey:
    what = "key file contents"
    try:
        obj = codec.check_version(codec.unpack(inner, what), what)
    except UnsupportedVersion as exc:
        raise UnknownKeyVersion(f"{exc} (written by a newer dedupe?)") from None
    repo_id = codec.field(obj, "repo", bytes, what)
    enc = codec.field(obj, "enc", bytes, what)
    idk = codec.field(obj, "id", bytes, what)
    seed = codec.field(obj, "seed", int, what)
    if len(repo_id) != 16 or len(enc) != 32 or len(idk) != 32 or not (0 < seed < 2**63):
        raise FormatError("key file contents are malformed")
    return MasterKey(repo_id, enc, idk, seed)
