"""Every backend against the conformance suite, on real servers, plus backend-specific failures.

SFTP runs against a private OpenSSH sshd and S3 against SeaweedFS (`tests/servers.py`); nothing
is mocked. Faults that a real server cannot be made to produce on demand come from the wrappers in
`dedupe.storage.faults`; dropped connections come from killing the server's session processes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
from botocore.awsrequest import AWSResponse

from dedupe.errors import (
    NoRepository,
    ObjectExists,
    OutOfSpace,
    StorageError,
    TransientStorageError,
    UsageError,
)
from dedupe.storage import open_storage
from dedupe.storage.base import Leftover
from dedupe.storage.faults import (
    DropConnection,
    RecordingStorage,
)
from dedupe.storage.local import LocalStorage
from dedupe.storage.memory import MemoryStorage
from dedupe.storage.retry import RetryingStorage
from dedupe.storage.s3 import S3Storage
from dedupe.storage.sftp import SFTPStorage
from tests.servers import S3Server, SFTPServer
from tests.storage_conformance import StorageConformance

# --- the suite on every backend ----------------------------------------------------------------


def _loop_folder(root: str, folder: str) -> bool:
    """A real listing error, even for root: `folder` becomes a symlink to itself (ELOOP)."""
    path = os.path.join(root, *folder.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(os.path.basename(path), path)
    return True


def _plant(root: str, name: str, data: bytes) -> bool:
    """A temporary file as an interrupted write leaves it, straight on the disk."""
    path = os.path.join(root, *name.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return True


class TestLocal(StorageConformance):
    has_folders = True

    @pytest.fixture
    def storage(self, tmp_path: Any) -> Iterator[LocalStorage]:
        root = tmp_path / "repo"
        root.mkdir()
        yield LocalStorage(str(root))

    def break_folder(self, storage: Any, folder: str) -> bool:
        return _loop_folder(storage.root, folder)

    def plant_leftover(self, storage: Any, name: str, data: bytes) -> bool:
        return _plant(storage.root, name, data)

    def test_folder_names_are_not_objects(self, storage: Any) -> None:
        super().test_folder_names_are_not_objects(storage)


class TestMemory(StorageConformance):
    @pytest.fixture
    def storage(self) -> Iterator[MemoryStorage]:
        yield MemoryStorage()


class TestWrappedLocal(TestLocal):
    """The suite through the wrappers: the whole protocol, leftovers included, delegates."""

    @pytest.fixture
    def storage(self, tmp_path: Any) -> Iterator[Any]:
        root = tmp_path / "repo"
        root.mkdir()
        yield RecordingStorage(RetryingStorage(LocalStorage(str(root)), base_delay=0.001))


class TestRetryingFaultyMemory(StorageConformance):
    """The suite still passes when every first get and put drops and is retried."""

    @pytest.fixture
    def storage(self) -> Iterator[RetryingStorage]:
        faulty = DropConnection(DropConnection(MemoryStorage(), "get"), "put", n=1, times=2)
        yield RetryingStorage(faulty, base_delay=0.001)  # type: ignore[arg-type]


def _sftp(server: SFTPServer, **kwargs: Any) -> SFTPStorage:
    path = f"{server.root}/{uuid.uuid4().hex}"
    return SFTPStorage.from_url(
        server.url(path),
        create=True,
        identity=server.identity,
        known_hosts=server.known_hosts,
        **kwargs,
    )


class TestSFTP(StorageConformance):
    has_folders = True

    def break_folder(self, storage: Any, folder: str) -> bool:
        # OpenSSH reports ELOOP as "no such file", so the folder becomes a link to its parent:
        # a listing that would never end (the test server runs on this machine).
        path = os.path.join(storage.target.path, *folder.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(".." if "/" in folder else ".", path)  # its parent folder, in the repository
        return True

    def plant_leftover(self, storage: Any, name: str, data: bytes) -> bool:
        return _plant(storage.target.path, name, data)  # the test server runs on this machine

    @pytest.fixture
    def storage(self, sftp_server: SFTPServer) -> Iterator[SFTPStorage]:
        storage = _sftp(sftp_server)
        yield storage
        storage.close()


@pytest.fixture(scope="session")
def s3_bucket(s3_server: S3Server) -> str:
    bucket = "dedupe-tests"
    with pytest.MonkeyPatch.context() as mp:
        _s3_env(mp, s3_server)
        S3Storage(bucket, endpoint=s3_server.endpoint).create_bucket()
    return bucket


def _s3_env(mp: pytest.MonkeyPatch, server: S3Server) -> None:
    """Credentials from the environment only; no stray ~/.aws files or profiles."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        mp.delenv(var, raising=False)
    mp.setenv("AWS_CONFIG_FILE", os.devnull)
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for key, value in server.env().items():
        mp.setenv(key, value)


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    _s3_env(monkeypatch, s3_server)
    return s3_server


