"""SSH for the SFTP backend: the system's OpenSSH client, `ssh -s HOST sftp`, as restic and Borg do.

Why the system's ssh: whatever `ssh HOST` does, dedupe does, because it is ssh that connects.
`~/.ssh/config` with every directive (Include, Match, ProxyJump, ProxyCommand, certificates,
PKCS#11 and FIDO keys, IdentityAgent, ControlPath...), `/etc/ssh/ssh_config`, the agent
(`SSH_AUTH_SOCK`), known_hosts (hashed or not) are OpenSSH's own, so none is ignored silently.
`~` is the account's home directory from the password database, as for ssh (not `$HOME`).

What dedupe adds on ssh's command line (after the user's `DEDUPE_SSH_COMMAND`, default `ssh`):
- `BatchMode yes`: ssh never asks for anything (a password, a passphrase, a host key): a backup
  runs unattended, and a password never passes through dedupe. A key with a passphrase must be
  in the agent.
- `StrictHostKeyChecking yes`: an unknown or changed host key is refused, whatever the config
  says, except `accept-new` (recording a host seen for the first time; a changed key is still
  refused) when the config asks for it or `DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY=1`.
- `-i DEDUPE_SFTP_IDENTITY` (tried first) and `UserKnownHostsFile=DEDUPE_SFTP_KNOWN_HOSTS` when
  set; user and port from the URL (they win over the config, as on ssh's command line).
- no forwardings, no tty, no RemoteCommand, no LocalCommand, never a new ControlMaster (an
  existing one is used); `ServerAliveInterval 30` unless the config sets one.
- `-v`, into a private unlinked temporary file: the fingerprint and the keys tried, so that a
  refusal can say what happened (the user, the host, the fingerprint, which keys were offered
  and what to do). Nothing secret is in it.

ssh runs in its own process group, so Ctrl-C reaches dedupe (which then cleans up, removing its
lock over this very connection) and not ssh.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO
from urllib.parse import unquote, urlparse

from dedupe.errors import StorageError, TransientStorageError, UsageError
from dedupe.storage.base import redact_url
from dedupe.storage.sftpwire import ConnectionLost, SFTPSession

ENV_IDENTITY = "DEDUPE_SFTP_IDENTITY"
ENV_KNOWN_HOSTS = "DEDUPE_SFTP_KNOWN_HOSTS"
ENV_ACCEPT_NEW = "DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY"
ENV_COMMAND = "DEDUPE_SSH_COMMAND"
KEEPALIVE = 30  # seconds, when the config sets no ServerAliveInterval

_FIXED_OPTIONS = (
    "BatchMode=yes",
    "ForwardX11=no",
    "ForwardAgent=no",
    "ClearAllForwardings=yes",
    "PermitLocalCommand=no",
    "RemoteCommand=none",
    "RequestTTY=no",
    "ControlMaster=no",
)


@dataclass(frozen=True)
class SSHTarget:
    """The URL's parts and the caller's overrides; ssh's config fills in the rest."""

    hostname: str  # as written in the URL: what ~/.ssh/config's Host lines match
    user: str | None
    port: int | None
    path: str  # the repository folder on the server ('' means the login folder)
    identity: str | None = None
    known_hosts: str | None = None
    ssh_config: str | None = None  # a config file instead of ~/.ssh/config (ssh -F)

    @property
    def display(self) -> str:
        """[user@]host[:port] as given, for messages (never contains a secret)."""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.hostname}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class Resolved:
    """What ssh's configuration says for a target (`ssh -G`)."""

    user: str
    hostname: str
    port: int
    strict: str  # StrictHostKeyChecking
    proxyjump: str | None
    known_hosts: tuple[str, ...]
    keepalive: int

    @property
    def display(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name a host key is recorded under in known_hosts, as OpenSSH writes it."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"


def parse_sftp_url(
    url: str,
    *,
    identity: str | None = None,
    known_hosts: str | None = None,
    ssh_config: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SSHTarget:
    """Turn `sftp://[user@]host[:port]/path` into an SSHTarget (no connection, no ssh run).

    The path is absolute on the server; `/~/sub` (or `/~`) is relative to the login folder.
    Explicit `identity`/`known_hosts` arguments win over the environment variables.
    """
    env = os.environ if environ is None else environ
    shown = redact_url(url)  # the only form of the URL any message may carry
    parsed = urlparse(url)
    if parsed.password is not None:
        raise UsageError(
            f"sftp URLs must not carry a password (it would show in process lists and logs): "
            f"{shown!r}; use an SSH key or ssh-agent"
        )
    if parsed.scheme.lower() != "sftp" or not parsed.hostname:
        raise UsageError(f"not an sftp URL: {shown!r} (use sftp://user@host[:port]/path)")
    try:
        port = parsed.port
    except ValueError:
        raise UsageError(f"bad port in {shown!r}: use sftp://user@host:PORT/path") from None
    path = unquote(parsed.path)
    if path in ("", "/"):
        raise UsageError(f"the sftp URL {shown!r} needs a folder path (sftp://host/srv/backup)")
    path = path[3:].strip("/") if path == "/~" or path.startswith("/~/") else "/" + path.strip("/")
    user = unquote(parsed.username) if parsed.username else None
    if parsed.hostname.startswith("-") or (user or "").startswith("-"):
        raise UsageError(f"the host or user in {shown!r} cannot start with '-'")
    return SSHTarget(
        hostname=parsed.hostname,
        user=user,
        port=port,
        path=path,
        identity=identity or env.get(ENV_IDENTITY) or None,
        known_hosts=known_hosts or env.get(ENV_KNOWN_HOSTS) or None,
        ssh_config=ssh_config,
    )


def _base_command(target: SSHTarget, env: Mapping[str, str]) -> list[str]:
    """ssh (or DEDUPE_SSH_COMMAND), the config file, identity, known_hosts, user, port."""
    argv = shlex.split(env.get(ENV_COMMAND, "") or "ssh")
    if target.ssh_config:
        argv += ["-F", target.ssh_config]
    if target.identity:
        argv += ["-i", os.path.expanduser(target.identity)]
    if target.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={os.path.expanduser(target.known_hosts)}"]
    if target.user:
        argv += ["-l", target.user]
    if target.port:
        argv += ["-p", str(target.port)]
    return argv


def _no_ssh(argv: list[str]) -> StorageError:
    return StorageError(
        f"cannot run {argv[0]!r} for sftp:// (the OpenSSH client): install it "
        f"(Debian/Ubuntu: apt-get install openssh-client), or set {ENV_COMMAND}"
    )


def resolve(target: SSHTarget, env: Mapping[str, str]) -> Resolved:
    """ssh's own reading of its configuration for `target` (`ssh -G`); StorageError if it has
    none (a bad config file: ssh's message names the file and the line)."""
    argv = [*_base_command(target, env), "-G", "--", target.hostname]
    try:
        done = subprocess.run(
            argv, capture_output=True, env=dict(env), stdin=subprocess.DEVNULL, timeout=60
        )
    except FileNotFoundError:
        raise _no_ssh(argv) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StorageError(f"cannot run {argv[0]} -G: {exc}") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip()
        raise StorageError(
            f"ssh cannot read its configuration for {target.hostname}: {said or 'no reason given'}"
        )
    values: dict[str, list[str]] = {}
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key.lower(), []).append(value.strip())

    def one(key: str, default: str = "") -> str:
        return values.get(key, [default])[0]

    proxyjump = one("proxyjump") or None
    return Resolved(
        user=one("user") or getpass.getuser(),
        hostname=one("hostname", target.hostname),
        port=int(one("port", "22") or 22),
        strict=one("stricthostkeychecking", "ask").lower(),
        proxyjump=None if (proxyjump or "none").lower() == "none" else proxyjump,
        known_hosts=tuple(one("userknownhostsfile").split()),
        keepalive=int(one("serveraliveinterval", "0") or 0),
    )


def ssh_command(target: SSHTarget, resolved: Resolved, env: Mapping[str, str]) -> list[str]:
    """The full `ssh ... -s HOST sftp` command line (no secret in it: ssh asks no one)."""
    argv = _base_command(target, env)
    accept_new = resolved.strict == "accept-new" or env.get(ENV_ACCEPT_NEW, "") in (
        "1",
        "yes",
        "true",
    )
    options = [*_FIXED_OPTIONS, f"StrictHostKeyChecking={'accept-new' if accept_new else 'yes'}"]
    if resolved.keepalive == 0:
        options.append(f"ServerAliveInterval={KEEPALIVE}")
    for option in options:
        argv += ["-o", option]
    return [*argv, "-v", "-s", "--", target.hostname, "sftp"]


class Connection:
    """One `ssh -s HOST sftp` process and the SFTP session over its pipes; one thread at a
    time. `sftp` is the session; `close` ends ssh (and the jump hosts' ssh it started)."""

    def __init__(
        self, proc: subprocess.Popen[bytes], sftp: SFTPSession, log: IO[bytes], what: str
    ) -> None:
        self.proc, self.sftp, self._log, self.what = proc, sftp, log, what

    def alive(self) -> bool:
        return not self.sftp.broken and self.proc.poll() is None

    def ssh_said(self) -> str:
        """ssh's own last words (not its debug lines), for a message."""
        return _said(_read_log(self._log))

    def close(self) -> None:
        """End of input ends a healthy session; a broken one (or one slow to end) is killed."""
        if self.sftp.broken and self.proc.poll() is None:
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=self.sftp.timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def connect(
    target: SSHTarget, resolved: Resolved, timeout: float, environ: Mapping[str, str] | None = None
) -> Connection:
    """Start ssh and SFTP over it; StorageError (permanent: host key, login, configuration) or
    TransientStorageError (the network, the server going away)."""
    env = os.environ if environ is None else environ
    argv = ssh_command(target, resolved, env)
    log = tempfile.TemporaryFile(prefix="dedupe-ssh-")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=dict(env),
            process_group=0,  # Ctrl-C is for dedupe, which still needs this connection
        )
    except FileNotFoundError:
        log.close()
        raise _no_ssh(argv) from None
    assert proc.stdin is not None and proc.stdout is not None
    sftp = SFTPSession(proc.stdout.fileno(), proc.stdin.fileno(), timeout)
    conn = Connection(proc, sftp, log, resolved.display)
    try:
        sftp.start()
    except ConnectionLost as exc:
        # ssh ends by itself after a refusal (the pipe closed first); a silent one is killed.
        text = _read_log_after_exit(conn, kill=conn.alive() and "did not answer" in str(exc))
        raise failure(text, target, resolved, env, str(exc)) from None
    except BaseException:
        proc.kill()
        conn.close()
        raise
    return conn


