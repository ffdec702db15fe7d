"""Getting files back: restoring a snapshot's files to a folder, never outside it.

- `steps`: what a restore creates, in order (`--include`, `--exclude`), and the progress total.
- `existing`: what is already in the target: keep or replace it (`--overwrite`), and does it
  hold the snapshot's content (`--verify`); it only looks, never changes anything.
- `restorer`: the writer (temporary name, then rename; folders, metadata, the order of things).
- `pipeline`: the data path: blobs read, decoded, verified and written at their offsets by the
  worker pool, with bounded memory and open files.
- `dryrun`: the same steps and decisions as the writer, with nothing written.
- `outcome`: the counts, and the exit-14 error naming what could not be restored or verified.
"""
