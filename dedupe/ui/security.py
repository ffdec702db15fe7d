"""The web page's defences that do not depend on a page: headers, the Host check, cookies,
forms and query strings read safely.

- Every response carries a Content-Security-Policy that allows scripts, styles and images
  only from this server (no inline script, no other origin, no framing), `nosniff`,
  `no-referrer` (a URL can hold a file name: it must not leak to another site) and
  `Cache-Control: no-store` (pages with patient file names are not kept in the browser's cache).
- A request whose Host header is not one of the server's own names is refused (a DNS
  rebinding page could otherwise talk to a loopback server under its own name).
- A state-changing request (POST) must come from this server's pages: an `Origin` header that
  names another site is refused before the CSRF token is even looked at.
- Forms are read as `application/x-www-form-urlencoded` bodies of at most MAX_FORM_BYTES; query
  strings and form values are decoded with `surrogateescape`, so a file name that is not UTF-8
  travels through a link and back to the same bytes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, unquote_to_bytes

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "dedupe_session"
LOGIN_COOKIE = "dedupe_login"  # the login form's own CSRF token (double submit)
MAX_FORM_BYTES = 64 * 1024

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


class SecurityHeaders:
    """ASGI middleware: refuse unknown Host headers; add the headers above to every response
    (and `no-store` unless the response set its own Cache-Control)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed = {host.lower() for host in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            if host not in self.allowed:
                response = PlainTextResponse(
                    "This address is not one this dedupe page answers to. Open it as "
                    f"http://{sorted(self.allowed)[0]}/ instead.",
                    status_code=400,
                )
                await _with_headers(response, scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _value in headers}
                headers.extend(h for h in HEADERS if h[0] not in names)
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _with_headers(response: Any, scope: Scope, receive: Receive, send: Send) -> None:
    response.headers.update({name.decode(): value.decode() for name, value in HEADERS})
    await response(scope, receive, send)


def query(request: Request) -> dict[str, str]:
    """The query string, values decoded with surrogateescape (last value of a name wins)."""
    raw = request.scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw, encoding="utf-8", errors="surrogateescape"))


async def form(request: Request) -> dict[str, str] | None:
    """The posted form, or None when it is not a form or is too large."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for piece in request.stream():
        body += piece
        if len(body) > MAX_FORM_BYTES:
            return None
    return dict(parse_qsl(body.decode("latin-1"), encoding="utf-8", errors="surrogateescape"))


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site. Modern browsers send
    Sec-Fetch-Site (a header no page can set): only `same-origin` (or `none`, typed by the
    user) passes, so another port or another site on the same machine is refused too, and a
    TLS reverse proxy that changes the Host header does not matter. Without it, an Origin
    header must name this server; a request with neither is not from a browser's page."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin.lower() in (f"http://{host}".lower(), f"https://{host}".lower())


def cookie_args(secure: bool) -> Mapping[str, Any]:
    """How both cookies are set: invisible to scripts, never sent by another site's request."""
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/"}


def path_arg(path: bytes) -> str:
    """A snapshot path as a query value (raw bytes percent-encoded, '/' kept readable)."""
    return quote(path, safe="/")


def path_from(text: str | None) -> bytes:
    """The bytes of a path that came back through `query` or `form`."""
    return os.fsencode(text or "/")


def form_path(text: str | None) -> bytes:
    """The bytes of a path sent back in a form's hidden field (written there by `path_arg`)."""
    return unquote_to_bytes(text or "/")


def display(name: bytes | str) -> str:
    """A file name for the page: bytes that are not UTF-8 shown as the replacement character
    (the link still carries the exact bytes)."""
    if isinstance(name, str):
        name = os.fsencode(name)
    return name.decode("utf-8", "replace")
