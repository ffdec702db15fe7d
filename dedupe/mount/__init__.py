"""`dedupe mount`: a repository's snapshots as a read-only folder tree (FUSE).

Modules: `layout` names the top level (snapshots, latest, tags, sources; pure), `cache` keeps
what a long mount holds in memory bounded (blobs by bytes, folders by entries), `fs` answers
the kernel's requests (read-only, damage as EIO plus a message), `session` checks the mount
point, mounts through libfuse3 (`mfusepy`) and returns once unmounted. The binding is imported
only by `session.serve`, so the rest of dedupe works where FUSE is absent.
"""

from dedupe.mount.fs import SnapshotFS
from dedupe.mount.session import FuseUnavailable, check_mount_point, serve

__all__ = ["FuseUnavailable", "SnapshotFS", "check_mount_point", "serve"]
