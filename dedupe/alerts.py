"""Alerts: one message to every URL of the profile's `[alerts]`, through Apprise.

Apprise (the notification library borgmatic uses) turns one URL into email (`mailto://`,
`mailtos://`), Teams, Slack, ntfy, a JSON webhook (`json://`) and about a hundred more services.

What `send_alert` guarantees:
- It never raises and never stops the caller: an unreachable server, a refused login or a URL
  Apprise does not know becomes one line in the returned list of problems, and the other URLs
  are still tried. The nightly job goes on and reports those lines.
- No secret leaves it. An alert URL holds credentials (`mailto://user:password@host`, tokens in
  the path or the query of most services), so a URL is named only by its scheme and host
  (`mailto://mail.example.net`, or its position in the list when the "host" is a token), and
  every part of every URL that may be secret is replaced by `***` in the problems, and in the
  title and body too, in case a message quotes one. Apprise's own log records, which can hold
  the URL, are collected here (not passed to the program's log) and only used scrubbed.
- Apprise writes nothing to disk (memory-only persistent store) and loads no plugin files.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise

Level = Literal["failure", "warning", "success"]
_NOTIFY_TYPES = {
    "failure": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "success": apprise.NotifyType.SUCCESS,
}
# Query keys whose values are not secret (left readable in a problem's text).
_PLAIN_QUERY_KEYS = frozenset(
    {"to", "from", "cc", "bcc", "mode", "format", "overflow", "method", "name", "smtp", "port"}
    | {"priority", "retry", "wait", "optional", "verify", "lang", "cto", "rto", "timeout"}
)
_MIN_FRAGMENT = 3  # shorter path or query parts are not scrubbed (they would garble the text)
_MAX_DETAIL = 300  # characters of Apprise's explanation kept in a problem
_HIDDEN = "***"


def send_alert(urls: Sequence[str], title: str, body: str, level: Level) -> list[str]:
    """Send `title` and `body` to every URL; the problems (one line per URL that failed,
    naming it by scheme and host only), empty when every URL took the message."""
    return [problem for problem in send_each(urls, title, body, level) if problem is not None]


def send_each(urls: Sequence[str], title: str, body: str, level: Level) -> list[str | None]:
    """`send_alert`, answering for each URL in order: None when it took the message, else the
    problem."""
    notify_type = _NOTIFY_TYPES[level]
    secrets = secret_fragments(urls)
    title, body = redact(title, urls, secrets), redact(body, urls, secrets)
    results: list[str | None] = []
    for number, url in enumerate(urls, 1):
        try:
            problem = _send_one(url, title, body, notify_type)
        except Exception as exc:  # a plugin's bug must not cost the night's report
            problem = f"Apprise failed ({type(exc).__name__}: {exc})"
        if problem is None:
            results.append(None)
            continue
        results.append(
            redact(
                f"the alert to {describe_url(url, number)} was not sent: {problem}. Check "
                "that URL in the profile's [alerts] urls, and that the service can be "
                "reached from this machine",
                urls,
                secrets,
            )
        )
    return results


def _send_one(url: str, title: str, body: str, notify_type: apprise.NotifyType) -> str | None:
    """None when the service took the message, else why not (not yet scrubbed)."""
    with _QuietLibraries() as log:
        asset = apprise.AppriseAsset(
            app_id="dedupe",
            app_desc="dedupe backups",
            plugin_paths=[],
            storage_mode=apprise.PersistentStoreMode.MEMORY,
        )
        notifier = apprise.Apprise(asset=asset)
        if not notifier.add(url):
            why = log.explanation()
            if not why or why.startswith("Unparseable URL"):
                return "Apprise does not know this kind of URL (is the scheme spelled right?)"
            return f"Apprise cannot use this URL: {why}"
        sent = bool(notifier.notify(title=title, body=body, notify_type=notify_type))
    if sent:
        return None
    return log.explanation() or "the service did not accept the message"


# Libraries that log URLs (with their tokens and masked passwords) while Apprise sends.
_LOGGERS = ("apprise", "urllib3", "requests", "requests_oauthlib")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


class _QuietLibraries(logging.Handler):
    """The log records of Apprise and the HTTP libraries while one URL is served, kept here
    instead of the program's log (they hold URLs): the warnings, and the low-level cause (a
    socket error). A URL inside a record is never kept, not even Apprise's masked form (it
    shows a password's first and last characters)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.warnings: list[str] = []
        self.causes: list[str] = []
        self._loggers = [logging.getLogger(name) for name in _LOGGERS]
        self._saved = [(logger.level, logger.propagate) for logger in self._loggers]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = _URL_IN_TEXT.sub("(the URL)", record.getMessage())
        except Exception:
            return
        if record.name.split(".")[0] != "apprise":
            return
        if record.levelno >= logging.WARNING:
            self.warnings.append(text)
        elif re.search(r"Exception|Errno|Response Details|refused|timed out|\(\d{3}, b", text):
            self.causes.append(text)

    def explanation(self) -> str:
        """Apprise's last warning, and the socket-level cause in a few words when it has one
        ('[Errno 111] Connection refused', 'timed out')."""
        parts = self.warnings[-2:]
        for cause in reversed(self.causes):
            answer = re.search(r"\((\d{3}), b['\"]([^'\"]*)['\"]\)", cause)  # (535, b'...')
            short = re.search(
                r"\[Errno -?\d+\] [^\"'()]+|timed out|Name or service not known", cause
            )
            if answer is not None:
                parts.append(f"(the server answered: {answer[1]} {answer[2].strip()})")
                break
            if short is not None:
                parts.append(f"({short[0].strip()})")
                break
        text = " ".join(" ".join(parts).split())
        return text[:_MAX_DETAIL]

    def __enter__(self) -> _QuietLibraries:
        for logger in self._loggers:
            logger.addHandler(self)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        for logger, (level, propagate) in zip(self._loggers, self._saved, strict=True):
            logger.removeHandler(self)
            logger.setLevel(level)
            logger.propagate = propagate


