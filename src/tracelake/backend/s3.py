"""The S3 backend: AWS S3, MinIO and any S3-compatible store.

boto3 does writes, multipart uploads, listings, deletes and ranged GETs; pyarrow's own S3 client serves
``open_input_file`` because its ``read_at`` costs a third of boto3's CPU per ranged request, which is
what Parquet reads are made of. Every botocore and pyarrow failure is turned into a tracelake error
that names the endpoint and bucket, so an operator never has to read a botocore traceback.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from tracelake.backend.base import (
    Backend,
    ByteRequest,
    ObjectInfo,
    OffsetByteRequest,
    RangeByteRequest,
    SuffixByteRequest,
    folder_prefix,
    slice_range,
    validate_key,
    validate_prefix,
)
from tracelake.config import S3StorageConfig
from tracelake.errors import (
    BackendAuthError,
    BackendError,
    ConfigError,
    ObjectNotFoundError,
)

DEFAULT_REGION = "us-east-1"
MIN_PART_SIZE = 5 * 1024 * 1024  # S3 refuses smaller multipart parts (except the last one)
UPLOAD_THREADS = 4
MAX_POOL_CONNECTIONS = 32  # parallel block reads share one client
_DELETE_BATCH = 1000  # the DeleteObjects limit

# One boto3 session for the process: each new session parses the S3 service model again (~0.1 s).
# Sessions are not thread-safe, so clients are made under a lock (clients themselves are).
_SESSION: boto3.session.Session | None = None
_SESSION_LOCK = threading.Lock()


def _new_client(**kwargs: Any) -> Any:
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION.client("s3", **kwargs)


_AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
        "AllAccessDisabled",
        "403",
        "Forbidden",
    }
)
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_UNREACHABLE = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)
_NO_CREDENTIALS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
)


def endpoint_url(endpoint: str, insecure: bool) -> str | None:
    """Tempo style: "host:port" means http if ``insecure`` else https; a full URL is used as given."""
    endpoint = endpoint.strip()
    if not endpoint:
        return None
    if "://" in endpoint:
        return endpoint.rstrip("/")
    return f"{'http' if insecure else 'https'}://{endpoint.rstrip('/')}"


def normalize_prefix(prefix: str) -> str:
    """The configured key prefix as a folder ("tempo", "/tempo/" -> "tempo/"; "" stays "")."""
    stripped = prefix.strip().strip("/")
    if not stripped:
        return ""
    validate_prefix(stripped)
    return stripped + "/"


def _range_header(byte_range: ByteRequest) -> str | None:
    """The HTTP Range value, or None when the request selects no bytes at all."""
    match byte_range:
        case RangeByteRequest(start=start, end=end):
            return f"bytes={start}-{end - 1}" if end > start else None
        case OffsetByteRequest(offset=offset):
            return f"bytes={offset}-"
        case SuffixByteRequest(suffix=suffix):
            return f"bytes=-{suffix}" if suffix > 0 else None
    raise TypeError(f"unknown byte request {byte_range!r}")


def _find_client_error(exc: BaseException) -> ClientError | None:
    """boto3's upload_file hides the ClientError inside S3UploadFailedError's context."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ClientError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class S3Backend(Backend):
    """Objects under ``s3://bucket/prefix``; the prefix is added to keys and stripped from listings."""

    coalesce_reads = True

    def __init__(self, cfg: S3StorageConfig, *, upload_threads: int = UPLOAD_THREADS) -> None:
        if not cfg.bucket:
            raise ConfigError("storage.trace.s3.bucket is empty: set the bucket to store blocks in")
        if bool(cfg.access_key) != bool(cfg.secret_key):
            raise ConfigError(
                "storage.trace.s3.access_key and secret_key must be set together "
                "(or both left empty to use the AWS credential chain)"
            )
        if cfg.part_size < MIN_PART_SIZE:
            raise ConfigError(
                f"storage.trace.s3.part_size is {cfg.part_size} bytes; S3 needs at least "
                f"{MIN_PART_SIZE} (5 MiB) per multipart part"
            )
        if cfg.max_retries < 0:
            raise ConfigError("storage.trace.s3.max_retries must not be negative")
        self.bucket = cfg.bucket
        self.prefix = normalize_prefix(cfg.prefix)
        self.region = cfg.region or DEFAULT_REGION
        self.endpoint = endpoint_url(cfg.endpoint, cfg.insecure)
        self._cfg = cfg
        where = self.endpoint or f"AWS S3 ({self.region})"
        self._where = where
        location = f"s3://{self.bucket}/{self.prefix.rstrip('/')}".rstrip("/")
        self.description = f"{location} at {where}"
        self._bucket_checked = False
        self._fs: pafs.S3FileSystem | None = None
        self._fs_lock = threading.Lock()
        self._transfer = TransferConfig(
            multipart_threshold=cfg.part_size,
            multipart_chunksize=cfg.part_size,
            max_concurrency=upload_threads,
            use_threads=upload_threads > 1,
            preferred_transfer_client="classic",
        )
        boto_config = BotoConfig(
            retries={"max_attempts": cfg.max_retries, "mode": "standard"},
            connect_timeout=cfg.connect_timeout,
            read_timeout=cfg.read_timeout,
            s3={"addressing_style": "path" if cfg.forcepathstyle else "auto"},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            # Newer botocore adds CRC trailers to every upload by default, which several
            # S3-compatible stores reject; send checksums only where the API demands them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="tracelake",
        )
        credentials: dict[str, Any] = {}
        if cfg.access_key:
            credentials = {
                "aws_access_key_id": cfg.access_key,
                "aws_secret_access_key": cfg.secret_key,
                "aws_session_token": cfg.session_token or None,
            }
        try:
            self._client = _new_client(
                endpoint_url=self.endpoint,
                region_name=self.region,
                config=boto_config,
                **credentials,
            )
        except ValueError as exc:
            raise ConfigError(f"storage.trace.s3.endpoint {cfg.endpoint!r} is not usable: {exc}") from exc

    # -- error mapping -------------------------------------------------------------------------

    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _auth_error(self, detail: str) -> BackendAuthError:
        return BackendAuthError(
            f"{self._where} refused the credentials for bucket {self.bucket} ({detail}); check "
            "storage.trace.s3.access_key/secret_key (or the AWS credential chain) and the bucket policy"
        )

    def _bucket_missing(self) -> BackendError:
        return BackendError(f"bucket {self.bucket} does not exist at {self._where}")

    def _not_found(self, key: str) -> BackendError:
        """A bare 404 (HEAD has no body) is also what a missing bucket gives; tell them apart once."""
        if not self._bucket_checked:
            try:
                self._client.head_bucket(Bucket=self.bucket)
                self._bucket_checked = True
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", ""))
                if code in ("404", "NoSuchBucket", "NotFound"):
                    return self._bucket_missing()
                # 403 etc.: we may lack permission for HeadBucket only; keep the object answer.
            except BotoCoreError:
                pass
        return ObjectNotFoundError(f"object {key} not found in {self.description}")

    def _client_error(self, exc: ClientError, action: str, key: str | None) -> BackendError:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = str(err.get("Message", "")) or code
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return self._bucket_missing()
        if code in _NOT_FOUND_CODES and key is not None:
            return self._not_found(key)
        if code in _AUTH_CODES or status == 403:
            return self._auth_error(f"{code}: {message}" if code != message else code)
        what = f"{action} {key}" if key is not None else action
        return BackendError(f"{what} in {self.description} failed: {code} {message} (HTTP {status})")

    @contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn botocore/boto3 failures raised inside the block into tracelake errors."""
        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, action, key) from exc
        except _NO_CREDENTIALS as exc:
            raise BackendAuthError(
                f"no usable S3 credentials for {self._where} ({exc}); set storage.trace.s3.access_key "
                "and secret_key, or configure the AWS credential chain"
            ) from exc
        except _UNREACHABLE as exc:
            raise BackendError(
                f"cannot reach S3 endpoint {self._where} to {action} {key or ''}: {exc}"
            ) from exc
        except BotoCoreError as exc:
            raise BackendError(f"{action} {key or ''} in {self.description} failed: {exc}") from exc
        except BackendError:
            raise
        except Exception as exc:
            # boto3's transfer layer wraps client errors (S3UploadFailedError) and urllib3 can raise
            # from a response body read; neither is a BotoCoreError.
            inner = _find_client_error(exc)
            if inner is not None:
                raise self._client_error(inner, action, key) from exc
            if isinstance(exc, ValueError | TypeError):
                raise
            raise BackendError(f"{action} {key or ''} in {self.description} failed: {exc}") from exc

    # -- writes --------------------------------------------------------------------------------

    def write(self, key: str, data: bytes) -> None:
        full = self._key(key)
        with self._errors("write", key):
            self._client.put_object(Bucket=self.bucket, Key=full, Body=bytes(data))

    def write_file(self, key: str, path: str | Path) -> None:
        full = self._key(key)
        source = Path(path)
        if not source.is_file():
            raise BackendError(f"cannot upload {source} to {key}: the file does not exist")
        with self._errors("upload", key):
            self._client.upload_file(str(source), self.bucket, full, Config=self._transfer)

    def write_if_absent(self, key: str, data: bytes) -> bool:
        """PutObject with If-None-Match: *; 412 (or 409, a concurrent conditional write) means taken.

        If botocore retried after a lost response, the 412 may be our own earlier attempt; the
        object then holds exactly our bytes, and we report success.
        """
        full = self._key(key)
        body = bytes(data)
        with self._errors("write", key):
            try:
                self._client.put_object(Bucket=self.bucket, Key=full, Body=body, IfNoneMatch="*")
                return True
            except ClientError as exc:
                meta = exc.response.get("ResponseMetadata", {})
                code = str(exc.response.get("Error", {}).get("Code", ""))
                status = meta.get("HTTPStatusCode")
                if status == 412 or code == "PreconditionFailed":
                    return self._holds(key, body) if meta.get("RetryAttempts", 0) else False
                if status == 409 or code == "ConditionalRequestConflict":
                    return False
                raise

    def _holds(self, key: str, body: bytes) -> bool:
        try:
            return self.read(key) == body
        except ObjectNotFoundError:
            return False

    # -- reads ---------------------------------------------------------------------------------

    def read(self, key: str, byte_range: ByteRequest | None = None) -> bytes:
        full = self._key(key)
        kwargs: dict[str, Any] = {}
        if byte_range is not None:
            header = _range_header(byte_range)
            if header is None:
                self.size(key)  # an empty range of a missing object is still "not found"
                return b""
            kwargs["Range"] = header
        with self._errors("read", key):
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=full, **kwargs)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if byte_range is not None and (
                    status == 416 or exc.response.get("Error", {}).get("Code") == "InvalidRange"
                ):
                    return b""  # the range starts at or past EOF: the object exists, nothing to give
                raise
            body: bytes = response["Body"].read()
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if byte_range is not None and status == 200:
            # Some servers ignore a Range they dislike and send the whole object (200, not 206).
            return slice_range(body, byte_range)
        return body

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
            return True
        except ObjectNotFoundError:
            return False

    def size(self, key: str) -> int:
        full = self._key(key)
        with self._errors("stat", key):
            response = self._client.head_object(Bucket=self.bucket, Key=full)
        return int(response["ContentLength"])

    def _filesystem(self) -> pafs.S3FileSystem:
        """pyarrow's S3 client, made once: it holds a connection pool and resolved credentials."""
        with self._fs_lock:
            if self._fs is None:
                cfg = self._cfg
                scheme = "http" if cfg.insecure else "https"
                override = None
                if self.endpoint:
                    parts = urlsplit(self.endpoint)
                    scheme, override = parts.scheme or scheme, parts.netloc
                self._fs = pafs.S3FileSystem(
                    access_key=cfg.access_key or None,
                    secret_key=cfg.secret_key or None,
                    session_token=cfg.session_token or None,
                    region=self.region,
                    endpoint_override=override,
                    scheme=scheme,
                    connect_timeout=cfg.connect_timeout,
                    request_timeout=cfg.read_timeout,
                    # pyarrow counts the first try as an attempt; botocore's max_attempts does not.
                    retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=cfg.max_retries + 1),
                    force_virtual_addressing=False,
                )
            return self._fs

    def open_input_file(self, key: str) -> pa.NativeFile:
        """Note: opening sends a HEAD; keep the returned file for all reads of one object."""
        full = self._key(key)
        try:
            return self._filesystem().open_input_file(f"{self.bucket}/{full}")
        except FileNotFoundError as exc:
            raise self._not_found(key) from exc
        except OSError as exc:
            raise self._arrow_error(exc, key) from exc

    def open_scan_file(self, key: str) -> pa.NativeFile:
        """The object downloaded once (parallel ranged GETs) to an unlinked temporary file: a reader
        that goes through it column chunk by column chunk would otherwise send a GET per chunk and
        row group (40-odd per row group), or buffer the whole object in memory."""
        full = self._key(key)
        with tempfile.NamedTemporaryFile(prefix="tracelake-scan-", delete=False) as spool:
            try:
                with self._errors("download", key):
                    self._client.download_fileobj(self.bucket, full, spool, Config=self._transfer)
                spool.flush()
                return pa.OSFile(spool.name, "r")  # its own descriptor keeps the unlinked file
            finally:
                os.unlink(spool.name)

    def _arrow_error(self, exc: OSError, key: str) -> BackendError:
        """pyarrow reports S3 failures as OSError text only, so match on the AWS SDK's wording."""
        text = str(exc)
        upper = text.upper()
        if "NO_SUCH_BUCKET" in upper or "NOSUCHBUCKET" in upper:
            return self._bucket_missing()
        if any(
            marker in upper
            for marker in (
                "ACCESS_DENIED",
                "ACCESS DENIED",
                "INVALIDACCESSKEYID",
                "INVALID_ACCESS_KEY_ID",
                "SIGNATUREDOESNOTMATCH",
                "SIGNATURE_DOES_NOT_MATCH",
                "HTTP RESPONSE CODE: 403",
                "HTTP STATUS 403",
                "CODE 15",
            )
        ):
            return self._auth_error(text)
        if any(
            marker in upper
            for marker in (
                "NETWORK_CONNECTION",
                "COULD NOT CONNECT",
                "TIMED OUT",
                "TIMEOUT",
                "CURLCODE",
            )
        ):
            return BackendError(f"cannot reach S3 endpoint {self._where} to open {key}: {text}")
        return BackendError(f"open {key} in {self.description} failed: {text}")

    # -- listings ------------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        strip = len(self.prefix)
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors("list", prefix or "/"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    full: str = obj["Key"]
                    if full.endswith("/"):
                        continue  # a "folder" marker made by a console, not an object
                    yield ObjectInfo(
                        key=full[strip:],
                        size=int(obj["Size"]),
                        last_modified=obj["LastModified"].timestamp(),
                    )

    def list_dirs(self, prefix: str = "") -> list[str]:
        folder = self.prefix + folder_prefix(prefix)
        names: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors("list", prefix or "/"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(folder) :].rstrip("/")
                    if name:
                        names.append(name)
        return sorted(names)

    # -- deletes -------------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        full = self._key(key)
        with self._errors("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        count = 0
        batch: list[str] = []
        for info in self._list(prefix):
            batch.append(info.key)
            if len(batch) == _DELETE_BATCH:
                count += self._delete_batch(batch)
                batch = []
        if batch:
            count += self._delete_batch(batch)
        return count

    def _delete_batch(self, keys: list[str]) -> int:
        with self._errors("delete", keys[0]):
            response = self._client.delete_objects(
                Bucket=self.bucket,
                Delete={
                    "Objects": [{"Key": self.prefix + k} for k in keys],
                    "Quiet": True,
                },
            )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise BackendError(
                f"cannot delete {len(errors)} of {len(keys)} objects in {self.description}, e.g. "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
            )
        return len(keys)

    def close(self) -> None:
        self._client.close()
        with self._fs_lock:
            self._fs = None
