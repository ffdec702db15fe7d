"""Getting files back: restoring a snapshot's files to a folder."""
