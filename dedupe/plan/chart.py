"""The charts of `dedupe plan --chart` and `dedupe stats --chart`, drawn with matplotlib.

Guarantees:
- matplotlib is imported here, inside the functions, and only when a chart is asked for: `plan`
  without `--chart`, every other command and the rest of the package never import it (it costs
  about half a second). The Agg canvas is used directly (no pyplot, no global figure state), so
  drawing is safe in a server thread (`dedupe ui`).
- Pure: a function takes the numbers and returns the file's bytes (PNG or SVG); nothing here
  writes a file or reads a clock.
- SVG output is deterministic (fixed id salt, no date) and valid XML; its text is text (not
  glyph paths), so the title and labels can be searched and read by a screen reader. Its style
  attributes are turned into plain SVG attributes and the drawing's parts carry classes
  (`past`, `series`, `band`, `drive`, `peak`, `title`, `bars`, `unusual`): the page of
  `dedupe ui` places it inline under a Content-Security-Policy that forbids inline styles.
- One unit system with the text: both charts label sizes with `dedupe.units.format_bytes`
  (decimal: MB, GB, TB, as drives are sold and as every command prints them).
- Readable at a glance: a plain title shrunk (then wrapped) until it fits, month labels thinned
  until none overlap (one a month up to a year, every second or third month beyond), the drive
  line always drawn when a drive size is given (the axis stretches to it).
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import re
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dedupe.units import format_bytes

if TYPE_CHECKING:  # only for the type hints: the import itself happens inside the functions
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FORMATS",
    "ChartError",
    "ChartUnavailable",
    "chart_format",
    "check_target",
    "forecast_chart",
    "month_ticks",
    "nightly_bars",
    "render_svg",
]

FORMATS = {".png": "png", ".svg": "svg"}
SIZE_INCHES = (10.0, 5.6)
DPI = 110
MAX_MONTH_LABELS = 13
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SVG = "http://www.w3.org/2000/svg"
BLUE, GREY, RED, ORANGE = "#1f6fb2", "#555555", "#c0392b", "#e67e22"


class ChartError(ValueError):
    """A chart that cannot be drawn as asked (an unknown file type); the message says why."""


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed: no chart can be drawn on this machine."""


def chart_format(name: str) -> str:
    """ "png" or "svg" by the file name's suffix; ChartError for any other."""
    suffix = name[name.rfind(".") :].lower() if "." in name.rsplit("/", 1)[-1] else ""
    if suffix not in FORMATS:
        raise ChartError(
            f"cannot draw a chart as {suffix or 'a file without a suffix'!r}: "
            "give a file name ending in .png (a picture) or .svg (for a web page)"
        )
    return FORMATS[suffix]


def check_target(path: str) -> str:
    """The format of a chart to be written at `path`, checked before any work is done: the
    suffix, and that its folder exists and can be written (the one look at the file system
    here). ChartError says what is wrong and what to do."""
    fmt = chart_format(path)
    if importlib.util.find_spec("matplotlib") is None:  # looked up, not imported
        raise ChartUnavailable(
            "drawing a chart needs matplotlib, which is not installed here; install it "
            "(pip install matplotlib) or leave out --chart"
        )
    target = Path(path)
    if target.is_dir():
        raise ChartError(f"{path} is a folder: give a file name ending in .png or .svg")
    folder = target.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ChartError(
            f"cannot write {path}: the folder {folder} does not exist or is not writable; "
            "choose a folder you can write to"
        )
    return fmt


