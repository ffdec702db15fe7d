"""Garbage collection: survey the packs and index, mark what snapshots reach, plan, and delete in
an order a crash cannot turn into a lost chunk."""
