"""~/.ssh/config as OpenSSH reads it: Include, ProxyJump, ProxyCommand, refused directives and
the key advice, against the real sshd of tests/servers.py (HOME is a temporary folder, so the
real ~/.ssh is never read)."""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from pathlib import Path

import paramiko
import psutil
import pytest

from dedupe.errors import StorageError
from dedupe.storage import sftpconfig, sftpio
from dedupe.storage.sftp import SFTPStorage
from tests.clitools import Cli
from tests.servers import SFTPServer, free_port


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of our own with an empty ~/.ssh, no agent and no DEDUPE_SFTP_* variables."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("SSH_AUTH_SOCK", "DEDUPE_SFTP_IDENTITY", "DEDUPE_SFTP_KNOWN_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    return tmp_path / "home"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def _login_lines(server: SFTPServer, alias: str) -> str:
    """A Host block that logs in to the test sshd."""
    return (
        f"Host {alias}\n"
        f"  HostName {server.host}\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.identity}\n  UserKnownHostsFile {server.known_hosts}\n"
    )


def _round_trip(url: str) -> SFTPStorage:
    storage = SFTPStorage.from_url(url, create=True, connections=1)
    storage.put("config", b"written through the config")
    assert storage.get("config") == b"written through the config"
    return storage


def _connections_to(port: int) -> int:
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


# --- Include ---------------------------------------------------------------------------------


def test_an_included_file_is_read(home, sftp_server):
    _write(home / ".ssh" / "config", "Include config.d/*.conf\n")
    _write(home / ".ssh" / "config.d" / "office.conf", _login_lines(sftp_server, "office-nas"))
    url = f"sftp://office-nas{sftp_server.root}/{uuid.uuid4().hex}"
    _round_trip(url).close()  # paramiko alone dialled "office-nas" itself: no such host


def test_include_follows_openssh_order_and_scope(home):
    ssh = home / ".ssh"
    _write(
        ssh / "config",
        """\
        Include first.conf
        User everyone
        Host scoped
          Include scoped.conf
          Port 2200
        Host other
          Port 2300
        """,
    )
    _write(ssh / "first.conf", "Host alpha\n  Port 2100\n")
    _write(ssh / "scoped.conf", "HostName scoped.example.net\n")  # no sections of its own
    config = str(ssh / "config")
    alpha = sftpconfig.lookup("alpha", config)
    assert alpha["port"] == "2100" and alpha["user"] == "everyone"  # back at the top after it
    scoped = sftpconfig.lookup("scoped", config)
    assert scoped["hostname"] == "scoped.example.net" and scoped["port"] == "2200"
    other = sftpconfig.lookup("other", config)
    assert other.get("hostname", "other") == "other" and other["port"] == "2300"


def test_include_of_sections_inside_a_host_block_is_refused_by_name(home):
    ssh = home / ".ssh"
    _write(ssh / "config", "Host office\n  Include extra.conf\n")
    _write(ssh / "extra.conf", "Host elsewhere\n  Port 2222\n")
    with pytest.raises(StorageError, match=r"extra.conf line 1: .*included inside 'Host office'"):
        sftpconfig.lookup("office", str(ssh / "config"))


def test_include_loops_and_tokens_are_refused(home):
    ssh = home / ".ssh"
    _write(ssh / "config", "Include config\n")
    with pytest.raises(StorageError, match="Include nested too deeply"):
        sftpconfig.lookup("x", str(ssh / "config"))
    _write(ssh / "config", "Include conf.d/%h\n")
    with pytest.raises(StorageError, match="% tokens"):
        sftpconfig.lookup("x", str(ssh / "config"))


# --- ProxyJump and ProxyCommand ----------------------------------------------------------


def test_proxyjump_goes_through_the_jump_host(home, sftp_server):
    # The sshd is its own jump host: one TCP connection from us (to the jump), and the SFTP
    # session inside a direct-tcpip channel of it.
    _write(
        home / ".ssh" / "config",
        _login_lines(sftp_server, "gateway")
        + _login_lines(sftp_server, "behind").replace(
            "Host behind\n", "Host behind\n  ProxyJump gateway\n"
        ),
    )
    before = _connections_to(sftp_server.port)
    storage = _round_trip(f"sftp://behind{sftp_server.root}/{uuid.uuid4().hex}")
    try:
        conn = storage._pool.acquire()
        try:
            assert len(conn.via) == 1
            transport = conn.client.get_transport()
            assert transport is not None and isinstance(transport.sock, paramiko.Channel)
        finally:
            storage._pool.release(conn)
        assert _connections_to(sftp_server.port) == before + 1
    finally:
        storage.close()
    assert _connections_to(sftp_server.port) == before  # the jump session closed with it


def test_proxyjump_written_inline_with_user_and_port(home, sftp_server):
    jump = f"{sftp_server.user}@{sftp_server.host}:{sftp_server.port}"
    _write(
        home / ".ssh" / "config",
        _login_lines(sftp_server, "behind").replace(
            "Host behind\n", f"Host behind\n  ProxyJump {jump}\n"
        )
        + f"Host {sftp_server.host}\n  IdentityFile {sftp_server.identity}\n"
        f"  UserKnownHostsFile {sftp_server.known_hosts}\n",
    )
    _round_trip(f"sftp://behind{sftp_server.root}/{uuid.uuid4().hex}").close()


