"""The forecast chart, written as a standalone SVG file by hand.

What it shows, in one picture: the past (sizes the history tells, `projection.past_sizes`), the
forecast with its uncertainty band, the peak of the forecast days, and the drive line whenever a
drive size is given (the axis stretches to it, however far above the peak it is). Month labels
are short ("Apr", "Jan 2027" where the year turns) and thinned so they never overlap; sizes are
decimal (MB, GB, TB) as in `plan`'s text and on the drive's label.

Why by hand and not matplotlib: measured, matplotlib and what it pulls in (Pillow, fontTools,
kiwisolver, contourpy) take about 98 MB installed and 0.5 s to import, for a picture of one line,
a band, two axes and a few labels, on a backup server that needs neither. This SVG has no
scripts, fonts or external references, any browser shows it, and it is deterministic (the same
forecast gives the same bytes), so tests read it as XML. Pure: returns the text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from xml.sax.saxutils import escape

from dedupe.plan.drive import format_bytes

__all__ = ["format_bytes", "nice_step", "render_svg", "month_ticks"]

WIDTH = 960
HEIGHT = 500
LEFT, RIGHT, TOP, BOTTOM = 90, 30, 84, 76
CHAR_WIDTH = 0.6
"""Average glyph width of a sans-serif font, in font sizes: what label spacing is judged by."""
MIN_LABEL_GAP = 12
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


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


def month_ticks(first: date, last: date) -> list[tuple[date, str]]:
    """Tick dates and their labels between `first` and `last`: month starts ("Apr", with the
    year on the first label and on every January) for spans over 75 days, Mondays for a few
    weeks ("6 Apr"), days for shorter ones."""
    span = (last - first).days
    ticks: list[tuple[date, str]] = []
    if span > 75:
        year, month = first.year, first.month - (first.day == 1)  # a 1st is a tick itself
        while True:
            month += 1
            if month > 12:
                year, month = year + 1, 1
            tick = date(year, month, 1)
            if tick > last:
                return ticks
            label = _MONTHS[month - 1]
            if not ticks or month == 1:
                label += f" {year}"
            ticks.append((tick, label))
    step = 7 if span > 14 else 1
    ordinal = first.toordinal()
    if step == 7:
        ordinal += (7 - first.weekday()) % 7
    while ordinal <= last.toordinal():
        day = date.fromordinal(ordinal)
        ticks.append((day, f"{day.day} {_MONTHS[day.month - 1]}"))
        ordinal += step
    return ticks


def _thin(ticks: list[tuple[float, str]], font: float) -> list[tuple[float, str]]:
    """Every k-th label, the smallest k at which no two labels overlap (at least MIN_LABEL_GAP
    pixels apart)."""
    for k in range(1, len(ticks) + 1):
        kept = ticks[::k]
        if all(
            b[0] - a[0] >= CHAR_WIDTH * font * (len(a[1]) + len(b[1])) / 2 + MIN_LABEL_GAP
            for a, b in zip(kept, kept[1:], strict=False)
        ):
            return kept
    return ticks[:1]  # pragma: no cover - one label always fits


def render_svg(
    series: Sequence[tuple[date, int]],
    title: str,
    subtitle: str = "",
    drive_bytes: int | None = None,
    *,
    band: tuple[Sequence[int], Sequence[int]] | None = None,
    past: Sequence[tuple[date, int]] = (),
    drive_label: str = "drive",
) -> str:
    """The chart of the forecast `series` (date, stored bytes; the first point is today).

    Elements carry classes a test or a stylesheet can find: `series` (the forecast polyline, one
    point a day), `past` (the history's polyline), `band` (the uncertainty polygon: high ends
    left to right, low ends back), `peak` (a circle on the first largest forecast day, today
    excluded), `drive` (the drive line, always when `drive_bytes` is given), `axis`, `tick`,
    `month` (the date labels).
    """
    if not series:
        raise ValueError("nothing to draw: the series is empty")
    forecast_days = series[1:] or series
    peak_day, peak_bytes = max(forecast_days, key=lambda p: (p[1], -p[0].toordinal()))
    first = min([series[0][0], *(d for d, _b in past)])
    last = series[-1][0]
    values = [v for _d, v in series] + [v for _d, v in past]
    if band:
        values += list(band[1])
    if drive_bytes is not None:
        values.append(drive_bytes)
    top_value = max(max(values), 1)
    step = nice_step(top_value * 1.05)
    y_max = step * math.ceil(top_value * 1.05 / step)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    days = max(1, (last - first).days)
    title_size = min(18.0, (WIDTH - 2 * 16) / (CHAR_WIDTH * max(1, len(title))))

    def x(day: date) -> float:
        return LEFT + plot_w * (day - first).days / days

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text class="title" x="16" y="28" font-size="{title_size:.1f}" font-weight="bold">'
        f"{escape(title)}</text>",
    ]
    if subtitle:
        out.append(f'<text class="subtitle" x="16" y="52" fill="#444">{escape(subtitle)}</text>')
    tick = 0.0
    while tick <= y_max + step / 2:
        ty = y(tick)
        out.append(
            f'<line class="tick" x1="{LEFT}" y1="{ty:.1f}" x2="{WIDTH - RIGHT}" y2="{ty:.1f}" '
            'stroke="#e4e4e4"/>'
        )
        out.append(
            f'<text x="{LEFT - 8}" y="{ty + 4:.1f}" text-anchor="end">'
            f"{format_bytes(tick) if tick else '0'}</text>"
        )
        tick += step
    labels = _thin([(x(day), text) for day, text in month_ticks(first, last)], 12)
    for tx, text in labels:
        out.append(
            f'<line class="tick" x1="{tx:.1f}" y1="{TOP + plot_h}" x2="{tx:.1f}" '
            f'y2="{TOP + plot_h + 5}" stroke="#333"/>'
        )
        out.append(
            f'<text class="month" x="{tx:.1f}" y="{TOP + plot_h + 20}" text-anchor="middle">'
            f"{escape(text)}</text>"
        )
    out.append(
        f'<polyline class="axis" points="{LEFT},{TOP} {LEFT},{TOP + plot_h} '
        f'{WIDTH - RIGHT},{TOP + plot_h}" fill="none" stroke="#333"/>'
    )
    if band:
        low, high = band
        upper = [f"{x(d):.1f},{y(v):.1f}" for (d, _v), v in zip(series, high, strict=True)]
        lower = [f"{x(d):.1f},{y(v):.1f}" for (d, _v), v in zip(series, low, strict=True)]
        out.append(
            f'<polygon class="band" points="{" ".join(upper + lower[::-1])}" '
            'fill="#1f6fb2" fill-opacity="0.15" stroke="none"/>'
        )
    if past:
        points = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in past)
        out.append(
            f'<polyline class="past" points="{points}" fill="none" stroke="#555" stroke-width="2"/>'
        )
    today = series[0][0]
    out.append(
        f'<line class="today" x1="{x(today):.1f}" y1="{TOP}" x2="{x(today):.1f}" '
        f'y2="{TOP + plot_h}" stroke="#999" stroke-dasharray="2 3"/>'
    )
    if drive_bytes is not None:
        dy = y(drive_bytes)
        out.append(
            f'<line class="drive" x1="{LEFT}" y1="{dy:.1f}" x2="{WIDTH - RIGHT}" y2="{dy:.1f}" '
            'stroke="#c0392b" stroke-dasharray="6 4"/>'
        )
        out.append(
            f'<text class="drive-label" x="{LEFT + 6}" y="{dy - 6:.1f}" fill="#c0392b">'
            f"{escape(drive_label)}: {format_bytes(drive_bytes)}</text>"
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
    label_y = py - 10
    if drive_bytes is not None and abs(y(drive_bytes) - label_y) < 16 or label_y < TOP + 12:
        label_y = py + 20  # below the point: clear of the drive line and the top
    label = f"peak {format_bytes(peak_bytes)} on {peak_day.isoformat()}"
    where = f'x="{px + offset:.1f}" y="{label_y:.1f}" text-anchor="{anchor}" font-weight="bold"'
    out.append(  # a white halo first, then the label: readable over the lines in any viewer
        f'<text {where} fill="white" stroke="white" stroke-width="4">{escape(label)}</text>'
    )
    out.append(f'<text class="peak-label" {where}>{escape(label)}</text>')
    legend = [("#555", "past")] if past else []
    legend.append(("#1f6fb2", "forecast (after each night's backup, forget and gc)"))
    if band:
        legend.append(("#a5c5e0", "likely range (measured on replays)"))
    lx = LEFT
    for color, text in legend:
        out.append(
            f'<rect x="{lx}" y="{HEIGHT - 22}" width="14" height="8" fill="{color}"/>'
            f'<text x="{lx + 18}" y="{HEIGHT - 14}" fill="#444">{escape(text)}</text>'
        )
        lx += 18 + int(CHAR_WIDTH * 12 * len(text)) + 24
    out.append("</svg>")
    return "\n".join(out) + "\n"
