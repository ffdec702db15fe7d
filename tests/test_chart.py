"""The hand-written SVG chart: valid XML, one point a day, the peak marked, readable labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest

from dedupe.plan.chart import format_bytes, nice_step, render_svg

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


def points(root: ET.Element) -> list[tuple[float, float]]:
    (line,) = [p for p in root.iterfind("svg:polyline", NS) if p.get("class") == "series"]
    return [tuple(float(v) for v in pair.split(",")) for pair in line.get("points").split()]


def test_series_points_and_peak_marker():
    data = series(120)
    root = parse(render_svg(data, "dedupe plan: --keep-last 3", "subtitle", 100_000_000))
    xy = points(root)
    assert len(xy) == len(data)
    assert [x for x, _ in xy] == sorted(x for x, _ in xy)  # one point a day, left to right
    top = min(y for _, y in xy)  # SVG y grows downwards: the peak is the smallest y
    (peak,) = [c for c in root.iterfind("svg:circle", NS) if c.get("class") == "peak"]
    assert (float(peak.get("cx")), float(peak.get("cy"))) == xy[40]
    assert float(peak.get("cy")) == top
    texts = ["".join(t.itertext()) for t in root.iterfind("svg:text", NS)]
    assert "dedupe plan: --keep-last 3" in texts
    assert "peak 50 MB on 2026-05-11" in texts
    assert any(t.startswith("drive to buy: 100 MB") for t in texts)
    assert "2026-05-01" in texts and "2026-07-01" in texts  # month ticks on the date axis
    assert root.find("svg:title", NS).text == "dedupe plan: --keep-last 3"


def test_title_is_escaped_and_short_spans_get_day_ticks():
    data = series(6)
    root = parse(render_svg(data, "a <b> & c", drive_bytes=None))
    texts = ["".join(t.itertext()) for t in root.iterfind("svg:text", NS)]
    assert "a <b> & c" in texts
    assert sum(t.startswith("2026-04-") for t in texts) == 7
    assert not [e for e in root.iter() if e.get("class") == "drive"]


def test_flat_series_and_empty_series():
    flat = [(date(2026, 1, 1) + timedelta(days=d), 0) for d in range(3)]
    assert len(points(parse(render_svg(flat, "flat")))) == 3
    with pytest.raises(ValueError):
        render_svg([], "nothing")


def test_units_and_steps():
    assert format_bytes(999) == "999 B"
    assert format_bytes(1_500_000_000) == "1.5 GB"
    assert format_bytes(250_000_000_000) == "250 GB"
    assert nice_step(52_500_000) == 10_000_000
    assert nice_step(0) == 1.0
