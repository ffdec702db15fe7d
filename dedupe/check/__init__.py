"""Verifying a repository, one module a concern: `checker` (the structure: keys, snapshots, holds,
packs against their headers, trees; damage mapped to snapshots and paths; `run_check`), `index`
(the survey of the index files), `data` (read-data: every byte of a pack verified) and `report`
(what check found)."""
