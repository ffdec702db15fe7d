"""`dedupe ui` in a real browser: Debian's Chromium, driven through chromium-driver by
Selenium, against `dedupe ui` started as a subprocess on a free 127.0.0.1 port (the command
binds first, then prints the address, which the fixture reads; nothing sleeps).

Log in, see the status, open the calendar (its marks are `forget --dry-run`'s), the forecast,
browse to a file, download it and compare its bytes, find it by name, restore a folder and
compare the tree; and the negative paths: no session shows only the login page, a wrong
password opens nothing, a forged CSRF token is refused and writes nothing. A screenshot of
every page goes to $DEDUPE_TEST_ARTIFACTS (else a temporary folder).

Skipped, saying why, only where Chromium, chromium-driver or Selenium is absent; CI installs
them (.ci/run).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip(
        "Chromium and chromium-driver are not installed (apt-get install chromium "
        "chromium-driver; .ci/run installs them)",
        allow_module_level=True,
    )
pytest.importorskip("selenium", reason="selenium is not installed (pip install '.[test]')")
pytest.importorskip("starlette", reason="the ui extra is not installed (pip install '.[ui]')")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.expected_conditions import staleness_of  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.clitools import ROOT, initialized_cli  # noqa: E402
from tests.support import PASSWORD, assert_same_tree, make_tree  # noqa: E402

POLICY = {"keep-business-days": 10, "keep-monthly": "unlimited"}  # the office's, as in the README
WAIT = 60  # seconds a page or a download may take on a loaded machine


def nights(today: datetime) -> list[datetime]:
    """22:00 on every business day from the first of last month to yesterday."""
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    day, out = first, []
    while day.date() < today.date():
        if day.weekday() < 5:
            out.append(day.replace(hour=22, minute=0, second=0, microsecond=0))
        day += timedelta(days=1)
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = os.environ.get("DEDUPE_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("ui-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A practice's repository: a business month and a half of nightly snapshots, one held,
    under a profile with a policy, a drive that is not plugged in and a recorded run."""
    tmp = tmp_path_factory.mktemp("uib")
    cli = initialized_cli(tmp)
    src = tmp / "srv" / "practice"
    make_tree(str(src / "scans"))
    (src / "letters").mkdir(parents=True)
    (src / "letters" / "smith.txt").write_bytes(b"Dear Mrs Smith,\n" * 2000)
    (src / "letters" / "jones.txt").write_bytes(os.urandom(70_000))
    now = datetime.now().astimezone()
    # One process makes every night's snapshot (a process per snapshot costs a second each).
    loop = (
        "import sys\nimport tests.cli_entry\nfrom dedupe.cli.main import main\n"
        "for when in sys.argv[2:]:\n"
        "    assert main(['snapshot', '--quiet', '--time', when, sys.argv[1]]) == 0\n"
    )
    times = [n.isoformat() for n in nights(now)]
    subprocess.run(
        [sys.executable, "-c", loop, str(src), *times],
        env=cli.env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    ids = [s["id"] for s in sorted(cli("snapshots", "--json").json(), key=lambda s: s["time"])]
    assert len(ids) == len(times)
    cli("hold", ids[3], "--reason", "insurance claim")
    password_file = tmp / "password"
    password_file.write_text(PASSWORD)
    profile = tmp / "dedupe.toml"
    profile.write_text(
        f'[repository]\nurl = "{cli.repo}"\npassword-file = "{password_file}"\n\n'
        f'[[source]]\nname = "documents"\npaths = ["{src}"]\n\n'
        "[policy]\n"
        + "".join(f"{key} = {json.dumps(value)}\n" for key, value in POLICY.items())
        + "\n"
        f'[[drive]]\nname = "monday"\nmount = "{tmp}/media/monday"\n'
        f'url = "{tmp}/media/monday/repo"\nweekdays = ["mon"]\n'
    )
    state = tmp / "state"
    env = {k: v for k, v in cli.env.items() if not k.startswith("DEDUPE_PASSWORD")}
    env |= {"DEDUPE_STATE_DIR": str(state), "PYTHONPATH": ROOT}
    record = (
        "from dedupe.profile import load_profile\n"
        "from dedupe.run.state import RunRecord, State, state_dir\nimport os, sys\n"
        "from pathlib import Path\np = load_profile(Path(sys.argv[1]))\n"
        "State(state_dir(os.environ), p.path).save_run(RunRecord(time=sys.argv[2], ok=True, "
        "exit=3, steps=[{'step': 'snapshot', 'target': 'documents', 'ok': True, 'message': "
        "'saved'}, {'step': 'forget', 'target': 'repository', 'ok': True, 'message': "
        "'kept 9, removed 0'}, {'step': 'copy', 'target': 'monday', 'ok': True, 'message': "
        "'drive monday is not attached'}], warnings=['drive monday is not attached']))\n"
    )
    last = nights(now)[-1] + timedelta(hours=1)
    subprocess.run(
        [sys.executable, "-c", record, str(profile), last.isoformat()], env=env, check=True
    )
    return {"tmp": tmp, "cli": cli, "src": src, "ids": ids, "profile": profile, "env": env}


@pytest.fixture(scope="module")
def server(world: dict) -> Iterator[str]:
    """`dedupe ui --profile ... --listen 127.0.0.1:0`: the address it prints once bound."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dedupe",
            "ui",
            "--profile",
            str(world["profile"]),
            "--listen",
            "127.0.0.1:0",
        ],
        env=world["env"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=world["tmp"],
        bufsize=0,  # unbuffered: select() sees every byte that readline() has not consumed
    )
    assert proc.stdout is not None
    url = None
    deadline = time.monotonic() + WAIT
    while url is None and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        line = proc.stdout.readline().decode()
        if not line:
            break
        found = re.search(r"open (http://127\.0\.0\.1:\d+)/", line)
        url = found[1] if found else None
    if url is None:
        proc.kill()
        pytest.fail(f"dedupe ui did not start: {proc.communicate()[1].decode()}")
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT):
        pass  # bound before the line was printed: the first connection is accepted
    try:
        yield url
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=WAIT)
        assert PASSWORD not in err.decode(errors="replace")
        assert "Traceback" not in err.decode(errors="replace"), err


@pytest.fixture(scope="module")
def browser(world: dict) -> Iterator[WebDriver]:
    downloads = world["tmp"] / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--lang=en-US",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.set_page_load_timeout(WAIT)
    world["downloads"] = downloads
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, artifacts: Path, name: str) -> None:
    """The whole page (not only the window) as artifacts/ui-NAME.png."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    picture = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1280, "height": min(height, 3000), "scale": 1},
        },
    )
    (artifacts / f"ui-{name}.png").write_bytes(base64.b64decode(picture["data"]))


