"""The forecast page's content: `dedupe plan`'s chart and sentence for the profile's policy.

The same steps as `dedupe plan --chart`: the repository's history from `dedupe.stats`
(`plan.history.history_from_stats`), the estimators and the night-by-night replay with forget
and gc (`plan.projection.forecast` and `forecast_band`, gc at its default 10 % unused, a 30 %
margin), the headline from `plan.drive.headline` and the SVG from `plan.chart.render_svg`, with
the drive line at the drive size the office types (or, without one, at the drive to buy).
Without a policy (or a profile) nothing is forgotten, as `plan` without keep rules forecasts.
The SVG has no script and no style attribute, so it is placed in the page as it is and the
page's Content-Security-Policy still forbids inline styles and scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

from dedupe import stats
from dedupe.errors import DedupeError
from dedupe.plan import chart, drive, projection
from dedupe.plan.history import history_from_stats
from dedupe.profile.model import Profile
from dedupe.repo.repository import Repository
from dedupe.retention import Policy
from dedupe.units import format_bytes

DAY_CHOICES = (90, 365, 730)
DEFAULT_DAYS = 365
MARGIN = 1.30
MAX_UNUSED = 0.10


@dataclass(frozen=True)
class ForecastView:
    headline: str
    title: str
    svg: str
    today_bytes: str
    peak: str
    recommended: str
    policy_text: str
    notes: tuple[str, ...]


def parse_drive(text: str | None) -> tuple[int | None, str | None]:
    """(drive bytes or None, an error message for the page or None)."""
    if not text or not text.strip():
        return None, None
    try:
        return drive.parse_drive_size(text.strip()), None
    except drive.SizeError as exc:
        return None, f"The drive size {text!r} was not understood: {exc}"


def build(
    repo: Repository, profile: Profile | None, days: int, drive_bytes: int | None
) -> ForecastView:
    """The forecast for `days` nights (DedupeError when there is nothing to forecast from)."""
    policy = profile.policy if profile is not None and profile.policy is not None else Policy()
    damaged: list[str] = []
    history, left_out = history_from_stats(stats.collect(repo, damaged))
    if not history.snapshots:
        raise DedupeError(
            "There are no backups yet, so there is nothing to forecast from. The forecast "
            "appears after the first nightly backups."
        )
    estimates = projection.estimate_groups(history)
    forecast = projection.forecast(
        history, policy, days, margin=MARGIN, estimates=estimates, max_unused=MAX_UNUSED
    )
    band = projection.forecast_band(
        history, policy, days, estimates=estimates, max_unused=MAX_UNUSED
    )
    series = forecast.series
    full = early = None
    if drive_bytes is not None:
        full = drive.full_date(series, drive_bytes)
        early_day = drive.days_until_full(band[1], drive_bytes)
        early = None if early_day is None else series[early_day].day
    headline = drive.headline(
        today_bytes=series[0].stored_bytes,
        peak_bytes=forecast.peak.stored_bytes,
        peak_day=forecast.peak.day,
        days=days,
        recommended_bytes=forecast.drive_bytes,
        drive_bytes=drive_bytes,
        full_day=full,
        start=series[0].day,
        early_full_day=early,
    )
    title = _title(policy, forecast.pruned, days)
    svg = chart.render_svg(
        [(p.day, p.stored_bytes) for p in series],
        title,
        headline,
        drive_bytes if drive_bytes is not None else forecast.drive_bytes,
        band=band,
        past=projection.past_sizes(history),
        drive_label="your drive" if drive_bytes is not None else "drive to buy",
    )
    notes = [
        f"Backup {s.short_id()} is left out: its date {s.time.date()} is outside the years a "
        "forecast can use."
        for s in left_out
    ] + [f"{text} (left out of the forecast; run 'dedupe check')" for text in damaged]
    return ForecastView(
        headline=headline,
        title=title,
        svg=svg[svg.find("<svg") :],
        today_bytes=format_bytes(series[0].stored_bytes),
        peak=f"{format_bytes(forecast.peak.stored_bytes)} around "
        f"{drive.month_words(forecast.peak.day)}",
        recommended=format_bytes(forecast.drive_bytes),
        policy_text=drive.policy_words(policy, forecast.pruned),
        notes=tuple(notes),
    )


def _title(policy: Policy, pruned: bool, days: int) -> str:
    """As `dedupe plan` titles its chart."""
    months = round(days / projection.DAYS_PER_MONTH)
    span = f"next {months} months" if days >= 60 else f"next {days} days"
    return f"Backup disk, {span}, policy: {drive.policy_words(policy, pruned)}"
