"""Cryptography: password KDF, the master key and key files, sealing and keyed ids.

Knows nothing of files, snapshots or storage.
"""