def wait_for(driver: WebDriver, css: str):
    return WebDriverWait(driver, WAIT).until(lambda d: d.find_element(By.CSS_SELECTOR, css))


def navigate(driver: WebDriver, act: Callable[[], object]) -> None:
    """`act` (a click or a submit that loads a new page), then wait until the page being left
    is gone: the next page may have the same ids (a month after a month, a folder after a
    folder), and reading the old one's element while it unloads is a stale reference."""
    old = driver.find_element(By.TAG_NAME, "html")
    act()
    WebDriverWait(driver, WAIT).until(staleness_of(old))


def log_in(driver: WebDriver, server: str, password: str = PASSWORD) -> None:
    driver.get(f"{server}/login")
    if driver.current_url.endswith("/status"):
        return
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login-button").click()
    wait_for(driver, "#summary" if password == PASSWORD else "#login-message")


def test_no_session_shows_only_the_login_and_a_wrong_password_opens_nothing(
    server: str, browser: WebDriver, world: dict, artifacts: Path
) -> None:
    browser.delete_all_cookies()
    snap = world["ids"][-1]
    for route in ("/status", "/calendar", "/browse", f"/browse/{snap}", "/find?q=smith.txt"):
        browser.get(server + route)
        assert browser.current_url == f"{server}/login"
        assert snap[:8] not in browser.page_source and "smith" not in browser.page_source
    shot(browser, artifacts, "login")
    log_in(browser, server, "wrong password")
    assert "does not open the backups" in browser.find_element(By.ID, "login-message").text
    assert "wrong password" not in browser.page_source
    browser.get(f"{server}/status")
    assert browser.current_url == f"{server}/login"
    cookie = browser.get_cookie("dedupe_login")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"


