"""S3 backend (`s3://bucket/prefix`) on boto3, for AWS and S3-compatible servers.

- Endpoint: the `endpoint` argument (`--s3-endpoint` / `DEDUPE_S3_ENDPOINT`, which `open_storage`
  passes), else AWS. With a custom endpoint, path-style addressing is used (what MinIO, Ceph and
  SeaweedFS expect) and the region defaults to us-east-1.
- Credentials and region: only boto3's usual chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
  `AWS_PROFILE`, `~/.aws/credentials`, `~/.aws/config`, instance roles). Never from the URL, never
  logged, never in a message.
- Atomicity needs no rename: an S3 PUT (and a completed multipart upload) is all or nothing.
  Objects above `multipart_threshold` go up in parts sent in parallel; a failed multipart upload
  is aborted, so no half object ever appears under its name.
- `exclusive=True` sends `If-None-Match: *`; the server's 412 becomes `ObjectExists`. Servers that
  ignore the header are covered, best effort, by a HEAD before the upload.
- `get(offset, length)` is a ranged GET; a short body is an error, never silently returned.
- `delete` of a missing object raises `ObjectNotFound` (S3 itself would answer 204): one HEAD first.
- Errors: 404/NoSuchKey -> ObjectNotFound; NoSuchBucket -> NoRepository; 5xx, throttling, timeouts
  and dropped connections -> TransientStorageError (after botocore's own few quick retries);
  everything else -> StorageError with S3's error code.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
import botocore.exceptions as bce
from botocore.config import Config

from dedupe.errors import (
    NoRepository,
    ObjectExists,
    ObjectNotFound,
    StorageError,
    TransientStorageError,
    UsageError,
)
from dedupe.storage.base import (
    Leftover,
    ObjectInfo,
    redact_url,
    refuse_leftover,
    short_read,
    validate_name,
)

MiB = 1024 * 1024
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "RequestLimitExceeded",
    "TooManyRequests",
}
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "InvalidToken",
    "ExpiredToken",
}
# Raised by botocore/urllib3 when the network, not the server, failed: always worth a retry.
_NETWORK_ERRORS: tuple[type[Exception], ...] = (
    bce.ConnectionError,
    bce.HTTPClientError,
    bce.IncompleteReadError,
    bce.ResponseStreamingError,
    ConnectionError,
    TimeoutError,
)


_Keys = list[str]  # (`list` is a method name inside S3Storage)


def _md5(data: bytes | memoryview) -> str:
    """Content-MD5 lets the server refuse a body damaged on the way."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _mtime(last_modified: Any) -> float | None:
    """S3's LastModified (a datetime by the server's clock) as seconds since the epoch."""
    return float(last_modified.timestamp()) if last_modified is not None else None


