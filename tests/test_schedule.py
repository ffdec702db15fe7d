"""`dedupe schedule`: the scheduler files as text, checked by the tools that read them
(`systemd-analyze verify` where installed, plistlib, the shell cron runs), and the command
through the real CLI with `--unit-dir`. launchd and cron placements are written under a
temporary root through the library (the real /etc and /Library are never touched)."""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from dedupe.errors import DedupeError, UsageError
from dedupe.schedule import (
    dedupe_program,
    files_for,
    installed,
    make_job,
    next_run,
    parse_at,
    placement,
    remove,
    write,
)
from dedupe.schedule.render import (
    CRON_MARK,
    cron_line,
    crontab_entry,
    crontab_with,
    crontab_without,
    launchd_plist,
    scheduled_at,
    systemd_service,
    systemd_timer,
)
from tests.clitools import Cli

PY = sys.executable
SECRET = "correct-horse-battery-staple"
needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    """A profile whose password lives in a file (the unit must name neither)."""
    secret = tmp_path / "password"
    secret.write_text(SECRET)
    path = tmp_path / "office profile.toml"
    path.write_text(f'[repository]\nurl = "{tmp_path / "repo"}"\npassword-file = "{secret}"\n')
    return path


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """The CLI (no repository needed); DEDUPE_PASSWORD is set, and must not leak into a unit."""
    tool = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    tool.env["DEDUPE_PASSWORD"] = SECRET
    return tool


def job_for(profile: Path, at: str = "23:00", **kwargs: bool):
    return make_job(dedupe_program("", PY), profile, at, **kwargs)


def verify(*units: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True
    )


# --- the job ---------------------------------------------------------------------------------


def test_times_of_day() -> None:
    assert parse_at("23:00") == (23, 0)
    assert parse_at("1:30") == (1, 30)
    for bad in ("24:00", "12:60", "noon", "12", "12:5", ""):
        with pytest.raises(UsageError, match="HH:MM"):
            parse_at(bad)


def test_next_run_is_today_or_tomorrow() -> None:
    evening = datetime(2026, 12, 5, 18, 0)
    assert next_run(23, 0, evening) == datetime(2026, 12, 5, 23, 0)
    assert next_run(2, 30, evening) == datetime(2026, 12, 6, 2, 30)
    assert next_run(18, 0, evening) == datetime(2026, 12, 6, 18, 0)


