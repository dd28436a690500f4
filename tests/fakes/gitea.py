"""An in-process fake of Gitea/Forgejo: the generic package registry and the package API v1.

Behaviour follows Gitea's documentation and, where the docs are silent, its source at the 1.22
line (``tests/fakes/README.md`` lists both with links). The points a record store trips over:

* **Packages belong to an owner** (a user or an organisation), not to a repository: the same
  name under two owners is two packages.
* **No overwrite.** A PUT of a file that exists answers ``409 Conflict`` (plain text
  ``package file already exists``); replacing means DELETE then PUT. Names, versions and file
  names compare **case-insensitively** (Gitea stores and looks up ``lower_name``).
* **Two APIs, two error styles.** The registry under ``/api/packages/`` answers plain text and
  says ``401`` (with ``WWW-Authenticate: Basic``) even to a signed-in user lacking write
  access; the API under ``/api/v1/`` answers ``{"message": ..., "url": ...}`` with ``401``
  for bad credentials and ``403`` for missing permission.
* **Lists paginate** with ``page``/``limit`` (30 by default, at most 50) and answer
  ``X-Total-Count`` and ``Link``; the list is newest first.

Typical use::

    with FakeGitea(tokens={"tok": TokenInfo("bot")}) as gt:
        gt.add_org("platform", members={"bot": "write"})
        httpx.put(f"{gt.url}/api/packages/platform/generic/rec/1/r.json", ...)
        assert gt.file_count("platform", "rec", "1", "r.json") == 1
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web

from .gitlab import FILE_MODES, REGULAR_MODE, SYMLINK_MODE, TreeEntry, git_blob_id, git_tag_id, list_tree
from .server import (
    JSON_CONTENT_TYPE,
    OCTET_STREAM,
    Call,
    FakeServer,
    HTTPFault,
    Router,
    basic_credentials,
    bearer_token,
    json_body,
    page_url,
    paginate,
)

__all__ = [
    "ACCESS_ADMIN",
    "ACCESS_NONE",
    "ACCESS_READ",
    "ACCESS_WRITE",
    "Account",
    "FakeGitea",
    "GiteaFileView",
    "GiteaPackageView",
    "GiteaTag",
    "TokenInfo",
]

API_V1 = "/api/v1"
REGISTRY = "/api/packages"
FORGEJO_API = "/api/forgejo/v1"

DEFAULT_VERSION = "1.22.0"
# Forgejo 7 is built on Gitea 1.22 and reports both (semver build metadata); format unverified.
DEFAULT_FORGEJO_VERSION = "7.0.5+gitea-1.22.0"
# PackageFile's size was an untagged Go field (`Size`) through at least 1.24; the 1.26 swagger
# (which gitea-async-sdk 1.26.2 is generated from) calls it `size`.
SIZE_KEY_RENAMED_IN = (1, 26)

# [api] DEFAULT_PAGING_NUM and MAX_RESPONSE_ITEMS (docs: administration/config-cheat-sheet).
DEFAULT_PAGING_NUM = 30
MAX_RESPONSE_ITEMS = 50

# perm.AccessMode, as services/context/package.go determines it for the package owner.
ACCESS_NONE, ACCESS_READ, ACCESS_WRITE, ACCESS_ADMIN = 0, 1, 2, 3
ORG_PERMISSIONS = {"read": ACCESS_READ, "write": ACCESS_WRITE, "owner": ACCESS_ADMIN}

# routers/api/packages/generic/generic.go (Go's \w is ASCII [0-9A-Za-z_]).
PACKAGE_NAME_RE = re.compile(r"\A[-_+.0-9A-Za-z]+\Z")
FILE_NAME_RE = re.compile(r"\A[-_+=:;.()\[\]{}~!@#$%^& 0-9A-Za-z]+\Z")

PACKAGE_TYPE_GENERIC = "generic"

# Message templates, verbatim from Gitea.
MSG_INVALID_NAME = "invalid package name"
MSG_INVALID_FILENAME = "invalid filename"
MSG_INVALID_VERSION = "invalid package version"
MSG_FILE_EXISTS = "package file already exists"  # packages_model.ErrDuplicatePackageFile
MSG_PACKAGE_NOT_EXIST = "package does not exist"  # packages_model.ErrPackageNotExist
MSG_FILE_NOT_EXIST = "package file does not exist"  # packages_model.ErrPackageFileNotExist
# ctx.Error(status, title) writes the *title* through http.Error, which appends "\n".
BODY_REQ_PACKAGE_ACCESS = b"reqPackageAccess\n"
BODY_AUTH_FAILED = b"authGroup.Verify\n"  # Gitea >= 1.23 says "Failed to authenticate user"
BODY_NOT_FOUND = b"Not found.\n"
WWW_AUTHENTICATE = 'Basic realm="Gitea Package API"'
MSG_NO_PERMISSION = "user should have specific permission or be a site admin"
MSG_TOKEN_REQUIRED = "token is required"
MSG_SCOPE = "token does not have at least one of required scope(s): [{scope}]"
MSG_USER_NOT_EXIST = "user does not exist [uid: 0, name: {name}]"
MSG_OWNER_NOT_EXIST = "user redirect does not exist [name: {name}]"
MSG_TARGET_NOT_FOUND = "The target couldn't be found."
PLAIN_TEXT = "text/plain; charset=utf-8"
JSON_UTF8 = f"{JSON_CONTENT_TYPE};charset=utf-8"

# Repository permissions (perm.AccessMode.ToString()); collaborators get read/write/admin.
ACCESS_OWNER = 4
ACCESS_NAMES = {
    ACCESS_NONE: "none",
    ACCESS_READ: "read",
    ACCESS_WRITE: "write",
    ACCESS_ADMIN: "admin",
    ACCESS_OWNER: "owner",
}
COLLABORATOR_PERMISSIONS = {"read": ACCESS_READ, "write": ACCESS_WRITE, "admin": ACCESS_ADMIN}
ORG_REPO_PERMISSIONS = {"read": ACCESS_READ, "write": ACCESS_WRITE, "owner": ACCESS_OWNER}
# modules/commitstatus (1.22: no `skipped`); every POST inserts a row, there is no state machine.
STATUS_STATES = ("pending", "success", "error", "failure", "warning")
# setting.UI.Reactions default; other content answers 403 ErrForbiddenIssueReaction.
ALLOWED_REACTIONS = ("+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes")
MSG_REACTION_FORBIDDEN = "'{content}' is not an allowed reaction"
MSG_REPO_WRITER = "user should have a permission to write to a repo"
MSG_PERMISSION_QUERY = (
    "Only admins can query all permissions, repo admins can query all repo permissions, "
    "collaborators can query only their own"
)
MSG_COMMENT_NOT_EXIST = "comment does not exist [id: {id}, issue_id: 0]"
MSG_ISSUE_NOT_EXIST = "issue does not exist [id: 0, repo_id: {repo_id}, index: {index}]"
MSG_INVALID_STATE = "invalid commit status state: {state}"  # the fake's wording (unverified)
RAW_CONTENT_TYPE = "text/plain; charset=utf-8"
# GetContents answers ctx.NotFound("GetContentsOrList", err): a string argument replaces the
# message, the error (git.ErrNotExist) lands in `errors`.
MSG_CONTENTS_NOT_FOUND = "GetContentsOrList"
MSG_OBJECT_NOT_EXIST = "object does not exist [id: {id}, rel_path: {rel_path}]"
SHA_RE = re.compile(r"\A[0-9a-f]{40}\Z")

# Scopes (models/auth/access_token_scope.go): write:X implies read:X, "all" implies everything.
SCOPE_ALL = "all"


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class TokenInfo:
    """A personal access token of ``user`` with ``scopes`` (``{"all"}`` by default)."""

    user: str
    scopes: frozenset[str] = frozenset({SCOPE_ALL})


@dataclass
class Account:
    """A user or an organisation: both own packages and share one name space."""

    id: int
    login: str
    kind: Literal["user", "organization"]
    created: datetime
    full_name: str = ""
    email: str = ""
    admin: bool = False
    password: str | None = None
    visibility: Literal["public", "limited", "private"] = "public"
    members: dict[str, Literal["read", "write", "owner"]] = field(default_factory=dict)


@dataclass
class GiteaFile:
    id: int
    name: str
    data: bytes
    created: datetime

    @property
    def hashes(self) -> dict[str, str]:
        return {
            "md5": hashlib.md5(self.data, usedforsecurity=False).hexdigest(),
            "sha1": hashlib.sha1(self.data, usedforsecurity=False).hexdigest(),
            "sha256": hashlib.sha256(self.data).hexdigest(),
            "sha512": hashlib.sha512(self.data).hexdigest(),
        }


@dataclass
class GiteaVersion:
    id: int  # what the API calls the package "id"
    version: str
    created: datetime
    creator_id: int
    files: list[GiteaFile] = field(default_factory=list)


@dataclass
class GiteaPackage:
    id: int
    owner_id: int
    type: str
    name: str
    versions: list[GiteaVersion] = field(default_factory=list)


@dataclass
class GiteaStatus:
    id: int
    sha: str
    state: str
    context: str
    creator_id: int
    created: datetime
    target_url: str = ""
    description: str = ""


@dataclass
class GiteaReaction:
    content: str
    user_id: int
    created: datetime


@dataclass
class GiteaComment:
    id: int
    issue_index: int
    poster_id: int
    body: str
    created: datetime
    updated: datetime
    reactions: list[GiteaReaction] = field(default_factory=list)


@dataclass
class GiteaIssue:
    """An issue or a pull request: both take their number from one per-repository sequence."""

    index: int
    title: str
    is_pull: bool
    poster_id: int
    created: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    head_branch: str = ""  # pull requests only
    head_sha: str = ""
    base_branch: str = ""


@dataclass
class GiteaTag:
    """A git tag: lightweight (``message is None``) or annotated (a tag object of its own)."""

    name: str
    commit_sha: str
    message: str | None
    created: datetime

    @property
    def id(self) -> str:
        """``Tag.ID``: the commit of a lightweight tag, the tag object of an annotated one."""
        return (
            self.commit_sha if self.message is None else git_tag_id(self.name, self.commit_sha, self.message)
        )


@dataclass
class GiteaRepo:
    id: int
    owner: Account
    name: str
    default_branch: str
    private: bool
    created: datetime
    collaborators: dict[str, Literal["read", "write", "admin"]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> sha, for /commits/{ref}
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (ref, path) -> content
    file_modes: dict[tuple[str, str], str] = field(default_factory=dict)  # (ref, path) -> git mode
    tags: dict[str, GiteaTag] = field(default_factory=dict)
    issues: dict[int, GiteaIssue] = field(default_factory=dict)
    comments: list[GiteaComment] = field(default_factory=list)
    statuses: list[GiteaStatus] = field(default_factory=list)
    next_index: int = 1


@dataclass
class GiteaState:
    accounts: dict[str, Account] = field(default_factory=dict)  # by lower-case login
    tokens: dict[str, TokenInfo] = field(default_factory=dict)
    packages: list[GiteaPackage] = field(default_factory=list)
    repos: dict[str, GiteaRepo] = field(default_factory=dict)  # by lower-case "owner/name"
    next_account_id: int = 1
    next_repo_id: int = 1
    next_status_id: int = 1
    next_comment_id: int = 1
    next_package_id: int = 1
    next_version_id: int = 1
    next_file_id: int = 1


@dataclass(frozen=True)
class GiteaFileView:
    id: int
    name: str
    size: int
    sha256: str
    data: bytes


@dataclass(frozen=True)
class GiteaPackageView:
    """One package version of an owner, for assertions."""

    id: int
    type: str
    name: str
    version: str
    files: tuple[GiteaFileView, ...]


@dataclass(frozen=True)
class Doer:
    account: Account | None
    token: TokenInfo | None  # None for anonymous and password logins (no scope limits)


# --------------------------------------------------------------------------- the fake


class FakeGitea(FakeServer):
    """Gitea (or Forgejo, ``flavor="forgejo"``) package registry and API v1; see module docstring."""

    thread_name = "fake-gitea"

    def __init__(
        self,
        tokens: Mapping[str, TokenInfo] | None = None,
        *,
        version: str | None = None,
        flavor: Literal["gitea", "forgejo"] = "gitea",
        package_file_size_key: Literal["Size", "size"] | None = None,
        latency: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.state = GiteaState()
        self.flavor = flavor
        self.version = version or (DEFAULT_FORGEJO_VERSION if flavor == "forgejo" else DEFAULT_VERSION)
        self.package_file_size_key = package_file_size_key or _size_key_for(self.version)
        super().__init__(latency=latency, clock=clock)
        for token, info in (tokens or {}).items():
            self.add_token(token, info.user, scopes=info.scopes)

    # ------------------------------------------------------------------ setup helpers

    def add_user(
        self,
        login: str,
        *,
        full_name: str = "",
        email: str | None = None,
        admin: bool = False,
        password: str | None = None,
        visibility: Literal["public", "limited", "private"] = "public",
    ) -> Account:
        """Create (or return the existing) user."""
        with self.lock:
            existing = self.state.accounts.get(login.lower())
            if existing is not None:
                return existing
            return self._add_account(
                Account(
                    id=self.state.next_account_id,
                    login=login,
                    kind="user",
                    created=self.now(),
                    full_name=full_name,
                    email=email or f"{login.lower()}@example.com",
                    admin=admin,
                    password=password,
                    visibility=visibility,
                )
            )

    def add_org(
        self,
        name: str,
        *,
        members: Mapping[str, Literal["read", "write", "owner"]] | None = None,
        visibility: Literal["public", "limited", "private"] = "public",
    ) -> Account:
        """Create an organisation; ``members`` maps logins to their package permission."""
        with self.lock:
            if name.lower() in self.state.accounts:
                raise ValueError(f"name {name!r} is taken")
            org = self._add_account(
                Account(
                    id=self.state.next_account_id,
                    login=name,
                    kind="organization",
                    created=self.now(),
                    full_name=name,
                    visibility=visibility,
                    members=dict(members or {}),
                )
            )
            for login in org.members:
                self.add_user(login)
            return org

    def set_org_member(
        self, org: str, login: str, permission: Literal["read", "write", "owner"] | None
    ) -> None:
        """Give ``login`` a package permission in ``org`` (``None`` removes the membership)."""
        with self.lock:
            account = self._account_or_raise(org)
            if permission is None:
                account.members.pop(login, None)
            else:
                self.add_user(login)
                account.members[login] = permission

    def add_token(self, token: str, user: str, *, scopes: Iterable[str] = (SCOPE_ALL,)) -> TokenInfo:
        """Register a personal access token for ``user`` (created if missing)."""
        info = TokenInfo(user=user, scopes=frozenset(scopes))
        with self.lock:
            self.add_user(user)
            self.state.tokens[token] = info
        return info

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        default_branch: str = "main",
        collaborators: Mapping[str, Literal["read", "write", "admin"]] | None = None,
        private: bool = False,
    ) -> GiteaRepo:
        """Create ``owner/name`` (the owner becomes a user unless it exists as an org)."""
        with self.lock:
            key = f"{owner}/{name}".lower()
            if key in self.state.repos:
                raise ValueError(f"repository {owner}/{name} exists")
            account = self.state.accounts.get(owner.lower()) or self.add_user(owner)
            repo = GiteaRepo(
                id=self._next_repo("repo"),
                owner=account,
                name=name,
                default_branch=default_branch,
                private=private,
                created=self.now(),
                collaborators=dict(collaborators or {}),
            )
            for login in repo.collaborators:
                self.add_user(login)
            self.state.repos[key] = repo
            return repo

    def add_issue(
        self, owner: str, repo: str, *, title: str = "", poster: str | None = None, is_pull: bool = False
    ) -> GiteaIssue:
        """Open an issue (or, ``is_pull=True``, a pull request) with the repository's next number."""
        with self.lock:
            r = self._repo_or_raise(owner, repo)
            author = self.add_user(poster) if poster else r.owner
            now = self.now().replace(microsecond=0)
            issue = GiteaIssue(r.next_index, title or f"#{r.next_index}", is_pull, author.id, now)
            r.issues[issue.index] = issue
            r.next_index += 1
            return issue

    def add_pull(
        self,
        owner: str,
        repo: str,
        *,
        title: str = "",
        poster: str | None = None,
        head: str = "feature",
        head_sha: str | None = None,
        base: str | None = None,
    ) -> GiteaIssue:
        """Open a pull request from ``head`` (at ``head_sha``, default: a sha derived from the
        repository and number) into ``base`` (default: the default branch)."""
        if head_sha is not None and not SHA_RE.match(head_sha):
            raise ValueError(f"not a full commit sha: {head_sha!r}")
        with self.lock:
            pull = self.add_issue(owner, repo, title=title, poster=poster, is_pull=True)
            pull.head_branch = head
            pull.head_sha = head_sha or _derived_sha(f"{owner}/{repo}#{pull.index}")
            pull.base_branch = base or self._repo_or_raise(owner, repo).default_branch
            return pull

    def add_tag(
        self, owner: str, repo: str, name: str, commit_sha: str, *, message: str | None = None
    ) -> GiteaTag:
        """Tag ``commit_sha``; ``message`` makes it an annotated tag."""
        if not SHA_RE.match(commit_sha):
            raise ValueError(f"not a full commit sha: {commit_sha!r}")
        with self.lock:
            r = self._repo_or_raise(owner, repo)
            if name in r.tags:
                raise ValueError(f"tag {name!r} exists in {owner}/{repo}")
            tag = GiteaTag(name, commit_sha, message, self.now().replace(microsecond=0))
            r.tags[name] = tag
            return tag

    def add_comment(self, owner: str, repo: str, index: int, body: str, *, author: str) -> GiteaComment:
        """Comment as ``author`` (created if missing), e.g. a user's command the bot must not edit."""
        with self.lock:
            r = self._repo_or_raise(owner, repo)
            if index not in r.issues:
                raise KeyError(f"no issue {index} in {owner}/{repo}")
            return self._new_comment(r, index, self.add_user(author), body)

    def add_file(
        self, owner: str, repo: str, ref: str, path: str, content: bytes | str, *, mode: str = REGULAR_MODE
    ) -> None:
        """Store ``path`` at ``ref`` for the raw-file and contents APIs.

        ``ref`` is a branch, tag or sha, matched literally; a tag from ``add_tag`` without files
        of its own reads the files of its commit. ``mode`` is ``100644``, ``100755`` or
        ``120000`` (a symlink: ``content`` is its target).
        """
        if mode not in FILE_MODES:
            raise ValueError(f"mode must be one of {FILE_MODES}, not {mode!r}")
        data = content.encode() if isinstance(content, str) else content
        with self.lock:
            r = self._repo_or_raise(owner, repo)
            r.files[(ref, path)] = data
            r.file_modes[(ref, path)] = mode

    def set_branch(self, owner: str, repo: str, branch: str, sha: str) -> None:
        """Point ``branch`` at ``sha`` so ``/commits/{branch}/statuses`` resolves it."""
        with self.lock:
            self._repo_or_raise(owner, repo).branches[branch] = sha

    # ------------------------------------------------------------------ state accessors

    def comments(self, owner: str, repo: str, index: int) -> list[GiteaComment]:
        """The live comments of issue/PR ``index``, oldest first."""
        with self.lock:
            return [c for c in self._repo_or_raise(owner, repo).comments if c.issue_index == index]

    def statuses(self, owner: str, repo: str, sha: str) -> list[GiteaStatus]:
        """Every status row of ``sha``, oldest first."""
        with self.lock:
            return [s for s in self._repo_or_raise(owner, repo).statuses if s.sha == sha]

    def packages(self, owner: str) -> list[GiteaPackageView]:
        """Every package version of ``owner``, oldest first."""
        with self.lock:
            account = self._account_or_raise(owner)
            views = [
                GiteaPackageView(
                    id=v.id,
                    type=p.type,
                    name=p.name,
                    version=v.version,
                    files=tuple(
                        GiteaFileView(f.id, f.name, len(f.data), f.hashes["sha256"], f.data) for f in v.files
                    ),
                )
                for p in self.state.packages
                if p.owner_id == account.id
                for v in p.versions
            ]
            return sorted(views, key=lambda view: view.id)

    def file_count(self, owner: str, name: str, version: str, file_name: str) -> int:
        """0 or 1: Gitea never holds two files of one name (case-insensitively) in a version."""
        with self.lock:
            found = self._find_file(
                self._account_or_raise(owner), PACKAGE_TYPE_GENERIC, name, version, file_name
            )
            return 0 if found is None else 1

    def file_content(self, owner: str, name: str, version: str, file_name: str) -> bytes | None:
        with self.lock:
            found = self._find_file(
                self._account_or_raise(owner), PACKAGE_TYPE_GENERIC, name, version, file_name
            )
            return None if found is None else found[2].data

    # ------------------------------------------------------------------ hooks

    def route_not_found(self, method: str, path: str) -> HTTPFault:
        if path.startswith(API_V1 + "/"):
            body = _go_json({"errors": None, "message": MSG_TARGET_NOT_FOUND, "url": self._swagger_url()})
            return HTTPFault(404, body, content_type=JSON_UTF8)
        return HTTPFault(404, b"404 page not found\n", content_type=PLAIN_TEXT)

    def default_fault_body(self, status: int) -> tuple[bytes, str]:
        # An internal error has its message stripped for non-admins (helper.LogAndProcessError).
        return b"", PLAIN_TEXT

    # ------------------------------------------------------------------ routes

    def routes(self, router: Router) -> None:
        self._misc_routes(router)
        self._user_routes(router)
        self._registry_routes(router)
        self._package_api_routes(router)
        self._repo_routes(router)
        self._status_routes(router)
        self._comment_routes(router)
        self._pull_routes(router)

    def _repo_routes(self, router: Router) -> None:
        base = f"{API_V1}/repos/{{owner}}/{{repo}}"
        router.get(base, self._repo_get)
        router.get(f"{base}/collaborators/{{collaborator}}/permission", self._repo_permission)
        router.get(f"{base}/raw/{{filepath:path}}", self._repo_raw)
        router.get(f"{base}/media/{{filepath:path}}", self._repo_raw)  # LFS is not modelled
        router.get(f"{base}/contents", self._repo_contents)  # GetContentsList: the root
        router.get(f"{base}/contents/{{filepath:path}}", self._repo_contents)
        router.get(f"{base}/tags/{{tag:path}}", self._repo_tag)  # `/tags/*`: slashes allowed

    def _pull_routes(self, router: Router) -> None:
        router.get(f"{API_V1}/repos/{{owner}}/{{repo}}/pulls/{{index:int}}", self._pull_get)

    def _status_routes(self, router: Router) -> None:
        base = f"{API_V1}/repos/{{owner}}/{{repo}}"
        router.post(f"{base}/statuses/{{sha}}", self._status_create)
        router.get(f"{base}/statuses/{{sha}}", self._status_list)
        router.get(f"{base}/commits/{{ref}}/statuses", self._status_list)

    def _comment_routes(self, router: Router) -> None:
        base = f"{API_V1}/repos/{{owner}}/{{repo}}/issues"
        router.get(f"{base}/{{index:int}}/comments", self._comment_list)
        router.post(f"{base}/{{index:int}}/comments", self._comment_create)
        router.patch(f"{base}/comments/{{id:int}}", self._comment_edit)
        router.post(f"{base}/comments/{{id:int}}/reactions", self._comment_react)

    def _misc_routes(self, router: Router) -> None:
        router.get(f"{API_V1}/version", self._get_version)
        if self.flavor == "forgejo":
            router.get(f"{FORGEJO_API}/version", self._get_version)

    def _user_routes(self, router: Router) -> None:
        router.get(f"{API_V1}/user", self._get_current_user)

    def _registry_routes(self, router: Router) -> None:
        base = f"{REGISTRY}/{{owner}}/generic/{{name}}/{{version}}"
        router.delete(base, self._registry_delete_version)
        router.get(f"{base}/{{file_name}}", self._registry_download)
        router.put(f"{base}/{{file_name}}", self._registry_upload)
        router.delete(f"{base}/{{file_name}}", self._registry_delete_file)

    def _package_api_routes(self, router: Router) -> None:
        base = f"{API_V1}/packages/{{owner}}"
        router.get(base, self._api_list_packages)
        router.get(f"{base}/", self._api_list_packages)
        router.get(f"{base}/{{type}}/{{name}}/{{version}}", self._api_get_package)
        router.delete(f"{base}/{{type}}/{{name}}/{{version}}", self._api_delete_package)
        router.get(f"{base}/{{type}}/{{name}}/{{version}}/files", self._api_list_package_files)

    # ------------------------------------------------------------------ handlers: misc, user

    async def _get_version(self, call: Call) -> web.Response:
        return _json({"version": self.version})

    async def _get_current_user(self, call: Call) -> web.Response:
        with self.lock:
            doer = self._api_auth(call)
            self._api_require_scope(doer, "user", call.method)
            if doer.account is None:
                raise self._api_error(401, MSG_TOKEN_REQUIRED)
            return _json(self._user_json(doer.account, doer.account))

    # ------------------------------------------------------------------ handlers: registry

    async def _registry_upload(self, call: Call) -> web.Response:
        with self.lock:
            doer, owner = self._registry_context(call, ACCESS_WRITE)
            name, version, file_name = call.params["name"], call.params["version"], call.params["file_name"]
            if not _valid_package_name(name):
                raise _plain(400, MSG_INVALID_NAME)
            if not _valid_file_name(file_name):
                raise _plain(400, MSG_INVALID_FILENAME)
            if version != version.strip():
                raise _plain(400, MSG_INVALID_VERSION)
            now = self.now().replace(microsecond=0)  # created_unix has second resolution
            package = self._find_package(owner, PACKAGE_TYPE_GENERIC, name)
            if package is None:
                package = GiteaPackage(self._next("package"), owner.id, PACKAGE_TYPE_GENERIC, name)
                self.state.packages.append(package)
            pv = _find_version(package, version)
            if pv is not None and _find_in_version(pv, file_name) is not None:
                raise _plain(409, MSG_FILE_EXISTS)
            if pv is None:
                assert doer.account is not None
                pv = GiteaVersion(self._next("version"), version, now, doer.account.id)
                package.versions.append(pv)
            pv.files.append(GiteaFile(self._next("file"), file_name, call.body, now))
            return web.Response(status=201)

    async def _registry_download(self, call: Call) -> web.Response:
        with self.lock:
            _, owner = self._registry_context(call, ACCESS_READ)
            found = self._find_file(
                owner,
                PACKAGE_TYPE_GENERIC,
                call.params["name"],
                call.params["version"],
                call.params["file_name"],
            )
            if found is None:
                package = self._find_package(owner, PACKAGE_TYPE_GENERIC, call.params["name"])
                exists = package is not None and _find_version(package, call.params["version"]) is not None
                raise _plain(404, MSG_FILE_NOT_EXIST if exists else MSG_PACKAGE_NOT_EXIST)
            gf = found[2]
            return web.Response(
                body=gf.data,
                headers={
                    "Content-Type": OCTET_STREAM,
                    "Content-Disposition": f'attachment; filename="{gf.name}"',
                    "Last-Modified": gf.created.strftime("%a, %d %b %Y %H:%M:%S GMT"),
                },
            )

    async def _registry_delete_file(self, call: Call) -> web.Response:
        with self.lock:
            _, owner = self._registry_context(call, ACCESS_WRITE)
            found = self._find_file(
                owner,
                PACKAGE_TYPE_GENERIC,
                call.params["name"],
                call.params["version"],
                call.params["file_name"],
            )
            if found is None:
                package = self._find_package(owner, PACKAGE_TYPE_GENERIC, call.params["name"])
                exists = package is not None and _find_version(package, call.params["version"]) is not None
                raise _plain(404, MSG_FILE_NOT_EXIST if exists else MSG_PACKAGE_NOT_EXIST)
            package, pv, gf = found
            # generic.DeletePackageFile: the last file takes its version with it.
            if len(pv.files) == 1:
                package.versions.remove(pv)
            else:
                pv.files.remove(gf)
            self._drop_empty_packages()
            return web.Response(status=204)

    async def _registry_delete_version(self, call: Call) -> web.Response:
        with self.lock:
            _, owner = self._registry_context(call, ACCESS_WRITE)
            package = self._find_package(owner, PACKAGE_TYPE_GENERIC, call.params["name"])
            pv = None if package is None else _find_version(package, call.params["version"])
            if package is None or pv is None:
                raise _plain(404, MSG_PACKAGE_NOT_EXIST)
            package.versions.remove(pv)
            self._drop_empty_packages()
            return web.Response(status=204)

    def _registry_context(self, call: Call, needed: int) -> tuple[Doer, Account]:
        """Authenticate, find the owner and check reqPackageAccess, as the registry does."""
        doer = self._registry_auth(call)
        owner = self.state.accounts.get(call.params["owner"].lower())
        if owner is None:
            raise HTTPFault(404, BODY_NOT_FOUND, content_type=PLAIN_TEXT)
        # The /generic group requires read, the mutating routes write; a token must also carry
        # the matching package scope. Both failures are 401 + Basic challenge, even when signed in.
        for mode in (ACCESS_READ, ACCESS_WRITE) if needed == ACCESS_WRITE else (ACCESS_READ,):
            scope = "write:package" if mode == ACCESS_WRITE else "read:package"
            if (doer.token is not None and not _has_scope(doer.token, scope)) or self._access(
                doer.account, owner
            ) < mode:
                raise HTTPFault(
                    401,
                    BODY_REQ_PACKAGE_ACCESS,
                    content_type=PLAIN_TEXT,
                    headers={"WWW-Authenticate": WWW_AUTHENTICATE},
                )
        return doer, owner

    def _registry_auth(self, call: Call) -> Doer:
        try:
            return self._resolve_doer(call)
        except _BadCredentials:
            raise HTTPFault(401, BODY_AUTH_FAILED, content_type=PLAIN_TEXT) from None

    # ------------------------------------------------------------------ handlers: API v1 packages

    async def _api_list_packages(self, call: Call) -> web.Response:
        with self.lock:
            doer, owner = self._api_package_context(call)
            package_type = (call.query.get("type") or "").strip()
            q = (call.query.get("q") or "").strip().lower()
            page = max(_form_int(call, "page"), 1)
            limit = _form_int(call, "limit")
            # convert.ToCorrectPageSize
            limit = DEFAULT_PAGING_NUM if limit <= 0 else min(limit, MAX_RESPONSE_ITEMS)
            rows = [
                (p, v)
                for p in self.state.packages
                if p.owner_id == owner.id
                and (not package_type or p.type == package_type)
                and q in p.name.lower()  # builder.Like on lower_name: a substring match
                for v in p.versions
            ]
            # SearchVersions' default order: created_unix DESC, then id ASC for ties.
            rows.sort(key=lambda pv: (-pv[1].created.timestamp(), pv[1].id))
            result = paginate(rows, page, limit)
            body = [self._package_json(owner, p, v, doer) for p, v in result.items]
            headers = {"X-Total-Count": str(result.total)}
            link = self._link_header(call, result.total, limit)
            if link:
                headers["Link"] = link
            return _json(body, headers=headers)

    async def _api_get_package(self, call: Call) -> web.Response:
        with self.lock:
            doer, owner = self._api_package_context(call)
            package, pv = self._api_version(owner, call)
            return _json(self._package_json(owner, package, pv, doer))

    async def _api_delete_package(self, call: Call) -> web.Response:
        with self.lock:
            _, owner = self._api_package_context(call, needed=ACCESS_WRITE)
            package, pv = self._api_version(owner, call)
            package.versions.remove(pv)
            self._drop_empty_packages()
            return web.Response(status=204)

    async def _api_list_package_files(self, call: Call) -> web.Response:
        with self.lock:
            _, owner = self._api_package_context(call)
            _, pv = self._api_version(owner, call)
            return _json([self._file_json(f) for f in pv.files])

    def _api_package_context(self, call: Call, *, needed: int = ACCESS_READ) -> tuple[Doer, Account]:
        """The middleware chain of the /packages/{owner} group, in Gitea's order.

        tokenRequiresScopes(package) -> UserAssignmentAPI -> PackageAssignmentAPI ->
        reqPackageAccess(read) -> reqToken -> reqPackageAccess(write) for DELETE.
        """
        doer = self._api_auth(call)
        self._api_require_scope(doer, "package", call.method)
        owner = self.state.accounts.get(call.params["owner"].lower())
        if owner is None:
            raise self._api_error(404, MSG_OWNER_NOT_EXIST.format(name=call.params["owner"]))
        if "version" in call.params:
            self._api_version(owner, call)
        if self._access(doer.account, owner) < ACCESS_READ:
            raise self._api_error(403, MSG_NO_PERMISSION)
        if doer.account is None:
            raise self._api_error(401, MSG_TOKEN_REQUIRED)
        if self._access(doer.account, owner) < needed:
            raise self._api_error(403, MSG_NO_PERMISSION)
        return doer, owner

    def _api_version(self, owner: Account, call: Call) -> tuple[GiteaPackage, GiteaVersion]:
        package = self._find_package(owner, call.params["type"], call.params["name"])
        pv = None if package is None else _find_version(package, call.params["version"])
        if package is None or pv is None:
            raise self._api_error(404, MSG_PACKAGE_NOT_EXIST)
        return package, pv

    def _api_auth(self, call: Call) -> Doer:
        try:
            return self._resolve_doer(call)
        except _BadCredentials as exc:
            raise self._api_error(401, MSG_USER_NOT_EXIST.format(name=exc.name)) from None

    def _api_require_scope(self, doer: Doer, category: str, method: str) -> None:
        if doer.token is None:
            return
        level = "read" if method in {"GET", "HEAD"} else "write"
        scope = f"{level}:{category}"
        if not _has_scope(doer.token, scope):
            raise self._api_error(403, MSG_SCOPE.format(scope=scope))

    def _api_error(self, status: int, message: str) -> HTTPFault:
        """APIContext.Error: ``{"message": ..., "url": <swagger URL>}``."""
        body = _go_json({"message": message, "url": self._swagger_url()})
        return HTTPFault(status, body, content_type=JSON_UTF8)

    # ------------------------------------------------------------------ handlers: repositories

    async def _repo_get(self, call: Call) -> web.Response:
        with self.lock:
            doer, repo = self._repo_context(call, "repository")
            return _json(self._repo_json(repo, doer.account))

    async def _repo_permission(self, call: Call) -> web.Response:
        with self.lock:
            doer, repo = self._repo_context(call, "repository")
            if doer.account is None:
                raise self._api_error(401, MSG_TOKEN_REQUIRED)
            login = call.params["collaborator"]
            # routers/api/v1/repo/collaborators.go GetRepoPermissions: only site admins, repo
            # admins and the user themself may ask, so a bot with mere write access gets 403.
            if (
                not doer.account.admin
                and doer.account.login.lower() != login.lower()
                and self._repo_access(doer.account, repo) < ACCESS_ADMIN
            ):
                raise self._api_error(403, MSG_PERMISSION_QUERY)
            user = self.state.accounts.get(login.lower())
            if user is None or user.kind != "user":
                raise self._api_not_found(MSG_USER_NOT_EXIST.format(name=login))
            mode = ACCESS_NAMES[self._repo_access(user, repo)]
            return _json({"permission": mode, "role_name": mode, "user": self._user_json(user, doer.account)})

    async def _repo_raw(self, call: Call) -> web.Response:
        with self.lock:
            _, repo = self._repo_context(call, "repository")
            key = self._resolve_ref(repo, call.query.get("ref") or repo.default_branch)
            data = None if key is None else repo.files.get((key, call.params["filepath"]))
            if data is None:
                raise self._api_not_found()
            return web.Response(body=data, headers={"Content-Type": RAW_CONTENT_TYPE})

    async def _repo_contents(self, call: Call) -> web.Response:
        """GetContents / GetContentsList: a directory is a list, anything else one object."""
        with self.lock:
            _, repo = self._repo_context(call, "repository")
            ref = call.query.get("ref", "").strip() or repo.default_branch
            tree_path = call.params.get("filepath", "").strip("/")  # CleanUploadFileName
            key = self._resolve_ref(repo, ref)
            if key is None:  # gitRepo.GetCommit(ref)
                raise self._api_not_found(
                    MSG_OBJECT_NOT_EXIST.format(id=ref, rel_path=""), message=MSG_CONTENTS_NOT_FOUND
                )
            files = self._files_at(repo, key)
            if tree_path in files:
                data, mode = files[tree_path]
                entry = TreeEntry(tree_path.rpartition("/")[2], tree_path, mode, git_blob_id(data), len(data))
                return _json(self._contents_json(repo, ref, key, entry, data, with_content=True))
            entries = list_tree(files, tree_path)
            if entries is None:  # commit.GetTreeEntryByPath
                raise self._api_not_found(
                    MSG_OBJECT_NOT_EXIST.format(id="", rel_path=tree_path), message=MSG_CONTENTS_NOT_FOUND
                )
            return _json(
                [
                    self._contents_json(
                        repo, ref, key, e, files.get(e.path, (b"", ""))[0], with_content=False
                    )
                    for e in entries
                ]
            )

    async def _repo_tag(self, call: Call) -> web.Response:
        with self.lock:
            _, repo = self._repo_context(call, "repository")
            name = call.params["tag"]
            tag = repo.tags.get(name)
            if tag is None:
                raise self._api_not_found(message=name)  # ctx.NotFound(tagName)
            return _json(self._tag_json(repo, tag))

    def _resolve_ref(self, repo: GiteaRepo, ref: str) -> str | None:
        """The ref ``files`` are stored under for ``ref``, or None when the repository lacks it.

        A ref with files of its own, the default branch, a branch from ``set_branch`` and any
        full sha are themselves; a tag reads its commit's files.
        """
        if (
            ref == repo.default_branch
            or ref in repo.branches
            or SHA_RE.match(ref)
            or any(stored == ref for stored, _ in repo.files)
        ):
            return ref
        tag = repo.tags.get(ref)
        return None if tag is None else tag.commit_sha

    def _files_at(self, repo: GiteaRepo, key: str) -> dict[str, tuple[bytes, str]]:
        return {
            path: (data, repo.file_modes.get((ref, path), REGULAR_MODE))
            for (ref, path), data in repo.files.items()
            if ref == key
        }

    def _ref_commit(self, repo: GiteaRepo, ref: str) -> str:
        """The commit ``ref`` names: a branch's, a tag's, the sha itself, else a derived one."""
        if ref in repo.branches:
            return repo.branches[ref]
        if ref in repo.tags:
            return repo.tags[ref].commit_sha
        if SHA_RE.match(ref):
            return ref
        return _derived_sha(f"{repo.owner.login}/{repo.name}@{ref}")

    def _ref_type(self, repo: GiteaRepo, ref: str) -> str:
        """gitRepo.GetRefType, as it appears in ``/src/{type}/{ref}`` links."""
        if ref == repo.default_branch or ref in repo.branches:
            return "branch"
        return "tag" if ref in repo.tags else "commit"

    # ------------------------------------------------------------------ handlers: pull requests

    async def _pull_get(self, call: Call) -> web.Response:
        with self.lock:
            doer, repo = self._repo_context(call, "repository")
            pull = repo.issues.get(int(call.params["index"]))
            if pull is None or not pull.is_pull:  # an issue number is no pull request
                raise self._api_not_found()
            return _json(self._pull_json(repo, pull, doer.account))

    # ------------------------------------------------------------------ handlers: commit statuses

    async def _status_create(self, call: Call) -> web.Response:
        with self.lock:
            doer, repo = self._repo_context(call, "repository", needed=ACCESS_WRITE)
            assert doer.account is not None
            form = _json_form(call)
            state = str(form.get("state") or "")
            if state not in STATUS_STATES:
                raise self._api_error(400, MSG_INVALID_STATE.format(state=state))
            row = GiteaStatus(
                id=self._next_repo("status"),
                sha=call.params["sha"],
                state=state,
                context=str(form.get("context") or ""),
                creator_id=doer.account.id,
                created=self.now().replace(microsecond=0),
                target_url=str(form.get("target_url") or ""),
                description=str(form.get("description") or ""),
            )
            repo.statuses.append(row)
            return _json(self._status_json(repo, row, doer.account), status=201)

    async def _status_list(self, call: Call) -> web.Response:
        with self.lock:
            doer, repo = self._repo_context(call, "repository")
            ref = call.params.get("ref") or call.params["sha"]
            sha = repo.branches.get(ref, ref)
            state = call.query.get("state")
            rows = [s for s in repo.statuses if s.sha == sha and (not state or s.state == state)]
            # GetCommitStatuses' default order is created_unix DESC; `oldest` reverses it.
            rows.sort(key=lambda s: (s.created, s.id), reverse=call.query.get("sort") != "oldest")
            page = max(_form_int(call, "page"), 1)
            limit = _form_int(call, "limit")
            limit = DEFAULT_PAGING_NUM if limit <= 0 else min(limit, MAX_RESPONSE_ITEMS)
            result = paginate(rows, page, limit)
            headers = {"X-Total-Count": str(result.total)}
            if link := self._link_header(call, result.total, limit):
                headers["Link"] = link
            return _json([self._status_json(repo, s, doer.account) for s in result.items], headers=headers)

    # ------------------------------------------------------------------ handlers: comments

    async def _comment_list(self, call: Call) -> web.Response:
        with self.lock:
            doer, repo = self._repo_context(call, "issue")
            index = self._issue_or_404(repo, int(call.params["index"]))
            comments = [c for c in repo.comments if c.issue_index == index]
            body = [self._comment_json(repo, c, doer.account) for c in comments]
            return _json(body, headers={"X-Total-Count": str(len(body))})

    async def _comment_create(self, call: Call) -> web.Response:
        with self.lock:
            doer, repo = self._repo_context(call, "issue", signed=True)
            index = self._issue_or_404(repo, int(call.params["index"]))
            assert doer.account is not None
            comment = self._new_comment(repo, index, doer.account, str(_json_form(call).get("body") or ""))
            return _json(self._comment_json(repo, comment, doer.account), status=201)

    async def _comment_edit(self, call: Call) -> web.StreamResponse:
        with self.lock:
            doer, repo = self._repo_context(call, "issue", signed=True)
            comment = self._comment_or_404(repo, int(call.params["id"]))
            assert doer.account is not None
            # repo/issue_comment.go editIssueComment: the poster, or anyone who may write issues
            # (or pulls) in the repository; everyone else gets a bare 403.
            if doer.account.id != comment.poster_id and self._repo_access(doer.account, repo) < ACCESS_WRITE:
                return web.Response(status=403)
            body = _json_form(call).get("body")
            if body is not None and str(body) != comment.body:
                comment.body = str(body)
                comment.updated = self.now().replace(microsecond=0)
            return _json(self._comment_json(repo, comment, doer.account))

    async def _comment_react(self, call: Call) -> web.Response:
        with self.lock:
            doer, repo = self._repo_context(call, "issue", signed=True)
            comment = self._comment_or_404(repo, int(call.params["id"]))
            assert doer.account is not None
            content = str(_json_form(call).get("content") or "")
            if content not in ALLOWED_REACTIONS:
                raise self._api_error(403, MSG_REACTION_FORBIDDEN.format(content=content))
            existing = next(
                (r for r in comment.reactions if r.content == content and r.user_id == doer.account.id), None
            )
            # changeIssueCommentReaction: an existing reaction is answered 200, a new one 201.
            if existing is not None:
                return _json(self._reaction_json(existing, doer.account))
            reaction = GiteaReaction(content, doer.account.id, self.now().replace(microsecond=0))
            comment.reactions.append(reaction)
            return _json(self._reaction_json(reaction, doer.account), status=201)

    def _repo_context(
        self, call: Call, category: str, *, needed: int = ACCESS_READ, signed: bool = False
    ) -> tuple[Doer, GiteaRepo]:
        """tokenRequiresScopes -> repoAssignment -> reqToken -> reqRepoReader/Writer, as in api.go."""
        doer = self._api_auth(call)
        self._api_require_scope(doer, category, call.method)
        owner = self.state.accounts.get(call.params["owner"].lower())
        if owner is None:
            raise self._api_not_found(MSG_OWNER_NOT_EXIST.format(name=call.params["owner"]))
        repo = self.state.repos.get(f"{owner.login}/{call.params['repo']}".lower())
        # A private repository the doer cannot read is indistinguishable from a missing one.
        if repo is None or self._repo_access(doer.account, repo) < ACCESS_READ:
            raise self._api_not_found()
        if (signed or needed > ACCESS_READ) and doer.account is None:
            raise self._api_error(401, MSG_TOKEN_REQUIRED)
        if self._repo_access(doer.account, repo) < needed:
            raise self._api_error(403, MSG_REPO_WRITER)
        return doer, repo

    def _repo_access(self, account: Account | None, repo: GiteaRepo) -> int:
        """access_model.GetUserRepoPermission, reduced to owner/org members/collaborators."""
        if account is not None:
            if account.admin:
                return ACCESS_ADMIN
            if repo.owner.kind == "user" and account.id == repo.owner.id:
                return ACCESS_OWNER
            modes = [
                COLLABORATOR_PERMISSIONS[p]
                for login, p in repo.collaborators.items()
                if login.lower() == account.login.lower()
            ]
            if repo.owner.kind == "organization" and account.login in repo.owner.members:
                modes.append(ORG_REPO_PERMISSIONS[repo.owner.members[account.login]])
            if modes:
                return max(modes)
        return ACCESS_NONE if repo.private else ACCESS_READ

    def _issue_or_404(self, repo: GiteaRepo, index: int) -> int:
        if index not in repo.issues:
            raise self._api_not_found(MSG_ISSUE_NOT_EXIST.format(repo_id=repo.id, index=index))
        return index

    def _comment_or_404(self, repo: GiteaRepo, comment_id: int) -> GiteaComment:
        comment = next((c for c in repo.comments if c.id == comment_id), None)
        if comment is None:
            raise self._api_not_found(MSG_COMMENT_NOT_EXIST.format(id=comment_id))
        return comment

    def _api_not_found(self, *errors: str, message: str = MSG_TARGET_NOT_FOUND) -> HTTPFault:
        """APIContext.NotFound: the causes under ``errors``; a string argument replaces the message."""
        body = _go_json({"errors": list(errors) or None, "message": message, "url": self._swagger_url()})
        return HTTPFault(404, body, content_type=JSON_UTF8)

    def _new_comment(self, repo: GiteaRepo, index: int, author: Account, body: str) -> GiteaComment:
        now = self.now().replace(microsecond=0)  # created_unix has second resolution
        comment = GiteaComment(self._next_repo("comment"), index, author.id, body, now, now)
        repo.comments.append(comment)
        return comment

    def _next_repo(self, kind: Literal["repo", "status", "comment"]) -> int:
        attr = f"next_{kind}_id"
        value: int = getattr(self.state, attr)
        setattr(self.state, attr, value + 1)
        return value

    def _repo_or_raise(self, owner: str, name: str) -> GiteaRepo:
        repo = self.state.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            raise KeyError(f"no repository {owner}/{name}")
        return repo

    def _account_by_id(self, account_id: int) -> Account:
        return next(a for a in self.state.accounts.values() if a.id == account_id)

    # ------------------------------------------------------------------ JSON shapes: repositories

    def _repo_json(self, repo: GiteaRepo, doer: Account | None) -> dict[str, Any]:
        """convert.ToRepo, the fields a client reads (every key is in the swagger Repository)."""
        full = f"{repo.owner.login}/{repo.name}"
        mode = self._repo_access(doer, repo)
        return {
            "id": repo.id,
            "owner": self._user_json(repo.owner, doer),
            "name": repo.name,
            "full_name": full,
            "description": "",
            "empty": False,
            "private": repo.private,
            "fork": False,
            "template": False,
            "parent": None,
            "mirror": False,
            "size": 0,
            "language": "",
            "languages_url": f"{self.url}{API_V1}/repos/{full}/languages",
            "html_url": f"{self.url}/{full}",
            "url": f"{self.url}{API_V1}/repos/{full}",
            "link": "",
            "ssh_url": f"git@127.0.0.1:{full}.git",
            "clone_url": f"{self.url}/{full}.git",
            "original_url": "",
            "website": "",
            "stars_count": 0,
            "forks_count": 0,
            "watchers_count": 0,
            "open_issues_count": sum(1 for i in repo.issues.values() if not i.is_pull),
            "open_pr_counter": sum(1 for i in repo.issues.values() if i.is_pull),
            "release_counter": 0,
            "default_branch": repo.default_branch,
            "archived": False,
            "created_at": _ts(repo.created),
            "updated_at": _ts(repo.created),
            "archived_at": _ts(datetime(1970, 1, 1, tzinfo=UTC)),  # unix 0 when not archived
            "permissions": {
                "admin": mode >= ACCESS_ADMIN,
                "push": mode >= ACCESS_WRITE,
                "pull": mode >= ACCESS_READ,
            },
            "has_issues": True,
            "has_wiki": True,
            "has_pull_requests": True,
            "has_projects": True,
            "has_releases": True,
            "has_packages": True,
            "has_actions": True,
            "ignore_whitespace_conflicts": False,
            "allow_merge_commits": True,
            "allow_rebase": True,
            "allow_rebase_explicit": True,
            "allow_squash_merge": True,
            "allow_fast_forward_only_merge": True,
            "allow_rebase_update": True,
            "default_delete_branch_after_merge": False,
            "default_merge_style": "merge",
            "default_allow_maintainer_edit": False,
            "avatar_url": "",
            "internal": False,
            "mirror_interval": "",
            "object_format_name": "sha1",
            "mirror_updated": _ts(datetime(1, 1, 1, tzinfo=UTC)),
            "repo_transfer": None,
            "topics": [],
            "licenses": [],
        }

    def _status_json(self, repo: GiteaRepo, row: GiteaStatus, doer: Account | None) -> dict[str, Any]:
        """convert.ToCommitStatus: the state goes out under ``status``."""
        return {
            "id": row.id,
            "status": row.state,
            "target_url": row.target_url,
            "description": row.description,
            "url": f"{self.url}{API_V1}/repos/{repo.owner.login}/{repo.name}/statuses/{row.sha}",
            "context": row.context,
            "creator": self._user_json(self._account_by_id(row.creator_id), doer),
            "created_at": _ts(row.created),
            "updated_at": _ts(row.created),
        }

    def _comment_json(self, repo: GiteaRepo, c: GiteaComment, doer: Account | None) -> dict[str, Any]:
        """convert.ToAPIComment."""
        full = f"{self.url}/{repo.owner.login}/{repo.name}"
        issue = repo.issues[c.issue_index]
        kind = "pulls" if issue.is_pull else "issues"
        return {
            "id": c.id,
            "html_url": f"{full}/{kind}/{c.issue_index}#issuecomment-{c.id}",
            "pull_request_url": f"{full}/pulls/{c.issue_index}" if issue.is_pull else "",
            "issue_url": f"{full}/issues/{c.issue_index}" if not issue.is_pull else "",
            "user": self._user_json(self._account_by_id(c.poster_id), doer),
            "original_author": "",
            "original_author_id": 0,
            "body": c.body,
            "assets": [],
            "created_at": _ts(c.created),
            "updated_at": _ts(c.updated),
        }

    def _contents_json(
        self, repo: GiteaRepo, ref: str, key: str, entry: TreeEntry, data: bytes, *, with_content: bool
    ) -> dict[str, Any]:
        """files_service.GetContents (``forList`` when not ``with_content``)."""
        api = f"{self.url}{API_V1}/repos/{repo.owner.login}/{repo.name}"
        html = f"{self.url}/{repo.owner.login}/{repo.name}"
        path, ref_type = quote(entry.path), self._ref_type(repo, ref)
        self_url = f"{api}/contents/{path}?ref={quote(ref, safe='')}"
        html_url = f"{html}/src/{ref_type}/{quote(ref)}/{path}"
        git_url = f"{api}/git/blobs/{entry.id}"  # 1.22 links trees under git/blobs too
        kind = "dir" if entry.is_tree else "symlink" if entry.mode == SYMLINK_MODE else "file"
        encoded = base64.b64encode(data).decode() if with_content and kind == "file" else None
        return {
            "name": entry.name,
            "path": entry.path,
            "sha": entry.id,
            "last_commit_sha": self._ref_commit(repo, key),
            "type": kind,
            "size": entry.size,
            "encoding": "base64" if encoded is not None else None,
            "content": encoded,
            "target": data.decode(errors="replace") if kind == "symlink" else None,
            "url": self_url,
            "html_url": html_url,
            "git_url": git_url,
            "download_url": None if kind == "dir" else f"{html}/raw/{ref_type}/{quote(ref)}/{path}",
            "submodule_git_url": None,
            "_links": {"self": self_url, "git": git_url, "html": html_url},
        }

    def _tag_json(self, repo: GiteaRepo, tag: GiteaTag) -> dict[str, Any]:
        """convert.ToTag: ``id`` is the tag (object), ``commit.sha`` the commit it points at."""
        html = f"{self.url}/{repo.owner.login}/{repo.name}"
        return {
            "name": tag.name,
            "message": (tag.message or "").strip(),
            "id": tag.id,
            "commit": {
                # ToCommitMeta links git/commits/{tag.ID}: the tag object for an annotated tag.
                "url": f"{self.url}{API_V1}/repos/{repo.owner.login}/{repo.name}/git/commits/{tag.id}",
                "sha": tag.commit_sha,
                "created": _ts(tag.created),
            },
            "zipball_url": f"{html}/archive/{tag.name}.zip",
            "tarball_url": f"{html}/archive/{tag.name}.tar.gz",
        }

    def _pull_json(self, repo: GiteaRepo, pull: GiteaIssue, doer: Account | None) -> dict[str, Any]:
        """convert.ToAPIPullRequest for an open pull request inside one repository (no forks)."""
        html = f"{self.url}/{repo.owner.login}/{repo.name}/pulls/{pull.index}"
        base_sha = self._ref_commit(repo, pull.base_branch)
        repo_json = self._repo_json(repo, doer)

        def branch(name: str, sha: str) -> dict[str, Any]:
            return {"label": name, "ref": name, "sha": sha, "repo_id": repo.id, "repo": repo_json}

        return {
            "id": pull.index,
            "url": html,
            "number": pull.index,
            "user": self._user_json(self._account_by_id(pull.poster_id), doer),
            "title": pull.title,
            "body": "",
            "labels": [],
            "milestone": None,
            "assignee": None,
            "assignees": None,
            "requested_reviewers": None,
            "requested_reviewers_teams": None,
            "state": "open",
            "draft": False,
            "is_locked": False,
            "comments": sum(1 for c in repo.comments if c.issue_index == pull.index),
            "review_comments": 0,
            "additions": 0,
            "deletions": 0,
            "changed_files": 0,
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "mergeable": True,
            "merged": False,
            "merged_at": None,
            "merge_commit_sha": None,
            "merged_by": None,
            "allow_maintainer_edit": False,
            "base": branch(pull.base_branch, base_sha),
            "head": branch(pull.head_branch, pull.head_sha),
            "merge_base": base_sha,
            "due_date": None,
            "created_at": _ts(pull.created),
            "updated_at": _ts(pull.created),
            "closed_at": None,
            "pin_order": 0,
        }

    def _reaction_json(self, r: GiteaReaction, doer: Account | None) -> dict[str, Any]:
        return {
            "user": self._user_json(self._account_by_id(r.user_id), doer),
            "content": r.content,
            "created_at": _ts(r.created),
        }

    # ------------------------------------------------------------------ auth and access

    def _resolve_doer(self, call: Call) -> Doer:
        """auth.Group(OAuth2, Basic): a token in ``Authorization: token|bearer``, the ``token`` /
        ``access_token`` query parameters, or Basic (token as password, or as user name with an
        empty password, or a real password)."""
        authorization = call.header("Authorization")
        token = (
            bearer_token(authorization, "token", "bearer")
            or call.query.get("token")
            or call.query.get("access_token")
        )
        if token is not None:
            info = self.state.tokens.get(token)
            if info is None:
                raise _BadCredentials("")
            return Doer(self.state.accounts[info.user.lower()], info)
        creds = basic_credentials(authorization)
        if creds is not None:
            user, password = creds
            candidate = user if password in {"", "x-oauth-basic"} else password
            info = self.state.tokens.get(candidate)
            if info is not None:
                return Doer(self.state.accounts[info.user.lower()], info)
            account = self.state.accounts.get(user.lower())
            if (
                account is not None
                and account.kind == "user"
                and account.password
                and account.password == password
            ):
                return Doer(account, None)
            raise _BadCredentials(user)
        return Doer(None, None)

    def _access(self, doer: Account | None, owner: Account) -> int:
        """services/context/package.go determineAccessMode, without teams' unit details."""
        if doer is not None and doer.admin:
            return ACCESS_ADMIN
        if owner.kind == "organization":
            if doer is not None and doer.login in owner.members:
                return ORG_PERMISSIONS[owner.members[doer.login]]
        elif doer is not None and doer.id == owner.id:
            return ACCESS_ADMIN
        visible = owner.visibility == "public" or (owner.visibility == "limited" and doer is not None)
        return ACCESS_READ if visible else ACCESS_NONE

    # ------------------------------------------------------------------ internals

    def _add_account(self, account: Account) -> Account:
        self.state.next_account_id += 1
        self.state.accounts[account.login.lower()] = account
        return account

    def _account_or_raise(self, login: str) -> Account:
        account = self.state.accounts.get(login.lower())
        if account is None:
            raise KeyError(f"no user or organisation {login!r}")
        return account

    def _find_package(self, owner: Account, package_type: str, name: str) -> GiteaPackage | None:
        lowered = name.lower()
        return next(
            (
                p
                for p in self.state.packages
                if p.owner_id == owner.id and p.type == package_type and p.name.lower() == lowered
            ),
            None,
        )

    def _find_file(
        self, owner: Account, package_type: str, name: str, version: str, file_name: str
    ) -> tuple[GiteaPackage, GiteaVersion, GiteaFile] | None:
        package = self._find_package(owner, package_type, name)
        pv = None if package is None else _find_version(package, version)
        gf = None if pv is None else _find_in_version(pv, file_name)
        if package is None or pv is None or gf is None:
            return None
        return package, pv, gf

    def _drop_empty_packages(self) -> None:
        # Gitea's cleanup removes packages without versions; the listing never shows them anyway.
        self.state.packages = [p for p in self.state.packages if p.versions]

    def _next(self, kind: Literal["package", "version", "file"]) -> int:
        attr = f"next_{kind}_id"
        value: int = getattr(self.state, attr)
        setattr(self.state, attr, value + 1)
        return value

    def _swagger_url(self) -> str:
        return f"{self.url}/api/swagger"

    def _link_header(self, call: Call, total: int, page_size: int) -> str:
        """context.APIContext.SetLinkHeader: next, last, first, prev; comma-joined, no space."""
        total_pages = -(-total // page_size)
        if total_pages == 0:
            return ""
        # The paginator clamps the current page into 1..total_pages before building links.
        current = min(max(_form_int(call, "page"), 1), total_pages)
        query = dict(call.query)
        base, raw_path = self.url, call.request.rel_url.raw_path
        links = []
        if current < total_pages:
            links.append(f'<{page_url(base, raw_path, query, page=current + 1)}>; rel="next"')
            links.append(f'<{page_url(base, raw_path, query, page=total_pages)}>; rel="last"')
        if current > 1:
            links.append(f'<{page_url(base, raw_path, query, page=1)}>; rel="first"')
            links.append(f'<{page_url(base, raw_path, query, page=current - 1)}>; rel="prev"')
        return ",".join(links)

    # ------------------------------------------------------------------ JSON shapes

    def _user_json(self, user: Account, doer: Account | None) -> dict[str, Any]:
        """convert.ToUser: e-mail and account details only for the user themself and admins."""
        authed = doer is not None and (doer.admin or doer.id == user.id)
        signed = doer is not None
        epoch = datetime(1, 1, 1, tzinfo=UTC)  # Go's zero time.Time, what non-owners see
        avatar = hashlib.md5(user.login.encode(), usedforsecurity=False).hexdigest()
        return {
            "id": user.id,
            "login": user.login,
            "login_name": "",
            "source_id": 0,
            "full_name": user.full_name,
            "email": user.email if signed else f"{user.login.lower()}@noreply.localhost",
            "avatar_url": f"{self.url}/avatars/{avatar}",
            "html_url": f"{self.url}/{user.login}",
            "language": "en-US" if authed else "",
            "is_admin": user.admin if authed else False,
            "last_login": _ts(user.created if authed else epoch),
            "created": _ts(user.created),
            "restricted": False,
            "active": authed,
            "prohibit_login": False,
            "location": "",
            "website": "",
            "description": "",
            "visibility": user.visibility,
            "followers_count": 0,
            "following_count": 0,
            "starred_repos_count": 0,
            # structs.User.MarshalJSON adds this copy of `login` for older clients.
            "username": user.login,
        }

    def _package_json(
        self, owner: Account, package: GiteaPackage, pv: GiteaVersion, doer: Doer
    ) -> dict[str, Any]:
        creator = next((a for a in self.state.accounts.values() if a.id == pv.creator_id), owner)
        return {
            "id": pv.id,
            "owner": self._user_json(owner, doer.account),
            "repository": None,  # not linked; linking is not modelled
            "creator": self._user_json(creator, doer.account),
            "type": package.type,
            "name": package.name,
            "version": pv.version,
            "html_url": (
                f"{self.url}/{owner.login}/-/packages/{package.type}/"
                f"{quote(package.name.lower(), safe='')}/{quote(pv.version.lower(), safe='')}"
            ),
            "created_at": _ts(pv.created),
        }

    def _file_json(self, f: GiteaFile) -> dict[str, Any]:
        hashes = f.hashes
        return {
            "id": f.id,
            self.package_file_size_key: len(f.data),
            "name": f.name,
            "md5": hashes["md5"],
            "sha1": hashes["sha1"],
            "sha256": hashes["sha256"],
            "sha512": hashes["sha512"],
        }


# --------------------------------------------------------------------------- helpers


class _BadCredentials(Exception):
    """Credentials were presented and match nobody (control flow inside the fake)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _derived_sha(seed: str) -> str:
    """A stable stand-in commit sha for refs the test did not pin to one."""
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def _has_scope(token: TokenInfo, scope: str) -> bool:
    if SCOPE_ALL in token.scopes or scope in token.scopes:
        return True
    level, _, category = scope.partition(":")
    return level == "read" and f"write:{category}" in token.scopes


def _valid_package_name(name: str) -> bool:
    # A one-character name must be a letter or digit; ".." is never a name.
    if len(name) == 1 and not name.isalnum():
        return False
    return bool(PACKAGE_NAME_RE.search(name)) and name != ".."


def _valid_file_name(name: str) -> bool:
    return bool(FILE_NAME_RE.search(name)) and name.strip() == name and name not in {".", ".."}


def _find_version(package: GiteaPackage, version: str) -> GiteaVersion | None:
    lowered = version.lower()  # GetVersionByNameAndVersion compares lower_version
    return next((v for v in package.versions if v.version.lower() == lowered), None)


def _find_in_version(pv: GiteaVersion, file_name: str) -> GiteaFile | None:
    lowered = file_name.lower()  # files are unique on (version_id, lower_name)
    return next((f for f in pv.files if f.name.lower() == lowered), None)


def _size_key_for(version: str) -> Literal["Size", "size"]:
    compat = version.split("+gitea-", 1)[1] if "+gitea-" in version else version
    numbers = re.findall(r"\d+", compat)[:2]
    major_minor = tuple(int(n) for n in numbers) if len(numbers) == 2 else (0, 0)
    return "size" if major_minor >= SIZE_KEY_RENAMED_IN else "Size"


def _form_int(call: Call, name: str) -> int:
    """ctx.FormInt: 0 when absent or not a number."""
    try:
        return int(call.query.get(name, "0"))
    except ValueError:
        return 0


def _ts(value: datetime) -> str:
    """Go's time.Time JSON (RFC 3339) for a UTC time with second resolution."""
    # isoformat, not strftime: strftime("%Y") drops the zero padding of years below 1000, and
    # Go's zero time (what non-owners see as last_login) is "0001-01-01T00:00:00Z".
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _go_json(data: Any) -> bytes:
    """ctx.JSON encodes with Go's json.Encoder, which ends every document with a newline."""
    return json_body(data) + b"\n"


def _json(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=_go_json(data),
        headers={"Content-Type": JSON_UTF8, **(headers or {})},
    )


def _json_form(call: Call) -> dict[str, Any]:
    """web.Bind of a JSON body; an unreadable body binds to the zero value, as in Go."""
    try:
        decoded = json.loads(call.body or b"{}")
    except ValueError:
        return {}
    return decoded if isinstance(decoded, dict) else {}


def _plain(status: int, message: str) -> HTTPFault:
    """The registry's ctx.PlainText(status, err.Error()): no trailing newline."""
    return HTTPFault(status, message.encode(), content_type=PLAIN_TEXT)
