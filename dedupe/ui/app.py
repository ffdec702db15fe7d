"""The `dedupe ui` web application (Starlette): login, logout, the error pages, and the rules
every route follows.

The rules:
- Only `/login` and `/static/...` (the stylesheet and the script, which hold no data) answer
  without a session. Every other route with no valid session redirects to the login page (a
  page) or answers 401 (a download, the progress JSON), before anything is read.
- Every POST needs a valid CSRF token in its form, compared in constant time, and is refused
  when the browser says it comes from another site. The login form has its own token in a
  cookie of its own (double submit), so a login cannot be forged from another site either.
- The password arrives in a POST body only, is used once to unlock the repository and is never
  put in a page, a header, a log line or a file (the server's access log is off: URLs carry
  file names). See `dedupe.ui.sessions` for what a session keeps and why.
- An error becomes a page in words (what happened, what to do, the technical detail after),
  never a traceback.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dedupe.errors import DedupeError, NoRepository, WrongPassword
from dedupe.ui import routes, security
from dedupe.ui.config import UiConfig
from dedupe.ui.server import HERE, Ui
from dedupe.ui.sessions import Session

Endpoint = Callable[[Request], Awaitable[Response]]


# --- login and logout ------------------------------------------------------------------------


def login_form(ui: Ui, request: Request, message: str = "", status_code: int = 200) -> Response:
    session = ui.session_of(request)
    if session is not None and not message:
        return RedirectResponse("/status", status_code=303)
    # The token lives as long as the browser keeps its cookie: a second GET (a favicon
    # request redirected here, another tab) must not invalidate the form already shown.
    token = request.cookies.get(security.LOGIN_COOKIE, "")
    if not re.fullmatch(r"[0-9a-f]{48}", token):
        token = os.urandom(24).hex()
    response = ui.render(
        "login.html", request, None, status_code, login_token=token, message=message
    )
    ui.cookie(response, security.LOGIN_COOKIE, token)
    return response


async def login_page(request: Request) -> Response:
    ui: Ui = request.app.state.ui
    return login_form(ui, request)


async def login(request: Request) -> Response:
    ui: Ui = request.app.state.ui
    if not security.same_origin(request):
        return ui.problem(request, None, 403, "Refused", "This form did not come from this page.")
    form = await security.form(request)
    sent = (form or {}).get("csrf", "")
    expected = request.cookies.get(security.LOGIN_COOKIE, "")
    if form is None or not expected or not _same(sent, expected):
        return login_form(ui, request, "The login page had expired. Type the password again.", 403)
    secret = form.get("password", "").encode("utf-8", "surrogateescape")
    del form
    if not secret:
        return login_form(ui, request, "Type the backup password.", 400)
    try:
        session = await run_in_threadpool(ui.unlock, secret)
    except WrongPassword:
        return login_form(
            ui,
            request,
            "That password does not open the backups. Check it and try again (it is the "
            "password of the backup repository, as given when it was created).",
            401,
        )
    except NoRepository as exc:
        return login_form(
            ui,
            request,
            f"The backups cannot be found: {exc}. Check that the backup disk is connected.",
            503,
        )
    except DedupeError as exc:
        return login_form(ui, request, f"The backups could not be opened: {exc}", 503)
    finally:
        secret = b""
    response = RedirectResponse("/status", status_code=303)
    ui.cookie(response, security.SESSION_COOKIE, session.id)
    response.delete_cookie(security.LOGIN_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def logout(ui: Ui, request: Request, session: Session, form: dict[str, str]) -> Response:
    ui.sessions.end(session.id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(security.SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode())


# --- route wrappers --------------------------------------------------------------------------


def page(handler: Callable[..., Response]) -> Endpoint:
    """A GET route that needs a session: `handler(ui, request, session)` in a worker thread."""

    async def endpoint(request: Request) -> Response:
        ui: Ui = request.app.state.ui
        session = ui.session_of(request)
        if session is None:
            return ui.to_login(request)
        return await run_in_threadpool(ui.guard, handler, request, session)

    return endpoint


def action(handler: Callable[..., Response]) -> Endpoint:
    """A POST route that needs a session and its CSRF token:
    `handler(ui, request, session, form)` in a worker thread."""

    async def endpoint(request: Request) -> Response:
        ui: Ui = request.app.state.ui
        session = ui.session_of(request)
        if session is None:
            return ui.to_login(request)
        form = await security.form(request) if security.same_origin(request) else None
        if form is None or not session.csrf_ok(form.get("csrf")):
            return ui.problem(
                request,
                session,
                403,
                "Refused",
                "This form had expired or did not come from this page, so nothing was done. "
                "Go back, reload the page and try again.",
            )
        return await run_in_threadpool(ui.guard, handler, request, session, form)

    return endpoint


async def home(request: Request) -> Response:
    ui: Ui = request.app.state.ui
    where = "/status" if ui.session_of(request) is not None else "/login"
    return RedirectResponse(where, status_code=303)


async def not_found(request: Request, exc: Exception) -> Response:
    ui: Ui = request.app.state.ui
    session = ui.session_of(request)
    if request.url.path == "/favicon.ico":
        return PlainTextResponse("", status_code=404)
    if session is None:
        return ui.to_login(request)
    return ui.problem(request, session, 404, "No such page", "That page does not exist.")


async def server_error(request: Request, exc: Exception) -> Response:
    ui: Ui = request.app.state.ui
    print(f"dedupe ui: internal error: {type(exc).__name__}", file=sys.stderr)
    return ui.problem(
        request,
        None,
        500,
        "Something went wrong",
        "The page could not be shown. Try again; if it happens again, tell whoever looks "
        "after the backups.",
        type(exc).__name__,
    )


def create_app(config: UiConfig) -> Starlette:
    """The application for `config` (routes in `dedupe.ui.routes`)."""
    ui = Ui(config)
    app = Starlette(
        routes=[
            Route("/", home),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", action(logout), methods=["POST"]),
            *[Route(path, page(fn), methods=["GET"]) for path, fn in routes.PAGES],
            *[Route(path, action(fn), methods=["POST"]) for path, fn in routes.ACTIONS],
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        exception_handlers={404: not_found, 405: not_found, 500: server_error},
    )
    app.state.ui = ui
    app.add_middleware(security.SecurityHeaders, allowed_hosts=config.allowed_hosts)
    return app
