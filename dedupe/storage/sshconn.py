"""SSH connections for the SFTP backend, made the way OpenSSH users expect.

What is honoured, in order of precedence:
- the URL `sftp://user@host:port/path`: user and port given there win over `~/.ssh/config`;
- `~/.ssh/config` (`$HOME` is honoured), read by `dedupe.storage.sftpconfig` (which expands
  `Include` and refuses, naming it, a directive that would make us connect differently from
  ssh): `HostName`, `Port`, `User`, `IdentityFile`, `IdentitiesOnly`, `UserKnownHostsFile`,
  `GlobalKnownHostsFile`, `StrictHostKeyChecking accept-new`, and how to get there:
  `ProxyJump` (each hop configured from the same file; the connection goes through the hops
  as direct-tcpip channels, as `ssh -J` does) or `ProxyCommand` (run by paramiko's public
  `ProxyCommand`), whichever the file gives first;
- keys: `DEDUPE_SFTP_IDENTITY` (a private key file, tried first), then the config's
  `IdentityFile`s, then a running ssh-agent (`SSH_AUTH_SOCK`), then the default `~/.ssh/id_*`
  (unless `IdentitiesOnly yes`). Passphrase-protected keys must be loaded into the agent. Passwords
  are never used, asked for or logged;
- host keys: `DEDUPE_SFTP_KNOWN_HOSTS` if set, else the config's `UserKnownHostsFile`, else
  `~/.ssh/known_hosts`, plus `/etc/ssh/ssh_known_hosts`. An unknown host is refused with a
  `StorageError` saying how to proceed, unless `DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY=1`, which records
  the new key in the user known_hosts file (OpenSSH's `accept-new`). A *changed* key is always
  refused.

The socket gets `TCP_NODELAY` (SFTP is request/response; Nagle would add 40 ms stalls) and the
SFTP channel a large window so pipelined transfers are not throttled by flow control.
"""

from __future__ import annotations

import base64
import dataclasses
import getpass
import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

import paramiko

from dedupe.errors import StorageError, TransientStorageError, UsageError
from dedupe.storage import sftpconfig
from dedupe.storage.base import redact_url

ENV_IDENTITY = "DEDUPE_SFTP_IDENTITY"
ENV_KNOWN_HOSTS = "DEDUPE_SFTP_KNOWN_HOSTS"
ENV_ACCEPT_NEW = "DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY"
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"
MAX_JUMP_DEPTH = 8  # jump hosts behind jump hosts: more is a loop in the config

# 64 MiB of receive window and 256 KiB packets: enough for many large pipelined reads in flight
# (OpenSSH caps what it sends at its own limits; smaller servers simply send smaller packets).
WINDOW_SIZE = 64 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024