def _read_log_after_exit(conn: Connection, kill: bool) -> str:
    if kill:
        conn.proc.kill()
    try:
        conn.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        conn.proc.kill()
        conn.proc.wait()
    text = _read_log(conn._log)
    conn.close()
    return text


def _read_log(log: IO[bytes]) -> str:
    try:
        log.seek(0)
        return log.read().decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""


def _said(text: str) -> str:
    lines = [
        line.strip()
        for line in text.replace("\r", "").splitlines()
        if line.strip() and not line.startswith("debug") and not line.startswith("@")
    ]
    chatter = ("Transferred:", "Bytes per second", "OpenSSH_", "Authenticated to")
    lines = [line for line in lines if not line.startswith(chatter)]
    return " ".join(lines[-3:])


_UNKNOWN = re.compile(r"No (\S+) host key is known for (\S+)")
_CHANGED = re.compile(r"()Host key for (\S+) has changed")
_SERVER_KEY = re.compile(r"Server host key: (\S+) (SHA256:\S+)")
_DENIED = re.compile(r"^(\S+): Permission denied \(([^)]*)\)", re.M)
_OFFERED = re.compile(r"(?:Offering public key|Trying private key): (\S+)")
_FORWARD = re.compile(r"open failed: (.+)")


def failure(
    text: str, target: SSHTarget, resolved: Resolved, env: Mapping[str, str], lost: str
) -> StorageError:
    """ssh's stderr (with -v) from a connection that failed to start -> the message for it."""
    said = _said(text)
    named = _UNKNOWN.search(text) or _CHANGED.search(text)
    name = named[2] if named else resolved.known_hosts_name  # a jump host's, maybe
    login = f"ssh -p {resolved.port} {resolved.user}@{resolved.hostname}"
    if name != resolved.known_hosts_name:
        login = f"ssh to {name} (a jump host)"
    key = _SERVER_KEY.findall(text)
    offered = f"its {key[-1][0]} key {key[-1][1]}" if key else "its key"
    if (
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in text
        or "has changed and you have requested" in text
    ):
        return StorageError(
            f"the SSH host key of {name} has CHANGED: the server offers {offered}, but "
            "known_hosts records another key. This may be an attack; if the server was really "
            f"reinstalled, remove the old entry with `ssh-keygen -R '{name}'` (ssh said: {said})"
        )
    if _UNKNOWN.search(text) or "Host key verification failed" in text:
        files = " or ".join(resolved.known_hosts) or "known_hosts"
        return StorageError(
            f"the SSH host {name} is not known: {offered} is not in {files}. Verify the "
            f"fingerprint with the server's administrator, then connect once with `{login}` to "
            f"record it, or set {ENV_ACCEPT_NEW}=1 to accept a new host's key (ssh said: {said})"
        )
    denied = _DENIED.findall(text)
    if denied:
        who = denied[-1][0]
        tried = [p for p in dict.fromkeys(_OFFERED.findall(text)) if os.path.exists(p)]
        agent = "yes" if env.get("SSH_AUTH_SOCK") else "not running"
        what = (
            "no key was accepted" if tried or "Offering public key" in text else "no key to offer"
        )
        keys = ", ".join(tried) or "none"
        return StorageError(
            f"SSH authentication failed for {who}: {what} (key files: {keys}; "
            f"ssh-agent: {agent}). Set IdentityFile in ~/.ssh/config or {ENV_IDENTITY}, or add "
            "the key to ssh-agent (a key with a passphrase must be in the agent); the server "
            "must list its public key in authorized_keys"
        )
    forward = _FORWARD.search(text)
    if forward and resolved.proxyjump:
        reason = forward[1].strip()
        message = (
            f"the jump host {_jump_display(resolved.proxyjump, target, env)} could not connect "
            f"on to {resolved.hostname}:{resolved.port}: {reason}"
        )
        if "administratively prohibited" in reason:
            return StorageError(message + " (its sshd needs AllowTcpForwarding)")
        return TransientStorageError(message)
    if "subsystem request failed" in text:
        return StorageError(
            f"the SSH server {resolved.display} does not offer SFTP: its sshd_config needs a "
            f"'Subsystem sftp' line (ssh said: {said})"
        )
    if "Bad configuration option" in text or "bad configuration options" in text:
        return StorageError(f"ssh cannot read its configuration: {said}")
    if said and "did not answer" not in lost:
        return TransientStorageError(f"SSH connection to {resolved.display} failed: {said}")
    return TransientStorageError(f"SSH connection to {resolved.display} failed: {lost}")


def _jump_display(proxyjump: str, target: SSHTarget, env: Mapping[str, str]) -> str:
    """The first jump host as user@host:port (ssh -G on it), else as the config writes it."""
    first = proxyjump.split(",")[0].strip()
    parsed = urlparse(first if first.startswith("ssh://") else f"ssh://{first}")
    if len(proxyjump.split(",")) != 1 or not parsed.hostname:
        return proxyjump
    try:
        hop = SSHTarget(
            parsed.hostname,
            parsed.username,
            parsed.port,
            "",
            target.identity,
            target.known_hosts,
            target.ssh_config,
        )
        return resolve(hop, env).display
    except (StorageError, ValueError):
        return proxyjump
