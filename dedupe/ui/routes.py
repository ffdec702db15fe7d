"""The pages behind the login: each handler gets the server (`Ui`), the request and the live
session (and, for a POST, its checked form), and runs in a worker thread.

| route | method | needs |
| --- | --- | --- |
| /status | GET | session |
| /calendar?source=N&month=YYYY-MM | GET | session |
| /forecast?days=N&drive=SIZE | GET | session |
| /browse | GET | session |
| /browse/{snapshot}?path=P | GET | session |
| /find?q=GLOB | GET | session |
| /download/{snapshot}?path=P | GET | session (401 without) |
| /restore/{snapshot}?path=P | GET | session (the form) |
| /restore/{snapshot}/preview | POST | session + CSRF (the dry run to confirm) |
| /restore/{snapshot}/start | POST | session + CSRF |
| /jobs/{job} | GET | session (the restore's progress page) |
| /jobs/{job}/progress | GET | session (its JSON, polled by ui.js; 401 without) |
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from dedupe.errors import DedupeError, UsageError
from dedupe.run.children import Children
from dedupe.run.state import State, state_dir
from dedupe.ui import browse, calendar, forecast, restorejob, status
from dedupe.ui.restorejob import MODE_WORDS, RestoreJob
from dedupe.ui.security import display, form_path, path_arg, path_from, query
from dedupe.ui.server import Ui
from dedupe.ui.sessions import Session


def status_page(ui: Ui, request: Request, session: Session) -> Response:
    repo = session.current_repo()
    now = datetime.now().astimezone()
    profile = ui.config.profile
    if profile is not None and session.child_password is not None:
        root = ui.config.state_root or state_dir(ui.config.env)
        state = State(root, profile.path)
        children = Children(ui.config.env, ui.config.child_command)
        view = status.profile_status(profile, state, children, session.child_password, now)
    else:
        view = status.repository_status(repo, ui.config.repo_url, now)
    return ui.render(
        "status.html",
        request,
        session,
        view=view,
        steps=status.step_rows(view.last_run),
        checked=now.strftime("%a %d %b %Y, %H:%M"),
    )


def calendar_page(ui: Ui, request: Request, session: Session) -> Response:
    args = query(request)
    try:
        source = int(args.get("source", "0"))
    except ValueError:
        source = 0
    view = calendar.build(
        session.current_repo(), ui.config.profile, source, calendar.parse_month(args.get("month"))
    )
    return ui.render("calendar.html", request, session, view=view)


def forecast_page(ui: Ui, request: Request, session: Session) -> Response:
    args = query(request)
    try:
        days = int(args.get("days", forecast.DEFAULT_DAYS))
    except ValueError:
        days = forecast.DEFAULT_DAYS
    if days not in forecast.DAY_CHOICES:
        days = forecast.DEFAULT_DAYS
    drive_text = args.get("drive", "")
    drive_bytes, problem = forecast.parse_drive(drive_text)
    repo = session.current_repo()
    key = ("forecast", days, drive_bytes)
    view = session.memo.get(key)
    if view is None:
        try:
            view = forecast.build(repo, ui.config.profile, days, drive_bytes)
        except DedupeError as exc:
            if not isinstance(exc, UsageError) and "no backups yet" not in str(exc):
                raise
            problem = str(exc)
        else:
            session.memo[key] = view
    return ui.render(
        "forecast.html",
        request,
        session,
        view=view,
        days=days,
        choices=forecast.DAY_CHOICES,
        drive=drive_text,
        problem=problem,
    )


def snapshots_page(ui: Ui, request: Request, session: Session) -> Response:
    damaged: list[str] = []
    rows = browse.snapshots(session.current_repo(), damaged)
    return ui.render("snapshots.html", request, session, rows=rows, damaged=damaged)


def folder_page(ui: Ui, request: Request, session: Session) -> Response:
    repo = session.current_repo()
    snap = browse.snapshot(repo, request.path_params["snapshot"])
    path = path_from(query(request).get("path"))
    full, entries = browse.folder(repo, snap, path)
    crumbs = _crumbs(full)
    return ui.render(
        "folder.html",
        request,
        session,
        snap=browse.snapshot_row(snap),
        path=full,
        is_root=full == b"/",
        crumbs=crumbs,
        entries=entries,
    )


def find_page(ui: Ui, request: Request, session: Session) -> Response:
    glob = query(request).get("q", "").strip()
    rows: list[browse.Found] = []
    total = searched = 0
    damaged: list[str] = []
    problem = ""
    if glob:
        try:
            rows, total, searched = browse.search(session.current_repo(), glob, damaged)
        except UsageError as exc:
            problem = str(exc)
    return ui.render(
        "find.html",
        request,
        session,
        glob=glob,
        rows=rows,
        total=total,
        searched=searched,
        damaged=damaged,
        problem=problem,
        limit=browse.MAX_MATCHES,
    )


def download(ui: Ui, request: Request, session: Session) -> Response:
    repo = session.current_repo()
    snap = browse.snapshot(repo, request.path_params["snapshot"])
    full, node = browse.file_node(repo, snap, path_from(query(request).get("path")))
    name = browse.download_name(full)
    quoted = quote(os.fsencode(name), safe="")
    plain = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name)
    return StreamingResponse(
        browse.stream(repo, node),
        media_type="application/octet-stream",
        headers={
            "content-length": str(node.size),
            "content-disposition": f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quoted}",
        },
    )


def restore_form(ui: Ui, request: Request, session: Session) -> Response:
    repo = session.current_repo()
    snap = browse.snapshot(repo, request.path_params["snapshot"])
    path = path_from(query(request).get("path"))
    full, entries = browse.folder(repo, snap, path)  # a folder, or UsageError
    return ui.render(
        "restore.html",
        request,
        session,
        snap=browse.snapshot_row(snap),
        path=full,
        count=len(entries),
        modes=MODE_WORDS,
        target="",
        mode="if-changed",
        problem="",
    )


def restore_preview(ui: Ui, request: Request, session: Session, form: dict[str, str]) -> Response:
    repo = session.current_repo()
    snap = browse.snapshot(repo, request.path_params["snapshot"])
    path, _entries = browse.folder(repo, snap, form_path(form.get("path")))
    values: dict[str, Any] = {
        "snap": browse.snapshot_row(snap),
        "path": path,
        "modes": MODE_WORDS,
    }
    try:
        mode = restorejob.check_mode(form.get("mode"))
        target = restorejob.check_target(form.get("target", ""))
    except UsageError as exc:
        return ui.render(
            "restore.html",
            request,
            session,
            status_code=400,
            count=None,
            target=form.get("target", ""),
            mode=form.get("mode", "if-changed"),
            problem=str(exc),
            **values,
        )
    plan = restorejob.dry_run(repo, snap, path, target, mode)
    landing = os.path.join(target, display(path).lstrip("/"))
    return ui.render(
        "restore_confirm.html",
        request,
        session,
        plan=plan,
        target=target,
        mode=mode,
        landing=landing,
        **values,
    )


def restore_start(ui: Ui, request: Request, session: Session, form: dict[str, str]) -> Response:
    repo = session.current_repo()
    snap = browse.snapshot(repo, request.path_params["snapshot"])
    path, _entries = browse.folder(repo, snap, form_path(form.get("path")))
    mode = restorejob.check_mode(form.get("mode"))
    target = restorejob.check_target(form.get("target", ""))
    if form.get("confirm") != "yes":
        raise UsageError("The restore was not confirmed, so nothing was written.")
    job = restorejob.start(repo, session, snap, path, target, mode)
    session.jobs[job.id] = job
    return RedirectResponse(f"/jobs/{job.id}", status_code=303)


def job_page(ui: Ui, request: Request, session: Session) -> Response:
    job = _job(session, request)
    return ui.render(
        "job.html",
        request,
        session,
        job=job,
        state=job.as_json(),
        snap=browse.snapshot_row(job.snapshot),
    )


def job_progress(ui: Ui, request: Request, session: Session) -> Response:
    return JSONResponse(_job(session, request).as_json())


def _job(session: Session, request: Request) -> RestoreJob:
    job = session.jobs.get(request.path_params["job"])
    if not isinstance(job, RestoreJob):
        raise UsageError(
            "There is no such restore in this session (it may have been started "
            "before you last logged in)."
        )
    return job


def _crumbs(full: bytes) -> list[tuple[str, str]]:
    """(name, path query value) for each folder on the way to `full`, the root first."""
    crumbs = [("/", path_arg(b"/"))]
    parts = [p for p in full.split(b"/") if p]
    for i, part in enumerate(parts):
        crumbs.append((display(part), path_arg(b"/" + b"/".join(parts[: i + 1]))))
    return crumbs


Handler = Callable[..., Response]
PAGES: list[tuple[str, Handler]] = [
    ("/status", status_page),
    ("/calendar", calendar_page),
    ("/forecast", forecast_page),
    ("/browse", snapshots_page),
    ("/browse/{snapshot}", folder_page),
    ("/find", find_page),
    ("/download/{snapshot}", download),
    ("/restore/{snapshot}", restore_form),
    ("/jobs/{job}", job_page),
    ("/jobs/{job}/progress", job_progress),
]
ACTIONS: list[tuple[str, Handler]] = [
    ("/restore/{snapshot}/preview", restore_preview),
    ("/restore/{snapshot}/start", restore_start),
]
