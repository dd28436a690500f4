"""Build records in a local directory: ``<path>/records/<registry>/<repository>/<tag>.json``.

A record is written to a temporary file in the same directory and renamed over the old one, so
readers see the old record or the new one, never a partial file, and concurrent writers end
with one whole record (the last rename wins).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from bot.errors import RecordFormatError, RecordStoreError
from bot.oci.reference import ImageReference
from bot.records import DEFAULT_CONCURRENCY, RecordScan
from bot.records.codec import BuildRecord, decode_record, record_key
from bot.records.layout import RECORD_SUFFIX, RECORDS_DIR, local_document, local_file, reference_of_file


class LocalRecordStore:
    def __init__(self, root: Path, *, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self._root = root
        self._slots = asyncio.Semaphore(concurrency)

    @property
    def description(self) -> str:
        return f"directory {self._root}"

    async def put(self, record: BuildRecord) -> None:
        await asyncio.to_thread(
            self._write, local_file(self._root, record_key(record.image)), record.encode()
        )

    def _write(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise RecordStoreError(f"cannot write {path}: {exc.strerror or exc}") from exc

    async def get(self, image: ImageReference) -> BuildRecord | None:
        path = local_file(self._root, record_key(image))
        data = await self._read(path)
        return None if data is None else decode_record(data, where=str(path))

    async def read_document(self, name: str) -> bytes | None:
        return await self._read(local_document(self._root, name))

    async def write_document(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, local_document(self._root, name), data)

    async def _read(self, path: Path) -> bytes | None:
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RecordStoreError(f"cannot read {path}: {exc.strerror or exc}") from exc

    async def delete(self, image: ImageReference) -> bool:
        path = local_file(self._root, record_key(image))
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise RecordStoreError(f"cannot delete build record {path}: {exc.strerror or exc}") from exc
        return True

    async def scan(self) -> RecordScan:
        files = await asyncio.to_thread(self._record_files)
        scan = RecordScan()

        async def read(path: Path) -> None:
            async with self._slots:
                try:
                    record = decode_record(await asyncio.to_thread(path.read_bytes), where=str(path))
                except (OSError, RecordFormatError) as exc:
                    scan.problems.append(str(exc))
                    return
            if record.image != str(reference_of_file(self._root, path)):
                scan.problems.append(f"{path}: holds the record of {record.image}, not of its own path")
                return
            scan.records.append(record)

        await asyncio.gather(*(read(path) for path in files))
        return scan

    def _record_files(self) -> list[Path]:
        top = self._root / RECORDS_DIR
        if not top.exists():
            return []
        return [
            path
            for path in top.rglob(f"*{RECORD_SUFFIX}")
            if path.is_file() and reference_of_file(self._root, path) is not None
        ]

    async def aclose(self) -> None:
        return None
