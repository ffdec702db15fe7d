"""One `dedupe ui` server's state: its configuration, its sessions, its templates, and how a
page handler's errors become pages in words (never a traceback)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from dedupe.errors import DedupeError, UsageError
from dedupe.repo.repository import Repository
from dedupe.run.children import Password
from dedupe.storage import open_storage
from dedupe.ui import security
from dedupe.ui.config import UiConfig
from dedupe.ui.sessions import Session, SessionStore

HERE = Path(__file__).resolve().parent


class Ui:
    """One server's state: its configuration, its sessions and its templates."""

    def __init__(self, config: UiConfig) -> None:
        self.config = config
        self.sessions = SessionStore(config.idle_seconds, config.clock)
        self.templates = Environment(
            loader=FileSystemLoader(str(HERE / "templates")),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.templates.filters["q"] = security.path_arg
        self.templates.filters["shown"] = security.display
        # One key derivation at a time: Argon2id takes hundreds of MiB; a burst of logins
        # must not take the server's memory (and each wrong try costs the guesser a derivation).
        self.login_lock = threading.Lock()

    # --- pages -------------------------------------------------------------------------------

    def render(
        self,
        template: str,
        request: Request,
        session: Session | None,
        status_code: int = 200,
        **values: Any,
    ) -> HTMLResponse:
        page = self.templates.get_template(template).render(
            csrf=session.csrf if session is not None else "",
            logged_in=session is not None,
            profile=self.config.profile,
            here=request.url.path,
            idle_minutes=round(self.config.idle_seconds / 60),
            **values,
        )
        # Names from the repository may hold bytes that are not UTF-8 (surrogates): shown as
        # replacement characters rather than failing the page.
        return HTMLResponse(page.encode("utf-8", "replace"), status_code=status_code)

    def problem(
        self,
        request: Request,
        session: Session | None,
        status_code: int,
        title: str,
        what: str,
        detail: str = "",
    ) -> HTMLResponse:
        return self.render(
            "error.html",
            request,
            session,
            status_code,
            title=title,
            what=what,
            detail=detail,
        )

    def guard(self, handler: Callable[..., Response], request: Request, *args: Any) -> Response:
        """Run a page handler; a dedupe error becomes a page in words, anything else a page
        that names the error's kind (the traceback goes to the server's log, not the page)."""
        session = args[0] if args and isinstance(args[0], Session) else None
        try:
            return handler(self, request, *args)
        except UsageError as exc:
            return self.problem(request, session, 400, "That did not work", str(exc))
        except DedupeError as exc:
            return self.problem(
                request,
                session,
                500,
                "The backups could not be read",
                "Something in the repository could not be read. Run 'dedupe check' on the "
                "server, or ask whoever looks after the backups.",
                str(exc),
            )
        except OSError as exc:
            where = f" ({os.fsdecode(exc.filename)})" if exc.filename else ""
            return self.problem(
                request,
                session,
                500,
                "The server could not do that",
                "A file or folder on the server could not be used.",
                f"{exc.strerror or exc}{where}",
            )

    # --- sessions ----------------------------------------------------------------------------

    def session_of(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(security.SESSION_COOKIE))

    def to_login(self, request: Request) -> Response:
        """No session: a page goes to the login page; a download, the progress JSON or a
        POST gets a bare 401 (no page a script could mistake for data)."""
        path = request.url.path
        if request.method == "GET" and not (
            path.startswith("/download/") or path.endswith("/progress")
        ):
            return RedirectResponse("/login", status_code=303)
        return PlainTextResponse("Log in first.", status_code=401)

    def cookie(self, response: Response, name: str, value: str) -> None:
        response.set_cookie(name, value, **security.cookie_args(self.config.secure_cookies))

    def child_password(self, secret: bytes) -> Password:
        """Where the status page's child processes get the repository's password: the
        profile's own file or command, else the server's DEDUPE_PASSWORD_* variables, else the
        password just typed (kept in memory for this session only)."""
        profile = self.config.profile
        if profile is not None:
            settings = profile.repository
            if settings.password_file is not None and os.access(settings.password_file, os.R_OK):
                return Password(file=settings.password_file)
            if settings.password_command is not None:
                return Password(command=settings.password_command)
        env = self.config.env
        inherited = {
            suffix: env[f"DEDUPE_PASSWORD{suffix}"]
            for suffix in ("_FILE", "_COMMAND", "")
            if env.get(f"DEDUPE_PASSWORD{suffix}")
        }
        if inherited:
            return Password(inherited=inherited)
        return Password(secret=secret)

    def unlock(self, secret: bytes) -> Session:
        """Open the repository with the typed password and start a session (WrongPassword,
        NoRepository or another DedupeError otherwise)."""
        with self.login_lock:
            storage = open_storage(self.config.repo_url, s3_endpoint=self.config.s3_endpoint)
            try:
                repo = Repository.open(storage, lambda: secret)
                names = frozenset(info.name for info in storage.list("index/"))
                _ = repo.index
            except BaseException:
                storage.close()
                raise
        needs_secret = self.child_password(secret)
        session = self.sessions.create(storage, repo, needs_secret)
        session.index_names = names
        return session
