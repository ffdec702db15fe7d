"""Taking a snapshot: the tree walk, storing files (in this process and in a helper process for
large files), the files cache and the low-disk warning."""
