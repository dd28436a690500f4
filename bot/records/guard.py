"""A record store that only does what the command's credential scope allows."""

from __future__ import annotations

from bot.credentials import Access, CredentialScope
from bot.oci.reference import ImageReference
from bot.records import RecordScan, RecordStore
from bot.records.codec import BuildRecord


class ScopedRecordStore:
    """Wraps a store: reads need package read access, writes package write access."""

    def __init__(self, store: RecordStore, scope: CredentialScope) -> None:
        self._store = store
        self._scope = scope

    @property
    def description(self) -> str:
        return self._store.description

    async def put(self, record: BuildRecord) -> None:
        self._scope.require(Access.PACKAGES_WRITE, what=f"write build records to {self.description}")
        await self._store.put(record)

    async def get(self, image: ImageReference) -> BuildRecord | None:
        self._scope.require(Access.PACKAGES_READ, what=f"read build records from {self.description}")
        return await self._store.get(image)

    async def delete(self, image: ImageReference) -> bool:
        self._scope.require(Access.PACKAGES_WRITE, what=f"delete build records from {self.description}")
        return await self._store.delete(image)

    async def scan(self) -> RecordScan:
        self._scope.require(Access.PACKAGES_READ, what=f"read build records from {self.description}")
        return await self._store.scan()

    async def read_document(self, name: str) -> bytes | None:
        self._scope.require(Access.PACKAGES_READ, what=f"read {name} from {self.description}")
        return await self._store.read_document(name)

    async def write_document(self, name: str, data: bytes) -> None:
        self._scope.require(Access.PACKAGES_WRITE, what=f"write {name} to {self.description}")
        await self._store.write_document(name, data)

    async def aclose(self) -> None:
        await self._store.aclose()
