"""Taking a snapshot. Each module imports only those listed after it:

- session:    one whole snapshot, lock to manifest, and the write order (helper's index, ours,
              then the manifest); reports through callbacks, never prints
- archiver:   the walk: folders, exclusion, the files cache's folder entries, the trees
- largefiles: the lanes for large files (helper process, read-ahead thread)
- offload:    the helper process and the parent's side of its conversation
- filestore:  storing one file (safe open, files cache, chunks, change detection, its node);
              every lane calls it, and it knows none of them
- filescache, walkparts, space: the files cache, walk pieces without state, the disk check
"""
