"""Evidence objects in an S3 bucket (MinIO on site, or any S3); key ``a/b/c.jpg`` is that object."""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.datatypes import Object
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.helpers import MIN_PART_SIZE, check_bucket_name

from pipeline.evidence.store import EvidenceStore
from pipeline.types import BackendUnavailable

# A worker must notice a dead server in seconds and fall back to its spool; minio's own
# defaults (5 min timeouts, 5 retries with backoff) would stall the inference loop instead.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 30.0
RETRIES = 1
SHA256_METADATA = "sha256"  # stored as x-amz-meta-sha256

_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"}
_T = TypeVar("_T")


class S3EvidenceStore(EvidenceStore):
    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        region: str | None = None,
    ) -> None:
        """``endpoint`` is ``http://host:port`` or ``https://host:port``; nothing is contacted yet.

        The bucket is created on the first write, so a worker starts (and spools) while S3 is down.
        """
        netloc, secure, self.where = _parse_endpoint(endpoint)
        check_bucket_name(bucket, strict=True)
        self.endpoint = f"{'https' if secure else 'http'}://{netloc}"
        self.bucket = bucket
        self._region = region
        http_client = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            maxsize=10,
            cert_reqs="CERT_REQUIRED",
            # The CA bundle minio itself would use, so https behaves as with its default client.
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=RETRIES,
                backoff_factor=0.2,
                status_forcelist=(500, 502, 503, 504),
                # The last 5xx reaches minio, whose error then names the server's reason (SlowDown...).
                raise_on_status=False,
            ),
        )
        self._client = Minio(
            netloc, access_key=access_key, secret_key=secret_key, secure=secure, region=region, http_client=http_client
        )
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3EvidenceStore({self.endpoint!r}, bucket={self.bucket!r})"

    def _keys(self, prefix: str) -> list[str]:
        def list_keys() -> list[str]:
            try:
                objects = self._client.list_objects(self.bucket, prefix=prefix or None, recursive=True)
                return sorted(item.object_name for item in objects if not item.is_dir)
            except S3Error as exc:
                if exc.code == "NoSuchBucket":  # nothing written yet
                    return []
                raise

        return self._call(f"list {prefix!r}", list_keys)

    def _write(self, key: str, data: bytes, content_type: str, sha256: str) -> None:
        def upload() -> None:
            self._client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={SHA256_METADATA: sha256},
                # One PUT, never multipart: S3 makes a single PUT atomic, and a failed one leaves
                # no orphaned parts behind.
                part_size=max(MIN_PART_SIZE, len(data)),
            )

        self._ensure_bucket()
        try:
            self._call(f"put {key!r}", upload)
        except S3Error as exc:
            if exc.code != "NoSuchBucket":
                raise
            # The bucket went away under a running worker (storage wiped and restarted).
            self._bucket_ready = False
            self._ensure_bucket()
            self._call(f"put {key!r}", upload)

    def _read(self, key: str) -> bytes:
        return self._download(key, 0, 0)

    def _read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._download(key, offset, length)

    def _download(self, key: str, offset: int, length: int) -> bytes:
        """The object's bytes from ``offset``, ``length`` of them (0: to its end): a ranged GET."""
        def download() -> bytes:
            try:
                response = self._client.get_object(self.bucket, key, offset=offset, length=length)
            except S3Error as exc:
                if exc.code in _MISSING:
                    raise KeyError(key) from None
                raise
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._call(f"get {key!r}", download)

    def _size_of(self, key: str) -> int:
        return self._call(f"stat {key!r}", lambda: self._stat(key).size)

    def _exists(self, key: str) -> bool:
        def stat() -> bool:
            try:
                self._stat(key)
            except KeyError:
                return False
            return True

        return self._call(f"stat {key!r}", stat)

    def _sha256_of(self, key: str) -> str:
        def stat() -> str | None:
            return (self._stat(key).metadata or {}).get(f"x-amz-meta-{SHA256_METADATA}")

        stored = self._call(f"stat {key!r}", stat)
        # Objects copied in by other tools (mc cp, a migration) carry no sha256: hash their bytes.
        return stored or hashlib.sha256(self._read(key)).hexdigest()

    def _url_for(self, key: str, expires_s: float) -> str | None:
        def presign() -> str:
            # Checked first so a reviewer gets "no such evidence", not a link that answers 404;
            # it also learns the bucket's region, which signing needs.
            self._stat(key)
            return self._client.presigned_get_object(self.bucket, key, expires=timedelta(seconds=expires_s))

        return self._call(f"presign {key!r}", presign)

    def _stat(self, key: str) -> Object:
        """The object's stat (size, metadata); KeyError when there is none. Call it inside ``_call``."""
        try:
            return self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in _MISSING:
                raise KeyError(key) from None
            raise

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return

            def create() -> None:
                # Asked first so credentials without CreateBucket work on a bucket made by an admin.
                if self._client.bucket_exists(self.bucket):
                    return
                try:
                    self._client.make_bucket(self.bucket, location=self._region)
                except S3Error as exc:
                    # Another worker created it between our check and our request.
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

            self._call("create bucket", create)
            self._bucket_ready = True

    def _call(self, operation: str, action: Callable[[], _T]) -> _T:
        """Run ``action``, turning every "server not reachable or failing" error into BackendUnavailable.

        The message names endpoint, bucket and operation; the client's errors never hold the secret
        key (requests are signed, not sent with it), and neither does this message.
        """
        try:
            return action()
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise self._unavailable(operation, exc) from exc
        except (S3Error, ServerError, InvalidResponseError) as exc:
            if _status_of(exc) >= 500:
                raise self._unavailable(operation, exc) from exc
            raise

    def _unavailable(self, operation: str, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"S3 evidence store at {self.where} (bucket {self.bucket!r}) is unavailable: {operation} failed:"
            f" {type(exc).__name__}: {_shorten(str(exc))}"
        )


def _parse_endpoint(endpoint: str) -> tuple[str, bool, str]:
    """``(netloc for minio, secure, host:port for messages)``; messages never echo the endpoint."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the S3 endpoint must be an http:// or https:// URL, e.g. http://127.0.0.1:9000")
    if parts.username is not None or parts.password is not None:
        # Credentials belong in the access and secret keys, never in a URL that ends up in logs.
        raise ValueError("the S3 endpoint must not carry credentials; give the access and secret keys instead")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the S3 endpoint must be scheme://host[:port] with no path, query or fragment")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the S3 endpoint has an invalid port") from None
    secure = parts.scheme == "https"
    where = parts.netloc if port is not None else f"{parts.netloc}:{443 if secure else 80}"
    return parts.netloc, secure, where


def _status_of(exc: Exception) -> int:
    if isinstance(exc, S3Error):
        return exc.response.status if exc.response is not None else 0
    if isinstance(exc, ServerError):
        return exc.status_code
    # InvalidResponseError keeps the status only in a private field; absent means "not a 5xx".
    return int(getattr(exc, "_code", 0) or 0)


def _shorten(text: str, limit: int = 300) -> str:
    # A proxy's HTML error page would otherwise flood the worker's log line.
    return text if len(text) <= limit else text[:limit] + "..."
