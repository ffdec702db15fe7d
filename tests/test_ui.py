"""`dedupe ui` in-process (Starlette's TestClient) on a real repository made by the real CLI:
every route refuses without a session, the login and every POST need their CSRF token, a
session times out, the calendar agrees with `forget --dry-run`, the status page shows the
profile's destinations and last run, downloads come back byte for byte, restores land under the
target and the target is checked as `restore` checks it. (The same pages in a real browser:
tests/test_ui_browser.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the ui extra (starlette) is not installed")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2")

from starlette.testclient import TestClient  # noqa: E402

from dedupe.profile import load_profile  # noqa: E402
from dedupe.run.state import RunRecord, State  # noqa: E402
from dedupe.ui import UiConfig, create_app  # noqa: E402
from dedupe.ui.browse import stream  # noqa: E402
from dedupe.ui.sessions import Session  # noqa: E402
from tests.clitools import ENTRY, ROOT, initialized_cli  # noqa: E402
from tests.support import PASSWORD, make_tree, open_repo  # noqa: E402

TIMES = [f"2026-03-0{day}T22:00:00+00:00" for day in (2, 3, 4, 5, 6)]
ID = re.compile(r"[0-9a-f]{64}")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A repository with five nightly snapshots of one folder (the first held), a profile with
    a policy, a password file and a drive that is not plugged in, and a recorded run."""
    tmp = tmp_path_factory.mktemp("ui")
    cli = initialized_cli(tmp)
    src = tmp / "practice"
    make_tree(str(src))
    (src / "letters").mkdir(exist_ok=True)
    (src / "letters" / "smith.txt").write_bytes(b"Dear Mrs Smith,\n" * 1000)
    with open(os.fsencode(src / "letters") + b"/caf\xe9.txt", "wb") as odd:
        odd.write(b"a name that is not UTF-8\n")
    ids = [cli("snapshot", "--json", "--time", t, str(src)).json()["id"] for t in TIMES]
    cli("hold", ids[0], "--reason", "tax audit")
    password_file = tmp / "password"
    password_file.write_text(PASSWORD)
    profile_path = tmp / "dedupe.toml"
    profile_path.write_text(
        f'[repository]\nurl = "{cli.repo}"\npassword-file = "{password_file}"\n\n'
        f'[[source]]\nname = "documents"\npaths = ["{src}"]\n\n'
        "[policy]\nkeep-last = 2\n\n"
        f'[[drive]]\nname = "monday"\nmount = "{tmp}/media/monday"\n'
        f'url = "{tmp}/media/monday/repo"\nweekdays = ["mon"]\n'
    )
    state_root = tmp / "state"
    profile = load_profile(profile_path)
    State(state_root, profile.path).save_run(
        RunRecord(
            time="2026-03-06T23:00:00+00:00",
            ok=True,
            exit=3,
            steps=[
                {"step": "snapshot", "target": "documents", "ok": True, "message": "saved"},
                {"step": "copy", "target": "monday", "ok": True, "message": "not attached"},
            ],
            warnings=["drive monday is not attached"],
        )
    )
    env = dict(cli.env) | {"DEDUPE_STATE_DIR": str(state_root)}
    env.pop("DEDUPE_PASSWORD")
    return {
        "tmp": tmp,
        "cli": cli,
        "src": src,
        "ids": ids,
        "profile": profile,
        "env": env,
        "state_root": state_root,
    }


def make_client(world: dict, clock: Clock | None = None, **overrides) -> TestClient:
    config = UiConfig(
        repo_url=world["cli"].repo,
        profile=world["profile"],
        env=world["env"],
        state_root=world["state_root"],
        child_command=[sys.executable, ENTRY],
        clock=clock or Clock(),
        **overrides,
    )
    return TestClient(create_app(config), base_url="http://127.0.0.1:8765")


