"""One internal event for GitLab and Gitea/Forgejo webhooks (pure values).

The forge parsers (:mod:`bot.forges.gitlab_hooks`, :mod:`bot.forges.gitea_hooks`) turn a verified
delivery into a :class:`ForgeEvent`; everything after that (de-duplication, routing, handlers) sees
only this type. Mapping table: reference/forge-protocols.md §1.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Forge(StrEnum):
    GITLAB = "gitlab"
    GITEA = "gitea"


class EventKind(StrEnum):
    PUSH = "push"  # a branch moved
    TAG_PUSH = "tag_push"  # a tag was created (deleted tags are ignored by the parsers)
    CHANGE_REQUEST = "change_request"  # GitLab merge request / Gitea pull request
    COMMENT = "comment"  # on a merge/pull request or an issue
    PIPELINE = "pipeline"  # GitLab pipeline status (a tag pipeline's success retries registration)


class ChangeAction(StrEnum):
    OPENED = "opened"
    REOPENED = "reopened"
    NEW_COMMITS = "new_commits"  # GitLab update with oldrev / Gitea synchronized
    EDITED = "edited"  # title, description, labels, assignees: no new code
    CLOSED = "closed"
    MERGED = "merged"
    OTHER = "other"


class CommentAction(StrEnum):
    CREATED = "created"
    EDITED = "edited"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Repo:
    forge: Forge
    id: str  # GitLab numeric project id (as text) / Gitea "owner/name"
    path: str  # "group/sub/project" or "owner/name"
    default_branch: str | None = None
    web_url: str | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    id: int | None
    username: str


@dataclass(frozen=True, slots=True)
class ForgeEvent:
    """A delivery, verified and normalised; ``content_key`` is the de-duplication key of SPEC §6.2."""

    forge: Forge
    kind: EventKind
    delivery_id: str  # for logs only: forges reuse or renew it unpredictably
    idempotency_key: str | None  # GitLab's Idempotency-Key when sent
    repo: Repo
    actor: Actor
    ref: str | None = None  # full ref: refs/heads/main, refs/tags/v1.2.0
    sha: str | None = None  # the commit: pushed head, tag commit, MR head
    number: int | None = None  # MR iid / PR number / issue number
    is_change_request: bool = False  # for comments: on an MR/PR rather than an issue
    change_action: ChangeAction | None = None
    comment_id: int | None = None
    comment_body: str | None = None
    comment_action: CommentAction | None = None
    system: bool = False  # a system note (GitLab), never a person's words
    pipeline_status: str | None = None

    @property
    def tag(self) -> str | None:
        prefix = "refs/tags/"
        return self.ref[len(prefix) :] if self.ref and self.ref.startswith(prefix) else None

    @property
    def content_key(self) -> str:
        """Same work, same key: push repo+ref+sha; MR repo+iid+sha+action; comment repo+comment id."""
        base = f"{self.forge}:{self.repo.id}"
        if self.kind is EventKind.COMMENT:
            return f"{base}:comment:{self.comment_id}:{self.comment_action}"
        if self.kind is EventKind.CHANGE_REQUEST:
            return f"{base}:mr:{self.number}:{self.sha}:{self.change_action}"
        if self.kind is EventKind.PIPELINE:
            return f"{base}:pipeline:{self.ref}:{self.sha}:{self.pipeline_status}"
        # A Gitea tag arrives as push and as create: both map to the same tag_push key.
        return f"{base}:{self.kind}:{self.ref}:{self.sha}"


# --- as data: jobs carry their event through Redis to whichever replica runs them ----------------

_REPO_FIELDS = ("forge", "id", "path", "default_branch", "web_url")


def event_to_dict(event: ForgeEvent) -> dict[str, object]:
    """A JSON-ready dict of ``event``; :func:`event_from_dict` gives the same event back."""
    data: dict[str, object] = {}
    for name in ForgeEvent.__slots__:
        value = getattr(event, name)
        if isinstance(value, Repo):
            value = {field: getattr(value, field) for field in _REPO_FIELDS}
        elif isinstance(value, Actor):
            value = {"id": value.id, "username": value.username}
        data[name] = value
    return data


def event_from_dict(data: dict[str, object]) -> ForgeEvent:
    """The event of :func:`event_to_dict`; ``KeyError``/``TypeError``/``ValueError`` for anything else."""
    fields = dict(data)
    repo = fields.pop("repo")
    actor = fields.pop("actor")
    if not isinstance(repo, dict) or not isinstance(actor, dict):
        raise TypeError("an event needs a repo and an actor")
    change_action, comment_action = fields.pop("change_action"), fields.pop("comment_action")
    return ForgeEvent(
        forge=Forge(str(fields.pop("forge"))),
        kind=EventKind(str(fields.pop("kind"))),
        repo=Repo(**{**repo, "forge": Forge(repo["forge"])}),
        actor=Actor(**actor),
        change_action=None if change_action is None else ChangeAction(str(change_action)),
        comment_action=None if comment_action is None else CommentAction(str(comment_action)),
        **fields,  # type: ignore[arg-type]
    )
