"""Alerts through Apprise, received by real servers on 127.0.0.1: a JSON webhook (`json://`,
a threading HTTP server) and a mail server (`mailto://`, aiosmtpd with a login). A refused
connection is a port bound and not listening (kept bound, so nobody else takes it)."""

from __future__ import annotations

import asyncio
import email
import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dedupe.alerts import describe_url, scrub, secret_fragments, send_alert
from tests.clitools import Cli

try:
    from aiosmtpd.smtp import SMTP, AuthResult
except ImportError:  # a test dependency: missing in CI is a failure, elsewhere a skip
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("aiosmtpd is not installed", allow_module_level=True)

PASSWORD = "pa55-w0rd-Secret"
TOKEN = "tok3n-abcdef-123456"


# --- the servers ---------------------------------------------------------------------------


@dataclass
class Webhook:
    port: int
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            hook.posts.append({"path": self.path, "body": json.loads(self.rfile.read(length))})
            self.send_response(hook.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


@dataclass
class MailServer:
    port: int
    messages: list[Message] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    def url(self, password: str = PASSWORD) -> str:
        return (
            f"mailto://office:{password}@127.0.0.1:{self.port}"
            "?to=manager@example.net&from=backup@example.net&mode=insecure"
        )


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    """An SMTP server that wants a login with PASSWORD, on a socket bound before it starts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    mail = MailServer(sock.getsockname()[1])

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mail.messages.append(email.message_from_bytes(envelope.original_content))
            return "250 OK"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        mail.logins.append((data.login, data.password))
        # handled=False: aiosmtpd itself answers a failed login (535)
        return AuthResult(success=data.password == PASSWORD.encode(), handled=False)

    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        factory = lambda: SMTP(  # noqa: E731
            Handler(),
            hostname="mail.test",
            authenticator=authenticate,
            auth_require_tls=False,
        )
        server = loop.run_until_complete(loop.create_server(factory, sock=sock))
        started.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(60)
    yield mail
    loop.call_soon_threadsafe(loop.stop)
    thread.join(60)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, never listening)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def body_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError("no text part")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text and TOKEN not in text, text


# --- delivery ----------------------------------------------------------------------------------


def test_a_webhook_receives_title_body_and_level(webhook: Webhook) -> None:
    problems = send_alert(
        [webhook.url(TOKEN)], "Backup failed", "The drive monday was not attached.", "failure"
    )
    assert problems == []
    (post,) = webhook.posts
    assert post["path"] == f"/{TOKEN}"
    assert post["body"]["title"] == "Backup failed"
    assert post["body"]["message"] == "The drive monday was not attached."
    assert post["body"]["type"] == "failure"
    send_alert([webhook.url()], "Backup done", "All went well.", "success")
    assert webhook.posts[-1]["body"]["type"] == "success"


def test_a_mail_arrives_with_the_login_and_without_the_password(mail_server: MailServer) -> None:
    body = "The nightly backup stopped: the disk /srv/backup is full. Run 'dedupe gc'."
    problems = send_alert([mail_server.url()], "Backup failed on practice-server", body, "failure")
    assert problems == []
    assert mail_server.logins == [(b"office", PASSWORD.encode())]
    (message,) = mail_server.messages
    assert message["Subject"] == "Backup failed on practice-server"
    assert message["To"] == "manager@example.net"
    assert body_of(message).strip() == body
    assert PASSWORD not in message.as_string()


def test_a_message_quoting_an_alert_url_does_not_carry_its_secrets(webhook: Webhook) -> None:
    url = f"json://office:{PASSWORD}@127.0.0.1:{webhook.port}/{TOKEN}"
    send_alert([url], f"about {url}", f"could not reach {url}", "warning")
    (post,) = webhook.posts
    assert_no_secret(post["body"]["title"], post["body"]["message"])
    assert "127.0.0.1" in post["body"]["message"]


# --- failures are reported, never raised -----------------------------------------------------


def test_unreachable_servers_are_reported_and_the_rest_still_get_it(
    webhook: Webhook, refused_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    urls = [
        f"json://office:{PASSWORD}@127.0.0.1:{refused_port}/{TOKEN}",
        f"mailto://office:{PASSWORD}@127.0.0.1:{refused_port}"
        "?to=m@example.net&from=backup@example.net&mode=insecure",
        webhook.url(),
    ]
    problems = send_alert(urls, "Backup warning", "The drive friday is overdue.", "warning")
    assert len(problems) == 2
    assert problems[0].startswith("the alert to json://127.0.0.1 was not sent")
    assert problems[1].startswith("the alert to mailto://127.0.0.1 was not sent")
    assert all("Connection refused" in problem for problem in problems)
    assert all("[alerts] urls" in problem for problem in problems)  # what to do
    assert_no_secret(*problems)
    assert len(webhook.posts) == 1  # the third URL still got the message
    # Apprise's records (which name the URL) never reach the program's log.
    assert_no_secret(*(record.getMessage() for record in caplog.records))


def test_a_server_error_and_an_unknown_url_are_problems(webhook: Webhook) -> None:
    webhook.status = 500
    problems = send_alert(
        [webhook.url(TOKEN), f"nosuchservice://{TOKEN}@example.net"], "t", "b", "failure"
    )
    assert len(problems) == 2
    assert "json://127.0.0.1" in problems[0] and "500" in problems[0]
    assert "does not know this kind of URL" in problems[1]
    assert_no_secret(*problems)
    assert send_alert([], "t", "b", "success") == []


def test_a_wrong_mail_password_is_reported_without_it(mail_server: MailServer) -> None:
    problems = send_alert([mail_server.url("wrong-" + PASSWORD)], "t", "b", "failure")
    assert len(problems) == 1 and "mailto://127.0.0.1" in problems[0]
    assert "535 5.7.8 Authentication credentials invalid" in problems[0]
    assert_no_secret(*problems)
    assert "wrong-" not in problems[0] and mail_server.messages == []


# --- naming URLs -------------------------------------------------------------------------------


def test_urls_are_named_by_scheme_and_host_only() -> None:
    assert describe_url(f"mailtos://office:{PASSWORD}@mail.example.net:465", 1) == (
        "mailtos://mail.example.net"
    )
    assert describe_url(f"json://10.0.0.5:8080/{TOKEN}", 2) == "json://10.0.0.5"
    # Slack, Teams and most services put a token where a host would be.
    assert describe_url(f"slack://{TOKEN}/B0123/C0456", 3) == "slack:// (URL 3 of the profile)"
    assert describe_url("not a url", 4) == "URL 4 of the profile"


def test_every_secret_part_of_a_url_is_scrubbed() -> None:
    urls = [
        f"mailto://office:{PASSWORD}@mail.example.net?to=manager@example.net",
        f"slack://{TOKEN}/B0123XYZ/C0456XYZ",
        f"ntfy://ntfy.example.net/topic?token={TOKEN}",
        "mailto://x:ab@mail.example.net",  # a short password is hidden too
    ]
    secrets = secret_fragments(urls)
    text = " ".join(urls) + f" {PASSWORD} {TOKEN} B0123XYZ ab"
    scrubbed = scrub(text, secrets)
    assert_no_secret(scrubbed)
    assert "B0123XYZ" not in scrubbed and " ab" not in scrubbed
    assert "manager@example.net" not in scrubbed or "mail.example.net" in scrubbed
    assert "mail.example.net" in scrub("mail.example.net refused", secrets)


# --- dedupe alert test -------------------------------------------------------------------------


def test_alert_test_sends_to_every_url_of_the_profile(
    webhook: Webhook, refused_port: int, tmp_path: Path
) -> None:
    refused = f"json://office:{PASSWORD}@127.0.0.1:{refused_port}/{TOKEN}"
    profile = tmp_path / "dedupe.toml"
    profile.write_text(
        f'[repository]\nurl = "{tmp_path / "repo"}"\n\n'
        f'[alerts]\nurls = ["{webhook.url(TOKEN)}", "{refused}"]\n'
    )
    cli = Cli(str(tmp_path / "repo"), str(tmp_path / "cache"))
    result = cli("alert", "test", "--profile", str(profile), check=False)
    assert result.code == 1
    lines = result.text.splitlines()
    assert lines[0] == "sent to json://127.0.0.1"
    assert lines[1].startswith("the alert to json://127.0.0.1 was not sent")
    assert_no_secret(result.text, result.err)
    (post,) = webhook.posts
    assert post["body"]["title"].startswith("dedupe test message from ")
    report = cli("alert", "test", "--profile", str(profile), "--json", check=False).json()
    assert report["sent"] == ["json://127.0.0.1"] and len(report["problems"]) == 1

    profile.write_text(f'[repository]\nurl = "{tmp_path / "repo"}"\n')
    result = cli("alert", "test", "--profile", str(profile), check=False)
    assert result.code == 1 and "no alert URLs" in result.err and "[alerts]" in result.err
