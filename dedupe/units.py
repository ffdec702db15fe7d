"""The package's one way to write a number of bytes for people.

Decimal units (kB, MB, GB, TB: 1 GB is 1,000,000,000 bytes), three significant digits, because
that is how drives are sold and labelled, how macOS's Finder shows sizes, and how the contract
writes sizes in the profile and on `--drive-size`. One formatter for bars, summaries, `plan`,
charts, alerts and the web page, so the office never compares "1.8 TiB" with "2 TB" for the
same thing. Pure: no imports from the rest of the package.
"""

from __future__ import annotations

UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_bytes(n: float) -> str:
    """`1.5 GB` for 1,500,000,000; `834 B`; three digits at most (`123 MB`, `12.3 MB`)."""
    value = float(n)
    for unit in UNITS:
        if abs(value) < 1000 or unit == UNITS[-1]:
            if unit == "B" or abs(value) >= 100:
                return f"{value:.0f} {unit}"
            return f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} {UNITS[-1]}"  # pragma: no cover - the loop always returns


__all__ = ["UNITS", "format_bytes"]