class TestS3(StorageConformance):
    @pytest.fixture
    def storage(self, s3_env: S3Server, s3_bucket: str) -> Iterator[S3Storage]:
        storage = S3Storage(s3_bucket, f"repo-{uuid.uuid4().hex}", endpoint=s3_env.endpoint)
        yield storage
        storage.close()


# --- SFTP specifics ----------------------------------------------------------------------------


def _wait_for_temporary(folder: str, min_size: int, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.scandir(folder) if os.path.isdir(folder) else []:
            if entry.name.startswith(".tmp-") and entry.stat().st_size >= min_size:
                return entry.path
        time.sleep(0.001)
    raise AssertionError("the upload never started")


def test_sftp_put_cut_midway_leaves_nothing_visible(sftp_server: SFTPServer) -> None:
    storage = _sftp(sftp_server, reconnect_attempts=0)
    try:
        storage.put("data/ab/other", b"before")
        server_dir = storage.target.path + "/data/ab"
        data = b"\x5a" * (256 * 1024 * 1024)
        errors: list[BaseException] = []

        def upload() -> None:
            try:
                storage.put("data/ab/big", data)
            except BaseException as exc:  # noqa: BLE001 - inspected below
                errors.append(exc)

        thread = threading.Thread(target=upload)
        thread.start()
        _wait_for_temporary(server_dir, 1024 * 1024)
        sftp_server.drop_connections()
        thread.join(60)
        assert len(errors) == 1 and isinstance(errors[0], TransientStorageError), errors
        # A fresh connection sees no half object, only the hidden temporary it left behind.
        assert not storage.exists("data/ab/big")
        assert [i.name for i in storage.list()] == ["data/ab/other"]
        assert any(".tmp-" in p for p in storage.list_temporary())
        leftovers = list(storage.list_leftovers())
        assert [t.name.rsplit("/", 1)[0] for t in leftovers] == ["data/ab"]
        assert leftovers[0].size > 0
        with pytest.raises(StorageError):  # only temporaries may be deleted this way
            storage.delete_leftover(Leftover("data/ab/other", 1, 0.0))
        storage.delete_leftover(leftovers[0])
        assert list(storage.list_leftovers()) == []
        assert storage.get("data/ab/other")  # untouched
        assert not os.path.exists(server_dir + "/big")
        storage.put("data/ab/big", b"complete")
        assert storage.get("data/ab/big") == b"complete"
    finally:
        storage.close()


def test_sftp_reconnects_after_dropped_connections(sftp_server: SFTPServer) -> None:
    storage = _sftp(sftp_server)
    try:
        storage.put("a", b"one")
        sftp_server.drop_connections()
        time.sleep(0.2)
        assert storage.get("a") == b"one"  # the dead pooled connection is replaced
        sftp_server.drop_connections()
        time.sleep(0.2)
        storage.put("b", b"two")
        assert sorted(i.name for i in storage.list()) == ["a", "b"]
    finally:
        storage.close()


def test_sftp_uses_the_servers_limits_and_reports_free_space(sftp_server: SFTPServer) -> None:
    storage = _sftp(sftp_server)
    try:
        storage.put("x", b"x")
        conn = storage._pool.acquire()
        try:
            assert conn.alive() and conn.sftp.write_chunk > 32768  # its limits@openssh.com
        finally:
            storage._pool.release(conn)
        assert (storage.free_space() or 0) > 0
    finally:
        storage.close()


def _host_only_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    """A HOME with nothing in it, no agent, no dedupe variables: only what the test gives."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("SSH_AUTH_SOCK", "DEDUPE_SFTP_IDENTITY", "DEDUPE_SFTP_KNOWN_HOSTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY", raising=False)
    monkeypatch.delenv("DEDUPE_SSH_COMMAND", raising=False)
    return str(home)


def test_sftp_unknown_host_is_refused_then_accepted_on_request(
    sftp_server: SFTPServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _host_only_env(monkeypatch, tmp_path)
    known = tmp_path / "known_hosts"
    url = sftp_server.url(f"{sftp_server.root}/hostkeys")
    storage = SFTPStorage.from_url(url, identity=sftp_server.identity, known_hosts=str(known))
    with pytest.raises(StorageError) as refused:
        storage.exists("x")
    message = str(refused.value)
    assert "not known" in message and "SHA256:" in message
    assert "DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY" in message
    assert not isinstance(refused.value, TransientStorageError)
    assert not known.exists()

    monkeypatch.setenv("DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY", "1")
    storage = SFTPStorage.from_url(
        url, create=True, identity=sftp_server.identity, known_hosts=str(known)
    )
    storage.put("x", b"1")
    storage.close()
    recorded = subprocess.run(  # hashed or not, as /etc/ssh/ssh_config says (HashKnownHosts)
        ["ssh-keygen", "-F", f"[127.0.0.1]:{sftp_server.port}", "-f", str(known)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "ssh-ed25519" in recorded.stdout

    monkeypatch.delenv("DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY")
    storage = SFTPStorage.from_url(url, identity=sftp_server.identity, known_hosts=str(known))
    assert storage.get("x") == b"1"  # recorded: accepted without the variable now
    storage.close()


def test_sftp_changed_host_key_is_refused_even_with_accept_new(
    sftp_server: SFTPServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _host_only_env(monkeypatch, tmp_path)
    monkeypatch.setenv("DEDUPE_SFTP_ACCEPT_NEW_HOST_KEY", "1")
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key_b64 = (tmp_path / "other_key.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sftp_server.port} {key_type} {key_b64}\n")
    url = sftp_server.url(f"{sftp_server.root}/changed")
    storage = SFTPStorage.from_url(url, identity=sftp_server.identity, known_hosts=str(known))
    with pytest.raises(StorageError, match="CHANGED"):
        storage.exists("x")


def test_sftp_wrong_key_gets_a_clear_message(
    sftp_server: SFTPServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _host_only_env(monkeypatch, tmp_path)
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    url = sftp_server.url(f"{sftp_server.root}/auth")
    storage = SFTPStorage.from_url(url, identity=str(stranger), known_hosts=sftp_server.known_hosts)
    with pytest.raises(StorageError, match="authentication failed") as failed:
        storage.exists("x")
    assert not isinstance(failed.value, TransientStorageError)


def test_sftp_uses_the_ssh_config_given_to_ssh(
    sftp_server: SFTPServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ssh reads ~/.ssh of the account (not $HOME); DEDUPE_SSH_COMMAND can name another config.
    _host_only_env(monkeypatch, tmp_path)
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host backupbox\n  HostName 127.0.0.1\n  Port {sftp_server.port}\n"
        f"  User {sftp_server.user}\n  IdentityFile {sftp_server.identity}\n"
        f"  UserKnownHostsFile {sftp_server.known_hosts}\n"
    )
    monkeypatch.setenv("DEDUPE_SSH_COMMAND", f"ssh -F {config}")
    storage = open_storage(f"sftp://backupbox{sftp_server.root}/viaconfig", create=True)
    try:
        storage.put("data/x", b"via config")
        assert storage.get("data/x") == b"via config"
    finally:
        storage.close()


def test_open_storage_sftp_with_environment(
    sftp_server: SFTPServer, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _host_only_env(monkeypatch, tmp_path)
    for key, value in sftp_server.env().items():
        monkeypatch.setenv(key, value)
    storage = open_storage(sftp_server.url(f"{sftp_server.root}/viaenv"), create=True)
    try:
        storage.put("k", b"v")
        assert [i.name for i in storage.list()] == ["k"]
    finally:
        storage.close()


# --- S3 specifics ------------------------------------------------------------------------------


def test_s3_failed_multipart_upload_leaves_nothing(s3_env: S3Server, s3_bucket: str) -> None:
    storage = S3Storage(
        s3_bucket, f"mp-{uuid.uuid4().hex}", endpoint=s3_env.endpoint, part_size=5 << 20
    )
    parts_sent = 0

    def cut_the_line(**_kwargs: Any) -> None:
        nonlocal parts_sent
        parts_sent += 1
        if parts_sent == 3:
            raise botocore.exceptions.EndpointConnectionError(endpoint_url=s3_env.endpoint)

    storage._client.meta.events.register("before-call.s3.UploadPart", cut_the_line)
    with pytest.raises(TransientStorageError):
        storage.put("packs/big", os.urandom(30 << 20))
    assert not storage.exists("packs/big")
    assert list(storage.list()) == []
    assert storage.list_uploads() == []  # aborted, not left to be billed
    storage._client.meta.events.unregister("before-call.s3.UploadPart", cut_the_line)
    storage.put("packs/big", b"small now")
    with pytest.raises(ObjectExists):
        storage.put("packs/big", os.urandom(20 << 20), exclusive=True)  # multipart + condition
    assert storage.get("packs/big") == b"small now"


def test_s3_if_none_match_is_honoured_by_the_server(s3_env: S3Server, s3_bucket: str) -> None:
    storage = S3Storage(s3_bucket, f"inm-{uuid.uuid4().hex}", endpoint=s3_env.endpoint)
    storage.put("locks/a", b"first")
    with pytest.raises(botocore.exceptions.ClientError) as refused:  # no HEAD shortcut here
        storage._client.put_object(
            Bucket=s3_bucket, Key=f"{storage.prefix}/locks/a", Body=b"second", IfNoneMatch="*"
        )
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_s3_small_pages_still_list_everything(s3_env: S3Server, s3_bucket: str) -> None:
    storage = S3Storage(
        s3_bucket, f"pages-{uuid.uuid4().hex}", endpoint=s3_env.endpoint, list_page_size=7
    )
    names = [f"index/{i:03d}" for i in range(30)]
    for name in names:
        storage.put(name, b"i")
    assert [i.name for i in storage.list("index/")] == names


@pytest.mark.parametrize(
    "answer, error",
    [
        ("unreachable", TransientStorageError),
        ("denied", StorageError),
    ],
)
def test_s3_listing_that_fails_on_a_later_page_raises(
    s3_env: S3Server, s3_bucket: str, answer: str, error: type[Exception]
) -> None:
    """A listing cut off after its first page is an error, never the first page as if all."""
    storage = S3Storage(
        s3_bucket, f"repo-{uuid.uuid4().hex}", endpoint=s3_env.endpoint, list_page_size=2
    )
    for i in range(5):
        storage.put(f"snapshots/s{i}", b"s")
    pages = [0]

    def second_page_fails(**_kwargs: Any) -> Any:
        pages[0] += 1
        if pages[0] < 2:
            return None
        if answer == "unreachable":
            raise botocore.exceptions.EndpointConnectionError(endpoint_url=s3_env.endpoint)
        denied = {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}
        status = {"ResponseMetadata": {"HTTPStatusCode": 403}}
        return AWSResponse(s3_env.endpoint, 403, {}, None), denied | status

    storage._client.meta.events.register("before-call.s3.ListObjectsV2", second_page_fails)
    try:
        with pytest.raises(error) as refused:
            list(storage.list("snapshots/"))
        assert isinstance(refused.value, StorageError)
        assert (error is TransientStorageError) == isinstance(refused.value, TransientStorageError)
    finally:
        storage._client.meta.events.unregister("before-call.s3.ListObjectsV2", second_page_fails)
    assert len(list(storage.list("snapshots/"))) == 5
    storage.close()


def test_s3_missing_bucket_is_no_repository(s3_env: S3Server) -> None:
    storage = S3Storage.from_url("s3://no-such-bucket-here/repo", endpoint=s3_env.endpoint)
    with pytest.raises(NoRepository):
        storage.get("config")
    created = S3Storage.from_url(
        f"s3://made-by-init-{uuid.uuid4().hex[:8]}/repo", endpoint=s3_env.endpoint, create=True
    )
    created.put("config", b"c")
    assert created.get("config") == b"c"


def test_s3_wrong_credentials_get_a_clear_message(
    s3_env: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    storage = open_storage(f"s3://{s3_bucket}/repo")  # endpoint from DEDUPE_S3_ENDPOINT
    for call in (lambda: storage.get("config"), lambda: list(storage.list(""))):
        with pytest.raises(StorageError) as refused:
            call()
        message = str(refused.value)
        assert "AWS_ACCESS_KEY_ID" in message and "not-the-secret" not in message
        assert not isinstance(refused.value, TransientStorageError)
        assert refused.value.exit_code == 1
    assert storage.free_space() is None


def test_sftp_full_disk_is_out_of_space(sftp_server: SFTPServer) -> None:
    """A real ENOSPC: the repository folder is a 4 MiB tmpfs (needs root; skipped otherwise)."""
    storage = _sftp(sftp_server)
    mount_point = storage.target.path
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mount_point],
        capture_output=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        storage.close()
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        storage.put("data/small", b"s" * 1000)
        with pytest.raises(OutOfSpace):
            storage.put("data/big", os.urandom(6 * 1024 * 1024))
        assert [i.name for i in storage.list()] == ["data/small"]
        assert list(storage.list_temporary()) == []  # the partial temporary was removed
        storage.put("data/after", b"there is room for this")
        assert storage.get("data/after") == b"there is room for this"
    finally:
        storage.close()
        subprocess.run(["umount", "-l", mount_point], check=False)


@pytest.mark.parametrize(
    "url",
    ["sftp://host", "sftp://host/", "sftp://user:secret@host/path", "sftp://host:notaport/x"],
)
def test_sftp_bad_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError) as refused:
        SFTPStorage.from_url(url)
    assert "secret" not in str(refused.value)


def test_sftp_url_paths() -> None:
    from dedupe.storage.sftpssh import parse_sftp_url

    absolute = parse_sftp_url("sftp://u@h:2222/srv/backup/", ssh_config=os.devnull)
    assert (absolute.user, absolute.hostname, absolute.port) == ("u", "h", 2222)
    assert absolute.path == "/srv/backup"
    assert parse_sftp_url("sftp://u@h/~/backups", ssh_config=os.devnull).path == "backups"
