"""Build records in Gitea's (or Forgejo's) generic package registry (owner-scoped).

API: https://docs.gitea.com/usage/packages/generic (files) and ``/api/v1/packages/{owner}``
(listing). Gitea answers 409 for a file that exists, so records are replaced by "stage, then
swap" (:mod:`bot.records.packages`). Packages belong to the owner (user or organisation), not to
a repository; the package name already carries the whole image repository, so records of
different repositories never meet.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

from bot.errors import RecordStoreError, RecordStoreForbidden
from bot.http import Response
from bot.records import DEFAULT_CONCURRENCY
from bot.records.packages import PackageFile, PackageRecordStore, PutOutcome
from bot.retry import RetryPolicy

TOKEN_VARIABLE = "GITEA_TOKEN"  # noqa: S105 - the variable's name
# Gitea's default [api] MAX_RESPONSE_ITEMS; larger limits are cut to it.
PAGE_SIZE = 50


class GiteaRecordStore(PackageRecordStore):
    token_variable = TOKEN_VARIABLE
    forbidden_hint = "it needs the package scope and write access to the owner"
    not_found = f"owner not found, or {TOKEN_VARIABLE} cannot see it"

    def __init__(
        self,
        url: str,
        owner: str,
        token: str | None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(
            token=token,
            auth_headers={"Authorization": f"token {token}"},
            concurrency=concurrency,
            retry=retry,
        )
        self._base = url.rstrip("/")
        self._owner = owner
        self._files = f"{self._base}/api/packages/{quote(owner, safe='')}/generic"
        self._api = f"{self._base}/api/v1/packages/{quote(owner, safe='')}"
        self._page_size = page_size

    @property
    def description(self) -> str:
        return f"Gitea packages of {self._owner} at {self._base}"

    # -- transport ---------------------------------------------------------------------------

    def _check(self, response: Response, what: str, *ok: int) -> None:
        # Gitea's package registry never answers 403: a valid token without write access to the
        # owner (or without the package scope) gets 401 "reqPackageAccess" too.
        if response.status_code == 401 and "reqPackageAccess" in response.text and self._token_set:
            raise RecordStoreForbidden(
                f"{self.description}: {TOKEN_VARIABLE} may not {what} (HTTP 401 reqPackageAccess); "
                f"{self.forbidden_hint}"
            )
        super()._check(response, what, *ok)

    async def _put_file(
        self, name: str, version: str, file: str, data: bytes
    ) -> tuple[PutOutcome, int | None]:
        response = await self._send("PUT", self._file_url(name, version, file), content=data)
        if response.status_code == 409:
            return PutOutcome.EXISTS, None
        self._check(response, f"upload {name}/{version}/{file}", 201, 200)
        return PutOutcome.CREATED, None

    async def _get_file(self, name: str, version: str, file: str) -> bytes | None:
        response = await self._send("GET", self._file_url(name, version, file))
        if response.status_code == 404:
            return None
        self._check(response, f"download {name}/{version}/{file}", 200)
        return response.content

    async def _list_files(self, name: str, version: str) -> list[PackageFile]:
        url = f"{self._api}/generic/{quote(name)}/{quote(version)}/files"
        response = await self._send("GET", url)
        if response.status_code == 404:
            return []
        self._check(response, f"list files of {name}/{version}", 200)
        items = response.json()
        if not isinstance(items, list):
            raise RecordStoreError(f"{self.description}: list files of {name}/{version}: not a list")
        return [
            PackageFile(
                name=str(item.get("name")), id=item.get("id") if isinstance(item.get("id"), int) else None
            )
            for item in items
            if isinstance(item, dict)
        ]

    async def _delete_file(self, name: str, version: str, file: PackageFile) -> None:
        response = await self._send("DELETE", self._file_url(name, version, file.name))
        if response.status_code != 404:
            self._check(response, f"delete {name}/{version}/{file.name}", 204, 200)

    async def _delete_version(self, name: str, version: str) -> bool:
        response = await self._send("DELETE", f"{self._files}/{quote(name)}/{quote(version)}")
        if response.status_code == 404:
            return False
        self._check(response, f"delete package {name}/{version}", 204, 200)
        return True

    async def _versions(self) -> AsyncIterator[tuple[str, str]]:
        # Count what arrived rather than trusting our page size: Gitea cuts `limit` to its
        # MAX_RESPONSE_ITEMS without saying so.
        page, received = 1, 0
        while True:
            params = {"type": "generic", "limit": str(self._page_size), "page": str(page)}
            response = await self._send("GET", self._api, params=params)
            self._check(response, "list packages", 200)
            items = response.json()
            if not isinstance(items, list):
                raise RecordStoreError(f"{self.description}: list packages: the answer is not a list")
            received += len(items)
            for item in items:
                name, version = (
                    (item.get("name"), item.get("version")) if isinstance(item, dict) else (None, None)
                )
                if isinstance(name, str) and isinstance(version, str):
                    yield name, version
            total = response.headers.get("x-total-count", "")
            if not items or (total.isdigit() and received >= int(total)):
                return
            page += 1

    # -- helpers -----------------------------------------------------------------------------

    def _file_url(self, name: str, version: str, file: str) -> str:
        return f"{self._files}/{quote(name)}/{quote(version)}/{quote(file)}"
