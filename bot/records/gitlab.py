"""Build records in GitLab's generic package registry (project-scoped).

API: https://docs.gitlab.com/user/packages/generic_packages/ and https://docs.gitlab.com/api/packages/
GitLab keeps every upload of a file name and serves the newest, so records are replaced by
"append, then prune" (:mod:`bot.records.packages`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from bot.errors import RecordStoreError
from bot.records import DEFAULT_CONCURRENCY
from bot.records.packages import PackageFile, PackageRecordStore, PutOutcome
from bot.retry import RetryPolicy

TOKEN_VARIABLE = "GITLAB_TOKEN"  # noqa: S105 - the variable's name
PAGE_SIZE = 100
DUPLICATE_REFUSED_MESSAGE = "Duplicate package is not allowed"


class GitLabRecordStore(PackageRecordStore):
    append_duplicates = True
    token_variable = TOKEN_VARIABLE
    forbidden_hint = (
        "uploads need the api scope (or write_package_registry) and the Developer role; "
        "deleting package files needs the Maintainer role"
    )
    not_found = f"project not found, or {TOKEN_VARIABLE} cannot see it"

    def __init__(
        self,
        api_url: str,
        project_id: int | str,
        token: str | None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(
            token=token, auth_headers={"PRIVATE-TOKEN": token or ""}, concurrency=concurrency, retry=retry
        )
        self._base = api_url.rstrip("/")
        self._project = str(project_id)
        self._api = f"{self._base}/api/v4/projects/{quote(self._project, safe='')}"
        self._page_size = page_size
        self._package_ids: dict[tuple[str, str], int] = {}

    @property
    def description(self) -> str:
        return f"GitLab project {self._project} at {self._base}"

    # -- transport ---------------------------------------------------------------------------

    async def _put_file(
        self, name: str, version: str, file: str, data: bytes
    ) -> tuple[PutOutcome, int | None]:
        response = await self._send(
            "PUT", self._file_url(name, version, file), params={"select": "package_file"}, content=data
        )
        if response.status_code == 400 and DUPLICATE_REFUSED_MESSAGE in response.text:
            return PutOutcome.DUPLICATE_REFUSED, None
        self._check(response, f"upload {name}/{version}/{file}", 200, 201)
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("id"), int):
            if isinstance(body.get("package_id"), int):
                self._package_ids[(name, version)] = body["package_id"]
            return PutOutcome.CREATED, body["id"]
        return PutOutcome.CREATED, None

    async def _get_file(self, name: str, version: str, file: str) -> bytes | None:
        response = await self._send("GET", self._file_url(name, version, file))
        if response.status_code == 404 and "Project" not in response.text:
            return None
        self._check(response, f"download {name}/{version}/{file}", 200)
        return response.content

    async def _list_files(self, name: str, version: str) -> list[PackageFile]:
        package_id = await self._package_id(name, version)
        if package_id is None:
            return []
        files: list[PackageFile] = []
        async for item in self._pages(
            f"{self._api}/packages/{package_id}/package_files", {}, "list package files"
        ):
            files.append(PackageFile(name=str(item.get("file_name")), id=item.get("id")))
        return files

    async def _delete_file(self, name: str, version: str, file: PackageFile) -> None:
        package_id = await self._package_id(name, version)
        if package_id is None:
            return
        file_ids = (
            [file.id]
            if file.id is not None
            else [
                f.id
                for f in await self._list_files(name, version)
                if f.name == file.name and f.id is not None
            ]
        )
        for file_id in file_ids:
            response = await self._send(
                "DELETE", f"{self._api}/packages/{package_id}/package_files/{file_id}"
            )
            if response.status_code != 404:
                self._check(response, f"delete {name}/{version}/{file.name}", 204, 200)

    async def _delete_version(self, name: str, version: str) -> bool:
        package_id = await self._package_id(name, version)
        if package_id is None:
            return False
        response = await self._send("DELETE", f"{self._api}/packages/{package_id}")
        self._package_ids.pop((name, version), None)
        if response.status_code == 404:
            return False
        self._check(response, f"delete package {name}/{version}", 204, 200)
        return True

    async def _versions(self) -> AsyncIterator[tuple[str, str]]:
        params = {"package_type": "generic", "order_by": "created_at", "sort": "asc"}
        async for item in self._pages(f"{self._api}/packages", params, "list packages"):
            name, version, package_id = item.get("name"), item.get("version"), item.get("id")
            if isinstance(name, str) and isinstance(version, str):
                if isinstance(package_id, int):
                    self._package_ids[(name, version)] = package_id
                yield name, version

    # -- helpers -----------------------------------------------------------------------------

    def _file_url(self, name: str, version: str, file: str) -> str:
        return f"{self._api}/packages/generic/{quote(name)}/{quote(version)}/{quote(file)}"

    async def _package_id(self, name: str, version: str) -> int | None:
        known = self._package_ids.get((name, version))
        if known is not None:
            return known
        # package_name is a fuzzy filter: keep the exact match only.
        params = {"package_type": "generic", "package_name": name, "package_version": version}
        async for item in self._pages(f"{self._api}/packages", params, "look up a package"):
            if (
                item.get("name") == name
                and item.get("version") == version
                and isinstance(item.get("id"), int)
            ):
                self._package_ids[(name, version)] = item["id"]
                return int(item["id"])
        return None

    async def _pages(self, url: str, params: dict[str, str], what: str) -> AsyncIterator[dict[str, Any]]:
        page: str | None = "1"
        while page:
            response = await self._send(
                "GET", url, params={**params, "per_page": str(self._page_size), "page": page}
            )
            self._check(response, what, 200)
            items = response.json()
            if not isinstance(items, list):
                raise RecordStoreError(f"{self.description}: {what}: the answer is not a list")
            for item in items:
                if isinstance(item, dict):
                    yield item
            page = response.headers.get("x-next-page") or None
