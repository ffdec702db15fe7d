"""A small line chart of stored bytes over time, written as a standalone SVG file by hand.

Why by hand: the picture only needs a line, two axes, a peak marker and a few labels, and a
plotting library would be the heaviest dependency of a backup tool. The SVG has no scripts,
fonts or external references, so any browser or image viewer shows it, and it is deterministic
(the same forecast gives the same bytes). Pure: returns the text; the caller writes the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from xml.sax.saxutils import escape

WIDTH = 960
HEIGHT = 480
LEFT, RIGHT, TOP, BOTTOM = 90, 30, 78, 56
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_bytes(n: float) -> str:
    """Decimal units, as drives are sold: 1.5 GB is 1,500,000,000 bytes."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" or value >= 100 else f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} {_UNITS[-1]}"  # pragma: no cover - the loop always returns


def nice_step(span: float, ticks: int = 6) -> float:
    """A 1, 2 or 5 times a power of ten step giving about `ticks` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power  # pragma: no cover


def _date_ticks(first: date, last: date) -> list[date]:
    """Month starts for long spans, week starts (Mondays) for a few weeks, else days."""
    span = (last - first).days
    if span > 75:
        step_months = 1 if span <= 400 else 3 if span <= 1200 else 12
        ticks: list[date] = []
        year, month = first.year, first.month
        while True:
            month += 1
            if month > 12:
                year, month = year + 1, 1
            tick = date(year, month, 1)
            if tick > last:
                return ticks
            if (month - 1) % step_months == 0:
                ticks.append(tick)
    step = 7 if span > 14 else 1
    ticks = []
    ordinal = first.toordinal()
    if step == 7:
        ordinal += (7 - first.weekday()) % 7
    while ordinal <= last.toordinal():
        ticks.append(date.fromordinal(ordinal))
        ordinal += step
    return ticks


def render_svg(
    series: Sequence[tuple[date, int]],
    title: str,
    subtitle: str = "",
    drive_bytes: int | None = None,
) -> str:
    """The chart of `series` (date, stored bytes) with the peak marked.

    Elements carry classes a test or a stylesheet can find: `series` (the polyline, one point
    per day), `peak` (a circle on the first day of the maximum), `drive` (the drive size line,
    when it fits on the scale), `axis`, `tick`.
    """
    if not series:
        raise ValueError("nothing to draw: the series is empty")
    first, last = series[0][0], series[-1][0]
    peak_day, peak_bytes = max(series, key=lambda p: (p[1], -p[0].toordinal()))
    top_value = max(peak_bytes, 1)
    if drive_bytes is not None and drive_bytes <= 2 * top_value:
        top_value = max(top_value, drive_bytes)
    step = nice_step(top_value * 1.05)
    y_max = step * math.ceil(top_value * 1.05 / step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    days = max(1, (last - first).days)
    # A long policy shrinks the title rather than running off the picture.
    title_size = min(16.0, 1.8 * (WIDTH - LEFT) / max(1, len(title)))

    def x(day: date) -> float:
        return LEFT + plot_w * (day - first).days / days

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="26" font-size="{title_size:.0f}" font-weight="bold">'
        f"{escape(title)}</text>",
    ]
    if subtitle:
        out.append(f'<text x="{LEFT}" y="48" fill="#444">{escape(subtitle)}</text>')
    tick = 0.0
    while tick <= y_max + step / 2:
        ty = y(tick)
        out.append(
            f'<line class="tick" x1="{LEFT}" y1="{ty:.1f}" x2="{WIDTH - RIGHT}" y2="{ty:.1f}" '
            'stroke="#e4e4e4"/>'
        )
        out.append(
            f'<text x="{LEFT - 8}" y="{ty + 4:.1f}" text-anchor="end">{format_bytes(tick)}</text>'
        )
        tick += step
    for day in _date_ticks(first, last):
        tx = x(day)
        out.append(
            f'<line class="tick" x1="{tx:.1f}" y1="{TOP + plot_h}" x2="{tx:.1f}" '
            f'y2="{TOP + plot_h + 5}" stroke="#333"/>'
        )
        out.append(
            f'<text x="{tx:.1f}" y="{TOP + plot_h + 20}" text-anchor="middle">'
            f"{day.isoformat()}</text>"
        )
    out.append(
        f'<polyline class="axis" points="{LEFT},{TOP} {LEFT},{TOP + plot_h} '
        f'{WIDTH - RIGHT},{TOP + plot_h}" fill="none" stroke="#333"/>'
    )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 10}" text-anchor="middle" fill="#444">'
        "date (one point a day, after the night's backup, forget and gc)</text>"
    )
    if drive_bytes is not None and drive_bytes <= y_max:
        dy = y(drive_bytes)
        out.append(
            f'<line class="drive" x1="{LEFT}" y1="{dy:.1f}" x2="{WIDTH - RIGHT}" y2="{dy:.1f}" '
            'stroke="#c0392b" stroke-dasharray="6 4"/>'
        )
        out.append(
            f'<text x="{WIDTH - RIGHT - 4}" y="{dy - 6:.1f}" text-anchor="end" fill="#c0392b">'
            f"drive to buy: {format_bytes(drive_bytes)}</text>"
        )
    points = " ".join(f"{x(day):.1f},{y(value):.1f}" for day, value in series)
    out.append(
        f'<polyline class="series" points="{points}" fill="none" stroke="#1f6fb2" '
        'stroke-width="2"/>'
    )
    px, py = x(peak_day), y(peak_bytes)
    anchor = "end" if px > LEFT + plot_w * 0.7 else "start"
    offset = -10 if anchor == "end" else 10
    out.append(f'<circle class="peak" cx="{px:.1f}" cy="{py:.1f}" r="5" fill="#c0392b"/>')
    out.append(
        f'<text x="{px + offset:.1f}" y="{max(TOP + 12, py - 10):.1f}" text-anchor="{anchor}" '
        f'font-weight="bold">peak {format_bytes(peak_bytes)} on {peak_day.isoformat()}</text>'
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"