def test_a_jump_host_that_cannot_reach_the_target_is_named(home, sftp_server):
    closed = free_port()
    _write(
        home / ".ssh" / "config",
        _login_lines(sftp_server, "gateway")
        + f"Host behind\n  HostName 127.0.0.1\n  Port {closed}\n  ProxyJump gateway\n",
    )
    storage = SFTPStorage.from_url(
        f"sftp://behind{sftp_server.root}/x", connections=1, reconnect_attempts=0
    )
    try:
        with pytest.raises(StorageError) as caught:
            storage.get("config")
    finally:
        storage.close()
    assert (
        f"the jump host {sftp_server.user}@127.0.0.1:{sftp_server.port} could not connect on"
        in (str(caught.value))
    )


def test_proxycommand_is_run(home, sftp_server, tmp_path):
    relay = tmp_path / "relay.py"
    relay.write_text(
        textwrap.dedent(
            """\
            import os, socket, sys, threading
            sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
            def upstream():
                while data := os.read(0, 65536):
                    sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
            threading.Thread(target=upstream, daemon=True).start()
            while data := sock.recv(65536):
                os.write(1, data)
            """
        )
    )
    _write(
        home / ".ssh" / "config",
        _login_lines(sftp_server, "relayed").replace(
            "Host relayed\n", f"Host relayed\n  ProxyCommand {sys.executable} {relay} %h %p\n"
        ),
    )
    _round_trip(f"sftp://relayed{sftp_server.root}/{uuid.uuid4().hex}").close()


def test_proxy_settings_first_one_wins_and_none_disables():
    assert sftpconfig.proxy_setting({"proxyjump": "a", "proxycommand": "nc %h %p"}) == (
        "proxyjump",
        "a",
    )
    assert sftpconfig.proxy_setting({"proxycommand": "none", "proxyjump": "a"}) is None
    hops = sftpconfig.proxy_jumps("admin@gw.example.net:2222, ssh://second ,[::1]:22")
    assert [(h.host, h.user, h.port) for h in hops] == [
        ("gw.example.net", "admin", 2222),
        ("second", None, None),
        ("::1", None, 22),
    ]
    assert sftpconfig.proxy_jumps("none") == []


# --- directives refused, keys advised ------------------------------------------------------


@pytest.mark.parametrize(
    "line, named",
    [
        ("CertificateFile ~/.ssh/id_ed25519-cert.pub", "CertificateFile"),
        ("HostKeyAlias nas", "HostKeyAlias"),
        ("PKCS11Provider /usr/lib/opensc-pkcs11.so", "PKCS11Provider"),
        ("IdentityAgent /run/other-agent.sock", "IdentityAgent"),
    ],
)
def test_a_directive_we_would_ignore_is_refused_by_name(home, sftp_server, line, named):
    _write(
        home / ".ssh" / "config",
        _login_lines(sftp_server, "office").replace("Host office\n", f"Host office\n  {line}\n"),
    )
    with pytest.raises(StorageError, match=f"sets {named}( \\S+)? for host office"):
        SFTPStorage.from_url(f"sftp://office{sftp_server.root}/x")


def test_no_key_and_no_agent_gets_the_key_advice(home, sftp_server):
    _write(
        home / ".ssh" / "config",
        f"Host office\n  HostName {sftp_server.host}\n  Port {sftp_server.port}\n"
        f"  UserKnownHostsFile {sftp_server.known_hosts}\n",
    )
    storage = SFTPStorage.from_url(f"sftp://office{sftp_server.root}/x", connections=1)
    try:
        with pytest.raises(StorageError) as caught:
            storage.get("config")
    finally:
        storage.close()
    message = str(caught.value)
    assert "SSH authentication failed" in message and "no key to offer" in message
    assert "ssh-agent: not running" in message and "IdentityFile" in message


def test_the_cli_backs_up_through_include_and_proxyjump(home, sftp_server, tmp_path):
    ssh = home / ".ssh"
    _write(ssh / "config", "Include conf.d/*\n")
    _write(ssh / "conf.d" / "10-gateway", _login_lines(sftp_server, "gateway"))
    _write(
        ssh / "conf.d" / "20-nas",
        _login_lines(sftp_server, "nas").replace("Host nas\n", "Host nas\n  ProxyJump gateway\n"),
    )
    url = f"sftp://nas{sftp_server.root}/{uuid.uuid4().hex}"
    cli = Cli(url, str(tmp_path / "cache"))
    cli.env["HOME"] = str(home)
    cli.env.pop("SSH_AUTH_SOCK", None)
    data = tmp_path / "data"
    data.mkdir()
    (data / "letter.txt").write_text("dear patient")
    cli("init", "-q")
    cli("snapshot", "-q", str(data))
    assert str(data) in cli("snapshots").text
    assert os.path.isdir(sftp_server.root)


def test_the_private_paramiko_calls_we_use_are_still_there():
    # sftpio's pipelining uses three private SFTPClient methods (its docstring says why);
    # pyproject bounds paramiko below 6, and this fails first if an upgrade changes them.
    sftpio.check_paramiko()
    assert paramiko.__version__.split(".")[0] in ("3", "4", "5")
