"""`dedupe alert test [--profile FILE]`: send a test message to every alert URL of the profile.

So an office can see, the day it sets dedupe up, that a failed night would reach them: each URL
is named (scheme and host only, never its password or token) with "sent" or the problem. Exit 0
when every URL took the message, 1 when one did not or the profile has none.
"""

from __future__ import annotations

import argparse
import socket

from dedupe.alerts import describe_url, send_each
from dedupe.cli import profilearg
from dedupe.cli.context import Context, Subparsers
from dedupe.errors import DedupeError


def register(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "alert",
        parents=[common],
        help="send a test message to the profile's alert URLs",
        description="Send a test message to every URL in the profile's [alerts] urls and say "
        "which ones took it.",
        epilog="example:\n"
        "  dedupe alert test --profile /etc/dedupe/dedupe.toml\n"
        "      then check the mailbox (or chat) that should get the alerts\n",
    )
    p.add_argument("action", choices=("test",), help="send a test message")
    p.add_argument("--profile", metavar="FILE", help="the profile whose [alerts] to test")
    p.set_defaults(handler=cmd_alert)


def cmd_alert(ctx: Context) -> int:
    profile = profilearg.load(ctx.args.profile)
    urls = list(profile.alerts.urls)
    if not urls:
        raise DedupeError(
            f"the profile {profile.path} has no alert URLs: add them under [alerts], for "
            'example urls = ["mailtos://user:password@mail.example.net?to=office@example.net"]'
        )
    host = socket.gethostname()
    results = send_each(
        urls,
        f"dedupe test message from {host}",
        f"This is a test from dedupe on {host}. If the nightly backup of this server fails or "
        "needs attention, a message like this one arrives here.",
        "success",
    )
    names = [describe_url(url, number) for number, url in enumerate(urls, 1)]
    if ctx.json:
        ctx.emit_json(
            {
                "sent": [name for name, result in zip(names, results, strict=True) if not result],
                "problems": [result for result in results if result],
            }
        )
    else:
        for name, result in zip(names, results, strict=True):
            ctx.out(f"sent to {name}" if result is None else result)
    return 0 if not any(results) else 1