# --- naming URLs without their secrets --------------------------------------------------------


def describe_url(url: str, number: int) -> str:
    """'mailto://mail.example.net': scheme and host only; 'slack:// (URL 2 of the profile)'
    when the host part is not a host name (most services put a token there)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return f"URL {number} of the profile"
    scheme = parts.scheme
    if not scheme:
        return f"URL {number} of the profile"
    if _looks_like_host(host):
        return f"{scheme}://{host}"
    return f"{scheme}:// (URL {number} of the profile)"


def _looks_like_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return bool(re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", host)) and not host.isdigit()


def secret_fragments(urls: Sequence[str]) -> list[str]:
    """Every part of the URLs that may be secret: the whole URL, user, password, a host that
    is not a host name, path parts and query values (but harmless keys such as `to`), in
    their written and decoded forms, longest first."""
    found: set[str] = set()
    for url in urls:
        found.add(url)
        try:
            parts = urlsplit(url)
            user, password, host = parts.username, parts.password, parts.hostname or ""
        except ValueError:
            continue
        if password:
            found.add(password)  # a password is hidden however short
        for piece in (user or "", parts.netloc if not _looks_like_host(host) else ""):
            found.add(piece)
        for segment in parts.path.split("/"):
            found.add(segment)
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key.lower() not in _PLAIN_QUERY_KEYS:
                found.add(value)
        found.add(parts.fragment)
    expanded = set(found) | {unquote(piece) for piece in found}
    keep = {
        piece
        for piece in expanded
        if len(piece) >= _MIN_FRAGMENT or (piece and _is_password(piece, urls))
    }
    return sorted(keep, key=len, reverse=True)


def _is_password(piece: str, urls: Sequence[str]) -> bool:
    for url in urls:
        try:
            password = urlsplit(url).password
        except ValueError:
            continue
        if password and piece in (password, unquote(password)):
            return True
    return False


def redact(text: str, urls: Sequence[str], secrets: Sequence[str]) -> str:
    """`text` with each whole URL replaced by its name (`describe_url`), then scrubbed."""
    for number, url in sorted(enumerate(urls, 1), key=lambda item: -len(item[1])):
        if url:
            text = text.replace(url, describe_url(url, number))
    return scrub(text, secrets)


def scrub(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret fragment replaced by '***'."""
    for piece in secrets:
        if piece:
            text = text.replace(piece, _HIDDEN)
    return text