def month_ticks(first: date, last: date) -> list[tuple[date, str]]:
    """Month starts between `first` and `last` ("Apr", with the year on the first label and on
    every January), every k-th month so that at most `MAX_MONTH_LABELS` remain; for spans under
    75 days, Mondays ("6 Apr") or, under 15 days, every day."""
    span = (last - first).days
    if span > 75:
        months = []
        year, month = first.year, first.month - (first.day == 1)  # a 1st is a tick itself
        while True:
            month += 1
            if month > 12:
                year, month = year + 1, 1
            tick = date(year, month, 1)
            if tick > last:
                break
            months.append(tick)
        step = 1
        while len(months[::step]) > MAX_MONTH_LABELS:
            step += 1
        ticks: list[tuple[date, str]] = []
        for tick in months[::step]:
            label = _MONTHS[tick.month - 1]
            if not ticks or tick.year != ticks[-1][0].year:
                label += f" {tick.year}"
            ticks.append((tick, label))
        return ticks
    step = 7 if span > 14 else 1
    ordinal = first.toordinal()
    if step == 7:
        ordinal += (7 - first.weekday()) % 7
    days = []
    while ordinal <= last.toordinal():
        day = date.fromordinal(ordinal)
        days.append((day, f"{day.day} {_MONTHS[day.month - 1]}"))
        ordinal += step
    return days


@dataclass(frozen=True)
class ForecastData:
    """What the forecast chart shows (dates are local days; sizes in bytes)."""

    series: Sequence[tuple[date, int]]
    """The forecast, one point a day; the first is today."""
    title: str
    subtitle: str = ""
    drive_bytes: int | None = None
    drive_label: str = "drive"
    band: tuple[Sequence[int], Sequence[int]] | None = None
    """Low and high ends of the likely range, one per forecast day."""
    past: Sequence[tuple[date, int]] = ()


