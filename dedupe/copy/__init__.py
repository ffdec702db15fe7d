"""Copying snapshots to another repository, re-chunking when the chunker differs."""
