"""An in-process fake of the GitLab REST API (v4): generic packages, the Packages API, ``/user``.

Behaviour follows GitLab's documentation and, where the docs are silent, its source (see
``tests/fakes/README.md`` for the list with links). The points a record store trips over:

* **Duplicates are kept.** A PUT of an existing name/version/file adds another file to the
  package; a GET serves the newest. A project can forbid it (``allow_duplicates=False``):
  then the PUT answers ``400 {"message": "400 Bad request - Duplicate package is not allowed"}``.
* **Project ids** are numeric or the URL-encoded full path (``group%2Fproject``).
* **Private projects are hidden**: a token without access gets ``404 Project Not Found``
  (``401`` for anonymous calls on the generic package endpoints); a member below the needed
  role gets ``403``.
* **Lists paginate** with ``page``/``per_page`` (20 by default, at most 100) and answer the
  ``X-Page``/``X-Per-Page``/``X-Next-Page``/``X-Prev-Page``/``X-Total``/``X-Total-Pages`` and
  ``Link`` headers.
* **Repository content** is what ``add_file`` stored per ref; the tree API derives directories
  from the file paths and reports real git object ids (``git_blob_id``/``git_tree_id``).

Typical use::

    with FakeGitLab(tokens={"tok": TokenInfo("bot", role=DEVELOPER)}) as gl:
        project = gl.add_project("group/app")
        client = gitlab.Gitlab(gl.url, private_token="tok")
        ...
        assert gl.file_count("group/app", "rec", "1", "r.json") == 1
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import web

from .server import (
    JSON_CONTENT_TYPE,
    OCTET_STREAM,
    Call,
    FakeServer,
    HTTPFault,
    Page,
    Router,
    basic_credentials,
    bearer_token,
    json_body,
    page_url,
    paginate,
)

__all__ = [
    "DEVELOPER",
    "GUEST",
    "MAINTAINER",
    "NO_ACCESS",
    "OWNER",
    "REPORTER",
    "FakeGitLab",
    "GitLabUser",
    "GitTag",
    "PackageFileView",
    "PackageView",
    "TokenInfo",
    "TreeEntry",
    "git_blob_id",
    "git_tree_id",
    "list_tree",
]

API = "/api/v4"

# Access levels (https://docs.gitlab.com/api/members/#roles).
NO_ACCESS, GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 0, 10, 20, 30, 40, 50

# Token scopes: `api` allows everything, `read_api` only GET/HEAD (lib/api/api.rb
# `allow_access_with_scope :read_api, if: request.get? || request.head?`), `read_user` only /user.
SCOPE_API, SCOPE_READ_API, SCOPE_READ_USER = "api", "read_api", "read_user"

# Pagination (https://docs.gitlab.com/api/rest/#offset-based-pagination).
DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 100

# Generic package grammar, lib/gitlab/regex/packages.rb: the name (and file name) is
# `maven_file_name_regex`, the version `maven_version_regex` (no "..", so no traversal).
PACKAGE_NAME_RE = re.compile(r"\A[A-Za-z0-9._+-]+\Z")
PACKAGE_VERSION_RE = re.compile(r"\A(?!.*\.\.)[A-Za-z0-9_+.-]+\Z")
FILE_NAME_RE = PACKAGE_NAME_RE
# Gitlab::PathTraversal.check_path_traversal!, applied to name and file name (`file_path: true`).
PATH_TRAVERSAL_RE = re.compile(r"(\A\.{1,2}\Z|\A\.\.[/\\]|[/\\]\.\.\Z|[/\\]\.\.[/\\]|\n)")

PACKAGE_TYPES = (
    "maven",
    "npm",
    "conan",
    "nuget",
    "pypi",
    "composer",
    "generic",
    "golang",
    "debian",
    "rubygems",
    "helm",
    "terraform_module",
    "rpm",
    "ml_model",
    "cargo",
)
UPLOAD_STATUSES = ("default", "hidden")
PACKAGE_STATUSES = ("default", "hidden", "processing", "error", "pending_destruction", "deprecated")
# Without a `status` filter the list shows these (Packages API: "default, deprecated and error").
LISTED_STATUSES = frozenset({"default", "deprecated", "error"})
# What the download and the by-id endpoints can find (an `error` package is a 404).
INSTALLABLE_STATUSES = frozenset({"default", "hidden", "deprecated"})
ORDER_BY = ("created_at", "name", "version", "type")
FILE_ORDER_BY = ("id", "file_name", "created_at")
SORTS = ("asc", "desc")

# Message templates, verbatim from GitLab (lib/api/helpers.rb render_api_error!, lib/api/api.rb).
MSG_CREATED = "201 Created"
MSG_UNAUTHORIZED = "401 Unauthorized"
MSG_FORBIDDEN = "403 Forbidden"
MSG_PROJECT_NOT_FOUND = "404 Project Not Found"
MSG_NOT_FOUND = "404 Not Found"  # not_found! without a resource
MSG_RECORD_NOT_FOUND = "404 Not found"  # ActiveRecord::RecordNotFound, rescued in lib/api/api.rb
MSG_DUPLICATE = "400 Bad request - Duplicate package is not allowed"
ERR_INVALID = "{param} is invalid"  # Grape `regexp:` validator
ERR_BAD_PATH = "{param} should be a valid file path"  # API::Validations::Validators::FilePath
ERR_BAD_VALUE = "{param} does not have a valid value"  # Grape `values:` validator
# APIGuard answers an under-scoped token like an OAuth resource server, not with "message".
INSUFFICIENT_SCOPE = {
    "error": "insufficient_scope",
    "error_description": "The request requires higher privileges than provided by the access token.",
    "scope": "api",
}

CHECKSUM_HEADER = "X-Checksum-SHA256"  # added to generic downloads by current GitLab

# Commit statuses (https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit).
STATUS_STATES = ("pending", "running", "success", "failed", "canceled")
DEFAULT_STATUS_NAME = "default"
# The fake accepts any full SHA-1 as a commit of every project (no repository is modelled).
SHA_RE = re.compile(r"\A[0-9a-f]{40}\Z")
# lib/api/commit_statuses.rb reuses an existing status only while it is pending or running
# (`GenericCommitStatus.running_or_pending.find_or_initialize_by`); a finished one is retried
# and a new row starts in `created`. The API state maps to state_machines events, and an event
# that is not allowed from the current state raises StateMachines::InvalidTransition, rendered
# as a 400 with its message (see STATUS_TRANSITIONS).
STATUS_EVENTS = {
    "pending": "enqueue",
    "running": "run",
    "success": "success",
    "failed": "drop",
    "canceled": "cancel",
}
# event -> (states it may start from, state it ends in), from app/models/commit_status.rb.
STATUS_TRANSITIONS = {
    "enqueue": (frozenset({"created", "skipped", "manual", "scheduled"}), "pending"),
    "run": (frozenset({"pending"}), "running"),
    "success": (frozenset({"created", "pending", "running"}), "success"),
    "drop": (frozenset({"created", "pending", "running", "manual", "scheduled"}), "failed"),
    "cancel": (frozenset({"created", "pending", "running", "manual", "scheduled"}), "canceled"),
}
MSG_TRANSITION = (
    'Cannot transition status via :{event} from :{state} (Reason(s): Status cannot transition via "{event}")'
)
MSG_COMMIT_NOT_FOUND = "404 Commit Not Found"

# Notes (https://docs.gitlab.com/api/notes/): lists default to created_at, newest first.
NOTE_ORDER_BY = ("created_at", "updated_at")
NOTE_DEFAULT_SORT = "desc"
NOTEABLE_KINDS: dict[str, tuple[str, str]] = {
    # URL segment -> (noteable_type, not_found! resource name)
    "merge_requests": ("MergeRequest", "Merge Request"),
    "issues": ("Issue", "Issue"),
}
# API::AwardEmoji: a refused award (a duplicate) is `not_found!("Award Emoji #{service[:message]}")`
# where the message is the model's `errors.full_messages` array, interpolated with Array#to_s.
MSG_AWARD_DUPLICATE = '404 Award Emoji ["Name has already been taken"] Not Found'
MSG_MEMBER_NOT_FOUND = "404 Member Not Found"
MSG_FILE_NOT_FOUND = "404 File Not Found"
RAW_FILE_CONTENT_TYPE = "text/plain; charset=utf-8"

# Repository tree (https://docs.gitlab.com/api/repositories/#list-repository-tree) and the request
# spec spec/requests/api/repositories_spec.rb: an unknown ref is `not_found!("Tree")`, an unknown
# path is Gitaly's "invalid revision or path" passed through `not_found!(e.message)`. A path that
# is a file gets Gitaly's "path not treeish" the same way (from Gitaly's GetTreeEntries; the
# rendered message is inferred, not observed).
MSG_TREE_NOT_FOUND = "404 Tree Not Found"
MSG_TREE_PATH_NOT_FOUND = "404 invalid revision or path Not Found"
MSG_PATH_NOT_TREEISH = "404 path not treeish Not Found"
MSG_TAG_NOT_FOUND = "404 Tag Not Found"  # lib/api/tags.rb: not_found!('Tag')
# Git modes: files are regular, executable or symlinks; GitLab prints a tree's mode as "040000"
# (the tree object itself writes "40000").
REGULAR_MODE, EXECUTABLE_MODE, SYMLINK_MODE = "100644", "100755", "120000"
FILE_MODES = (REGULAR_MODE, EXECUTABLE_MODE, SYMLINK_MODE)
TREE_MODE = "040000"


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class TokenInfo:
    """What a token stands for.

    ``role`` is the access level the token's user gets on every project that does not list the
    user in its ``members`` (a project or group access token carries its role this way); ``None``
    means no access beyond explicit memberships. ``kind="job"`` tokens are only accepted through
    ``JOB-TOKEN`` or Basic auth, as CI job tokens are.
    """

    user: str
    scopes: frozenset[str] = frozenset({SCOPE_API})
    role: int | None = None
    kind: Literal["personal", "job"] = "personal"


@dataclass
class GitLabUser:
    id: int
    username: str
    name: str
    created_at: datetime
    bot: bool = False
    admin: bool = False


@dataclass
class PackageFile:
    id: int
    package_id: int
    file_name: str
    data: bytes
    created_at: datetime
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Package:
    id: int
    project_id: int
    name: str
    version: str
    package_type: str
    status: str
    created_at: datetime
    files: list[PackageFile] = field(default_factory=list)
    last_downloaded_at: datetime | None = None


@dataclass
class CommitStatus:
    id: int
    sha: str
    ref: str
    name: str
    status: str
    author: GitLabUser
    created_at: datetime
    target_url: str | None = None
    description: str | None = None
    coverage: float | None = None
    pipeline_id: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    retried: bool = False  # superseded by a newer status of the same name and ref


@dataclass
class AwardEmoji:
    id: int
    name: str
    user: GitLabUser
    created_at: datetime


@dataclass
class Note:
    id: int
    body: str
    author: GitLabUser
    created_at: datetime
    updated_at: datetime
    system: bool = False
    awards: list[AwardEmoji] = field(default_factory=list)


@dataclass
class Noteable:
    """A merge request or an issue: the things notes hang on (``iid`` is per project)."""

    id: int
    project_id: int
    iid: int
    kind: Literal["MergeRequest", "Issue"]
    title: str
    author: GitLabUser
    created_at: datetime
    source_branch: str | None = None
    target_branch: str | None = None
    sha: str | None = None
    notes: list[Note] = field(default_factory=list)


@dataclass
class GitTag:
    """A git tag: lightweight (``message is None``) or annotated (a tag object of its own)."""

    name: str
    commit_sha: str
    message: str | None
    created_at: datetime

    @property
    def target(self) -> str:
        """What the ref points at: the commit, or the tag object of an annotated tag."""
        return (
            self.commit_sha if self.message is None else git_tag_id(self.name, self.commit_sha, self.message)
        )


@dataclass
class Project:
    id: int
    path: str  # full path, "group/sub/project"
    visibility: Literal["private", "internal", "public"]
    created_at: datetime
    members: dict[str, int] = field(default_factory=dict)
    # Group setting "Allow duplicates" for generic packages, plus its "Exceptions" regex
    # (when duplicates are allowed the regex lists names/versions that must NOT be duplicated).
    allow_duplicates: bool = True
    duplicate_exception_regex: str = ""
    # Docs say Developer may delete packages; GitLab 18 answers 403 below Maintainer
    # (gitlab-org/gitlab#592019), so the stricter rule is the default.
    delete_access_level: int = MAINTAINER
    default_branch: str = "main"
    packages: list[Package] = field(default_factory=list)
    statuses: list[CommitStatus] = field(default_factory=list)
    merge_requests: dict[int, Noteable] = field(default_factory=dict)
    issues: dict[int, Noteable] = field(default_factory=dict)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (ref, path) -> content
    file_modes: dict[tuple[str, str], str] = field(default_factory=dict)  # (ref, path) -> git mode
    tags: dict[str, GitTag] = field(default_factory=dict)
    # Indexes over `packages`, so that a project with 10,000 packages (bench/records.py)
    # answers in constant time; keep them in step through add_package/remove_package.
    packages_by_id: dict[int, Package] = field(default_factory=dict)
    packages_by_key: dict[tuple[str, str, str], list[Package]] = field(default_factory=dict)

    def add_package(self, package: Package) -> None:
        self.packages.append(package)
        self.packages_by_id[package.id] = package
        self.packages_by_key.setdefault((package.package_type, package.name, package.version), []).append(
            package
        )

    def remove_package(self, package: Package) -> None:
        self.packages.remove(package)
        self.packages_by_id.pop(package.id, None)
        same = self.packages_by_key.get((package.package_type, package.name, package.version), [])
        if package in same:
            same.remove(package)


@dataclass
class GitLabState:
    users: dict[str, GitLabUser] = field(default_factory=dict)
    tokens: dict[str, TokenInfo] = field(default_factory=dict)
    projects: dict[int, Project] = field(default_factory=dict)
    next_user_id: int = 1
    next_project_id: int = 1
    next_package_id: int = 1
    next_file_id: int = 1
    next_status_id: int = 1
    next_note_id: int = 1
    next_award_id: int = 1
    next_noteable_id: int = 1


@dataclass(frozen=True)
class PackageFileView:
    id: int
    file_name: str
    size: int
    sha256: str
    data: bytes


@dataclass(frozen=True)
class PackageView:
    """A snapshot of one package for assertions (files oldest first)."""

    id: int
    name: str
    version: str
    package_type: str
    status: str
    files: tuple[PackageFileView, ...]


@dataclass(frozen=True)
class Caller:
    user: GitLabUser | None
    token: TokenInfo | None


# --------------------------------------------------------------------------- the fake


class FakeGitLab(FakeServer):
    """GitLab's REST API under ``/api/v4``; see the module docstring."""

    thread_name = "fake-gitlab"

    def __init__(
        self,
        tokens: Mapping[str, TokenInfo] | None = None,
        *,
        projects: Iterable[str] = (),
        latency: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.state = GitLabState()
        super().__init__(latency=latency, clock=clock)
        for token, info in (tokens or {}).items():
            self.add_token(token, info.user, scopes=info.scopes, role=info.role, kind=info.kind)
        for path in projects:
            self.add_project(path)

    # ------------------------------------------------------------------ setup helpers

    def add_user(
        self, username: str, *, name: str | None = None, bot: bool | None = None, admin: bool | None = None
    ) -> GitLabUser:
        """Create a user, or update the flags given for an existing one; return it."""
        with self.lock:
            user = self.state.users.get(username)
            if user is None:
                user = GitLabUser(
                    id=self.state.next_user_id,
                    username=username,
                    name=name or username.replace("_", " ").title(),
                    created_at=self.now(),
                )
                self.state.next_user_id += 1
                self.state.users[username] = user
            elif name is not None:
                user.name = name
            if bot is not None:
                user.bot = bot
            if admin is not None:
                user.admin = admin
            return user

    def add_token(
        self,
        token: str,
        user: str,
        *,
        scopes: Iterable[str] = (SCOPE_API,),
        role: int | None = None,
        kind: Literal["personal", "job"] = "personal",
    ) -> TokenInfo:
        """Register ``token`` for ``user`` (created if missing)."""
        info = TokenInfo(user=user, scopes=frozenset(scopes), role=role, kind=kind)
        with self.lock:
            self.add_user(user)
            self.state.tokens[token] = info
        return info

    def add_project(
        self,
        path: str,
        *,
        members: Mapping[str, int] | None = None,
        visibility: Literal["private", "internal", "public"] = "private",
        allow_duplicates: bool = True,
        duplicate_exception_regex: str = "",
        delete_access_level: int = MAINTAINER,
        default_branch: str = "main",
    ) -> Project:
        """Create a project (ids count from 1). ``members`` maps usernames to access levels."""
        with self.lock:
            if self._find_project(path) is not None:
                raise ValueError(f"project {path!r} exists")
            project = Project(
                id=self.state.next_project_id,
                path=path,
                visibility=visibility,
                created_at=self.now(),
                members=dict(members or {}),
                allow_duplicates=allow_duplicates,
                duplicate_exception_regex=duplicate_exception_regex,
                delete_access_level=delete_access_level,
                default_branch=default_branch,
            )
            for username in project.members:
                self.add_user(username)
            self.state.next_project_id += 1
            self.state.projects[project.id] = project
            return project

    def set_member(self, project: int | str, username: str, level: int) -> None:
        with self.lock:
            self.add_user(username)
            self._project_or_raise(project).members[username] = level

    def configure_project(
        self,
        project: int | str,
        *,
        allow_duplicates: bool | None = None,
        duplicate_exception_regex: str | None = None,
        visibility: Literal["private", "internal", "public"] | None = None,
        delete_access_level: int | None = None,
    ) -> None:
        """Change project/group package settings while the fake runs."""
        with self.lock:
            p = self._project_or_raise(project)
            if allow_duplicates is not None:
                p.allow_duplicates = allow_duplicates
            if duplicate_exception_regex is not None:
                p.duplicate_exception_regex = duplicate_exception_regex
            if visibility is not None:
                p.visibility = visibility
            if delete_access_level is not None:
                p.delete_access_level = delete_access_level

    def add_merge_request(
        self,
        project: int | str,
        iid: int,
        source_branch: str,
        sha: str,
        *,
        target_branch: str | None = None,
        title: str = "",
        author: str = "root",
    ) -> Noteable:
        """Create merge request ``iid`` (from ``source_branch`` at ``sha``) to attach notes to."""
        with self.lock:
            p = self._project_or_raise(project)
            mr = self._new_noteable(p, iid, "MergeRequest", title or f"MR !{iid}", author)
            mr.source_branch, mr.sha = source_branch, sha
            mr.target_branch = target_branch or p.default_branch
            p.merge_requests[iid] = mr
            return mr

    def add_issue(self, project: int | str, iid: int, *, title: str = "", author: str = "root") -> Noteable:
        """Create issue ``iid`` to attach notes to."""
        with self.lock:
            p = self._project_or_raise(project)
            issue = self._new_noteable(p, iid, "Issue", title or f"Issue #{iid}", author)
            p.issues[iid] = issue
            return issue

    def add_note(
        self,
        project: int | str,
        kind: Literal["merge_requests", "issues"],
        iid: int,
        body: str,
        *,
        author: str,
        system: bool = False,
    ) -> Note:
        """Add a note as ``author`` (created if missing), e.g. a user's comment the bot must not edit."""
        with self.lock:
            noteable = self._noteable_or_raise(self._project_or_raise(project), kind, iid)
            return self._create_note(noteable, self.add_user(author), body, system=system)

    def add_file(
        self, project: int | str, ref: str, path: str, content: bytes | str, *, mode: str = REGULAR_MODE
    ) -> None:
        """Store ``path`` at ``ref`` for the raw-file and tree APIs.

        ``ref`` is a branch name or a sha, matched literally; a tag name without files of its own
        reads the files of the tag's commit. ``mode`` is ``100644``, ``100755`` or ``120000`` (a
        symlink: ``content`` is its target).
        """
        if mode not in FILE_MODES:
            raise ValueError(f"mode must be one of {FILE_MODES}, not {mode!r}")
        data = content.encode() if isinstance(content, str) else content
        with self.lock:
            p = self._project_or_raise(project)
            p.files[(ref, path)] = data
            p.file_modes[(ref, path)] = mode

    def add_tag(
        self, project: int | str, name: str, commit_sha: str, *, message: str | None = None
    ) -> GitTag:
        """Tag ``commit_sha`` (any 40-hex sha is a commit here); ``message`` makes it annotated."""
        if not SHA_RE.match(commit_sha):
            raise ValueError(f"not a full commit sha: {commit_sha!r}")
        with self.lock:
            p = self._project_or_raise(project)
            if name in p.tags:
                raise ValueError(f"tag {name!r} exists in {p.path!r}")
            tag = GitTag(name, commit_sha, message, self.now())
            p.tags[name] = tag
            return tag

    # ------------------------------------------------------------------ state accessors

    def statuses(self, project: int | str, sha: str) -> list[CommitStatus]:
        """Every status row of ``sha`` (retried ones included), oldest first."""
        with self.lock:
            return [s for s in self._project_or_raise(project).statuses if s.sha == sha]

    def notes(self, project: int | str, kind: Literal["merge_requests", "issues"], iid: int) -> list[Note]:
        """The live notes of a merge request or issue, oldest first."""
        with self.lock:
            return list(self._noteable_or_raise(self._project_or_raise(project), kind, iid).notes)

    def project(self, ref: int | str) -> Project:
        """The live project object (take ``fake.lock`` when mutating it from a test)."""
        with self.lock:
            return self._project_or_raise(ref)

    def packages(self, project: int | str) -> list[PackageView]:
        """Every package of ``project`` (any status), oldest first."""
        with self.lock:
            return [
                PackageView(
                    id=p.id,
                    name=p.name,
                    version=p.version,
                    package_type=p.package_type,
                    status=p.status,
                    files=tuple(
                        PackageFileView(f.id, f.file_name, f.size, f.sha256, f.data) for f in p.files
                    ),
                )
                for p in self._project_or_raise(project).packages
            ]

    def file_count(self, project: int | str, name: str, version: str, file_name: str) -> int:
        """How many files called ``file_name`` the generic package ``name``/``version`` holds."""
        with self.lock:
            return sum(
                1
                for p in self._project_or_raise(project).packages
                if p.package_type == "generic" and p.name == name and p.version == version
                for f in p.files
                if f.file_name == file_name
            )

    def file_content(self, project: int | str, name: str, version: str, file_name: str) -> bytes | None:
        """What a download would serve (the newest file of that name), or ``None``."""
        with self.lock:
            found = self._newest_generic_file(self._project_or_raise(project), name, version, file_name)
            return None if found is None else found.data

    # ------------------------------------------------------------------ hooks

    def route_not_found(self, method: str, path: str) -> HTTPFault:
        # lib/api/api.rb: `route :any, '*path' do error!('404 Not Found', 404)` -> {"error": ...}
        return _error(404, "404 Not Found")

    def method_not_allowed(self, method: str, path: str) -> HTTPFault:
        return _error(405, "405 Not Allowed")

    def default_fault_body(self, status: int) -> tuple[bytes, str]:
        reasons = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return json_body({"message": f"{status} {reasons.get(status, 'Error')}"}), JSON_CONTENT_TYPE

    # ------------------------------------------------------------------ routes

    def routes(self, router: Router) -> None:
        self._user_routes(router)
        self._project_routes(router)
        self._generic_package_routes(router)
        self._package_routes(router)
        self._status_routes(router)
        self._note_routes(router)
        self._member_routes(router)
        self._repository_file_routes(router)
        self._repository_tree_routes(router)
        self._tag_routes(router)
        self._merge_request_routes(router)

    def _status_routes(self, router: Router) -> None:
        router.post(f"{API}/projects/{{id}}/statuses/{{sha}}", self._post_status)
        router.get(f"{API}/projects/{{id}}/repository/commits/{{sha}}/statuses", self._list_statuses)

    def _note_routes(self, router: Router) -> None:
        for kind in NOTEABLE_KINDS:
            base = f"{API}/projects/{{id}}/{kind}/{{iid:int}}/notes"
            router.get(base, self._list_notes)
            router.post(base, self._create_note_route)
            router.get(f"{base}/{{note_id:int}}", self._get_note)
            router.put(f"{base}/{{note_id:int}}", self._update_note)
            router.get(f"{base}/{{note_id:int}}/award_emoji", self._list_note_awards)
            router.post(f"{base}/{{note_id:int}}/award_emoji", self._award_note)

    def _member_routes(self, router: Router) -> None:
        router.get(f"{API}/projects/{{id}}/members/all/{{user_id:int}}", self._get_member_all)

    def _repository_file_routes(self, router: Router) -> None:
        # file_path is one URL-encoded segment (`docker%2FDockerfile`), as GitLab requires.
        router.get(f"{API}/projects/{{id}}/repository/files/{{file_path}}/raw", self._get_raw_file)

    def _repository_tree_routes(self, router: Router) -> None:
        router.get(f"{API}/projects/{{id}}/repository/tree", self._get_tree)

    def _tag_routes(self, router: Router) -> None:
        # tag_name is one segment (TAG_ENDPOINT_REQUIREMENTS: no `/`; clients send `%2F`).
        router.get(f"{API}/projects/{{id}}/repository/tags/{{tag_name}}", self._get_tag)

    def _merge_request_routes(self, router: Router) -> None:
        router.get(f"{API}/projects/{{id}}/merge_requests/{{iid:int}}", self._get_merge_request)

    def _user_routes(self, router: Router) -> None:
        router.get(f"{API}/user", self._get_current_user)

    def _project_routes(self, router: Router) -> None:
        router.get(f"{API}/projects/{{id}}", self._get_project)

    def _generic_package_routes(self, router: Router) -> None:
        base = f"{API}/projects/{{id}}/packages/generic/{{name}}/{{version}}/{{file_name}}"
        router.put(base, self._put_generic_file)
        router.get(base, self._get_generic_file)

    def _package_routes(self, router: Router) -> None:
        base = f"{API}/projects/{{id}}/packages"
        router.get(base, self._list_packages)
        router.get(f"{base}/{{package_id:int}}", self._get_package)
        router.delete(f"{base}/{{package_id:int}}", self._delete_package)
        router.get(f"{base}/{{package_id:int}}/package_files", self._list_package_files)
        router.delete(f"{base}/{{package_id:int}}/package_files/{{file_id:int}}", self._delete_package_file)

    # ------------------------------------------------------------------ handlers: users, projects

    async def _get_current_user(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call, scopes_ok=(SCOPE_API, SCOPE_READ_API, SCOPE_READ_USER))
            if caller.user is None:
                raise _message(401, MSG_UNAUTHORIZED)
            return _json(self._user_json(caller.user, private=True))

    async def _get_project(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call)
            project = self._visible_project(caller, call.params["id"])
            return _json(self._project_json(project))

    # ------------------------------------------------------------------ handlers: generic packages

    async def _put_generic_file(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call, basic_allowed=True, job_allowed=True)
            if caller.user is None:  # `authenticate_non_get!`
                raise _message(401, MSG_UNAUTHORIZED)
            name, version, file_name = self._validate_generic(call)
            status = call.query.get("status")
            select = call.query.get("select")
            errors = []
            if status is not None and status not in UPLOAD_STATUSES:
                errors.append(ERR_BAD_VALUE.format(param="status"))
            if select is not None and select != "package_file":
                errors.append(ERR_BAD_VALUE.format(param="select"))
            if errors:
                raise _error(400, ", ".join(errors))
            project = self._visible_project(caller, call.params["id"], anonymous_401=True)
            self._require_level(caller, project, DEVELOPER)

            package = self._generic_package_for_upload(project, name, version)
            duplicate = package is not None and any(f.file_name == file_name for f in package.files)
            if duplicate and not _duplicates_allowed(project, name, version):
                raise _message(400, MSG_DUPLICATE)
            now = self.now()
            if package is None:
                package = Package(
                    id=self._next("package"),
                    project_id=project.id,
                    name=name,
                    version=version,
                    package_type="generic",
                    status=status or "default",
                    created_at=now,
                )
                project.add_package(package)
            elif status is not None:
                package.status = status
            package_file = PackageFile(
                id=self._next("file"),
                package_id=package.id,
                file_name=file_name,
                data=call.body,
                created_at=now,
                sha256=hashlib.sha256(call.body).hexdigest(),
            )
            package.files.append(package_file)
            if select == "package_file":
                # `present response[:package_file]` on a PUT: Grape's default status is 200.
                return _json(self._uploaded_file_json(project, package_file))
            return _json({"message": MSG_CREATED}, status=201)

    async def _get_generic_file(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call, basic_allowed=True, job_allowed=True)
            name, version, file_name = self._validate_generic(call)
            project = self._visible_project(caller, call.params["id"], anonymous_401=True)
            found = self._newest_generic_file(project, name, version, file_name)
            if found is None:
                raise _message(404, MSG_RECORD_NOT_FOUND)
            downloaded = project.packages_by_id.get(found.package_id)
            if downloaded is not None:
                downloaded.last_downloaded_at = self.now()
            return web.Response(
                body=found.data,
                headers={
                    "Content-Type": OCTET_STREAM,
                    "Content-Disposition": f'attachment; filename="{found.file_name}"',
                    CHECKSUM_HEADER: found.sha256,
                },
            )

    def _validate_generic(self, call: Call) -> tuple[str, str, str]:
        """Grape's param validation for the generic routes; all failures in one 400."""
        name, version, file_name = call.params["name"], call.params["version"], call.params["file_name"]
        errors: list[str] = []
        for param, value, regex, is_path in (
            ("package_name", name, PACKAGE_NAME_RE, True),
            ("package_version", version, PACKAGE_VERSION_RE, False),
            ("file_name", file_name, FILE_NAME_RE, True),
        ):
            if not regex.search(value):
                errors.append(ERR_INVALID.format(param=param))
            elif is_path and PATH_TRAVERSAL_RE.search(value):
                errors.append(ERR_BAD_PATH.format(param=param))
        if errors:
            raise _error(400, ", ".join(errors))
        return name, version, file_name

    def _generic_package_for_upload(self, project: Project, name: str, version: str) -> Package | None:
        # A package pending destruction is never reused: the upload creates a new one.
        for package in reversed(project.packages_by_key.get(("generic", name, version), [])):
            if package.status != "pending_destruction":
                return package
        return None

    def _newest_generic_file(
        self, project: Project, name: str, version: str, file_name: str
    ) -> PackageFile | None:
        for package in reversed(project.packages_by_key.get(("generic", name, version), [])):
            if package.status in INSTALLABLE_STATUSES:
                matching = [f for f in package.files if f.file_name == file_name]
                return matching[-1] if matching else None
        return None

    # ------------------------------------------------------------------ handlers: Packages API

    async def _list_packages(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call, job_allowed=True)
            q = call.query
            errors = []
            package_type = q.get("package_type")
            if package_type is not None and package_type not in PACKAGE_TYPES:
                errors.append(ERR_BAD_VALUE.format(param="package_type"))
            order_by = q.get("order_by", "created_at")
            if order_by not in ORDER_BY:
                errors.append(ERR_BAD_VALUE.format(param="order_by"))
            sort = q.get("sort", "asc")
            if sort not in SORTS:
                errors.append(ERR_BAD_VALUE.format(param="sort"))
            status = q.get("status")
            if status is not None and status not in PACKAGE_STATUSES:
                errors.append(ERR_BAD_VALUE.format(param="status"))
            page, per_page = self._page_params(call, errors)
            if errors:
                raise _error(400, ", ".join(errors))
            project = self._visible_project(caller, call.params["id"])

            name_filter = (q.get("package_name") or "").lower()
            version_filter = q.get("package_version")
            selected = [
                p
                for p in project.packages
                if (p.status == status if status is not None else p.status in LISTED_STATUSES)
                and (package_type is None or p.package_type == package_type)
                # "fuzzy search by name": an ILIKE %term% on the name.
                and name_filter in p.name.lower()
                and (version_filter is None or p.version == version_filter)
            ]
            sort_keys = {
                "created_at": lambda p: (p.created_at, p.id),
                "name": lambda p: (p.name, p.id),
                "version": lambda p: (p.version, p.id),
                "type": lambda p: (p.package_type, p.id),
            }
            selected.sort(key=sort_keys[order_by], reverse=sort == "desc")
            result = paginate(selected, page, per_page)
            can_delete = self._level(caller, project) >= project.delete_access_level
            body = [self._package_json(project, p, can_delete=can_delete) for p in result.items]
            return _json(body, headers=self._pagination_headers(call, result))

    async def _get_package(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call, job_allowed=True)
            project = self._visible_project(caller, call.params["id"])
            package = self._installable_package(project, int(call.params["package_id"]))
            can_delete = self._level(caller, project) >= project.delete_access_level
            body = self._package_json(project, package, can_delete=can_delete)
            body["versions"] = [
                {
                    "id": other.id,
                    "version": other.version,
                    "created_at": _ts(other.created_at),
                    "tags": [],
                }
                for other in project.packages
                if other.name == package.name
                and other.package_type == package.package_type
                and other.id != package.id
                and other.status in INSTALLABLE_STATUSES
            ]
            return _json(body)

    async def _delete_package(self, call: Call) -> web.StreamResponse:
        with self.lock:
            caller = self._authenticate(call, job_allowed=True)
            project = self._visible_project(caller, call.params["id"])
            self._require_level(caller, project, project.delete_access_level)
            package = self._installable_package(project, int(call.params["package_id"]))
            project.remove_package(package)
            return web.Response(status=204)

    async def _list_package_files(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call, job_allowed=True)
            errors: list[str] = []
            order_by = call.query.get("order_by", "id")
            if order_by not in FILE_ORDER_BY:
                errors.append(ERR_BAD_VALUE.format(param="order_by"))
            sort = call.query.get("sort", "asc")
            if sort not in SORTS:
                errors.append(ERR_BAD_VALUE.format(param="sort"))
            page, per_page = self._page_params(call, errors)
            if errors:
                raise _error(400, ", ".join(errors))
            project = self._visible_project(caller, call.params["id"])
            package = self._installable_package(project, int(call.params["package_id"]))
            sort_keys = {
                "id": lambda f: (f.id,),
                "file_name": lambda f: (f.file_name, f.id),
                "created_at": lambda f: (f.created_at, f.id),
            }
            files = sorted(package.files, key=sort_keys[order_by], reverse=sort == "desc")
            result = paginate(files, page, per_page)
            return _json(
                [_file_json(f) for f in result.items], headers=self._pagination_headers(call, result)
            )

    async def _delete_package_file(self, call: Call) -> web.StreamResponse:
        with self.lock:
            caller = self._authenticate(call, job_allowed=True)
            project = self._visible_project(caller, call.params["id"])
            self._require_level(caller, project, project.delete_access_level)
            package = self._installable_package(project, int(call.params["package_id"]))
            file_id = int(call.params["file_id"])
            target = next((f for f in package.files if f.id == file_id), None)
            if target is None:
                raise _message(404, MSG_NOT_FOUND)
            package.files.remove(target)
            # GitLab marks the file pending destruction; its cleanup worker then destroys the
            # package once no file is left. The fake does both at once.
            if not package.files:
                project.remove_package(package)
            return web.Response(status=204)

    def _installable_package(self, project: Project, package_id: int) -> Package:
        package = project.packages_by_id.get(package_id)
        if package is not None and package.status in INSTALLABLE_STATUSES:
            return package
        raise _message(404, MSG_RECORD_NOT_FOUND)

    # ------------------------------------------------------------------ handlers: commit statuses

    async def _post_status(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call)
            params = _request_params(call)
            state = params.get("state")
            if state is None or state == "":
                raise _error(400, "state is missing")
            if state not in STATUS_STATES:
                raise _error(400, ERR_BAD_VALUE.format(param="state"))
            project = self._visible_project(caller, call.params["id"])
            self._require_level(caller, project, DEVELOPER)
            sha = call.params["sha"]
            if not SHA_RE.match(sha):
                raise _message(404, MSG_COMMIT_NOT_FOUND)
            assert caller.user is not None
            name = params.get("name") or params.get("context") or DEFAULT_STATUS_NAME
            ref = params.get("ref") or project.default_branch
            pipeline_id = _opt_int(params.get("pipeline_id"))
            status = next(
                (
                    s
                    for s in reversed(project.statuses)
                    if s.sha == sha
                    and s.name == name
                    and s.ref == ref
                    and not s.retried
                    and s.status in {"pending", "running"}
                    and (pipeline_id is None or s.pipeline_id == pipeline_id)
                ),
                None,
            )
            now = self.now()
            if status is None:
                status = CommitStatus(
                    id=self._next_id("status"),
                    sha=sha,
                    ref=ref,
                    name=name,
                    status="created",
                    author=caller.user,
                    created_at=now,
                    pipeline_id=pipeline_id or self._pipeline_id(project, sha, ref),
                )
                self._apply_status_event(status, state, now)  # raises before the row exists
                for older in project.statuses:
                    if older.sha == sha and older.name == name and older.ref == ref:
                        older.retried = True
                project.statuses.append(status)
            else:
                self._apply_status_event(status, state, now)
            if "target_url" in params:
                status.target_url = params["target_url"]
            if "description" in params:
                status.description = params["description"]
            if params.get("coverage"):
                status.coverage = float(params["coverage"])
            return _json(self._status_json(status), status=201)

    def _apply_status_event(self, status: CommitStatus, state: str, now: datetime) -> None:
        # `running` is `enqueue` (its failure ignored, no bang) followed by `run!`.
        events = ["enqueue", "run"] if state == "running" else [STATUS_EVENTS[state]]
        for event in events:
            sources, target = STATUS_TRANSITIONS[event]
            if status.status not in sources:
                if event == "enqueue" and state == "running":
                    continue
                raise _message(400, MSG_TRANSITION.format(event=event, state=status.status))
            status.status = target
            if target == "running":
                status.started_at = now
            elif target in {"success", "failed", "canceled"}:
                status.finished_at = now

    def _pipeline_id(self, project: Project, sha: str, ref: str) -> int:
        # External statuses land in one pipeline per sha and ref; the fake derives a stable id.
        for s in project.statuses:
            if s.sha == sha and s.ref == ref and s.pipeline_id is not None:
                return s.pipeline_id
        return 1000 + len({(s.sha, s.ref) for s in project.statuses})

    async def _list_statuses(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call)
            errors: list[str] = []
            page, per_page = self._page_params(call, errors)
            if errors:
                raise _error(400, ", ".join(errors))
            project = self._visible_project(caller, call.params["id"])
            self._require_read_code(caller, project)
            sha, q = call.params["sha"], call.query
            show_all = q.get("all", "false").lower() == "true"
            rows = [
                s
                for s in project.statuses
                if s.sha == sha
                and (show_all or not s.retried)
                and ("ref" not in q or s.ref == q["ref"])
                and ("name" not in q or s.name == q["name"])
            ]
            result = paginate(rows, page, per_page)
            return _json(
                [self._status_json(s) for s in result.items], headers=self._pagination_headers(call, result)
            )

    # ------------------------------------------------------------------ handlers: notes, award emoji

    async def _list_notes(self, call: Call) -> web.Response:
        with self.lock:
            caller, _, noteable = self._noteable_context(call)
            del caller
            q = call.query
            errors: list[str] = []
            order_by = q.get("order_by", "created_at")
            if order_by not in NOTE_ORDER_BY:
                errors.append(ERR_BAD_VALUE.format(param="order_by"))
            sort = q.get("sort", NOTE_DEFAULT_SORT)
            if sort not in SORTS:
                errors.append(ERR_BAD_VALUE.format(param="sort"))
            page, per_page = self._page_params(call, errors)
            if errors:
                raise _error(400, ", ".join(errors))
            key: Callable[[Note], tuple[datetime, int]] = (
                (lambda n: (n.created_at, n.id))
                if order_by == "created_at"
                else (lambda n: (n.updated_at, n.id))
            )
            notes = sorted(noteable.notes, key=key, reverse=sort == "desc")
            result = paginate(notes, page, per_page)
            return _json(
                [self._note_json(noteable, n) for n in result.items],
                headers=self._pagination_headers(call, result),
            )

    async def _create_note_route(self, call: Call) -> web.Response:
        with self.lock:
            caller, _, noteable = self._noteable_context(call, write=True)
            body = _request_params(call).get("body")
            if not body:
                raise _error(400, "body is missing")
            assert caller.user is not None
            note = self._create_note(noteable, caller.user, body)
            return _json(self._note_json(noteable, note), status=201)

    async def _get_note(self, call: Call) -> web.Response:
        with self.lock:
            _, _, noteable = self._noteable_context(call)
            return _json(self._note_json(noteable, self._note_or_404(noteable, call)))

    async def _update_note(self, call: Call) -> web.Response:
        with self.lock:
            caller, _, noteable = self._noteable_context(call, write=True)
            note = self._note_or_404(noteable, call)
            # Notes::UpdateService runs only for the author (`admin_note` ability); admins aside.
            assert caller.user is not None
            if note.author.id != caller.user.id and not caller.user.admin:
                raise _message(403, MSG_FORBIDDEN)
            body = _request_params(call).get("body")
            if not body:
                raise _error(400, "body is missing")
            if body != note.body:
                note.body = body
                note.updated_at = self.now()
            return _json(self._note_json(noteable, note))

    async def _list_note_awards(self, call: Call) -> web.Response:
        with self.lock:
            _, _, noteable = self._noteable_context(call)
            note = self._note_or_404(noteable, call)
            errors: list[str] = []
            page, per_page = self._page_params(call, errors)
            if errors:
                raise _error(400, ", ".join(errors))
            result = paginate(note.awards, page, per_page)
            return _json(
                [self._award_json(note, a) for a in result.items],
                headers=self._pagination_headers(call, result),
            )

    async def _award_note(self, call: Call) -> web.Response:
        with self.lock:
            caller, _, noteable = self._noteable_context(call, write=True)
            note = self._note_or_404(noteable, call)
            name = _request_params(call).get("name")
            if not name:
                raise _error(400, "name is missing")
            assert caller.user is not None
            user = caller.user
            if any(a.name == name and a.user.id == user.id for a in note.awards):
                raise _message(404, MSG_AWARD_DUPLICATE)
            award = AwardEmoji(self._next_id("award"), name, user, self.now())
            note.awards.append(award)
            return _json(self._award_json(note, award), status=201)

    def _noteable_context(self, call: Call, *, write: bool = False) -> tuple[Caller, Project, Noteable]:
        caller = self._authenticate(call)
        if write and caller.user is None:
            raise _message(401, MSG_UNAUTHORIZED)
        project = self._visible_project(caller, call.params["id"])
        kind = call.request.rel_url.raw_path.split("/notes")[0].rsplit("/", 2)[-2]
        _, resource = NOTEABLE_KINDS[kind]
        noteable = self._find_noteable(project, kind, int(call.params["iid"]))
        if noteable is None:
            raise _message(404, f"404 {resource} Not Found")
        return caller, project, noteable

    def _note_or_404(self, noteable: Noteable, call: Call) -> Note:
        note_id = int(call.params["note_id"])
        note = next((n for n in noteable.notes if n.id == note_id), None)
        if note is None:
            raise _message(404, MSG_RECORD_NOT_FOUND)  # notes.find raises RecordNotFound
        return note

    # ------------------------------------------------------------------ handlers: members, files

    async def _get_member_all(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call)
            project = self._visible_project(caller, call.params["id"])
            user_id = int(call.params["user_id"])
            user = next((u for u in self.state.users.values() if u.id == user_id), None)
            level = NO_ACCESS if user is None else self._member_level(project, user)
            if user is None or level == NO_ACCESS:
                raise _message(404, MSG_MEMBER_NOT_FOUND)
            return _json(self._member_json(user, level, project))

    async def _get_raw_file(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call)
            project = self._visible_project(caller, call.params["id"])
            self._require_read_code(caller, project)
            key = self._resolve_ref(project, call.query.get("ref") or project.default_branch)
            data = None if key is None else project.files.get((key, call.params["file_path"]))
            if data is None:
                raise _message(404, MSG_FILE_NOT_FOUND)
            return web.Response(body=data, headers={"Content-Type": RAW_FILE_CONTENT_TYPE})

    # ------------------------------------------------------------------ handlers: tree, tags, MRs

    async def _get_tree(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call)
            errors: list[str] = []
            page, per_page = self._page_params(call, errors)
            if errors:
                raise _error(400, ", ".join(errors))
            if call.query.get("recursive", "false").lower() in {"true", "1"}:
                # Refused loudly rather than answered flat: a test relying on it must notice.
                raise _error(400, "recursive=true is not modelled by the fake")
            project = self._visible_project(caller, call.params["id"])
            self._require_read_code(caller, project)
            key = self._resolve_ref(project, call.query.get("ref") or project.default_branch)
            if key is None:
                raise _message(404, MSG_TREE_NOT_FOUND)
            files = self._files_at(project, key)
            directory = (call.query.get("path") or "").strip("/")
            if directory in files:
                raise _message(404, MSG_PATH_NOT_TREEISH)
            entries = list_tree(files, directory)
            if entries is None:
                raise _message(404, MSG_TREE_PATH_NOT_FOUND)
            # GitLab asks Gitaly for TREES_FIRST: directories, then files, each in git's order.
            entries.sort(key=lambda e: not e.is_tree)
            result = paginate(entries, page, per_page)
            return _json(
                [_tree_entry_json(e) for e in result.items], headers=self._pagination_headers(call, result)
            )

    async def _get_tag(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call)
            project = self._visible_project(caller, call.params["id"])
            self._require_read_code(caller, project)  # lib/api/tags.rb: authorize! :read_code
            tag = project.tags.get(call.params["tag_name"])
            if tag is None:
                raise _message(404, MSG_TAG_NOT_FOUND)
            return _json(self._tag_json(project, tag))

    async def _get_merge_request(self, call: Call) -> web.Response:
        with self.lock:
            caller = self._authenticate(call)
            project = self._visible_project(caller, call.params["id"])
            # find_merge_request_with_access: `find_by!` (RecordNotFound) before the ability check.
            mr = project.merge_requests.get(int(call.params["iid"]))
            if mr is None:
                raise _message(404, MSG_RECORD_NOT_FOUND)
            self._require_read_code(caller, project)
            return _json(self._merge_request_json(project, mr))

    def _resolve_ref(self, project: Project, ref: str) -> str | None:
        """The ref ``files`` are stored under for ``ref``, or None when the repository lacks it.

        A ref with files of its own, the default branch, an MR source branch and any full sha
        (every sha is a commit in this fake) are themselves; a tag reads its commit's files.
        """
        if (
            ref == project.default_branch
            or SHA_RE.match(ref)
            or any(stored == ref for stored, _ in project.files)
            or any(mr.source_branch == ref for mr in project.merge_requests.values())
        ):
            return ref
        tag = project.tags.get(ref)
        return None if tag is None else tag.commit_sha

    def _files_at(self, project: Project, key: str) -> dict[str, tuple[bytes, str]]:
        return {
            path: (data, project.file_modes.get((ref, path), REGULAR_MODE))
            for (ref, path), data in project.files.items()
            if ref == key
        }

    def _require_read_code(self, caller: Caller, project: Project) -> None:
        # `download_code` / `read_commit_status` need Reporter on private projects (Guests see
        # issues but no code).
        if project.visibility == "private" and self._level(caller, project) < REPORTER:
            raise _message(403, MSG_FORBIDDEN)

    def _member_level(self, project: Project, user: GitLabUser) -> int:
        """Direct membership, else the role the user's tokens carry (a bot user of an access token)."""
        if user.username in project.members:
            return project.members[user.username]
        roles = [t.role for t in self.state.tokens.values() if t.user == user.username and t.role is not None]
        return max(roles, default=NO_ACCESS)

    # ------------------------------------------------------------------ auth and access

    def _authenticate(
        self,
        call: Call,
        *,
        basic_allowed: bool = False,
        job_allowed: bool = False,
        scopes_ok: tuple[str, ...] | None = None,
    ) -> Caller:
        """Resolve the caller; 401 for an unknown token, 403 for a token lacking the scope.

        Carriers: ``PRIVATE-TOKEN``, ``Authorization: Bearer``, ``JOB-TOKEN`` (package routes)
        and Basic with any user name and the token as password (generic package routes only).
        A Basic credential that matches no token is ignored, as GitLab does: the call goes on
        anonymously.
        """
        found: tuple[str, str] | None = None  # (token, carrier)
        authorization = call.header("Authorization")
        if (private := call.header("PRIVATE-TOKEN")) is not None:
            found = (private, "private")
        elif (bearer := bearer_token(authorization, "bearer")) is not None:
            found = (bearer, "bearer")
        elif job_allowed and (job := call.header("JOB-TOKEN")) is not None:
            found = (job, "job")
        elif (
            basic_allowed
            and (creds := basic_credentials(authorization)) is not None
            and creds[1] in self.state.tokens
        ):
            found = (creds[1], "basic")
        if found is None:
            return Caller(None, None)
        token, carrier = found
        info = self.state.tokens.get(token)
        if info is None:
            raise _message(401, MSG_UNAUTHORIZED)
        # A job token is no personal token and vice versa.
        if (info.kind == "job" and carrier in {"private", "bearer"}) or (
            info.kind == "personal" and carrier == "job"
        ):
            raise _message(401, MSG_UNAUTHORIZED)
        user = self.state.users[info.user]
        if info.kind == "personal":
            read_only = call.method in {"GET", "HEAD"}
            allowed = scopes_ok or ((SCOPE_API, SCOPE_READ_API) if read_only else (SCOPE_API,))
            if not info.scopes.intersection(allowed):
                raise HTTPFault(403, json_body(INSUFFICIENT_SCOPE), headers=_insufficient_scope_header())
        return Caller(user, info)

    def _level(self, caller: Caller, project: Project) -> int:
        if caller.user is None:
            return NO_ACCESS
        if caller.user.admin:
            return OWNER
        if caller.user.username in project.members:
            return project.members[caller.user.username]
        if caller.token is not None and caller.token.role is not None:
            return caller.token.role
        return NO_ACCESS

    def _visible_project(self, caller: Caller, ref: str, *, anonymous_401: bool = False) -> Project:
        project = self._find_project(ref)
        if project is not None:
            if project.visibility == "public":
                return project
            if project.visibility == "internal" and caller.user is not None:
                return project
            if self._level(caller, project) >= GUEST:
                return project
        # The generic package API asks anonymous callers to authenticate instead of hiding.
        if anonymous_401 and caller.user is None:
            raise _message(401, MSG_UNAUTHORIZED)
        raise _message(404, MSG_PROJECT_NOT_FOUND)

    def _require_level(self, caller: Caller, project: Project, level: int) -> None:
        if caller.user is None:
            raise _message(401, MSG_UNAUTHORIZED)
        if self._level(caller, project) < level:
            raise _message(403, MSG_FORBIDDEN)

    # ------------------------------------------------------------------ internals

    def _find_project(self, ref: int | str) -> Project | None:
        if isinstance(ref, int) or ref.isdigit():
            return self.state.projects.get(int(ref))
        lowered = ref.lower()  # find_by_full_path is case-insensitive
        return next((p for p in self.state.projects.values() if p.path.lower() == lowered), None)

    def _project_or_raise(self, ref: int | str) -> Project:
        project = self._find_project(ref)
        if project is None:
            raise KeyError(f"no project {ref!r}")
        return project

    def _next(self, kind: Literal["package", "file"]) -> int:
        if kind == "package":
            value = self.state.next_package_id
            self.state.next_package_id += 1
        else:
            value = self.state.next_file_id
            self.state.next_file_id += 1
        return value

    def _next_id(self, kind: Literal["status", "note", "award", "noteable"]) -> int:
        attr = f"next_{kind}_id"
        value: int = getattr(self.state, attr)
        setattr(self.state, attr, value + 1)
        return value

    def _new_noteable(
        self, project: Project, iid: int, kind: Literal["MergeRequest", "Issue"], title: str, author: str
    ) -> Noteable:
        existing = project.merge_requests if kind == "MergeRequest" else project.issues
        if iid in existing:
            raise ValueError(f"{kind} {iid} exists in {project.path!r}")
        return Noteable(
            self._next_id("noteable"), project.id, iid, kind, title, self.add_user(author), self.now()
        )

    def _find_noteable(self, project: Project, kind: str, iid: int) -> Noteable | None:
        return (project.merge_requests if kind == "merge_requests" else project.issues).get(iid)

    def _noteable_or_raise(self, project: Project, kind: str, iid: int) -> Noteable:
        found = self._find_noteable(project, kind, iid)
        if found is None:
            raise KeyError(f"no {kind} {iid} in {project.path!r}")
        return found

    def _create_note(
        self, noteable: Noteable, author: GitLabUser, body: str, *, system: bool = False
    ) -> Note:
        now = self.now()
        note = Note(self._next_id("note"), body, author, now, now, system=system)
        noteable.notes.append(note)
        return note

    def _page_params(self, call: Call, errors: list[str]) -> tuple[int, int]:
        page = _int_param(call, "page", 1, errors)
        per_page = _int_param(call, "per_page", DEFAULT_PER_PAGE, errors)
        # Kaminari: page < 1 is page 1; per_page is capped at max_per_page.
        return max(page, 1), min(max(per_page, 1), MAX_PER_PAGE)

    def _pagination_headers(self, call: Call, result: Page[Any]) -> dict[str, str]:
        """Gitlab::Pagination::OffsetHeaderBuilder: X-* headers and Link prev/next/first/last."""
        total_pages = max(result.total_pages, 1)  # "there is in total at least 1 page"
        next_page = result.page + 1 if result.page < total_pages else None
        prev_page = result.page - 1 if result.page > 1 else None
        query = dict(call.query)
        base, raw_path = self.url, call.request.rel_url.raw_path

        def href(page: int) -> str:
            return page_url(base, raw_path, query, page=page, per_page=result.per_page)

        links = []
        if prev_page is not None:
            links.append(f'<{href(prev_page)}>; rel="prev"')
        if next_page is not None:
            links.append(f'<{href(next_page)}>; rel="next"')
        links.append(f'<{href(1)}>; rel="first"')
        links.append(f'<{href(total_pages)}>; rel="last"')
        return {
            "X-Page": str(result.page),
            "X-Per-Page": str(result.per_page),
            "X-Next-Page": str(next_page or ""),
            "X-Prev-Page": str(prev_page or ""),
            "X-Total": str(result.total),
            "X-Total-Pages": str(total_pages),
            "Link": ", ".join(links),
        }

    # ------------------------------------------------------------------ JSON shapes

    def _user_json(self, user: GitLabUser, *, private: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "state": "active",
            "locked": False,
            "avatar_url": f"{self.url}/uploads/-/system/user/avatar/{user.id}/avatar.png",
            "web_url": f"{self.url}/{user.username}",
            "created_at": _ts(user.created_at),
            "bio": "",
            "location": "",
            "public_email": None,
            "bot": user.bot,
        }
        if private:  # /user shows the caller their own account details
            body.update(
                {
                    "email": f"{user.username}@example.com",
                    "last_activity_on": self.now().date().isoformat(),
                    "projects_limit": 100000,
                    "can_create_group": not user.bot,
                    "can_create_project": not user.bot,
                    "two_factor_enabled": False,
                    "external": False,
                    "private_profile": False,
                }
            )
            if user.admin:
                body["is_admin"] = True
        return body

    def _project_json(self, project: Project) -> dict[str, Any]:
        namespace, _, name = project.path.rpartition("/")
        return {
            "id": project.id,
            "name": name,
            "path": name,
            "name_with_namespace": project.path.replace("/", " / "),
            "path_with_namespace": project.path,
            "default_branch": project.default_branch,
            "visibility": project.visibility,
            "web_url": f"{self.url}/{project.path}",
            "http_url_to_repo": f"{self.url}/{project.path}.git",
            "created_at": _ts(project.created_at),
            "namespace": {
                "name": namespace.rpartition("/")[2] or name,
                "path": namespace.rpartition("/")[2] or name,
                "full_path": namespace or name,
                "kind": "group" if namespace else "user",
            },
        }

    def _user_basic_json(self, user: GitLabUser) -> dict[str, Any]:
        """Entities::UserBasic, embedded as ``author``/``user`` in notes, statuses and awards."""
        return {
            "id": user.id,
            "username": user.username,
            "name": user.name,
            "state": "active",
            "locked": False,
            "avatar_url": f"{self.url}/uploads/-/system/user/avatar/{user.id}/avatar.png",
            "web_url": f"{self.url}/{user.username}",
        }

    def _status_json(self, s: CommitStatus) -> dict[str, Any]:
        """Entities::CommitStatus."""
        return {
            "id": s.id,
            "sha": s.sha,
            "ref": s.ref,
            "status": s.status,
            "name": s.name,
            "target_url": s.target_url,
            "description": s.description,
            "created_at": _ts(s.created_at),
            "started_at": _ts(s.started_at) if s.started_at else None,
            "finished_at": _ts(s.finished_at) if s.finished_at else None,
            "allow_failure": False,
            "coverage": s.coverage,
            "pipeline_id": s.pipeline_id,
            "author": self._user_basic_json(s.author),
        }

    def _note_json(self, noteable: Noteable, n: Note) -> dict[str, Any]:
        """Entities::Note."""
        return {
            "id": n.id,
            "type": None,
            "body": n.body,
            "attachment": None,
            "author": self._user_basic_json(n.author),
            "created_at": _ts(n.created_at),
            "updated_at": _ts(n.updated_at),
            "system": n.system,
            "noteable_id": noteable.id,
            "noteable_type": noteable.kind,
            "project_id": noteable.project_id,
            "resolvable": False,
            "confidential": False,
            "internal": False,
            "noteable_iid": noteable.iid,
            "commands_changes": {},
        }

    def _award_json(self, note: Note, a: AwardEmoji) -> dict[str, Any]:
        """Entities::AwardEmoji."""
        return {
            "id": a.id,
            "name": a.name,
            "user": self._user_basic_json(a.user),
            "created_at": _ts(a.created_at),
            "updated_at": _ts(a.created_at),
            "awardable_id": note.id,
            "awardable_type": "Note",
            "url": None,
        }

    def _commit_json(self, project: Project, sha: str, when: datetime) -> dict[str, Any]:
        """Entities::Commit for a commit the fake knows only by its sha."""
        title = f"Commit {sha[:8]}"
        return {
            "id": sha,
            "short_id": sha[:8],
            "created_at": _ts(when),
            "parent_ids": [],
            "title": title,
            "message": f"{title}\n",
            "author_name": "Fake Author",
            "author_email": "author@example.com",
            "authored_date": _ts(when),
            "committer_name": "Fake Author",
            "committer_email": "author@example.com",
            "committed_date": _ts(when),
            "trailers": {},
            "extended_trailers": {},
            "web_url": f"{self.url}/{project.path}/-/commit/{sha}",
        }

    def _tag_json(self, project: Project, tag: GitTag) -> dict[str, Any]:
        """Entities::Tag: ``target`` is the tag object of an annotated tag, ``commit`` the commit."""
        annotated = tag.message is not None
        return {
            "name": tag.name,
            "message": tag.message,
            "target": tag.target,
            "commit": self._commit_json(project, tag.commit_sha, tag.created_at),
            "release": None,
            "protected": False,
            "created_at": _ts(tag.created_at) if annotated else None,
        }

    def _merge_request_json(self, project: Project, mr: Noteable) -> dict[str, Any]:
        """Entities::MergeRequest (the single-MR view), for an open MR with nothing merged."""
        reference = f"!{mr.iid}"
        user_notes = sum(1 for n in mr.notes if not n.system)
        return {
            "id": mr.id,
            "iid": mr.iid,
            "project_id": project.id,
            "title": mr.title,
            "description": "",
            "state": "opened",
            "created_at": _ts(mr.created_at),
            "updated_at": _ts(mr.created_at),
            "merged_by": None,
            "merge_user": None,
            "merged_at": None,
            "closed_by": None,
            "closed_at": None,
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "user_notes_count": user_notes,
            "upvotes": 0,
            "downvotes": 0,
            "author": self._user_basic_json(mr.author),
            "assignees": [],
            "assignee": None,
            "reviewers": [],
            "source_project_id": project.id,
            "target_project_id": project.id,
            "labels": [],
            "draft": False,
            "work_in_progress": False,
            "milestone": None,
            "merge_when_pipeline_succeeds": False,
            "merge_status": "can_be_merged",
            "detailed_merge_status": "mergeable",
            "sha": mr.sha,
            "merge_commit_sha": None,
            "squash_commit_sha": None,
            "discussion_locked": None,
            "should_remove_source_branch": None,
            "force_remove_source_branch": False,
            "prepared_at": _ts(mr.created_at),
            "reference": reference,
            "references": {"short": reference, "relative": reference, "full": f"{project.path}{reference}"},
            "web_url": f"{self.url}/{project.path}/-/merge_requests/{mr.iid}",
            "time_stats": {
                "time_estimate": 0,
                "total_time_spent": 0,
                "human_time_estimate": None,
                "human_total_time_spent": None,
            },
            "squash": False,
            "squash_on_merge": False,
            "task_completion_status": {"count": 0, "completed_count": 0},
            "has_conflicts": False,
            "blocking_discussions_resolved": True,
            "subscribed": False,
            "changes_count": None,
            "latest_build_started_at": None,
            "latest_build_finished_at": None,
            "first_deployed_to_production_at": None,
            "pipeline": None,
            "head_pipeline": None,
            # The base needs the target branch's commit, which the fake does not model; GitLab
            # also sends null until the diff is computed (gitlab#386562).
            "diff_refs": None,
            "merge_error": None,
            "first_contribution": False,
            "user": {"can_merge": False},
        }

    def _member_json(self, user: GitLabUser, level: int, project: Project) -> dict[str, Any]:
        """Entities::Member."""
        return self._user_basic_json(user) | {
            "access_level": level,
            "created_at": _ts(project.created_at),
            "created_by": None,
            "expires_at": None,
            "membership_state": "active",
        }

    def _package_json(self, project: Project, package: Package, *, can_delete: bool) -> dict[str, Any]:
        links: dict[str, str] = {"web_path": f"/{project.path}/-/packages/{package.id}"}
        if can_delete:  # "Only available if the request user has permission to do so."
            links["delete_api_path"] = f"{self.url}{API}/projects/{project.id}/packages/{package.id}"
        return {
            "id": package.id,
            "name": package.name,
            "version": package.version,
            "package_type": package.package_type,
            "status": package.status,
            "_links": links,
            "created_at": _ts(package.created_at),
            "last_downloaded_at": _ts(package.last_downloaded_at) if package.last_downloaded_at else None,
            "tags": [],
        }

    def _uploaded_file_json(self, project: Project, f: PackageFile) -> dict[str, Any]:
        """The ``select=package_file`` answer: the record itself, as the generic docs show it."""
        digest = f.sha256
        store_path = (
            f"/{digest[:2]}/{digest[2:4]}/{digest}/packages/{f.package_id}/files/{f.id}/{f.file_name}"
        )
        return {
            "id": f.id,
            "package_id": f.package_id,
            "created_at": _ts(f.created_at),
            "updated_at": _ts(f.created_at),
            "size": f.size,
            "file_store": 1,
            "file_md5": None,
            "file_sha1": None,
            "file_name": f.file_name,
            "file": {"url": store_path},
            "file_sha256": digest,
            "verification_retry_at": None,
            "verified_at": None,
            "verification_failure": None,
            "verification_retry_count": None,
            "verification_checksum": None,
            "verification_state": 0,
            "verification_started_at": None,
            "new_file_path": None,
        }


# --------------------------------------------------------------------------- git objects
# Shared with the Gitea fake: both serve directory listings with real git object ids.


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a directory: a file (a blob) or a sub-directory (a tree)."""

    name: str
    path: str  # repository-relative
    mode: str  # FILE_MODES, or TREE_MODE
    id: str  # git object id: the blob of the file's content, the tree of the directory
    size: int  # the file's length; 0 for a directory

    @property
    def is_tree(self) -> bool:
        return self.mode == TREE_MODE


def git_tag_id(name: str, commit_sha: str, message: str) -> str:
    """The id of an annotated tag object pointing at ``commit_sha`` (no tagger line, as in the fakes)."""
    body = f"object {commit_sha}\ntype commit\ntag {name}\n\n{message}".encode()
    return hashlib.sha1(b"tag %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def git_blob_id(data: bytes) -> str:
    """``git hash-object``: SHA-1 over ``blob <size>\\0`` and the content."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def git_tree_id(files: Mapping[str, tuple[bytes, str]]) -> str:
    """The id git gives a directory holding ``files`` (relative path -> (content, mode))."""
    blobs, trees = _split_directory(files, "")
    records = [(name, mode, git_blob_id(data)) for name, (data, mode) in blobs.items()]
    records += [(name, TREE_MODE, git_tree_id(sub)) for name, sub in trees.items()]
    records.sort(key=lambda r: _git_order(r[0], r[1] == TREE_MODE))
    body = b"".join(
        f"{mode.lstrip('0')} {name}".encode() + b"\0" + bytes.fromhex(oid) for name, mode, oid in records
    )
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def list_tree(files: Mapping[str, tuple[bytes, str]], directory: str) -> list[TreeEntry] | None:
    """The entries directly in ``directory`` (``""``: the root) in git's order; None if absent.

    ``files`` maps repository paths to (content, mode); directories exist through their files.
    """
    prefix = f"{directory}/" if directory else ""
    blobs, trees = _split_directory(files, prefix)
    if directory and not blobs and not trees:
        return None
    entries = [
        TreeEntry(n, prefix + n, mode, git_blob_id(data), len(data)) for n, (data, mode) in blobs.items()
    ]
    entries += [TreeEntry(n, prefix + n, TREE_MODE, git_tree_id(sub), 0) for n, sub in trees.items()]
    return sorted(entries, key=lambda e: _git_order(e.name, e.is_tree))


def _split_directory(
    files: Mapping[str, tuple[bytes, str]], prefix: str
) -> tuple[dict[str, tuple[bytes, str]], dict[str, dict[str, tuple[bytes, str]]]]:
    """Files directly under ``prefix`` by name, and the files of each sub-directory by name."""
    blobs: dict[str, tuple[bytes, str]] = {}
    trees: dict[str, dict[str, tuple[bytes, str]]] = {}
    for path, value in files.items():
        if not path.startswith(prefix):
            continue
        head, sep, rest = path[len(prefix) :].partition("/")
        if sep:
            trees.setdefault(head, {})[rest] = value
        else:
            blobs[head] = value
    return blobs, trees


def _git_order(name: str, is_tree: bool) -> bytes:
    # git sorts tree entries bytewise, a directory as if its name ended in "/".
    return (name + "/" if is_tree else name).encode()


def _tree_entry_json(e: TreeEntry) -> dict[str, Any]:
    """Entities::TreeObject."""
    return {
        "id": e.id,
        "name": e.name,
        "type": "tree" if e.is_tree else "blob",
        "path": e.path,
        "mode": e.mode,
    }


# --------------------------------------------------------------------------- helpers


def _file_json(f: PackageFile) -> dict[str, Any]:
    # Generic uploads store only the SHA-256 (Packages::Generic::CreatePackageFileService),
    # so md5 and sha1 are null for them.
    return {
        "id": f.id,
        "package_id": f.package_id,
        "created_at": _ts(f.created_at),
        "file_name": f.file_name,
        "size": f.size,
        "file_md5": None,
        "file_sha1": None,
        "file_sha256": f.sha256,
    }


def _duplicates_allowed(project: Project, name: str, version: str) -> bool:
    """Namespace::PackageSetting.duplicates_allowed?: the regex flips the toggle for its matches."""
    regex = project.duplicate_exception_regex
    matched = bool(regex) and any(re.fullmatch(regex, value) for value in (name, version))
    return project.allow_duplicates != matched


def _request_params(call: Call) -> dict[str, str]:
    """Grape's params: the query string merged with a JSON or form body (python-gitlab sends JSON)."""
    params: dict[str, str] = dict(call.query)
    if not call.body:
        return params
    content_type = call.header("Content-Type") or ""
    if "json" in content_type:
        try:
            decoded = json.loads(call.body)
        except ValueError:
            raise _error(400, "The provided content-type 'application/json' is not supported.") from None
        if isinstance(decoded, dict):
            params.update(
                {k: v if isinstance(v, str) else json.dumps(v) for k, v in decoded.items() if v is not None}
            )
    elif "x-www-form-urlencoded" in content_type:
        params.update(dict(parse_qsl(call.body.decode(), keep_blank_values=True)))
    return params


def _opt_int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise _error(400, ERR_INVALID.format(param="pipeline_id")) from None


def _ts(value: datetime) -> str:
    """Rails' JSON time format: ISO 8601, milliseconds, ``Z``."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _int_param(call: Call, name: str, default: int, errors: list[str]) -> int:
    raw = call.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        errors.append(ERR_INVALID.format(param=name))
        return default


def _json(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=json_body(data), headers={"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}
    )


def _message(status: int, message: str) -> HTTPFault:
    """``render_api_error!``: ``{"message": "..."}``."""
    return HTTPFault(status, json_body({"message": message}))


def _error(status: int, error: str) -> HTTPFault:
    """Grape ``error!`` with a string: ``{"error": "..."}`` (validation, unknown routes)."""
    return HTTPFault(status, json_body({"error": error}))


def _insufficient_scope_header() -> dict[str, str]:
    return {
        "WWW-Authenticate": (
            'Bearer realm="Protected by OAuth 2.0", error="insufficient_scope", '
            'error_description="The request requires higher privileges than provided by the access token.", '
            'scope="api"'
        )
    }