@dataclass(frozen=True)
class SSHTarget:
    """Where and how to connect, after URL and ~/.ssh/config are merged."""

    alias: str  # the host as written in the URL (what ~/.ssh/config matches)
    hostname: str  # the host actually dialled (HostName)
    port: int
    user: str
    path: str  # the repository folder on the server ('' means the login folder)
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    known_hosts: tuple[str, ...] = field(default_factory=tuple)
    system_known_hosts: tuple[str, ...] = (SYSTEM_KNOWN_HOSTS,)
    accept_new: bool = False  # StrictHostKeyChecking accept-new
    via: SSHTarget | None = None  # the jump host this host is reached through (ProxyJump)
    proxy_command: str | None = None  # or the command that connects to it (ProxyCommand)

    @property
    def display(self) -> str:
        """user@host:port, for messages (never contains a secret)."""
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
    """Turn `sftp://[user@]host[:port]/path` into an SSHTarget.

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
        url_port = parsed.port
    except ValueError:
        raise UsageError(f"bad port in {shown!r}: use sftp://user@host:PORT/path") from None
    path = unquote(parsed.path)
    if path in ("", "/"):
        raise UsageError(f"the sftp URL {shown!r} needs a folder path (sftp://host/srv/backup)")
    if path == "/~" or path.startswith("/~/"):
        path = path[3:].strip("/")
    else:
        path = "/" + path.strip("/")
    user = unquote(parsed.username) if parsed.username else None
    config_path = ssh_config or os.path.expanduser("~/.ssh/config")
    explicit = _Explicit(identity or env.get(ENV_IDENTITY), known_hosts or env.get(ENV_KNOWN_HOSTS))
    return _resolve(parsed.hostname, user, url_port, path, config_path, explicit, 0)


@dataclass(frozen=True)
class _Explicit:
    """What the caller or the environment says for every host, jump hosts included."""

    identity: str | None
    known_hosts: str | None


def _resolve(
    alias: str,
    user: str | None,
    port: int | None,
    path: str,
    config_path: str,
    explicit: _Explicit,
    depth: int,
    *,
    follow_proxy: bool = True,
) -> SSHTarget:
    """The target `alias` with its ~/.ssh/config settings; what the URL (or the ProxyJump
    entry) says wins. With `follow_proxy`, its ProxyJump or ProxyCommand too."""
    if depth > MAX_JUMP_DEPTH:
        raise StorageError(f"{config_path}: ProxyJump hosts lead to each other in a loop")
    config = sftpconfig.lookup(alias, config_path)
    identities: list[str] = []
    if explicit.identity:
        identities.append(os.path.expanduser(explicit.identity))
    identities += [os.path.expanduser(p) for p in config.get("identityfile", [])]
    if explicit.known_hosts:
        known = [os.path.expanduser(explicit.known_hosts)]
    elif "userknownhostsfile" in config:
        known = [os.path.expanduser(p) for p in str(config["userknownhostsfile"]).split()]
    else:
        known = [os.path.expanduser("~/.ssh/known_hosts")]
    system_known: tuple[str, ...] = (SYSTEM_KNOWN_HOSTS,)
    if "globalknownhostsfile" in config:
        system_known = tuple(
            os.path.expanduser(p) for p in str(config["globalknownhostsfile"]).split()
        )
    target = SSHTarget(
        alias=alias,
        hostname=str(config.get("hostname", alias)),
        port=port or int(config.get("port", 22)),
        user=user or str(config.get("user", "")) or getpass.getuser(),
        path=path,
        identity_files=tuple(dict.fromkeys(identities)),
        identities_only=str(config.get("identitiesonly", "no")).lower() == "yes",
        known_hosts=tuple(known),
        system_known_hosts=system_known,
        accept_new=str(config.get("stricthostkeychecking", "")).lower() == "accept-new",
    )
    proxy = sftpconfig.proxy_setting(config) if follow_proxy else None
    if proxy is None:
        return target
    keyword, value = proxy
    if keyword == "proxycommand":
        return dataclasses.replace(target, proxy_command=value)
    hops = sftpconfig.proxy_jumps(value)
    via: SSHTarget | None = None
    for number, hop in enumerate(hops):
        # As `ssh -J a,b`: the first hop is configured fully (its own ProxyJump too); each later
        # hop is reached through the one before it, whatever its own ProxyJump says.
        hop_target = _resolve(
            hop.host,
            hop.user,
            hop.port,
            "",
            config_path,
            explicit,
            depth + 1,
            follow_proxy=number == 0,
        )
        via = hop_target if via is None else dataclasses.replace(hop_target, via=via)
    return dataclasses.replace(target, via=via)


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style SHA256 fingerprint, what `ssh-keygen -lf` prints."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class UnknownHostKey(Exception):
    """Raised by the refusing policy; turned into a StorageError with advice by `connect`."""

    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__("unknown host key")
        self.key = key


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise UnknownHostKey(key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """OpenSSH's accept-new: record a host that has no key yet (a changed key never gets here)."""

    def __init__(self, known_hosts: str) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        folder = os.path.dirname(self.known_hosts)
        if folder:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(line)


_FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _transport_factory(sock: socket.socket, **kwargs: object) -> paramiko.Transport:
    transport = paramiko.Transport(
        sock,
        default_window_size=WINDOW_SIZE,
        default_max_packet_size=MAX_PACKET_SIZE,
        **kwargs,
    )
    # AES-GCM first: one pass for cipher and MAC; measured ~1.6x faster than paramiko's default
    # aes128-ctr + hmac-sha2-256 on loopback. The others stay as fallbacks for older servers.
    options = transport.get_security_options()
    offered = tuple(options.ciphers)
    options.ciphers = tuple(c for c in _FAST_CIPHERS if c in offered) + tuple(
        c for c in offered if c not in _FAST_CIPHERS
    )
    return transport


@dataclass
class Connection:
    """One SSH session with its SFTP channel; used by one thread at a time. `via` are the
    sessions with the jump hosts it goes through (closed with it)."""

    client: paramiko.SSHClient
    sftp: paramiko.SFTPClient
    read_chunk: int = 32768  # request sizes; raised if the server announces higher limits
    write_chunk: int = 32768
    via: list[paramiko.SSHClient] = field(default_factory=list)

    def alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def close(self) -> None:
        try:
            self.sftp.close()
        except Exception:  # noqa: BLE001 - closing a dead connection may fail any way
            pass
        self.client.close()
        for jump in reversed(self.via):
            jump.close()


def connect(
    target: SSHTarget, timeout: float, environ: Mapping[str, str] | None = None
) -> Connection:
    """Open (through the jump hosts or proxy command, if any), authenticate and start SFTP;
    StorageError (permanent) or TransientStorageError."""
    env = os.environ if environ is None else environ
    jumps: list[paramiko.SSHClient] = []
    try:
        sock = _open(target, timeout, env, jumps)
        client = _login(target, sock, timeout, env)
    except BaseException:
        for jump in reversed(jumps):
            jump.close()
        raise
    try:
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(30)
        sftp = paramiko.SFTPClient.from_transport(
            transport, window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE
        )
        if sftp is None:
            raise paramiko.SSHException("the server refused the sftp subsystem")
        channel = sftp.get_channel()
        assert channel is not None
        channel.settimeout(timeout)
        return Connection(client, sftp, via=jumps)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        for jump in reversed(jumps):
            jump.close()
        raise TransientStorageError(f"SFTP session with {target.display} failed: {exc}") from None


