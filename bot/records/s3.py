"""Build records in an S3 bucket (AWS, or any S3-compatible server: Garage, MinIO, SeaweedFS, R2).

Key layout: ``[prefix/]records/<registry>/<repository>/<tag>.json``. A PUT replaces an object
atomically, so a replace never leaves the key empty and concurrent writers end with one object.
Path-style addressing always (S3-compatible servers rarely do virtual hosts).

Writes, deletes and listings go through aioboto3. Reading records does not: aiobotocore spends
about 5 ms of CPU on every GetObject (endpoint-ruleset resolution, response parsing; measured
with cProfile on 1,000 records), which makes 10,000 records a minute-long read. Record reads are
plain GETs signed with botocore's own SigV4 signer and sent through :mod:`bot.http`, under 1 ms of
CPU each — the same protocol and credentials, several times less work.
"""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import quote

import aioboto3
from aiobotocore.config import AioConfig as BotocoreConfig  # botocore's Config, plus the transport
from aiobotocore.httpsession import AIOHTTPSession
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from bot.credentials import PackageRegistryCredential
from bot.errors import RecordFormatError, RecordStoreError
from bot.http import HttpClient, TransportError
from bot.oci.reference import ImageReference
from bot.records import DEFAULT_CONCURRENCY, RecordScan
from bot.records.codec import BuildRecord, decode_record, record_key
from bot.records.layout import document_key, object_key, records_prefix, reference_of_key
from bot.retry import RetryPolicy

CREDENTIAL_VARIABLES = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
REFUSED_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
LIST_PAGE_SIZE = 1000
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_ERROR_CODE_RE = re.compile(r"<Code>([^<]+)</Code>")


