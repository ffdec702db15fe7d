"""Forecasting the repository's size under a retention policy, and its chart.

`history` turns `dedupe.stats` numbers into a `History`; `estimate` measures what the history
says (nightly additions, how long a night's data and the shared data stay referenced);
`projection` replays the policy night by night (`forecast`, `forecast_band`, `past_sizes`),
with `gcreplay` deciding what each night's forget and gc leave stored; `margin` holds the margin
measured on replayed histories (the drive to buy, the likely range);
`drive` answers the drive question (`parse_drive_size`, `days_until_full`, `headline`);
`chart` draws it with matplotlib (imported only when a chart is asked for) as PNG or SVG bytes,
and the per-night bars of `stats --chart`. Everything here is pure (no I/O, no clock) but
`simulate`, which reads a folder once to size a drive before there is a history
(`plan --simulate`).
"""
