"""The repository: blobs in packs, the index, snapshots, locks, on top of a Storage."""