def test_the_program_is_the_dedupe_script_or_this_python(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "dedupe"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert dedupe_program(str(script), PY) == [str(script)]
    assert dedupe_program(str(tmp_path / "cli_entry.py"), PY) == [PY, "-P", "-m", "dedupe"]
    script.chmod(0o644)  # not executable: not a program to start
    assert dedupe_program(str(script), PY)[1:] == ["-P", "-m", "dedupe"]


def test_the_job_names_the_profile_absolutely_and_no_password(
    profile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(profile.parent)
    job = job_for(Path(profile.name))
    assert job.argv == (PY, "-P", "-m", "dedupe", "run", "--profile", str(profile))
    assert job_for(profile, quiet=True).argv[4:6] == ("-q", "run")
    with pytest.raises(UsageError, match="line break"):
        job_for(profile.parent / "two\nlines.toml")


# --- systemd ---------------------------------------------------------------------------------


def test_systemd_units_as_text(profile: Path) -> None:
    job = job_for(profile, "02:30")
    service, timer = systemd_service(job), systemd_timer(job)
    assert "Type=oneshot" in service and "After=network-online.target" in service
    exec_line = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert shlex.split(exec_line.removeprefix("ExecStart=")) == list(job.argv)
    assert "OnCalendar=*-*-* 02:30:00" in timer and "Persistent=true" in timer
    assert "Unit=dedupe-run.service" in timer and "WantedBy=timers.target" in timer
    assert SECRET not in service + timer and "password" not in service.lower()
    assert scheduled_at(timer.encode()) == (2, 30)
    user_service = systemd_service(job_for(profile, user=True))
    assert "network-online" not in user_service  # a user's manager has no such target


def test_systemd_text_disarms_specifiers_and_quotes(tmp_path: Path) -> None:
    odd = tmp_path / 'a 100% "odd" $HOME profile.toml'
    job = job_for(odd)
    exec_line = next(
        line for line in systemd_service(job).splitlines() if line.startswith("ExecStart=")
    )
    assert exec_line.endswith(r'"' + str(tmp_path) + r'/a 100%% \"odd\" $$HOME profile.toml"')


@needs_systemd_analyze
def test_systemd_analyze_accepts_the_units_and_rejects_a_broken_one(
    profile: Path, tmp_path: Path
) -> None:
    for name, user in (("system", False), ("user", True)):
        place = placement("systemd", user=user, home=tmp_path, uid=0, unit_dir=tmp_path / name)
        write(files_for(place, job_for(tmp_path / 'a 50% "odd" profile.toml', user=user)))
        result = verify(*place.files)
        assert result.returncode == 0, result.stdout + result.stderr
    # The check is real: a relative ExecStart is refused.
    broken = tmp_path / "broken" / "dedupe-run.service"
    broken.parent.mkdir()
    broken.write_text("[Service]\nType=oneshot\nExecStart=dedupe run\n")
    assert verify(broken).returncode != 0


# --- launchd ---------------------------------------------------------------------------------


def test_launchd_plist(profile: Path, tmp_path: Path) -> None:
    job = job_for(profile, "22:05")
    plist = plistlib.loads(launchd_plist(job, "/Library/Logs/dedupe-run.log"))
    assert plist["Label"] == "local.dedupe.run"
    assert plist["ProgramArguments"] == list(job.argv)
    assert plist["StartCalendarInterval"] == {"Hour": 22, "Minute": 5}
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == "/Library/Logs/dedupe-run.log"
    assert SECRET.encode() not in launchd_plist(job, "x")


def test_launchd_placements(profile: Path, tmp_path: Path) -> None:
    daemon = placement("launchd", user=False, home=tmp_path / "home", uid=501, root=tmp_path)
    agent = placement("launchd", user=True, home=tmp_path / "home", uid=501, root=tmp_path)
    assert daemon.files == (tmp_path / "Library/LaunchDaemons/local.dedupe.run.plist",)
    assert agent.files == (tmp_path / "home/Library/LaunchAgents/local.dedupe.run.plist",)
    assert daemon.activate == (("launchctl", "bootstrap", "system", str(daemon.files[0])),)
    assert agent.deactivate == (("launchctl", "bootout", "gui/501/local.dedupe.run"),)
    assert str(tmp_path / "home/Library/Logs/dedupe-run.log") in agent.last_run
    write(files_for(daemon, job_for(profile, "04:10")))
    assert scheduled_at(installed(daemon)[daemon.files[0]]) == (4, 10)
    assert remove(daemon) == [daemon.files[0]] and not daemon.files[0].exists()


# --- cron ------------------------------------------------------------------------------------


def test_cron_line_survives_the_shell_cron_runs(tmp_path: Path) -> None:
    # argv that needs quoting: spaces, a quote and a percent sign (a newline to cron).
    odd = ["/usr/bin/printf", "%s|", "a b", "it's 50%", "$HOME"]
    job = make_job(odd, tmp_path / "p.toml", "03:07")
    line = cron_line(job)
    minute, hour, *_stars, command = line.split(" ", 5)
    assert (minute, hour) == ("7", "3") and "\\%" in command
    # cron turns "\%" into "%" and runs the rest with /bin/sh -c.
    out = subprocess.run(["sh", "-c", command.replace("\\%", "%")], capture_output=True, text=True)
    assert out.stdout == f"a b|it's 50%|$HOME|run|--profile|{tmp_path / 'p.toml'}|"


def test_cron_d_file_is_removed_only_when_ours(profile: Path, tmp_path: Path) -> None:
    place = placement("cron", user=False, home=tmp_path, uid=0, root=tmp_path)
    assert place.files == (tmp_path / "etc/cron.d/dedupe-run",)
    write(files_for(place, job_for(profile, quiet=True)))
    text = place.files[0].read_text()
    assert " root " in text and "-q run --profile" in text and SECRET not in text
    assert scheduled_at(text.encode()) == (23, 0)
    place.files[0].write_text("0 1 * * * root /usr/local/bin/someone-elses-job\n")
    with pytest.raises(DedupeError, match="not written by"):
        remove(place)
    assert place.files[0].exists()


def test_user_crontab_editing_keeps_other_lines(profile: Path) -> None:
    theirs = "MAILTO=office@example.net\n15 6 * * 1 /usr/bin/weekly-report\n"
    first = crontab_with(theirs, job_for(profile, "23:00"))
    assert first.startswith(theirs) and first.count(CRON_MARK) == 1
    second = crontab_with(first, job_for(profile, "01:15"))  # reinstall replaces
    assert second.count(CRON_MARK) == 1 and crontab_entry(second).startswith("15 1 ")
    assert crontab_without(second) == theirs
    assert crontab_entry(theirs) is None


# --- the command -----------------------------------------------------------------------------


def test_install_show_remove_with_a_unit_dir(cli: Cli, profile: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    (units / "other.service").write_text("[Service]\nExecStart=/bin/true\n")
    result = cli("schedule", "install", "--profile", str(profile), "--at", "21:45",
                 "--unit-dir", str(units))  # fmt: skip
    assert f"wrote {units / 'dedupe-run.service'}" in result.text
    assert f"wrote {units / 'dedupe-run.timer'}" in result.text
    assert "journalctl -u dedupe-run.service" in result.text
    assert "every night at 21:45" in result.text
    written = (units / "dedupe-run.service").read_text() + (units / "dedupe-run.timer").read_text()
    assert f'"{profile}"' in written and "OnCalendar=*-*-* 21:45:00" in written
    assert SECRET not in written and SECRET not in result.text + result.err
    if shutil.which("systemd-analyze"):
        check = verify(units / "dedupe-run.service", units / "dedupe-run.timer")
        assert check.returncode == 0, check.stdout + check.stderr

    shown = cli("schedule", "show", "--unit-dir", str(units), "--json").json()
    assert shown["installed"] and shown["at"] == "21:45" and shown["scheduler"] == "systemd"
    assert sorted(shown["files"]) == [
        str(units / "dedupe-run.service"),
        str(units / "dedupe-run.timer"),
    ]  # noqa: E501
    assert "next run:" in cli("schedule", "show", "--unit-dir", str(units)).text

    removed = cli("schedule", "remove", "--unit-dir", str(units), "--json").json()
    assert sorted(removed["removed"]) == sorted(shown["files"])
    assert sorted(os.listdir(units)) == ["other.service"]  # exactly what install wrote
    assert "nothing to remove" in cli("schedule", "remove", "--unit-dir", str(units)).text
    assert not cli("schedule", "show", "--unit-dir", str(units), "--json").json()["installed"]


def test_the_installed_command_starts_outside_the_test_environment(
    cli: Cli, profile: Path, tmp_path: Path
) -> None:
    """What the scheduler runs (from /, without our PYTHONPATH) starts dedupe."""
    cli("schedule", "install", "--profile", str(profile), "--unit-dir", str(tmp_path / "u"))
    service = (tmp_path / "u" / "dedupe-run.service").read_text()
    argv = shlex.split(next(ln for ln in service.splitlines() if ln.startswith("ExecStart="))[10:])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run([*argv[:-3], "--version"], cwd="/", env=env, capture_output=True)
    if probe.returncode != 0 and os.environ.get("CI") != "true":
        pytest.skip("dedupe is not installed for this Python (CI installs it with pip -e)")
    assert probe.returncode == 0, probe.stderr
    assert argv[-3:] == ["run", "--profile", str(profile)]


def test_a_file_of_another_origin_is_never_replaced_or_removed(
    cli: Cli, profile: Path, tmp_path: Path
) -> None:
    units = tmp_path / "units"
    units.mkdir()
    theirs = "[Unit]\nDescription=someone else's\n[Timer]\nOnCalendar=daily\n"
    (units / "dedupe-run.timer").write_text(theirs)
    for action in (["install", "--profile", str(profile)], ["remove"]):
        result = cli("schedule", *action, "--unit-dir", str(units), check=False)
        assert result.code == 1 and "not written by 'dedupe schedule install'" in result.err
        assert (units / "dedupe-run.timer").read_text() == theirs
    assert not (units / "dedupe-run.service").exists()


def test_bad_input_is_a_clear_usage_error(cli: Cli, profile: Path, tmp_path: Path) -> None:
    units = str(tmp_path / "units")
    result = cli("schedule", "install", "--profile", str(profile), "--at", "7pm",
                 "--unit-dir", units, check=False)  # fmt: skip
    assert result.code == 2 and "HH:MM" in result.err and "Traceback" not in result.err
    missing = str(tmp_path / "nowhere.toml")
    result = cli("schedule", "install", "--profile", missing, "--unit-dir", units, check=False)
    assert result.code == 2 and "nowhere.toml" in result.err and "Traceback" not in result.err
    assert not os.path.exists(units)


def test_a_profile_without_a_password_setting_is_warned_about(cli: Cli, tmp_path: Path) -> None:
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[repository]\nurl = "{tmp_path / "repo"}"\n')
    result = cli("schedule", "install", "--profile", str(bare), "--unit-dir", str(tmp_path / "u"))
    assert "no password-file or password-command" in result.err and "exit 12" in result.err
