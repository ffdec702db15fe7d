"""Forecasting the repository's size under a retention policy, and its chart.

`history` turns `dedupe.stats` numbers into a `History`; `estimate` measures what the history
says (nightly additions, how long a night's data and the shared data stay referenced);
`projection` replays the policy night by night (`forecast`, `forecast_band`, `past_sizes`);
`drive` answers the drive question (`parse_drive_size`, `days_until_full`, `headline`);
`chart` draws it all as SVG. Everything here is pure: no I/O, no clock.
"""
