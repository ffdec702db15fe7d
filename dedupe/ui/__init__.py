"""`dedupe ui`: a local web page for the office (status, the retention calendar, the drive
forecast, browse, download and restore), on Starlette with Jinja2 templates and one small
script, all served from this package (no CDN, no build step). Installed with the `ui` extra.

- `config`: what a server serves (`UiConfig`, built by `dedupe.cli.cmd_ui`).
- `app`: the application (`create_app`), login and logout, and the rules every route follows
  (a session before any data, a CSRF token on every POST).
- `server`: one server's state, page rendering and error pages; `sessions`: who is logged in
  and what a session keeps in memory (the unlocked repository, never the password on disk);
  `security`: headers, the Host check, cookies, forms and query strings read safely.
- `routes`: the pages behind the login; their content comes from `status`, `calendar`,
  `forecast`, `browse` and `restorejob`, each over the library code of its command.
"""

from dedupe.ui.app import create_app
from dedupe.ui.config import UiConfig

__all__ = ["UiConfig", "create_app"]