def _figure() -> tuple[Figure, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_INCHES, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig, fig.canvas


def forecast_figure(data: ForecastData) -> Figure:
    """The forecast drawn on a figure (the tests measure its labels)."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if not data.series:
        raise ValueError("nothing to draw: the series is empty")
    fig, _canvas = _figure()
    ax = fig.add_axes((0.1, 0.2, 0.86, 0.6))
    dates = [d for d, _b in data.series]
    days = [_x(d) for d in dates]
    sizes = [b for _d, b in data.series]
    if data.band:
        low, high = data.band
        band = ax.fill_between(
            days, low, high, color=BLUE, alpha=0.18, linewidth=0, label="likely range"
        )
        band.set_gid("band")
    if data.past:
        (past,) = ax.plot(
            [_x(d) for d, _b in data.past],
            [b for _d, b in data.past],
            color=GREY,
            linewidth=2,
            marker="o" if len(data.past) < 40 else None,
            markersize=3,
            label="measured (what the kept backups need)",
        )
        past.set_gid("past")
    (line,) = ax.plot(
        days, sizes, color=BLUE, linewidth=2, label="forecast (each night: backup, forget, gc)"
    )
    line.set_gid("series")
    today = ax.axvline(days[0], color="#999999", linestyle=":", linewidth=1)
    today.set_gid("today")
    forecast_days = data.series[1:] or data.series
    peak_day, peak_bytes = max(forecast_days, key=lambda p: (p[1], -p[0].toordinal()))
    (peak,) = ax.plot([_x(peak_day)], [peak_bytes], "o", color=RED, markersize=6)
    peak.set_gid("peak")
    first_day = min([dates[0], *(d for d, _b in data.past)])
    first = _x(first_day)
    top = max([*sizes, *(b for _d, b in data.past), *(data.band[1] if data.band else ()), 1])
    if data.drive_bytes is not None:
        top = max(top, data.drive_bytes)
        drive = ax.axhline(data.drive_bytes, color=RED, linestyle="--", linewidth=1.5)
        drive.set_gid("drive")
        label = ax.text(
            first,
            data.drive_bytes,
            f" {data.drive_label}: {format_bytes(data.drive_bytes)}",
            color=RED,
            va="bottom",
            ha="left",
            fontsize=10,
        )
        label.set_gid("drive-label")
    ax.set_ylim(0, top * 1.12)
    pad = max(1.0, round((days[-1] - first) * 0.015))
    ax.set_xlim(first, days[-1] + pad)  # the peak's marker on the last day stays whole
    ax.text(days[0], top * 1.1, " today", color="#777777", fontsize=8, va="top", ha="left")
    right = _x(peak_day) - first > 0.7 * max(1.0, days[-1] - first)
    note = ax.annotate(
        f"peak {format_bytes(peak_bytes)} on {peak_day.isoformat()}",
        (_x(peak_day), peak_bytes),
        xytext=(-8 if right else 8, 10),  # above the point: the forecast line stays seen
        textcoords="offset points",
        ha="right" if right else "left",
        va="bottom",
        fontsize=10,
        fontweight="bold",
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
    )
    note.set_gid("peak-label")
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: format_bytes(v) if v else "0"))
    _date_axis(ax, first_day, dates[-1])
    ax.grid(axis="y", color="#e4e4e4")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False, fontsize=9)
    _titles(fig, data.title, data.subtitle)
    return fig


def _date_axis(ax: Axes, first: date, last: date) -> None:
    ticks = month_ticks(first, last)
    ax.set_xticks([_x(d) for d, _l in ticks], [label for _d, label in ticks], fontsize=9)


def _x(day: date) -> float:
    """A day's place on the time axis: its ordinal (ticks and labels are set by hand)."""
    return float(day.toordinal())


def _titles(fig: Figure, title: str, subtitle: str) -> None:
    """The title shrunk from 15 to 11 points, then wrapped, until it fits the figure; the
    subtitle (plan's sentence) wrapped under it."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    width = fig.bbox.width * 0.96
    text = fig.text(0.02, 0.97, title, fontsize=15, fontweight="bold", va="top", ha="left")
    text.set_gid("title")
    size = 15.0
    while text.get_window_extent(renderer).width > width and size > 11:
        size -= 0.5
        text.set_fontsize(size)
    if text.get_window_extent(renderer).width > width:
        text.set_text(
            textwrap.fill(
                title, width=int(len(title) * width / text.get_window_extent(renderer).width)
            )
        )
    if subtitle:
        sub = fig.text(
            0.02, 0.89, textwrap.fill(subtitle, 130), fontsize=9, color="#444444", va="top"
        )
        sub.set_gid("subtitle")


def nightly_bars(
    nights: Sequence[tuple[datetime, int, bool]],
    title: str,
    fmt: str = "png",
    threshold: float | None = None,
    subtitle: str = "",
) -> bytes:
    """Bytes each backup added, one bar a backup (time, added bytes, unusual?). Unusual nights
    are red and labelled with their size and date; the threshold, when given, is a dashed line.
    The oldest backup is drawn grey and never judged: the first one holds everything."""
    from matplotlib.ticker import FuncFormatter

    if not nights:
        raise ValueError("nothing to draw: there are no backups")
    fig, _canvas = _figure()
    ax = fig.add_axes((0.1, 0.2, 0.86, 0.62))
    positions = list(range(len(nights)))
    colours = [
        GREY if i == 0 else RED if unusual else BLUE for i, (_t, _b, unusual) in enumerate(nights)
    ]
    bars = ax.bar(positions, [b for _t, b, _u in nights], color=colours, width=0.8)
    for i, bar in enumerate(bars):
        bar.set_gid(f"bar-{i}")
    for i, (when, added, unusual) in enumerate(nights):
        if unusual and i:
            mark = ax.annotate(
                f"{format_bytes(added)}\n{when:%d %b}",
                (i, added),
                xytext=(0, 4),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=9,
                color=RED,
                fontweight="bold",
            )
            mark.set_gid("unusual")
    if threshold is not None:
        line = ax.axhline(threshold, color=ORANGE, linestyle="--", linewidth=1)
        line.set_gid("threshold")
        ax.text(
            len(nights) - 0.5,
            threshold,
            "unusual above this ",
            color=ORANGE,
            ha="right",
            va="bottom",
            fontsize=9,
        )
    top = max([b for _t, b, _u in nights[1:]] or [b for _t, b, _u in nights])
    if len(nights) > 1:
        ax.set_ylim(0, max(top, threshold or 0, 1) * 1.25)  # the base may stick out: it is cut
    step = max(1, len(nights) // 12)
    ticks = positions[::step]
    ax.set_xticks(ticks, [f"{nights[i][0]:%d %b}" for i in ticks], fontsize=9)
    ax.set_xlim(-0.6, len(nights) - 0.4)
    ax.set_yticks(_nice_ticks(ax.get_ylim()[1], 1000))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: format_bytes(v) if v else "0"))
    ax.grid(axis="y", color="#e4e4e4")
    ax.spines[["top", "right"]].set_visible(False)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(color=GREY, label="oldest backup kept (the first holds everything)"),
            Patch(color=BLUE, label="a night's new data"),
            Patch(color=RED, label="unusually large night"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.1),
        ncol=3,
        frameon=False,
        fontsize=9,
    )
    _titles(fig, title, subtitle)
    return _save(fig, fmt)


def _nice_ticks(top: float, base: int) -> list[float]:
    """0 and about five round steps (1, 2, 2.5, 5 times a power of ten of the unit) up to `top`,
    the unit being the largest power of `base` below it."""
    unit = float(base) ** max(0, math.floor(math.log(max(top, 1.0), base)))
    raw = top / unit / 5
    power = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(f * power for f in (1, 2, 2.5, 5, 10) if f * power >= raw) * unit
    return [i * step for i in range(int(top // step) + 1)]


def forecast_chart(data: ForecastData, fmt: str = "png") -> bytes:
    """The forecast chart as the bytes of a PNG or SVG file."""
    return _save(forecast_figure(data), fmt)


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
    """The forecast chart as SVG text (what `dedupe ui` places in its page)."""
    data = ForecastData(series, title, subtitle, drive_bytes, drive_label, band, past)
    return forecast_chart(data, "svg").decode("utf-8")


def _save(fig: Figure, fmt: str) -> bytes:
    import matplotlib

    out = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "dedupe-plan", "svg.fonttype": "none"}):
        if fmt == "svg":
            fig.savefig(out, format="svg", metadata={"Date": None})
            return _plain_svg(out.getvalue())
        if fmt == "png":
            fig.savefig(out, format="png", metadata={"Software": None})
            return out.getvalue()
    raise ChartError(f"unknown chart format {fmt!r}: png or svg")


_CLASSED = {
    "past",
    "series",
    "band",
    "drive",
    "drive-label",
    "peak",
    "peak-label",
    "title",
    "subtitle",
    "today",
    "bars",
    "unusual",
    "threshold",
}


def _plain_svg(svg: bytes) -> bytes:
    """matplotlib's SVG with style attributes turned into presentation attributes (a page's
    Content-Security-Policy blocks inline styles, not attributes), its <style> element dropped,
    and `class` on the groups whose gid names a part of the chart."""
    ET.register_namespace("", _SVG)
    ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
    root = ET.fromstring(svg)
    for parent in list(root.iter()):
        for child in list(parent):
            if child.tag == f"{{{_SVG}}}style":
                parent.remove(child)
    for element in root.iter():
        gid = element.get("id")
        if gid is not None and gid in _CLASSED:
            element.set("class", gid)
        style = element.attrib.pop("style", None)
        if style:
            for name, value in _declarations(style):
                element.set(name, value)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>\n' + body + "\n").encode("utf-8")


_FONT = re.compile(r"(?:(bold|normal|italic)\s+)*([\d.]+)px\s+(.+)")


def _declarations(style: str) -> list[tuple[str, str]]:
    out = []
    for part in style.split(";"):
        name, _sep, value = part.partition(":")
        name, value = name.strip(), value.strip()
        if not name:
            continue
        if name == "font":  # the shorthand is no attribute: size and family apart
            match = _FONT.fullmatch(value)
            if match:
                if match.group(1) == "bold":
                    out.append(("font-weight", "bold"))
                out.append(("font-size", f"{match.group(2)}px"))
                out.append(("font-family", f"{match.group(3)}, sans-serif"))
            continue
        out.append((name, value))
    return out