def _open(
    target: SSHTarget, timeout: float, env: Mapping[str, str], jumps: list[paramiko.SSHClient]
) -> Any:
    """A socket-like way to `target`'s SSH port: a TCP socket, a proxy command's pipes, or a
    direct-tcpip channel through the jump host (whose sessions are appended to `jumps`)."""
    if target.proxy_command is not None:
        try:
            return paramiko.ProxyCommand(target.proxy_command)
        except (paramiko.SSHException, OSError) as exc:
            raise StorageError(
                f"the ProxyCommand for {target.alias} ({target.proxy_command}) did not start: {exc}"
            ) from None
    if target.via is not None:
        hop = target.via
        jump = _login(hop, _open(hop, timeout, env, jumps), timeout, env, role="jump host ")
        jumps.append(jump)
        transport = jump.get_transport()
        assert transport is not None
        try:
            return transport.open_channel(
                "direct-tcpip", (target.hostname, target.port), ("127.0.0.1", 0), timeout=timeout
            )
        except paramiko.ChannelException as exc:
            message = (
                f"the jump host {hop.display} could not connect on to {target.hostname}:"
                f"{target.port}: {exc.text}"
            )
            if exc.code == 1:  # administratively prohibited: its sshd forbids forwarding
                raise StorageError(message + " (its sshd needs AllowTcpForwarding)") from None
            raise TransientStorageError(message) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransientStorageError(f"through the jump host {hop.display}: {exc}") from None
    try:
        sock = socket.create_connection((target.hostname, target.port), timeout=timeout)
    except OSError as exc:
        raise TransientStorageError(
            f"cannot connect to {target.hostname}:{target.port}: {exc.strerror or exc}"
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _login(
    target: SSHTarget, sock: Any, timeout: float, env: Mapping[str, str], role: str = ""
) -> paramiko.SSHClient:
    """An authenticated SSH session with `target` over `sock`; the host key checked as OpenSSH
    checks it. `role` names a jump host in messages."""
    client = paramiko.SSHClient()
    try:
        _load_host_keys(client, target)
        if target.accept_new or env.get(ENV_ACCEPT_NEW, "") in ("1", "yes", "true"):
            client.set_missing_host_key_policy(_AcceptNew(target.known_hosts[0]))
        else:
            client.set_missing_host_key_policy(_RefuseUnknown())
        key_files = [p for p in target.identity_files if os.path.exists(p)]
        client.connect(
            target.hostname,
            port=target.port,
            username=target.user,
            sock=sock,
            key_filename=key_files or None,
            allow_agent=not target.identities_only or not key_files,
            look_for_keys=not target.identities_only,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            transport_factory=_transport_factory,
        )
        return client
    except UnknownHostKey as exc:
        client.close()
        raise StorageError(role + _unknown_host_message(target, exc.key)) from None
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise StorageError(
            f"the SSH host key of {role}{target.known_hosts_name} has CHANGED: the server offers "
            f"{exc.key.get_name()} {fingerprint(exc.key)} but known_hosts records "
            f"{fingerprint(exc.expected_key)}. This may be an attack; if the server was really "
            f"reinstalled, remove the old entry with `ssh-keygen -R '{target.known_hosts_name}'`"
        ) from None
    except paramiko.AuthenticationException:
        client.close()
        raise StorageError(_no_key_message(target, env, role, "no key was accepted")) from None
    except paramiko.SSHException as exc:
        client.close()
        # paramiko says this (an SSHException, not an AuthenticationException) when it had no
        # key and no agent to offer at all: the same advice applies.
        if "No authentication methods available" in str(exc):
            raise StorageError(_no_key_message(target, env, role, "no key to offer")) from None
        raise TransientStorageError(
            f"SSH connection to {role}{target.display} failed: {exc}"
        ) from None
    except (OSError, EOFError) as exc:
        client.close()
        raise TransientStorageError(
            f"SSH connection to {role}{target.display} failed: {exc}"
        ) from None


def _no_key_message(target: SSHTarget, env: Mapping[str, str], role: str, what: str) -> str:
    tried = ", ".join(target.identity_files) or "none"
    agent = "yes" if env.get("SSH_AUTH_SOCK") else "not running"
    return (
        f"SSH authentication failed for {role}{target.display}: {what} (key files: {tried}; "
        f"ssh-agent: {agent}). Set IdentityFile in ~/.ssh/config or {ENV_IDENTITY}, or add "
        "the key to ssh-agent (a key with a passphrase must be in the agent); the server must "
        "list its public key in authorized_keys"
    )


def _load_host_keys(client: paramiko.SSHClient, target: SSHTarget) -> None:
    for system_file in target.system_known_hosts:
        if os.path.exists(system_file):
            try:
                client.load_system_host_keys(system_file)
            except (OSError, paramiko.SSHException):
                pass  # an unreadable system file only means fewer known hosts, as in OpenSSH
    for path in target.known_hosts:
        if os.path.exists(path):
            try:
                client.load_host_keys(path)
            except (OSError, paramiko.SSHException, ValueError) as exc:
                raise StorageError(f"cannot read known_hosts file {path}: {exc}") from None


def _unknown_host_message(target: SSHTarget, key: paramiko.PKey) -> str:
    files = " or ".join(target.known_hosts)
    return (
        f"the SSH host {target.known_hosts_name} is not known: its {key.get_name()} key "
        f"{fingerprint(key)} is not in {files}. Verify the fingerprint with the server's "
        f"administrator, then connect once with `ssh -p {target.port} {target.user}@"
        f"{target.hostname}` to record it, or set {ENV_ACCEPT_NEW}=1 to accept a new host's key"
    )
