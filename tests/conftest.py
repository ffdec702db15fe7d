"""Shared pytest fixtures: the real SFTP and S3 test servers live in tests/servers.py."""

import pytest

from dedupe.crypto import kdf
from tests.servers import s3_server, sftp_server  # noqa: F401

CHEAP_KDF = kdf.KdfParams(
    ops=kdf.pwhash.argon2id.OPSLIMIT_MIN, mem=kdf.pwhash.argon2id.MEMLIMIT_MIN
)


@pytest.fixture
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests only: keys made in this process use Argon2id at its minimum cost."""
    monkeypatch.setattr(kdf, "params_for_new_keys", CHEAP_KDF)
