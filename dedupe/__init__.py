"""dedupe: a content-addressed, deduplicating, encrypted backup archiver."""

__version__ = "0.1.0"
