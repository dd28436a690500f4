"""Build records in a forge's generic package registry: what GitLab and Gitea/Forgejo share.

The two forges differ where it matters for replacing a record (reference/forge-protocols.md
§1.2, §1.4): GitLab keeps every upload of the same file and serves the newest; Gitea answers
409 for a file that exists. Both replace strategies below keep a readable record at every moment:

- **append, then prune** (GitLab with duplicates allowed): upload the new file, then delete the
  older files of that name. Concurrent writers each delete only files older than their own, so
  the newest survives and exactly one remains.
- **stage, then swap** (Gitea; GitLab groups that refuse duplicates): upload the record under a
  unique staging name, delete the old file, upload the record under its own name, delete the
  staging file. Between the delete and the final upload, readers find the staging file (see
  :meth:`PackageRecordStore.get`); if the final upload meets a 409, a concurrent writer of the
  same image got there first, and its record stands.

Subclasses provide the transport: six calls on files, versions and the package list.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import structlog

from bot.errors import RecordFormatError, RecordStoreError, RecordStoreForbidden
from bot.http import HttpClient, Response, TransportError
from bot.oci.reference import ImageReference
from bot.records import DEFAULT_CONCURRENCY, RecordScan
from bot.records.codec import BuildRecord, decode_record, record_key
from bot.records.layout import (
    DOCUMENT_PACKAGE,
    DOCUMENT_VERSION,
    RECORD_FILE,
    is_staging_file,
    package_name,
    package_version,
    record_reference,
    staging_file,
)
from bot.retry import RetryPolicy

log = structlog.get_logger(__name__)


class PutOutcome(Enum):
    CREATED = "created"
    EXISTS = "exists"  # the file name is taken (Gitea 409)
    DUPLICATE_REFUSED = "duplicate refused"  # GitLab group setting: no duplicate files


@dataclass(frozen=True, slots=True)
class PackageFile:
    name: str
    id: int | None = None


class PackageRecordStore(ABC):
    """A :class:`~bot.records.RecordStore` on generic packages; see the module docstring."""

    append_duplicates = False  # whether the registry keeps several files of one name
    token_variable: str  # the environment variable the token comes from, for messages
    forbidden_hint: str  # what a token needs, said when the registry answers 403
    not_found: str  # what a 404 on the scope (project, owner) means

    def __init__(
        self,
        *,
        token: str | None,
        auth_headers: Mapping[str, str],
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._may_delete = True
        self._token_set = bool(token)
        self._http = HttpClient(
            service=type(self).__name__,
            headers=auth_headers if token else None,
            max_connections=concurrency,
            retry=retry,
        )

    @property
    @abstractmethod
    def description(self) -> str: ...

    @abstractmethod
    async def _put_file(
        self, name: str, version: str, file: str, data: bytes
    ) -> tuple[PutOutcome, int | None]:
        """Upload one file; the new file's id when the registry tells it."""

    @abstractmethod
    async def _get_file(self, name: str, version: str, file: str) -> bytes | None: ...

    @abstractmethod
    async def _list_files(self, name: str, version: str) -> list[PackageFile]:
        """The files of one package version; empty when the version does not exist."""

    @abstractmethod
    async def _delete_file(self, name: str, version: str, file: PackageFile) -> None:
        """Delete one file; a file already gone is not an error."""

    @abstractmethod
    async def _delete_version(self, name: str, version: str) -> bool: ...

    @abstractmethod
    def _versions(self) -> AsyncIterator[tuple[str, str]]:
        """Every generic package (name, version), following pagination to the end."""

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the RecordStore interface -----------------------------------------------------------

    async def put(self, record: BuildRecord) -> None:
        key = record_key(record.image)
        await self._replace_file(package_name(key), package_version(key), RECORD_FILE, record.encode())

    async def get(self, image: ImageReference) -> BuildRecord | None:
        key = record_key(image)
        name, version = package_name(key), package_version(key)
        data = await self._read_file(name, version, RECORD_FILE)
        if data is None:
            return None
        where = f"{self.description}: {name}/{version}"
        record = decode_record(data, where=where)
        if record.image != str(key):
            raise RecordFormatError(f"{where}: holds the record of {record.image}, not of {key}")
        return record

    async def read_document(self, name: str) -> bytes | None:
        return await self._read_file(DOCUMENT_PACKAGE, DOCUMENT_VERSION, name)

    async def write_document(self, name: str, data: bytes) -> None:
        await self._replace_file(DOCUMENT_PACKAGE, DOCUMENT_VERSION, name, data)

    async def delete(self, image: ImageReference) -> bool:
        key = record_key(image)
        return await self._delete_version(package_name(key), package_version(key))

    async def scan(self) -> RecordScan:
        scan = RecordScan()

        async def read(ref: ImageReference) -> None:
            async with self._slots:
                try:
                    record = await self.get(ref)
                except RecordFormatError as exc:
                    scan.problems.append(str(exc))
                    return
            if record is not None:
                scan.records.append(record)

        tasks: list[asyncio.Task[None]] = []
        try:
            async for name, version in self._versions():
                ref = record_reference(name, version)
                if ref is not None:
                    tasks.append(asyncio.create_task(read(ref)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        return scan

    # -- replace strategies ------------------------------------------------------------------

    async def _replace_file(self, name: str, version: str, file: str, data: bytes) -> None:
        if self.append_duplicates:
            outcome, file_id = await self._put_file(name, version, file, data)
            if outcome is PutOutcome.CREATED:
                await self._prune(name, version, file, keep=file_id)
                return
            if outcome is not PutOutcome.DUPLICATE_REFUSED:
                raise RecordStoreError(f"{self.description}: could not upload {name}/{version}/{file}")
            self.append_duplicates = False
        await self._stage_and_swap(name, version, file, data)

    async def _read_file(self, name: str, version: str, file: str) -> bytes | None:
        data = await self._get_file(name, version, file)
        if data is not None:
            return data
        # A replace on a registry without overwrite is between deleting the old file and
        # uploading the new one: the content is in its staging file.
        staged = [f for f in await self._list_files(name, version) if is_staging_file(f.name, file)]
        if not staged:
            return None
        newest = max(staged, key=lambda f: (f.id or 0, f.name))
        return await self._get_file(name, version, newest.name)

    async def _prune(self, name: str, version: str, file: str, *, keep: int | None) -> None:
        """Delete the older copies of ``file``; readers get the newest either way."""
        if not self._may_delete:
            return
        # The file is written and served from here on: a failing clean-up is worth a warning
        # (the next write prunes again), not a failed registration.
        try:
            copies = [f for f in await self._list_files(name, version) if f.name == file and f.id is not None]
            if not copies:
                return
            newest = keep if keep is not None else max(f.id for f in copies if f.id is not None)
            await asyncio.gather(
                *(self._delete_file(name, version, f) for f in copies if f.id is not None and f.id < newest)
            )
        except RecordStoreForbidden as exc:
            self._may_delete = False
            log.warning("record_prune_forbidden", store=self.description, error=str(exc))
        except RecordStoreError as exc:
            log.warning(
                "record_prune_failed", store=self.description, package=f"{name}/{version}", error=str(exc)
            )

    async def _stage_and_swap(self, name: str, version: str, file: str, data: bytes) -> None:
        staging = staging_file(file, uuid.uuid4().hex)
        outcome, staging_id = await self._put_file(name, version, staging, data)
        if outcome is not PutOutcome.CREATED:
            raise RecordStoreError(f"{self.description}: could not upload {name}/{version}/{staging}")
        for old in [f for f in await self._list_files(name, version) if f.name == file]:
            await self._delete_file(name, version, old)
        await self._put_file(name, version, file, data)
        await self._delete_file(name, version, PackageFile(staging, staging_id))

    # -- HTTP --------------------------------------------------------------------------------

    async def _send(self, method: str, url: str, **kwargs: Any) -> Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except TransportError as exc:
            raise RecordStoreError(f"cannot reach {self.description}: {exc}") from exc

    def _check(self, response: Response, what: str, *ok: int) -> None:
        """Turn an unexpected answer into one message that says what to fix."""
        status = response.status_code
        if status in ok:
            return
        message = response_message(response)
        variable = self.token_variable
        if status == 401:
            given = f"refused {variable}" if self._token_set else f"needs a token: set {variable}"
            raise RecordStoreError(f"{self.description} {given} (HTTP 401) while trying to {what}")
        if status == 403:
            raise RecordStoreForbidden(
                f"{self.description}: {variable} may not {what} (HTTP 403: {message}); {self.forbidden_hint}"
            )
        if status == 404:
            raise RecordStoreError(f"{self.description}: {self.not_found} (HTTP 404)")
        raise RecordStoreError(f"{self.description}: cannot {what}: HTTP {status} {message}".rstrip())


def response_message(response: Response) -> str:
    """The error message of a forge's answer (GitLab and Gitea put it in ``message``)."""
    body = response.json()
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or "")[:200]
    return response.text.strip()[:200]
