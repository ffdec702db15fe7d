"""`~/.ssh/config` read as OpenSSH reads it, for the SFTP backend, or refused loudly.

paramiko's `SSHConfig` parses Host and Match blocks and expands tokens, but it treats `Include`
as an unknown word and knows nothing of how to connect (ProxyJump, ProxyCommand): a directive it
does not act on would be ignored silently, and a host meant to be reached through a jump host
would be dialled directly. This module closes that gap:

- `Include` is expanded before paramiko sees the text, as ssh_config(5) says: several paths per
  line, glob patterns in lexical order, `~`, relative paths taken from `~/.ssh` (from
  `/etc/ssh` for a system file), files that do not exist skipped, at most 16 levels. An
  Include at the top (or under `Host *`) applies the files there and then returns to the top;
  one inside a `Host`/`Match` block applies the files to that block only. Such a file with
  its own Host or Match sections cannot be expressed in one flat text and is refused, naming
  the file and the line (OpenSSH would read its sections only when the outer block matches).
  An Include with `%` tokens or `${VAR}` is refused too.
- `lookup` answers for one host and refuses, naming the directive, every directive that would
  change where or as whom we connect or how the host is authenticated and that dedupe does not
  implement (`REFUSED`). Directives that only matter to an interactive ssh (forwardings, TTYs,
  control sockets, keep-alives, `AddKeysToAgent`, `UseKeychain`...) have no meaning for a
  backup's SFTP session and are left alone.
- `proxy_jumps` splits a `ProxyJump` value (`[user@]host[:port]` or `ssh://...`, comma
  separated, `none`) into hops; `dedupe.storage.sshconn` connects through them with
  direct-tcpip channels, each hop configured from this file as OpenSSH would.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import paramiko

from dedupe.errors import StorageError

MAX_INCLUDE_DEPTH = 16  # OpenSSH's READCONF_MAX_DEPTH

# Directives that change the destination, the identity offered or the host key check, and that
# dedupe does not implement: used silently, each would make dedupe connect differently from ssh.
REFUSED = {
    "certificatefile": "SSH certificates",
    "hostkeyalias": "host key aliases",
    "pkcs11provider": "PKCS#11 keys (smart cards)",
    "securitykeyprovider": "security-key providers",
    "knownhostscommand": "a command that lists known hosts",
    "bindaddress": "a chosen local address",
    "bindinterface": "a chosen local interface",
    "remotecommand": "a remote command instead of the SFTP subsystem",
}

_LINE = re.compile(r"^\s*(\w+)(?:\s*=\s*|\s+)(.+?)\s*$")


@dataclass(frozen=True)
class Hop:
    """One jump host of a ProxyJump list, as written (user and port None when not given)."""

    host: str
    user: str | None
    port: int | None


def expanded_text(path: str, *, system: bool = False) -> str:
    """The config file at `path` with every Include replaced by what it includes."""
    base = "/etc/ssh" if system else os.path.expanduser("~/.ssh")
    return "\n".join(_expand(path, base, 0, None)) + "\n"


def _expand(path: str, base: str, depth: int, enclosing: str | None) -> list[str]:
    """The lines of `path`, Includes expanded. `enclosing` is the Host/Match line the Include
    that named this file stood under (None: the top)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise StorageError(f"cannot read the SSH config {path}: {exc.strerror or exc}") from None
    out: list[str] = []
    block = enclosing
    for number, line in enumerate(lines, 1):
        found = _LINE.match(line)
        keyword = found[1].lower() if found and not line.lstrip().startswith("#") else ""
        if keyword in ("host", "match"):
            if enclosing is not None and not _is_top(enclosing):
                raise StorageError(
                    f"{path} line {number}: this file is included inside '{enclosing}' and "
                    f"has its own '{line.strip()}' section; dedupe cannot apply that as "
                    "OpenSSH does. Move the Include to the top of the including file, or the "
                    "settings into the including block."
                )
            block = line.strip()
        if keyword != "include":
            out.append(line)
            continue
        assert found is not None
        if depth >= MAX_INCLUDE_DEPTH:
            raise StorageError(f"{path} line {number}: Include nested too deeply (a loop?)")
        for name in _included_files(found[2], base, path, number):
            out.extend(_expand(name, base, depth + 1, block))
            if block is None or _is_top(block):
                out.append("Host *")  # back at the top, as OpenSSH is after an Include
            else:
                out.append(block)  # back in the block the Include stood in
    return out


