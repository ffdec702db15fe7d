"""The charts drawn with matplotlib (`dedupe.plan.chart`): valid files of the asked type, the
same bytes for the same numbers, the title and the drive label as text, month labels that never
overlap, the drive line however far above the peak, unusual nights marked, units as the text's."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import pytest

from dedupe.plan import chart
from dedupe.units import format_bytes

TITLE = "Backup disk, next 12 months, policy: 10 business days + month, quarter and year ends"


def series(days: int, start: date = date(2026, 3, 21)) -> list[tuple[date, int]]:
    # Rises to a peak on day 40, then falls and levels off: the peak is not the last point.
    return [
        (start + timedelta(days=d), 10_000_000 + 1_000_000 * min(d, 80 - d if d > 40 else d))
        for d in range(days + 1)
    ]


def data(days: int = 365, drive: int | None = 2_000_000_000_000) -> chart.ForecastData:
    points = series(days)
    past = [(points[0][0] - timedelta(days=20 - d), 5_000_000 + 250_000 * d) for d in range(21)]
    low = [round(b * 0.95) for _d, b in points]
    high = [round(b * (1 + d / 200)) for d, (_day, b) in enumerate(points)]
    return chart.ForecastData(
        points, TITLE, "A 2 TB drive does not fill within 365 days.", drive, "your drive",
        (low, high), past,
    )  # fmt: skip


def texts(root: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]


def classed(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if e.get("class") == name]


def test_svg_is_xml_with_the_title_the_drive_and_the_peak_as_text():
    svg = chart.forecast_chart(data(), "svg")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    words = texts(root)
    assert TITLE in words
    assert "your drive: 2 TB" in [w.strip() for w in words]
    assert "peak 50 MB on 2026-04-30" in words  # the peak of the forecast days, decimal units
    for part in ("past", "series", "band", "drive", "peak", "title"):
        assert classed(root, part), part
    # No inline style anywhere: the ui page's Content-Security-Policy forbids them.
    assert b"style=" not in svg and b"<style" not in svg
    assert svg == chart.forecast_chart(data(), "svg")  # deterministic: no date, fixed ids


def test_png_has_the_signature_and_the_size():
    png = chart.forecast_chart(data(), "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (
        round(chart.SIZE_INCHES[0] * chart.DPI),
        round(chart.SIZE_INCHES[1] * chart.DPI),
    )


@pytest.mark.parametrize("days", [30, 90, 365, 730, 1825])
def test_month_labels_and_title_never_overlap_and_fit(days):
    fig = chart.forecast_figure(data(days))
    renderer = fig.canvas.get_renderer()
    (ax,) = fig.axes
    boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
    assert len(boxes) >= 4
    for left, right in zip(boxes, boxes[1:], strict=False):
        assert right.x0 - left.x1 >= 4  # pixels between two labels
    (title,) = [t for t in fig.texts if t.get_gid() == "title"]
    box = title.get_window_extent(renderer)
    assert 0 <= box.x0 and box.x1 <= fig.bbox.width


def test_the_drive_line_is_drawn_however_far_above_the_peak():
    for drive in (60_000_000, 2_000_000_000_000):
        fig = chart.forecast_figure(data(90, drive))
        (ax,) = fig.axes
        (line,) = [a for a in ax.get_lines() if a.get_gid() == "drive"]
        assert line.get_ydata()[0] == drive
        assert ax.get_ylim()[1] > drive  # the axis stretches to it
    fig = chart.forecast_figure(data(90, None))
    assert not [a for a in fig.axes[0].get_lines() if a.get_gid() == "drive"]


def test_size_labels_use_the_text_units():
    fig = chart.forecast_figure(data(90, None))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text() != "0"]
    assert labels and all(label.endswith(" MB") for label in labels)
    assert format_bytes(40_000_000) in labels


def test_month_ticks_by_span():
    assert chart.month_ticks(date(2026, 3, 21), date(2026, 7, 2))[:2] == [
        (date(2026, 4, 1), "Apr 2026"),
        (date(2026, 5, 1), "May"),
    ]
    long = chart.month_ticks(date(2026, 3, 21), date(2031, 3, 21))
    assert len(long) <= chart.MAX_MONTH_LABELS
    assert long[0][1] == "Apr 2026"
    for (before, _label), (tick, label) in zip(long, long[1:], strict=False):
        assert label.endswith(f" {tick.year}") == (tick.year != before.year)  # the year turns
    weeks = chart.month_ticks(date(2026, 4, 1), date(2026, 4, 30))  # Mondays from the 6th
    assert weeks[0] == (date(2026, 4, 6), "6 Apr") and len(weeks) == 4


def test_unusual_nights_are_marked_and_the_base_is_grey():
    tz = UTC
    nights = [(datetime(2026, 3, 1, 23, tzinfo=tz), 30_000_000, False)] + [
        (datetime(2026, 3, 1 + d, 23, tzinfo=tz), 50_000_000 if d == 5 else 1_000_000, d == 5)
        for d in range(1, 10)
    ]
    root = ET.fromstring(chart.nightly_bars(nights, "What each backup added", "svg"))
    (mark,) = classed(root, "unusual")
    assert "".join(mark.itertext()).split() == ["50", "MB", "06", "Mar"]
    assert "What each backup added" in texts(root)
    png = chart.nightly_bars(nights, "t", "png", threshold=3_000_000)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_file_types_and_targets(tmp_path):
    assert chart.chart_format("a/plan.PNG") == "png"
    assert chart.chart_format("plan.svg") == "svg"
    for bad in ("plan.gif", "plan", "dir.png/plan"):
        with pytest.raises(chart.ChartError, match=r"\.png .*\.svg"):
            chart.chart_format(bad)
    assert chart.check_target(str(tmp_path / "x.svg")) == "svg"
    with pytest.raises(chart.ChartError, match="does not exist or is not writable"):
        chart.check_target(str(tmp_path / "missing" / "x.png"))
    (tmp_path / "d.png").mkdir()
    with pytest.raises(chart.ChartError, match="is a folder"):
        chart.check_target(str(tmp_path / "d.png"))


def test_nice_ticks_are_round_in_either_unit():
    assert chart._nice_ticks(17_000_000, 1000) == [0, 5e6, 10e6, 15e6]
    assert chart._nice_ticks(9_000_000_000, 1000) == [0, 2e9, 4e9, 6e9, 8e9]
    mib = 1 << 20
    assert chart._nice_ticks(17 * mib, 1024) == [0, 5 * mib, 10 * mib, 15 * mib]


def test_an_empty_chart_is_refused():
    with pytest.raises(ValueError):
        chart.forecast_chart(chart.ForecastData((), "t"), "png")
    with pytest.raises(ValueError):
        chart.nightly_bars([], "t")
