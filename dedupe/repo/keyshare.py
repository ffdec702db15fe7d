"""One key for several repositories: a drive or off-site copy made with `init --same-key-as URL`.

What is shared: the whole key material of the repository at URL (`enc_key`, `id_key`,
`chunker_seed`) and its chunk sizes (both sets: files and streams, `config.carried`,
docs/FORMAT-chunking.md) and pack size. What is not: the repository id, the key files
and so the password of each (they may be equal or not), the compression setting. So:
- a blob has the same id and may be sealed with the same key in both, and `copy` between them
  moves only the blobs the destination lacks;
- each repository keeps its own id: the run record tells the drives apart by it, locks, the local
  caches and `copy`'s "same repository" check are per id;
- a key file stays bound to its repository (the id sealed inside it must equal the config's;
  `Repository.open` keeps refusing any other), but a key export or paper key of one repository of
  a family opens every other through `key import` (`adopt_key`): the export is unlocked with its
  password, its key must open the target's sealed settings (the proof that it is the target's
  key material: only the shared `enc_key` opens them), and a new key file for the target's id is
  written under the same password and KDF cost. An export of an unrelated repository (or one
  that only shares the chunker parameters, `--copy-chunker-params-from`) cannot open the
  settings and is refused.

Sharing `enc_key` means an object of one repository of the family verifies in another: whoever
can write to a drive can put the server's genuine objects there. They are the family's own data,
not forgeries; nobody without the password can make new ones.
"""

from __future__ import annotations

import dataclasses

from dedupe.crypto import kdf, keys
from dedupe.errors import DamageError
from dedupe.repo import config as config_mod


def shared_key(template: keys.MasterKey, repo_id: bytes) -> keys.MasterKey:
    """The master key of a new repository `repo_id` that shares `template`'s key material."""
    return dataclasses.replace(template, repo_id=repo_id)


def opens_settings(master: keys.MasterKey, repo_id: bytes, sealed_settings: bytes) -> bool:
    """True when `master` opens the sealed settings of repository `repo_id`: it holds that
    repository's encryption key (its own key, or a key shared with `init --same-key-as`)."""
    try:
        config_mod.decode_settings(sealed_settings, repo_id, master.sealer())
    except DamageError:
        return False
    return True


def adopt_key(
    master: keys.MasterKey,
    repo_id: bytes,
    sealed_settings: bytes,
    password: bytes,
    params: kdf.KdfParams,
) -> bytes | None:
    """A key file for repository `repo_id` made from another repository's unlocked key, sealed
    under `password` with the KDF cost `params`; None when `master` does not open that
    repository's settings (an unrelated key)."""
    if not opens_settings(master, repo_id, sealed_settings):
        return None
    return keys.encode_key_file(shared_key(master, repo_id), password, params)
