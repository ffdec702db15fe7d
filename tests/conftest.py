"""Shared pytest fixtures: the real SFTP and S3 test servers live in tests/servers.py."""

from tests.servers import s3_server, sftp_server  # noqa: F401
