"""Garbage collection, one module a step: `survey` (packs, index files, headers; the grace
period), `mark` (what the snapshots reach), `plan` (pure: what to keep, delete, repack),
`indexfiles` (the bounded index files gc writes) and `execute` (the deletion order a crash cannot
turn into a lost chunk); `collect` runs them (`run`, `run_gc`, `GcResult`)."""
