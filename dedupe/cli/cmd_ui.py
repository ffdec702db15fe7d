"""`dedupe ui [--profile FILE] [--listen 127.0.0.1:PORT]`: the office's web page (the
application is dedupe.ui's; this decides what it serves, binds the address and runs uvicorn).

What is served: the profile named by `--profile`; else the repository of `--repo`; else the
profile of `DEDUPE_PROFILE`; else the repository of `DEDUPE_REPO`; else a profile found in the
usual places (./dedupe.toml, the config folder, /etc/dedupe). A command-line option beats the
environment, and the environment beats a file found lying around.

The address is loopback only unless `--listen` names another one; then a warning says that
the page (and the password typed into it) crosses the network unencrypted unless a TLS reverse
proxy stands in front. The socket is bound before the line "open http://..." is printed, so a
script (or a test) that reads that line can connect at once. The web server's access log is
off: URLs carry file names, which are patient data in a practice.

The web framework is the optional `ui` extra (`pip install 'dedupe-backup[ui]'`): it is imported
only when this command runs, so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys

from dedupe.cli.context import Context, Subparsers
from dedupe.errors import DedupeError, UsageError
from dedupe.profile import Profile, find_profile, load_profile

DEFAULT_LISTEN = "127.0.0.1:8765"

EXAMPLES = """\
examples:
  The office's page on the backup server itself (open http://127.0.0.1:8765/ there):
    dedupe ui --profile /etc/dedupe/dedupe.toml

  Look into one repository, such as a rotating drive, without a profile:
    dedupe ui --repo /media/backup-monday/repo --listen 127.0.0.1:8766

  From another computer: keep dedupe on loopback and put a TLS reverse proxy in front
  that forwards https://backup.practice.example/ to http://127.0.0.1:8765/ with the Host
  header 127.0.0.1:8765 (nginx's proxy_pass does so by itself; Caddy needs
  'header_up Host {upstream_hostport}'): the page refuses names it does not know.

The page asks for the backup password before it shows anything, and logs out after 15
minutes without use. Restores write only on this server, into the folder typed on the page.
"""


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "ui",
        parents=[common],
        help="a web page for the office: status, kept backups, drive forecast, browse, restore",
        description="Serve a local web page: every backup destination at a glance, a calendar "
        "of which backups are kept and why, the drive forecast, and browsing, downloading and "
        "restoring files. Nothing is shown before the backup password is typed into the page. "
        "Without a profile it serves the repository of --repo or DEDUPE_REPO.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    p.add_argument("--profile", metavar="FILE", help="the profile (dedupe.toml)")
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"the address to serve on (default {DEFAULT_LISTEN}: this computer only). "
        "Another address lets other computers reach the page: put a TLS reverse proxy in "
        "front of it",
    )
    p.set_defaults(handler=cmd_ui)


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:8765', '[::1]:8765', 'localhost:8765' -> (host, port); UsageError else."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise UsageError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:8765")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"--listen {text!r}: the port must be a number, e.g. 8765") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"--listen {text!r}: the port must be between 0 and 65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _what_to_serve(ctx: Context) -> tuple[Profile | None, str, str | None]:
    """(profile or None, repository URL, S3 endpoint), in the order the docstring gives."""
    args = ctx.args
    env = os.environ
    endpoint = args.s3_endpoint or env.get("DEDUPE_S3_ENDPOINT") or None
    if args.profile:
        path = find_profile(args.profile, env, os.getcwd())
    elif args.repo:
        return None, str(args.repo), endpoint
    elif env.get("DEDUPE_PROFILE"):
        path = find_profile(None, env, os.getcwd())
    elif env.get("DEDUPE_REPO"):
        return None, env["DEDUPE_REPO"], endpoint
    else:
        path = find_profile(None, env, os.getcwd())
        if path is None:
            raise UsageError(
                "nothing to serve: give --profile FILE or --repo URL (or set DEDUPE_PROFILE "
                "or DEDUPE_REPO)"
            )
    assert path is not None  # a named profile is found or refused by find_profile
    profile = load_profile(path)
    return profile, profile.repository.url, None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise DedupeError(
            f"cannot serve on {host}:{port}: {exc.strerror or exc}. Another program may use "
            "that port: choose another with --listen 127.0.0.1:PORT"
        ) from None
    sock.set_inheritable(False)
    return sock


def cmd_ui(ctx: Context) -> int:
    host, port = parse_listen(ctx.args.listen)
    profile, url, endpoint = _what_to_serve(ctx)
    try:
        import uvicorn

        from dedupe.ui import UiConfig, create_app
    except ImportError as exc:
        raise DedupeError(
            "the web page needs the optional 'ui' packages, which are not installed: run "
            f"pip install 'dedupe-backup[ui]' (missing: {exc.name})"
        ) from None
    if not is_loopback(host):
        ctx.warn(
            f"serving on {host}, which other computers can reach: the page and the password "
            "typed into it travel unencrypted. Put a TLS reverse proxy in front of it (see the "
            "README), or use --listen 127.0.0.1:PORT"
        )
    sock = _bind(host, port)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    allowed: tuple[str, ...] = ()
    if is_loopback(host):
        allowed = tuple(
            f"{name}:{port}" for name in dict.fromkeys((shown, "127.0.0.1", "localhost", "[::1]"))
        )
    config = UiConfig(
        repo_url=url,
        profile=profile,
        s3_endpoint=endpoint,
        env=dict(os.environ),
        allowed_hosts=allowed,
    )
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    what = f"profile {profile.path}" if profile is not None else f"repository {url}"
    ctx.out(f"dedupe ui: serving {what}")
    ctx.out(f"dedupe ui: open http://{shown}:{port}/ in a browser (Ctrl-C to stop)")
    sys.stdout.flush()
    try:
        server.run(sockets=[sock])
    finally:
        app.state.ui.sessions.end_all()
        sock.close()
    return 0
