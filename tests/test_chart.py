"""The hand-written SVG chart: valid XML, one point a day, the past and the band drawn, the peak
of the forecast days marked, the drive line always, month labels that never overlap, decimal
units as in `plan`'s text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from dedupe.plan.chart import CHAR_WIDTH, format_bytes, month_ticks, nice_step, render_svg

NS = {"svg": "http://www.w3.org/2000/svg"}


def series(days: int) -> list[tuple[date, int]]:
    start = date(2026, 4, 1)
    # Rises to a peak on day 40, then falls and levels off: the peak is not the last point.
    return [
        (start + timedelta(days=d), 10_000_000 + 1_000_000 * min(d, 80 - d if d > 40 else d))
        for d in range(days + 1)
    ]


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


def points(root: ET.Element, kind: str = "series") -> list[tuple[float, float]]:
    (line,) = [e for e in root.iter() if e.get("class") == kind]
    return [tuple(float(v) for v in pair.split(",")) for pair in line.get("points").split()]


def texts(root: ET.Element, kind: str | None = None) -> list[str]:
    return [
        "".join(t.itertext())
        for t in root.iterfind("svg:text", NS)
        if kind is None or t.get("class") == kind
    ]


def test_series_points_and_peak_marker():
    data = series(120)
    root = parse(render_svg(data, "Backup disk, next 4 months", "subtitle", 100_000_000))
    xy = points(root)
    assert len(xy) == len(data)
    assert [x for x, _ in xy] == sorted(x for x, _ in xy)  # one point a day, left to right
    top = min(y for _, y in xy)  # SVG y grows downwards: the peak is the smallest y
    (peak,) = [c for c in root.iterfind("svg:circle", NS) if c.get("class") == "peak"]
    assert (float(peak.get("cx")), float(peak.get("cy"))) == xy[40]
    assert float(peak.get("cy")) == top
    assert "Backup disk, next 4 months" in texts(root)
    assert "peak 50 MB on 2026-05-11" in texts(root)
    assert texts(root, "drive-label") == ["drive: 100 MB"]
    assert texts(root, "month") == ["Apr 2026", "May", "Jun", "Jul"]
    assert root.find("svg:title", NS).text == "Backup disk, next 4 months"


def test_peak_is_a_forecast_day_not_today():
    """Today's size before the first forget (a never-pruned history) is not the peak."""
    start = date(2026, 4, 1)
    data = [(start, 90_000_000)] + [(start + timedelta(days=d), 40_000_000 + d) for d in (1, 2, 3)]
    root = parse(render_svg(data, "t"))
    assert "peak 40 MB on 2026-04-04" in texts(root)


def test_drive_line_is_drawn_however_far_above_the_peak():
    data = series(30)
    for drive in (60_000_000, 2_000_000_000_000):
        root = parse(render_svg(data, "t", drive_bytes=drive, drive_label="your drive"))
        (line,) = [e for e in root.iter() if e.get("class") == "drive"]
        y = float(line.get("y1"))
        assert 84 <= y <= 500 - 76  # inside the plot
        assert texts(root, "drive-label") == [f"your drive: {format_bytes(drive)}"]
    root = parse(render_svg(data, "t"))
    assert not [e for e in root.iter() if e.get("class") == "drive"]


def test_past_and_band_share_the_time_axis():
    data = series(60)
    past = [(date(2026, 3, 1) + timedelta(days=d), 5_000_000 + 100_000 * d) for d in range(32)]
    low = [b - 1_000_000 * i // 60 for i, (_d, b) in enumerate(data)]
    high = [b + 2_000_000 * i // 60 for i, (_d, b) in enumerate(data)]
    root = parse(render_svg(data, "t", band=(low, high), past=past))
    history, forecast = points(root, "past"), points(root, "series")
    assert len(history) == 32
    assert history[-1][0] == forecast[0][0]  # the past ends where the forecast starts: today
    assert history[0][0] == 90  # the chart starts at the first night of the history
    band = points(root, "band")
    assert len(band) == 2 * len(data)
    upper, lower = band[: len(data)], band[len(data) :][::-1]
    assert all(u[1] <= f[1] <= lo[1] for u, f, lo in zip(upper, forecast, lower, strict=True))
    assert texts(root, "month")[0] == "Mar 2026"  # the year on the first label


def test_month_labels_of_a_long_forecast_never_overlap():
    start = date(2026, 3, 21)
    for days in (365, 730, 1825):
        data = [(start + timedelta(days=d), 1_000_000 * d) for d in range(days + 1)]
        root = parse(render_svg(data, "t"))
        labels = [t for t in root.iterfind("svg:text", NS) if t.get("class") == "month"]
        assert len(labels) >= 4
        spans = [
            (float(t.get("x")), CHAR_WIDTH * 12 * len(t.text) / 2) for t in labels
        ]  # (centre, half width)
        for (x1, w1), (x2, w2) in zip(spans, spans[1:], strict=False):
            assert x2 - x1 >= w1 + w2
        years = [t.text for t in labels if " " in t.text]
        assert years[0] == "Apr 2026" and all(y.startswith(("Jan ", "Apr ")) for y in years)


def test_month_ticks_by_span():
    assert month_ticks(date(2026, 3, 21), date(2026, 7, 2))[:2] == [
        (date(2026, 4, 1), "Apr 2026"),
        (date(2026, 5, 1), "May"),
    ]
    weeks = month_ticks(date(2026, 4, 1), date(2026, 4, 30))  # Wed 1 April: Mondays from the 6th
    assert weeks[0] == (date(2026, 4, 6), "6 Apr") and len(weeks) == 4
    assert len(month_ticks(date(2026, 4, 1), date(2026, 4, 7))) == 7


def test_title_is_escaped_and_fits():
    long = "Backup disk, next 12 months, policy: " + "10 business days + " * 6 + "<ends> & more"
    root = parse(render_svg(series(6), long))
    (title,) = [t for t in root.iterfind("svg:text", NS) if t.get("class") == "title"]
    assert title.text == long
    size = float(title.get("font-size"))
    assert 16 + CHAR_WIDTH * size * len(long) <= 960 - 16


def test_flat_series_and_empty_series():
    flat = [(date(2026, 1, 1) + timedelta(days=d), 0) for d in range(3)]
    assert len(points(parse(render_svg(flat, "flat")))) == 3
    with pytest.raises(ValueError):
        render_svg([], "nothing")


def test_units_and_steps():
    assert format_bytes(999) == "999 B"
    assert format_bytes(1_500_000_000) == "1.5 GB"
    assert format_bytes(250_000_000_000) == "250 GB"
    assert format_bytes(56_800_000) == "56.8 MB"
    assert nice_step(52_500_000) == 10_000_000
    assert nice_step(0) == 1.0