class _NoRedirects:
    """An aiohttp session whose requests never follow a redirect."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def request(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.request(*args, allow_redirects=False, **kwargs)


class _NoRedirectHTTPSession(AIOHTTPSession):  # type: ignore[misc]
    """aiobotocore's transport without aiohttp's default of following 3xx (botocore never does).

    Followed, a redirect to another host would carry ``X-Amz-Security-Token`` and the record
    there; botocore itself handles S3's region redirects from the 3xx answer.
    """

    async def _get_session(self, proxy_url: Any) -> Any:
        return _NoRedirects(await super()._get_session(proxy_url))


class S3RecordStore:
    def __init__(
        self,
        bucket: str,
        credential: PackageRegistryCredential,
        *,
        endpoint: str | None = None,
        region: str = "us-east-1",
        prefix: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        page_size: int = LIST_PAGE_SIZE,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._bucket = bucket
        self._page_size = page_size
        self._endpoint = endpoint
        self._prefix = prefix
        self._session = aioboto3.Session(
            aws_access_key_id=credential.access_key_id,
            aws_secret_access_key=credential.secret_access_key,
            aws_session_token=credential.session_token,
            region_name=region,
        )
        self._config = BotocoreConfig(
            http_session_cls=_NoRedirectHTTPSession,
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # botocore's standard mode retries throttling, 5xx and connection errors with backoff.
            retries={"max_attempts": (retry or RetryPolicy()).attempts, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=concurrency,
        )
        # botocore's timeouts bound each socket operation: a server trickling a byte at a time
        # would hold a write forever. A whole call (every attempt, every backoff) gets this long.
        attempts = self._config.retries["max_attempts"]
        per_attempt = (self._config.connect_timeout or 0) + (self._config.read_timeout or 0)
        self._deadline = attempts * per_attempt + sum(min(20, 2**i) for i in range(attempts - 1))
        self._signer = SigV4Auth(
            Credentials(
                credential.access_key_id or "", credential.secret_access_key or "", credential.session_token
            ),
            "s3",
            region,
        )
        self._object_base = (
            f"{(endpoint or f'https://s3.{region}.amazonaws.com').rstrip('/')}/{quote(bucket)}"
        )
        self._http = HttpClient(service="s3-records", max_connections=concurrency, retry=retry)
        self._slots = asyncio.Semaphore(concurrency)
        self._stack = AsyncExitStack()
        self._client: Any = None
        self._opening = asyncio.Lock()

    @property
    def description(self) -> str:
        where = f" at {self._endpoint}" if self._endpoint else ""
        return f"S3 bucket {self._bucket}{where}"

    async def _s3(self) -> Any:
        async with self._opening:
            if self._client is None:
                self._client = await self._stack.enter_async_context(
                    self._session.client("s3", endpoint_url=self._endpoint, config=self._config)
                )
        return self._client

    async def aclose(self) -> None:
        await self._stack.aclose()
        await self._http.aclose()
        self._client = None

    async def read_document(self, name: str) -> bytes | None:
        return await self._read(document_key(self._prefix, name))

    async def write_document(self, name: str, data: bytes) -> None:
        key = document_key(self._prefix, name)
        s3 = await self._s3()
        await self._call("write", key, s3.put_object(Bucket=self._bucket, Key=key, Body=data))

    async def put(self, record: BuildRecord) -> None:
        key = object_key(self._prefix, record_key(record.image))
        s3 = await self._s3()
        await self._call(
            "write",
            key,
            s3.put_object(Bucket=self._bucket, Key=key, Body=record.encode(), ContentType="application/json"),
        )

    async def get(self, image: ImageReference) -> BuildRecord | None:
        key = object_key(self._prefix, record_key(image))
        data = await self._read(key)
        return None if data is None else self._decode(data, key)

    async def delete(self, image: ImageReference) -> bool:
        key = object_key(self._prefix, record_key(image))
        s3 = await self._s3()
        try:
            await s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in NOT_FOUND_CODES:
                return False
            raise self._error("look up", key, exc) from exc
        await self._call("delete", key, s3.delete_object(Bucket=self._bucket, Key=key))
        return True

    async def scan(self) -> RecordScan:
        s3 = await self._s3()
        scan = RecordScan()
        head = records_prefix(self._prefix)

        async def read(key: str) -> None:
            async with self._slots:
                try:
                    data = await self._read(key)
                    if data is not None:
                        scan.records.append(self._decode(data, key))
                except RecordFormatError as exc:
                    scan.problems.append(str(exc))

        tasks: list[asyncio.Task[None]] = []
        try:
            paginator = s3.get_paginator("list_objects_v2")
            pages = paginator.paginate(
                Bucket=self._bucket, Prefix=head, PaginationConfig={"PageSize": self._page_size}
            )
            async for page in pages:
                for item in page.get("Contents") or []:
                    key = item.get("Key", "")
                    if reference_of_key(self._prefix, key) is not None:
                        tasks.append(asyncio.create_task(read(key)))
            await asyncio.gather(*tasks)
        except (ClientError, BotoCoreError) as exc:
            raise self._error("list", head, exc) from exc
        finally:
            for task in tasks:
                task.cancel()
        return scan

    # -- helpers -----------------------------------------------------------------------------

    async def _read(self, key: str) -> bytes | None:
        """GET one object, signed with SigV4 (see the module docstring for why not aioboto3)."""
        url = f"{self._object_base}/{quote(key, safe='/-_.~')}"
        request = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": UNSIGNED_PAYLOAD})
        self._signer.add_auth(request)
        try:
            response = await self._http.request("GET", url, headers=dict(request.headers.items()))
        except TransportError as exc:
            raise RecordStoreError(f"cannot reach {self.description}: {exc}") from exc
        if response.status_code == 200:
            return response.content
        code = _ERROR_CODE_RE.search(response.text)
        error = code.group(1) if code else str(response.status_code)
        if response.status_code == 404 and error in NOT_FOUND_CODES | {"NoSuchKey"}:
            return None
        if error in REFUSED_CODES or response.status_code == 403:
            raise RecordStoreError(
                f"{self.description} refused {CREDENTIAL_VARIABLES} ({error}) while trying to read {key}"
            )
        if error == "NoSuchBucket":
            raise RecordStoreError(f"{self.description}: the bucket does not exist")
        raise RecordStoreError(
            f"{self.description}: cannot read {key}: {error} (HTTP {response.status_code})"
        )

    def _decode(self, data: bytes, key: str) -> BuildRecord:
        where = f"{self.description}: {key}"
        record = decode_record(data, where=where)
        if object_key(self._prefix, record_key(record.image)) != key:
            raise RecordFormatError(f"{where}: holds the record of {record.image}, not of its key")
        return record

    async def _call(self, what: str, key: str, operation: Any) -> Any:
        try:
            async with asyncio.timeout(self._deadline):
                return await operation
        except TimeoutError as exc:
            raise RecordStoreError(
                f"{self.description}: cannot {what} {key}: no answer within {self._deadline:g}s"
            ) from exc
        except (ClientError, BotoCoreError) as exc:
            raise self._error(what, key, exc) from exc

    def _error(self, what: str, key: str, exc: Exception) -> RecordStoreError:
        if isinstance(exc, EndpointConnectionError):
            return RecordStoreError(f"cannot reach {self.description}: {exc}")
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in REFUSED_CODES:
                return RecordStoreError(
                    f"{self.description} refused {CREDENTIAL_VARIABLES} ({code}) while trying to {what} {key}"
                )
            if code == "NoSuchBucket":
                return RecordStoreError(f"{self.description}: the bucket does not exist")
            return RecordStoreError(f"{self.description}: cannot {what} {key}: {code}")
        return RecordStoreError(f"{self.description}: cannot {what} {key}: {exc}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
