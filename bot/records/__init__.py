"""Build records and where they are kept: one :class:`RecordStore` interface, four backends.

Backends: GitLab generic packages (:mod:`.gitlab`), Gitea/Forgejo generic packages (:mod:`.gitea`),
S3 (:mod:`.s3`) and a local directory (:mod:`.local`). The record format is in :mod:`.codec`, the
layout in each store in :mod:`.layout`. Handlers see only :class:`RecordStore`; which backend is
used is decided once, in :mod:`bot.wiring`.

Contract of every backend:

- ``put`` replaces the record of the same image; it never leaves a moment in which neither the
  old nor the new record can be read, and concurrent ``put`` calls for one image end with
  exactly one record and no error.
- ``read_document``/``write_document`` keep other files (the EOL data) in the same store.
- ``scan`` reads every record (following pagination to the end, with bounded concurrency) and
  reports the ones it could not read instead of failing on the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bot.oci.reference import ImageReference
from bot.records.codec import BuildRecord, decode_record, format_timestamp, parse_timestamp, record_key

DEFAULT_CONCURRENCY = 32

__all__ = [
    "DEFAULT_CONCURRENCY",
    "BuildRecord",
    "RecordScan",
    "RecordStore",
    "decode_record",
    "format_timestamp",
    "parse_timestamp",
    "record_key",
]


@dataclass(slots=True)
class RecordScan:
    """Every record a store holds, and a message for each entry that could not be read."""

    records: list[BuildRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class RecordStore(Protocol):
    """Where build records are kept."""

    @property
    def description(self) -> str:
        """Where the records are, for people: ``GitLab project 42 at https://gitlab.example.com``."""
        ...

    async def put(self, record: BuildRecord) -> None: ...

    async def get(self, image: ImageReference) -> BuildRecord | None: ...

    async def delete(self, image: ImageReference) -> bool:
        """Remove the record of ``image``; False when there was none."""
        ...

    async def scan(self) -> RecordScan: ...

    async def read_document(self, name: str) -> bytes | None:
        """A file kept beside the records (``eol-data.yaml``), or None when there is none."""
        ...

    async def write_document(self, name: str, data: bytes) -> None:
        """Replace a document, with the same no-gap guarantee as ``put``."""
        ...

    async def aclose(self) -> None: ...
