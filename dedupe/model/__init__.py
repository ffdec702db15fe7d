"""Values stored in the repository: tree nodes and snapshot manifests, with their codecs."""