class S3Storage:
    """Objects as keys under `prefix/` in one bucket.

    Thread-safe (one boto3 client, `connections` pooled HTTP connections; `max_connections` tells
    an uploader how many threads are worth using).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint: str | None = None,
        url: str | None = None,
        multipart_threshold: int = 16 * MiB,
        part_size: int = 8 * MiB,
        connections: int = 16,
        list_page_size: int = 1000,
    ) -> None:
        if endpoint and "://" not in endpoint:
            raise UsageError(f"the S3 endpoint {endpoint!r} needs a scheme: http:// or https://")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint
        self.url = redact_url(url or f"s3://{bucket}/{self.prefix}")
        self.multipart_threshold = max(multipart_threshold, 5 * MiB)
        self.part_size = max(part_size, 5 * MiB)  # S3's minimum for every part but the last
        self.max_connections = connections
        self.list_page_size = list_page_size
        session = boto3.session.Session()
        config = Config(
            connect_timeout=10,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=connections,
            s3={"addressing_style": "path" if endpoint else "auto"},
            # Newer boto3 adds CRC trailers that several S3-compatible servers reject; we send
            # Content-MD5 instead, and every object is authenticated by the repository anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        region = session.region_name or ("us-east-1" if endpoint else None)
        self._client: Any = session.client(
            "s3", endpoint_url=endpoint or None, region_name=region, config=config
        )

    @classmethod
    def from_url(
        cls, url: str, *, endpoint: str | None = None, create: bool = False, **kwargs: Any
    ) -> S3Storage:
        """Open `s3://bucket/prefix`; with `create`, make the bucket if it is missing (init)."""
        parsed = urlparse(url)
        shown = redact_url(url)  # the only form of the URL any message may carry
        if parsed.scheme.lower() != "s3" or not parsed.netloc:
            raise UsageError(f"not an S3 URL: {shown!r} (use s3://bucket/prefix)")
        if "@" in parsed.netloc:
            raise UsageError(
                f"S3 URLs must not carry credentials: {shown!r}. Use s3://bucket/prefix and "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
            )
        endpoint = endpoint or os.environ.get("DEDUPE_S3_ENDPOINT") or None
        storage = cls(parsed.netloc, unquote(parsed.path), endpoint=endpoint, url=url, **kwargs)
        if create:
            storage.create_bucket()
        return storage

    # --- plumbing ------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        validate_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(Bucket=self.bucket, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to the protocol's errors
            raise self._map_error(exc, what) from None

    def _map_error(self, exc: Exception, what: str) -> StorageError | NoRepository:
        where = f"s3://{self.bucket}" + (f" at {self.endpoint}" if self.endpoint else "")
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, bce.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code == "NoSuchBucket":
                return NoRepository(f"there is no bucket {where}")
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                return ObjectNotFound(f"not found: {what}")
            if code == "PreconditionFailed" or status == 412:
                return ObjectExists(f"{what}: the object exists already")
            if code in _TRANSIENT_CODES or status >= 500 or status == 429:
                return TransientStorageError(f"{what}: {where} is unavailable ({code or status})")
            if code in _CREDENTIAL_CODES or status == 403:
                return StorageError(
                    f"{what}: {where} refused the credentials ({code or status}). Check "
                    "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE and ~/.aws/), "
                    "and that the key may use this bucket"
                )
            message = error.get("Message", "")
            return StorageError(f"{what}: {where} answered {code or status}: {message}")
        if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
            return StorageError(
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_PROFILE with ~/.aws/credentials"
            )
        if isinstance(exc, _NETWORK_ERRORS):
            return TransientStorageError(f"{what}: cannot reach {where}: {exc}")
        return StorageError(f"{what}: {exc}")

    def create_bucket(self) -> None:
        """Make the bucket unless it exists (for `init`)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except bce.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 404:
                raise self._map_error(exc, f"checking bucket {self.bucket}") from None
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(exc, f"checking bucket {self.bucket}") from None
        kwargs: dict[str, Any] = {}
        region = self._client.meta.region_name
        if not self.endpoint and region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            self._client.create_bucket(Bucket=self.bucket, **kwargs)
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise self._map_error(exc, f"creating bucket {self.bucket}") from None
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(exc, f"creating bucket {self.bucket}") from None

    # --- protocol ------------------------------------------------------------------------------

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        key = self._key(name)
        what = f"reading {name}"
        if length == 0:
            self.stat(name)
            return b""
        kwargs: dict[str, Any] = {}
        if offset or length is not None:
            last = "" if length is None else str(offset + length - 1)
            kwargs["Range"] = f"bytes={offset}-{last}"
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key, **kwargs)
            data: bytes = response["Body"].read()
        except bce.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                if length is None:
                    return b""  # offset at or past the end, as a file read would give
                raise short_read(name, offset, length) from None
            raise self._map_error(exc, what) from None
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(exc, what) from None
        if length is not None and len(data) != length:
            raise short_read(name, offset, length)
        return data

    def put(self, name: str, data: bytes | bytearray | memoryview, exclusive: bool = False) -> None:
        key = self._key(name)
        what = f"writing {name}"
        view = memoryview(data).cast("B")
        condition = {"IfNoneMatch": "*"} if exclusive else {}
        if exclusive and self.exists(name):
            raise ObjectExists(f"{what}: the object exists already")
        if len(view) <= self.multipart_threshold:
            body = bytes(view)
            self._call(what, "put_object", Key=key, Body=body, ContentMD5=_md5(body), **condition)
            return
        self._put_multipart(key, view, what, condition)

    def _put_multipart(
        self, key: str, view: memoryview, what: str, condition: dict[str, str]
    ) -> None:
        upload = self._call(what, "create_multipart_upload", Key=key)
        upload_id = upload["UploadId"]

        def send(number: int) -> dict[str, Any]:
            start = (number - 1) * self.part_size
            body = bytes(view[start : start + self.part_size])
            response = self._call(
                what,
                "upload_part",
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentMD5=_md5(body),
            )
            return {"ETag": response["ETag"], "PartNumber": number}

        count = (len(view) + self.part_size - 1) // self.part_size
        try:
            with ThreadPoolExecutor(max_workers=min(4, count)) as pool:
                parts = list(pool.map(send, range(1, count + 1)))
            self._call(
                what,
                "complete_multipart_upload",
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **condition,
            )
        except BaseException:
            # Parts of an unfinished upload are invisible but billed: abort, best effort.
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            raise

    def delete(self, name: str) -> None:
        self.stat(name)  # S3 deletes of missing keys "succeed"; the protocol says not found
        self._call(f"deleting {name}", "delete_object", Key=self._key(name))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        folder = prefix.strip("/")
        if folder:
            validate_name(folder)
        parts = [p for p in (self.prefix, folder) if p]
        key_prefix = "/".join(parts) + "/" if parts else ""
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=key_prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][strip:]
                    try:
                        validate_name(name)
                    except StorageError:
                        continue  # not ours (a folder marker, a foreign key): not an object
                    yield ObjectInfo(name, int(item["Size"]), _mtime(item.get("LastModified")))
        except Exception as exc:  # noqa: BLE001
            raise self._map_error(exc, f"listing {prefix or '/'}") from None

    def stat(self, name: str) -> ObjectInfo:
        response = self._call(f"reading {name}", "head_object", Key=self._key(name))
        return ObjectInfo(
            name, int(response["ContentLength"]), _mtime(response.get("LastModified"))
        )

    def exists(self, name: str) -> bool:
        try:
            self.stat(name)
        except ObjectNotFound:
            return False
        return True

    def free_space(self) -> int | None:
        return None  # object stores have no meaningful "free space"

    def list_leftovers(self) -> Iterator[Leftover]:
        """None: a PUT (or a completed multipart upload) is all or nothing, and unfinished
        uploads are aborted, never visible as objects (`list_uploads` shows any left)."""
        return iter(())

    def delete_leftover(self, leftover: Leftover) -> None:
        refuse_leftover(leftover)

    def list_uploads(self) -> _Keys:
        """Keys of unfinished multipart uploads under our prefix (leftovers of killed runs)."""
        response = self._call(
            "listing unfinished uploads",
            "list_multipart_uploads",
            Prefix=f"{self.prefix}/" if self.prefix else "",
        )
        return [upload["Key"] for upload in response.get("Uploads", [])]

    def close(self) -> None:
        self._client.close()