def _is_top(block: str) -> bool:
    return block.split() == ["Host", "*"] or block.lower().split() == ["host", "*"]


def _included_files(value: str, base: str, path: str, number: int) -> list[str]:
    if "%" in value or "${" in value:
        raise StorageError(
            f"{path} line {number}: 'Include {value}' uses % tokens or ${{}} variables, which "
            "dedupe does not expand; name the files plainly"
        )
    try:
        patterns = shlex.split(value)
    except ValueError:
        raise StorageError(f"{path} line {number}: cannot read 'Include {value}'") from None
    names: list[str] = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if not os.path.isabs(pattern):
            pattern = os.path.join(base, pattern)
        names.extend(sorted(n for n in glob.glob(pattern) if os.path.isfile(n)))
    return names


def lookup(alias: str, path: str) -> dict[str, Any]:
    """The settings for host `alias` from the config file at `path` (Includes expanded); {} if
    there is no such file. A refused directive raises StorageError naming it."""
    if not os.path.exists(path):
        return {}
    text = expanded_text(path)
    try:
        settings = dict(paramiko.SSHConfig.from_text(text).lookup(alias))
    except (paramiko.SSHException, ValueError) as exc:
        raise StorageError(f"cannot use the SSH config {path}: {exc}") from None
    for keyword, what in REFUSED.items():
        if keyword in settings:
            raise StorageError(
                f"{path} sets {_spelled(keyword)} for host {alias}: dedupe does not support "
                f"{what}, and would connect differently from ssh. Give the backup its own "
                f"Host entry without it (e.g. 'Host {alias}-backup' with HostName {alias}) and "
                "use that name in the sftp:// URL."
            )
    agent = settings.get("identityagent")
    if agent is not None and agent.lower() not in ("none", "ssh_auth_sock"):
        agent_path = os.path.expanduser(agent.replace("$SSH_AUTH_SOCK", ""))
        if agent_path != os.environ.get("SSH_AUTH_SOCK", ""):
            raise StorageError(
                f"{path} sets IdentityAgent {agent} for host {alias}: dedupe uses the agent of "
                "SSH_AUTH_SOCK only. Set SSH_AUTH_SOCK to that socket for the backup job, or "
                "use IdentityFile."
            )
    return settings


def _spelled(keyword: str) -> str:
    names = {
        "certificatefile": "CertificateFile",
        "hostkeyalias": "HostKeyAlias",
        "pkcs11provider": "PKCS11Provider",
        "securitykeyprovider": "SecurityKeyProvider",
        "knownhostscommand": "KnownHostsCommand",
        "bindaddress": "BindAddress",
        "bindinterface": "BindInterface",
        "remotecommand": "RemoteCommand",
    }
    return names.get(keyword, keyword)


def proxy_jumps(value: str) -> list[Hop]:
    """The hops of a ProxyJump value, first hop first; [] for `none`."""
    if value.strip().lower() == "none":
        return []
    hops = []
    for part in value.split(","):
        spec = part.strip()
        if not spec:
            continue
        parsed = urlparse(spec if spec.startswith("ssh://") else f"ssh://{spec}")
        try:
            port = parsed.port
        except ValueError:
            raise StorageError(f"ProxyJump {value}: bad port in {spec!r}") from None
        if not parsed.hostname:
            raise StorageError(f"ProxyJump {value}: no host in {spec!r}")
        hops.append(Hop(parsed.hostname, parsed.username or None, port))
    return hops


def proxy_setting(settings: dict[str, Any]) -> tuple[str, str] | None:
    """('proxyjump' or 'proxycommand', value): whichever the config gave first (OpenSSH uses
    the first one obtained; paramiko's lookup keeps that order); None for neither (or `none`)."""
    for keyword in settings:
        if keyword in ("proxyjump", "proxycommand"):
            value = str(settings[keyword]).strip()
            return None if value.lower() == "none" else (keyword, value)
    return None