def token(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found[1]


def login(client: TestClient, password: str = PASSWORD):
    page = client.get("/login")
    assert page.status_code == 200
    return client.post(
        "/login", data={"csrf": token(page.text), "password": password}, follow_redirects=False
    )


def logged_in(world: dict, clock: Clock | None = None) -> TestClient:
    client = make_client(world, clock)
    assert login(client).status_code == 303
    return client


def data_routes(world: dict) -> list[str]:
    snap = world["ids"][-1]
    letters = f"{world['src']}/letters"
    return [
        "/",
        "/status",
        "/calendar?month=2026-03",
        "/forecast",
        "/browse",
        f"/browse/{snap}?path={letters}",
        "/find?q=smith.txt",
        f"/download/{snap}?path={letters}/smith.txt",
        f"/restore/{snap}?path={letters}",
        "/jobs/anything",
        "/jobs/anything/progress",
        "/no-such-page",
    ]


def assert_no_data(world: dict, text: str) -> None:
    for secret in (*world["ids"], *(i[:8] for i in world["ids"]), "smith", "practice", "letters"):
        assert secret not in text


# --- no session, no data -----------------------------------------------------------------------


def test_every_route_without_a_session_shows_only_the_login(world: dict) -> None:
    client = make_client(world)
    for route in data_routes(world):
        for accept in ("text/html", "*/*"):
            response = client.get(route, headers={"accept": accept}, follow_redirects=False)
            assert response.status_code in (303, 401), route
            if response.status_code == 303:
                assert response.headers["location"] == "/login"
            assert_no_data(world, response.text)
    page = client.get("/status")  # followed: the login page, and nothing else
    assert "Backup password" in page.text
    assert_no_data(world, page.text)


def test_posts_without_a_session_do_nothing(world: dict) -> None:
    client = make_client(world)
    target = world["tmp"] / "nosession"
    snap = world["ids"][-1]
    for route in (f"/restore/{snap}/preview", f"/restore/{snap}/start", "/logout"):
        response = client.post(
            route,
            data={"csrf": "x", "path": str(world["src"]), "target": str(target), "confirm": "yes"},
            follow_redirects=False,
        )
        assert response.status_code in (303, 401)
        assert_no_data(world, response.text)
    assert not target.exists()


def test_a_wrong_password_opens_nothing_and_is_never_echoed(world: dict) -> None:
    client = make_client(world)
    response = login(client, "not the password 12345")
    assert response.status_code == 401
    assert "does not open the backups" in response.text
    assert "not the password 12345" not in response.text
    assert "dedupe_session" not in response.headers.get("set-cookie", "")
    assert client.get("/status", follow_redirects=False).status_code == 303


def test_the_password_is_never_sent_back(world: dict) -> None:
    client = logged_in(world)
    for route in data_routes(world)[:8]:
        response = client.get(route)
        assert PASSWORD not in response.text
        assert all(PASSWORD not in value for value in response.headers.values())


def test_login_needs_its_own_csrf_token(world: dict) -> None:
    client = make_client(world)
    client.get("/login")
    forged = client.post(
        "/login", data={"csrf": "forged", "password": PASSWORD}, follow_redirects=False
    )
    assert forged.status_code == 403
    fresh = make_client(world)  # no login cookie at all
    missing = fresh.post("/login", data={"password": PASSWORD}, follow_redirects=False)
    assert missing.status_code == 403
    assert fresh.get("/status", follow_redirects=False).status_code == 303


def test_session_cookie_flags_and_security_headers(world: dict) -> None:
    client = make_client(world)
    login_page = client.get("/login")
    response = client.post(
        "/login",
        data={"csrf": token(login_page.text), "password": PASSWORD},
        follow_redirects=False,
    )
    cookie = [v for k, v in response.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookie if c.startswith("dedupe_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
    page = client.get("/status")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text and " style=" not in page.text


# --- CSRF and origin on every state-changing request --------------------------------------------


@pytest.mark.parametrize("sent", [None, "", "forged-token"])
def test_posts_with_a_missing_or_forged_csrf_token_are_refused(world: dict, sent) -> None:
    client = logged_in(world)
    target = world["tmp"] / "forged"
    snap = world["ids"][-1]
    form = {"path": str(world["src"]), "target": str(target), "mode": "always", "confirm": "yes"}
    if sent is not None:
        form["csrf"] = sent
    for route in (f"/restore/{snap}/preview", f"/restore/{snap}/start", "/logout"):
        response = client.post(route, data=form, follow_redirects=False)
        assert response.status_code == 403, route
        assert "nothing was done" in response.text
    assert not target.exists()
    assert client.get("/status", follow_redirects=False).status_code == 200  # still logged in


def test_a_post_from_another_site_is_refused_even_with_the_token(world: dict) -> None:
    client = logged_in(world)
    csrf = token(client.get("/status").text)
    for headers in (
        {"origin": "http://evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},  # another port of this machine
    ):
        response = client.post(
            "/logout", data={"csrf": csrf}, headers=headers, follow_redirects=False
        )
        assert response.status_code == 403
    assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    assert client.get("/status", follow_redirects=False).status_code == 303  # logged out


def test_an_idle_session_times_out(world: dict) -> None:
    clock = Clock()
    client = logged_in(world, clock)
    clock.now += 14 * 60
    assert client.get("/status", follow_redirects=False).status_code == 200
    clock.now += 14 * 60  # used 14 minutes ago: still alive
    assert client.get("/browse", follow_redirects=False).status_code == 200
    clock.now += 15 * 60 + 1
    response = client.get("/browse", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/status", follow_redirects=False).status_code == 303


def test_a_foreign_host_header_is_refused(world: dict) -> None:
    client = make_client(world, allowed_hosts=("127.0.0.1:8765", "localhost:8765"))
    assert client.get("/login").status_code == 200
    rebound = client.get("/login", headers={"host": "attacker.example:8765"})
    assert rebound.status_code == 400
    assert "dedupe_login" not in rebound.headers.get("set-cookie", "")


# --- the pages -----------------------------------------------------------------------------------


def test_the_calendar_marks_what_forget_dry_run_decides(world: dict) -> None:
    expected_run = world["cli"]("forget", "--dry-run", "--json", "--keep-last", "2").json()
    expected = {
        item["id"]: "held" if "held" in item["reasons"] else "kept" for item in expected_run["keep"]
    }
    expected |= {item["id"]: "removed" for item in expected_run["remove"]}
    page = logged_in(world).get("/calendar?month=2026-03")
    assert page.status_code == 200
    shown = dict(
        (snap, verdict)
        for verdict, snap in re.findall(
            r'class="mark (\w+)" data-snapshot="([0-9a-f]{64})"', page.text
        )
    )
    assert shown == expected
    assert set(expected.values()) == {"held", "kept", "removed"}
    assert "tax audit" in page.text and "documents" in page.text
    assert "March 2026" in page.text


def test_the_status_page_shows_every_destination_and_the_last_run(world: dict) -> None:
    page = logged_in(world).get("/status")
    assert page.status_code == 200
    table = page.text.split('id="destinations"')[1].split("</table>")[0]
    assert "repository" in table and "monday" in table
    assert "not plugged in" in table  # the drive's mount is not a mount point
    assert "Fri 06 Mar 2026" in table  # the repository's newest backup, asked now
    assert "done with warnings" in page.text and "drive monday is not attached" in page.text
    assert 'class="summary red"' in page.text  # that backup is far older than 8 days


def test_the_forecast_page_draws_the_plan_chart_with_the_drive(world: dict) -> None:
    client = logged_in(world)
    page = client.get("/forecast?days=90&drive=2T")
    assert page.status_code == 200
    assert "A 2 TB drive does not fill within 90 days" in page.text
    assert 'class="drive"' in page.text and "your drive" in page.text
    bad = client.get("/forecast?drive=lots")
    assert "was not understood" in bad.text


def test_browse_find_and_download_byte_for_byte(world: dict) -> None:
    client = logged_in(world)
    snap = world["ids"][-1]
    listing = client.get("/browse")
    assert all(i in listing.text for i in world["ids"])
    folder = client.get(f"/browse/{snap}", params={"path": f"{world['src']}/letters"})
    assert "smith.txt" in folder.text and "caf\ufffd.txt" in folder.text
    found = client.get("/find", params={"q": "smith.txt"})
    assert "5 matches in 5 backups" in found.text
    wanted = world["src"] / "letters" / "smith.txt"
    download = client.get(f"/download/{snap}", params={"path": str(wanted)})
    assert download.status_code == 200
    assert download.content == wanted.read_bytes()
    assert 'filename="smith.txt"' in download.headers["content-disposition"]
    odd = os.fsencode(f"{world['src']}/letters/") + b"caf\xe9.txt"
    link = re.search(r'href="(/download/[0-9a-f]+\?path=[^"]*caf%E9\.txt)"', folder.text)
    assert link, "the link carries the name's exact bytes"
    assert client.get(link[1].replace("&amp;", "&")).content == open(odd, "rb").read()
    missing = client.get(f"/download/{snap}", params={"path": f"{world['src']}/nothing"})
    assert missing.status_code == 400 and "not in the snapshot" in missing.text
    folder_as_file = client.get(f"/download/{snap}", params={"path": str(world["src"])})
    assert folder_as_file.status_code == 400 and "not a file in this backup" in folder_as_file.text


def test_a_download_is_streamed_blob_by_blob(world: dict) -> None:
    from dedupe.repo import manifests, treewalk

    repo = open_repo(world["cli"].repo)
    snap = manifests.load(repo, world["ids"][-1])
    _full, node = treewalk.find(repo, snap.tree, f"{world['src']}/letters/smith.txt")
    assert node is not None
    pieces = list(stream(repo, node))
    assert len(pieces) == len(node.content)  # one piece per stored blob, never the whole file
    assert b"".join(pieces) == (world["src"] / "letters" / "smith.txt").read_bytes()


def test_restore_a_folder_after_confirming(world: dict, tmp_path: Path) -> None:
    from tests.support import assert_same_tree

    client = logged_in(world)
    snap = world["ids"][-1]
    letters = f"{world['src']}/letters"
    form_page = client.get(f"/restore/{snap}", params={"path": letters})
    csrf = token(form_page.text)
    target = tmp_path / "restored"
    form = {"csrf": csrf, "path": letters, "target": str(target), "mode": "if-changed"}
    preview = client.post(f"/restore/{snap}/preview", data=form)
    assert preview.status_code == 200 and "would be created" in preview.text
    assert not target.exists()  # a preview writes nothing
    unconfirmed = client.post(f"/restore/{snap}/start", data=form)
    assert unconfirmed.status_code == 400 and not target.exists()
    started = client.post(
        f"/restore/{snap}/start", data=form | {"confirm": "yes"}, follow_redirects=False
    )
    assert started.status_code == 303
    job_id = started.headers["location"].rsplit("/", 1)[1]
    ui = client.app.state.ui  # type: ignore[attr-defined]
    session: Session = ui.sessions.get(client.cookies["dedupe_session"])
    assert session.jobs[job_id].finished.wait(60)
    progress = client.get(f"/jobs/{job_id}/progress").json()
    assert progress["ok"] and not progress["running"] and progress["percent"] == 100
    assert_same_tree(letters, str(target) + letters)
    assert "Restored" in client.get(f"/jobs/{job_id}").text


@pytest.mark.parametrize(
    "target, words",
    [
        ("relative/folder", "is not a full path"),
        ("", "Type the folder"),
        ("FILE", "is a file, not a folder"),
    ],
)
def test_restore_targets_are_checked_as_restore_checks_them(
    world: dict, tmp_path: Path, target: str, words: str
) -> None:
    if target == "FILE":
        (tmp_path / "afile").write_text("x")
        target = str(tmp_path / "afile")
    client = logged_in(world)
    snap = world["ids"][-1]
    csrf = token(client.get("/status").text)
    form = {"csrf": csrf, "path": str(world["src"]), "target": target, "confirm": "yes"}
    for step in ("preview", "start"):
        response = client.post(f"/restore/{snap}/{step}", data=form)
        assert response.status_code == 400 and words in response.text
    assert (tmp_path / "afile").read_text() == "x" if target.endswith("afile") else True


def test_bad_ids_and_paths_are_words_not_tracebacks(world: dict) -> None:
    client = logged_in(world)
    snap = world["ids"][-1]
    assert "not a backup" in client.get("/browse/nothex").text
    assert client.get(f"/browse/{'0' * 64}").status_code == 400
    response = client.get(f"/browse/{snap}", params={"path": "/no/such/folder"})
    assert response.status_code == 400 and "not in the snapshot" in response.text
    assert "Traceback" not in response.text


def test_serving_a_repository_without_a_profile(world: dict) -> None:
    config = UiConfig(repo_url=world["cli"].repo, env=world["env"], clock=Clock())
    client = TestClient(create_app(config))
    assert login(client).status_code == 303
    page = client.get("/status")
    assert "5 backups" in page.text and "Last night" not in page.text
    calendar = client.get("/calendar?month=2026-03")
    assert "no retention rule" in calendar.text
    assert 'class="mark removed" data-snapshot' not in calendar.text
    assert "4 kept, 1 held, 0 would be removed" in calendar.text


# --- the command ---------------------------------------------------------------------------------


def test_the_command_refuses_bad_listen_and_nothing_to_serve(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEDUPE_")}
    env |= {"PYTHONPATH": ROOT, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    run = [sys.executable, "-m", "dedupe", "ui"]
    bad = subprocess.run(
        [*run, "--repo", str(tmp_path), "--listen", "nonsense"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
    nothing = subprocess.run(run, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    if os.path.exists("/etc/dedupe/dedupe.toml"):
        pytest.skip("this machine has /etc/dedupe/dedupe.toml")
    assert nothing.returncode == 2 and "nothing to serve" in nothing.stderr
    assert "Traceback" not in nothing.stderr