def test_status_calendar_and_forecast(
    server: str, browser: WebDriver, world: dict, artifacts: Path
) -> None:
    log_in(browser, server)
    cookie = browser.get_cookie("dedupe_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    rows = browser.find_element(By.ID, "destinations").text
    assert "repository" in rows and "monday" in rows and "not plugged in" in rows
    assert "done with warnings" in browser.find_element(By.ID, "last-run").text
    assert "needs a look" in browser.find_element(By.ID, "headline").text
    shot(browser, artifacts, "status")

    browser.find_element(By.LINK_TEXT, "Calendar").click()
    wait_for(browser, "#calendar")
    navigate(browser, browser.find_element(By.ID, "prev-month").click)  # a whole month of nights
    wait_for(browser, "#calendar")
    flags = [part for key, value in POLICY.items() for part in (f"--{key}", str(value))]
    decided = world["cli"]("forget", "--dry-run", "--json", *flags).json()
    expected = {i["id"]: "held" if "held" in i["reasons"] else "kept" for i in decided["keep"]}
    expected |= {i["id"]: "removed" for i in decided["remove"]}
    marks = browser.find_elements(By.CSS_SELECTOR, "#calendar .mark")
    shown = {m.get_attribute("data-snapshot"): m.get_attribute("class").split()[1] for m in marks}
    assert shown and all(expected[snap] == verdict for snap, verdict in shown.items())
    assert {"kept", "removed"} <= set(shown.values())
    assert "month end" in browser.find_element(By.ID, "calendar").text
    shot(browser, artifacts, "calendar")

    browser.find_element(By.LINK_TEXT, "Drive forecast").click()
    field = wait_for(browser, "#drive")
    field.send_keys("2T")
    navigate(browser, field.submit)
    headline = wait_for(browser, "#forecast-headline").text
    assert "A 2 TB drive" in headline
    assert browser.find_elements(By.CSS_SELECTOR, "#chart svg .drive")
    shot(browser, artifacts, "forecast")


def test_browse_download_and_find(
    server: str, browser: WebDriver, world: dict, artifacts: Path
) -> None:
    log_in(browser, server)
    browser.find_element(By.LINK_TEXT, "Backups & restore").click()
    wait_for(browser, "#snapshots")
    shot(browser, artifacts, "backups")
    navigate(browser, browser.find_elements(By.CSS_SELECTOR, "a.snapshot-link")[0].click)  # newest
    for part in [p for p in str(world["src"]).split("/") if p] + ["letters"]:
        wait_for(browser, "#entries")
        links = browser.find_elements(By.CSS_SELECTOR, "a.folder-link")
        navigate(browser, next(a for a in links if a.text.split(" ", 1)[-1] == part).click)
    wait_for(browser, "#entries")
    shot(browser, artifacts, "folder")
    row = browser.find_element(By.XPATH, "//tr[td[contains(., 'jones.txt')]]")
    row.find_element(By.CSS_SELECTOR, "a.download-link").click()
    got = world["downloads"] / "jones.txt"
    WebDriverWait(browser, WAIT).until(
        lambda d: got.exists() and not (world["downloads"] / "jones.txt.crdownload").exists()
    )
    assert got.read_bytes() == (world["src"] / "letters" / "jones.txt").read_bytes()

    browser.find_element(By.LINK_TEXT, "Find a file").click()
    wait_for(browser, "#q").send_keys("smith.txt")
    navigate(browser, browser.find_element(By.ID, "find-button").click)
    summary = wait_for(browser, "#find-summary").text
    assert f"{len(world['ids'])} matches in {len(world['ids'])} backups" in summary
    shot(browser, artifacts, "find")


def test_restore_a_folder_and_a_forged_csrf_token(
    server: str, browser: WebDriver, world: dict, artifacts: Path
) -> None:
    log_in(browser, server)
    letters = f"{world['src']}/letters"
    snap = world["ids"][-1]
    browser.get(f"{server}/browse/{snap}?path={letters}")
    browser.find_element(By.ID, "restore-folder").click()
    forged_target = world["tmp"] / "forged"
    wait_for(browser, "#target").send_keys(str(forged_target))
    browser.execute_script(
        "document.querySelector('#restore-form input[name=csrf]').value = 'forged'"
    )
    browser.find_element(By.ID, "preview-button").click()
    problem = wait_for(browser, "#problem").text
    assert "Refused" in problem and "nothing was done" in problem
    assert not forged_target.exists()
    shot(browser, artifacts, "refused")

    browser.get(f"{server}/restore/{snap}?path={letters}")
    target = world["tmp"] / "restored"
    wait_for(browser, "#target").send_keys(str(target))
    browser.find_element(By.ID, "preview-button").click()
    assert "would be created" in wait_for(browser, "#preview").text
    shot(browser, artifacts, "restore-confirm")
    assert not target.exists()
    browser.find_element(By.ID, "confirm-button").click()
    WebDriverWait(browser, WAIT).until(
        lambda d: d.find_element(By.ID, "job-state").text == "finished"
    )
    assert "Restored" in browser.find_element(By.ID, "job-message").text
    assert_same_tree(letters, str(target) + letters)
    shot(browser, artifacts, "restore-done")

    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait_for(browser, "#login-form")
    browser.get(f"{server}/browse")
    assert browser.current_url == f"{server}/login"
