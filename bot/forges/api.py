"""What handlers may ask of a forge, and the two clients that answer it (GitLab, Gitea/Forgejo).

Both clients run on :class:`bot.http.HttpClient` (one pool, retries on 429/5xx with
``Retry-After``): gidgetlab's API class would add a second HTTP stack without retries, so it is
kept for what it does well here, driving the GitLab fake in its honesty tests.

Roles are normalised to GitLab's access levels: Gitea's read/write/admin/owner map to
reporter (20) / developer (30) / maintainer (40) / owner (50).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import quote

from bot.errors import ImglifeError
from bot.events import Actor, Repo
from bot.http import HttpClient, Response, TransportError
from bot.retry import RetryPolicy

NO_ACCESS, GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 0, 10, 20, 30, 40, 50
GITEA_LEVELS = {"none": NO_ACCESS, "read": REPORTER, "write": DEVELOPER, "admin": MAINTAINER, "owner": OWNER}
GITLAB_STATES = {
    "pending": "pending",
    "running": "running",
    "success": "success",
    "failure": "failed",
    "error": "failed",
}
GITEA_STATES = {
    "pending": "pending",
    "running": "pending",
    "success": "success",
    "failure": "failure",
    "error": "error",
}
# GitLab's status state machine refuses a repeated state; the status is already what we wanted.
GITLAB_NO_TRANSITION = "Cannot transition status"
PAGE_SIZE = 100
MSG_GITEA_PERMISSION = (
    "the bot cannot read collaborator permissions in {repo}: Gitea answers that question only for "
    "repository admins, so give the bot's user admin access to the repository"
)
MAX_DESCRIPTION = 140  # both forges cut longer descriptions; cut them ourselves, on a word
# Directory listings: GitLab calls every file a "blob" and tells a symlink by its mode; Gitea
# types entries "file" (regular or executable), "dir", "symlink" or "submodule".
GITLAB_BLOB = "blob"
GITLAB_SYMLINK_MODE = "120000"
GITEA_FILE = "file"


class ForgeError(ImglifeError):
    """A forge API call failed (after retries)."""


class PermissionUnknown(ForgeError):
    """The forge would not say what role a user has (the bot's token may not ask)."""


class CommitState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CommitStatus:
    context: str  # imglife/check, imglife/register, imglife/sync
    state: CommitState
    description: str
    target_url: str | None = None


@dataclass(frozen=True, slots=True)
class Comment:
    id: int
    body: str
    author_id: int | None


class Forge(Protocol):
    """The forge calls handlers make; ``change_request`` picks MR/PR notes over issue notes."""

    async def set_status(
        self, repo: Repo, sha: str, status: CommitStatus, *, ref: str | None = None
    ) -> None: ...

    async def comments(self, repo: Repo, number: int, *, change_request: bool) -> list[Comment]: ...

    async def create_comment(
        self, repo: Repo, number: int, body: str, *, change_request: bool
    ) -> Comment: ...

    async def edit_comment(
        self, repo: Repo, number: int, comment_id: int, body: str, *, change_request: bool
    ) -> None: ...

    async def react(self, repo: Repo, number: int, comment_id: int, *, change_request: bool) -> None: ...

    async def access_level(self, repo: Repo, actor: Actor) -> int: ...

    async def read_file(self, repo: Repo, path: str, *, ref: str) -> bytes | None: ...

    async def list_directory(self, repo: Repo, path: str, *, ref: str) -> list[str]: ...

    async def change_request_head(self, repo: Repo, number: int) -> str | None: ...

    async def tag_commit(self, repo: Repo, tag: str) -> str | None: ...

    async def current_user_id(self) -> int: ...

    async def aclose(self) -> None: ...


def short_description(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= MAX_DESCRIPTION:
        return flat
    return flat[: MAX_DESCRIPTION - 1].rsplit(" ", 1)[0] + "…"


class _RestClient:
    """The shared part: one pool, one error shape, the bot's own user id cached."""

    service = "forge"

    def __init__(self, base_url: str, headers: dict[str, str], *, retry: RetryPolicy | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._http = HttpClient(service=self.service, headers=headers, retry=retry)
        self._user_id: int | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def current_user_id(self) -> int:
        """The bot's own user id (both forges answer ``GET /user``), asked once."""
        if self._user_id is None:
            self._user_id = int((await self._call("GET", "/user", ok=(200,))).json()["id"])
        return self._user_id

    async def _raw(self, route: str, ref: str) -> bytes | None:
        response = await self._call("GET", route, params={"ref": ref}, ok=(200, 404))
        return None if response.status_code == 404 else response.content

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...],
    ) -> Response:
        content = None if json_body is None else json.dumps(json_body).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = await self._http.request(
                method, f"{self._base}{path}", params=params, headers=headers, content=content
            )
        except TransportError as exc:
            raise ForgeError(f"cannot reach {self.service} at {self._base}: {exc}") from exc
        if response.status_code not in ok:
            body = response.json()
            message = body.get("message") if isinstance(body, dict) else response.text[:200]
            raise ForgeError(
                f"{self.service} {method} {path} answered HTTP {response.status_code}: {message}"
            )
        return response


class GitLabForge(_RestClient):
    service = "GitLab"

    def __init__(self, url: str, token: str, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(f"{url.rstrip('/')}/api/v4", {"PRIVATE-TOKEN": token}, retry=retry)

    @staticmethod
    def _project(repo: Repo) -> str:
        return f"/projects/{quote(repo.id, safe='')}"

    @staticmethod
    def _noteable(change_request: bool) -> str:
        return "merge_requests" if change_request else "issues"

    async def set_status(self, repo: Repo, sha: str, status: CommitStatus, *, ref: str | None = None) -> None:
        body: dict[str, Any] = {
            "state": GITLAB_STATES[status.state],
            "name": status.context,
            "description": short_description(status.description),
        }
        if status.target_url:
            body["target_url"] = status.target_url
        if ref:  # without it GitLab may open a detached "external" pipeline
            body["ref"] = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
        try:
            await self._call("POST", f"{self._project(repo)}/statuses/{sha}", json_body=body, ok=(200, 201))
        except ForgeError as exc:
            if GITLAB_NO_TRANSITION not in str(exc):
                raise

    async def comments(self, repo: Repo, number: int, *, change_request: bool) -> list[Comment]:
        path = f"{self._project(repo)}/{self._noteable(change_request)}/{number}/notes"
        found: list[Comment] = []
        page: str | None = "1"
        while page:
            params = {"sort": "asc", "order_by": "created_at", "per_page": str(PAGE_SIZE), "page": page}
            response = await self._call("GET", path, params=params, ok=(200,))
            notes = response.json()
            if not isinstance(notes, list):  # cut short or garbled: never read it as "no comments"
                raise ForgeError(f"{self.service} GET {path} answered something that is not a list of notes")
            for note in notes:
                if isinstance(note, dict) and not note.get("system"):
                    author = note.get("author") or {}
                    found.append(Comment(int(note["id"]), str(note.get("body") or ""), author.get("id")))
            page = response.headers.get("x-next-page") or None
        return found

    async def create_comment(self, repo: Repo, number: int, body: str, *, change_request: bool) -> Comment:
        path = f"{self._project(repo)}/{self._noteable(change_request)}/{number}/notes"
        note = (await self._call("POST", path, json_body={"body": body}, ok=(201,))).json()
        return Comment(int(note["id"]), body, (note.get("author") or {}).get("id"))

    async def edit_comment(
        self, repo: Repo, number: int, comment_id: int, body: str, *, change_request: bool
    ) -> None:
        path = f"{self._project(repo)}/{self._noteable(change_request)}/{number}/notes/{comment_id}"
        await self._call("PUT", path, json_body={"body": body}, ok=(200,))

    async def react(self, repo: Repo, number: int, comment_id: int, *, change_request: bool) -> None:
        path = (
            f"{self._project(repo)}/{self._noteable(change_request)}/{number}/notes/{comment_id}/award_emoji"
        )
        # An award that already exists is not a failure: the reaction is there.
        await self._call("POST", path, params={"name": "eyes"}, ok=(200, 201, 404))

    async def access_level(self, repo: Repo, actor: Actor) -> int:
        if actor.id is None:
            return NO_ACCESS
        response = await self._call("GET", f"{self._project(repo)}/members/all/{actor.id}", ok=(200, 404))
        if response.status_code == 404:
            return NO_ACCESS
        level = (response.json() or {}).get("access_level")
        return int(level) if isinstance(level, int) else NO_ACCESS

    async def read_file(self, repo: Repo, path: str, *, ref: str) -> bytes | None:
        return await self._raw(f"{self._project(repo)}/repository/files/{quote(path, safe='')}/raw", ref)

    async def list_directory(self, repo: Repo, path: str, *, ref: str) -> list[str]:
        """The regular files directly in ``path``, sorted.

        GitLab answers 404 for a ref it does not know ("Tree Not Found"), for a path that is not
        there ("invalid revision or path") and for a path that is a file ("path not treeish"):
        none of them has files to list. Symlinks are blobs too, told apart only by their mode;
        they are left out, as their raw content is the link target, not a file to read.
        """
        params = {"ref": ref, "per_page": str(PAGE_SIZE)}
        if directory := path.strip("/"):  # the root is the tree without a path
            params["path"] = directory
        found: list[str] = []
        page: str | None = "1"
        while page:
            response = await self._call(
                "GET",
                f"{self._project(repo)}/repository/tree",
                params={**params, "page": page},
                ok=(200, 404),
            )
            if response.status_code == 404:
                return []
            for entry in response.json() or []:
                if (
                    isinstance(entry, dict)
                    and entry.get("type") == GITLAB_BLOB
                    and entry.get("mode") != GITLAB_SYMLINK_MODE
                ):
                    found.append(str(entry["path"]))
            page = response.headers.get("x-next-page") or None
        return sorted(found)

    async def change_request_head(self, repo: Repo, number: int) -> str | None:
        """The merge request's head commit (``sha``), asked afresh: the event may be stale."""
        response = await self._call("GET", f"{self._project(repo)}/merge_requests/{number}", ok=(200, 404))
        body = response.json() if response.status_code == 200 else None
        sha = body.get("sha") if isinstance(body, dict) else None
        return str(sha) if sha else None

    async def tag_commit(self, repo: Repo, tag: str) -> str | None:
        """The commit a tag points at (``commit.id``; ``target`` is the tag object when annotated).

        The tag name is one URL-encoded segment: GitLab's route takes no ``/`` in it.
        """
        path = f"{self._project(repo)}/repository/tags/{quote(tag, safe='')}"
        response = await self._call("GET", path, ok=(200, 404))
        body = response.json() if response.status_code == 200 else None
        commit = body.get("commit") if isinstance(body, dict) else None
        sha = commit.get("id") if isinstance(commit, dict) else None
        return str(sha) if sha else None


class GiteaForge(_RestClient):
    service = "Gitea"

    def __init__(self, url: str, token: str, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(f"{url.rstrip('/')}/api/v1", {"Authorization": f"token {token}"}, retry=retry)

    @staticmethod
    def _repo(repo: Repo) -> str:
        owner, _, name = repo.id.partition("/")
        return f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}"

    async def set_status(self, repo: Repo, sha: str, status: CommitStatus, *, ref: str | None = None) -> None:
        body: dict[str, Any] = {
            "state": GITEA_STATES[status.state],
            "context": status.context,
            "description": short_description(status.description),
        }
        if status.target_url:
            body["target_url"] = status.target_url
        await self._call("POST", f"{self._repo(repo)}/statuses/{sha}", json_body=body, ok=(200, 201))

    async def comments(self, repo: Repo, number: int, *, change_request: bool) -> list[Comment]:
        found: list[Comment] = []
        page = 1
        while True:
            params = {"limit": "50", "page": str(page)}
            response = await self._call(
                "GET", f"{self._repo(repo)}/issues/{number}/comments", params=params, ok=(200,)
            )
            items = response.json()
            if not isinstance(items, list):  # cut short or garbled: never read it as "no comments"
                raise ForgeError(f"{self.service} GET comments of #{number} answered something not a list")
            for item in items:
                if isinstance(item, dict):
                    user = item.get("user") or {}
                    found.append(Comment(int(item["id"]), str(item.get("body") or ""), user.get("id")))
            total = response.headers.get("x-total-count", "")
            if not items or (total.isdigit() and len(found) >= int(total)):
                return found
            page += 1

    async def create_comment(self, repo: Repo, number: int, body: str, *, change_request: bool) -> Comment:
        path = f"{self._repo(repo)}/issues/{number}/comments"
        item = (await self._call("POST", path, json_body={"body": body}, ok=(201,))).json()
        return Comment(int(item["id"]), body, (item.get("user") or {}).get("id"))

    async def edit_comment(
        self, repo: Repo, number: int, comment_id: int, body: str, *, change_request: bool
    ) -> None:
        await self._call(
            "PATCH", f"{self._repo(repo)}/issues/comments/{comment_id}", json_body={"body": body}, ok=(200,)
        )

    async def react(self, repo: Repo, number: int, comment_id: int, *, change_request: bool) -> None:
        path = f"{self._repo(repo)}/issues/comments/{comment_id}/reactions"
        await self._call("POST", path, json_body={"content": "eyes"}, ok=(200, 201))

    async def access_level(self, repo: Repo, actor: Actor) -> int:
        path = f"{self._repo(repo)}/collaborators/{quote(actor.username, safe='')}/permission"
        response = await self._call("GET", path, ok=(200, 403, 404))
        if response.status_code == 403:
            raise PermissionUnknown(MSG_GITEA_PERMISSION.format(repo=repo.path))
        if response.status_code == 404:
            return NO_ACCESS
        return GITEA_LEVELS.get(str((response.json() or {}).get("permission")), NO_ACCESS)

    async def read_file(self, repo: Repo, path: str, *, ref: str) -> bytes | None:
        return await self._raw(f"{self._repo(repo)}/raw/{quote(path)}", ref)

    async def list_directory(self, repo: Repo, path: str, *, ref: str) -> list[str]:
        """The regular files directly in ``path``, sorted.

        The contents API answers a directory with a list (unpaginated) and a file with one
        object; an unknown path or ref is a 404. Only ``file`` entries count: ``symlink``,
        ``submodule`` and ``dir`` are not files to read.
        """
        directory = path.strip("/")
        route = (
            f"{self._repo(repo)}/contents/{quote(directory)}" if directory else f"{self._repo(repo)}/contents"
        )
        response = await self._call("GET", route, params={"ref": ref}, ok=(200, 404))
        body = response.json() if response.status_code == 200 else None
        if not isinstance(body, list):  # 404, or an object: `path` is a file
            return []
        return sorted(
            str(entry["path"])
            for entry in body
            if isinstance(entry, dict) and entry.get("type") == GITEA_FILE
        )

    async def change_request_head(self, repo: Repo, number: int) -> str | None:
        """The pull request's head commit (``head.sha``), asked afresh: the event may be stale.

        An issue number is a 404 here too, as pulls and issues share one number sequence.
        """
        response = await self._call("GET", f"{self._repo(repo)}/pulls/{number}", ok=(200, 404))
        body = response.json() if response.status_code == 200 else None
        head = body.get("head") if isinstance(body, dict) else None
        sha = head.get("sha") if isinstance(head, dict) else None
        return str(sha) if sha else None

    async def tag_commit(self, repo: Repo, tag: str) -> str | None:
        """The commit a tag points at (``commit.sha``; ``id`` is the tag object when annotated).

        ``/`` stays unencoded: Gitea's route takes the rest of the path as the tag name.
        """
        response = await self._call("GET", f"{self._repo(repo)}/tags/{quote(tag)}", ok=(200, 404))
        body = response.json() if response.status_code == 200 else None
        commit = body.get("commit") if isinstance(body, dict) else None
        sha = commit.get("sha") if isinstance(commit, dict) else None
        return str(sha) if sha else None
