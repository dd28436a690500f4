"""GitLab webhook deliveries: verify the token, then map the payload to a :class:`ForgeEvent` (pure).

Payloads: https://docs.gitlab.com/user/project/integrations/webhook_events/ ; headers:
``WebHookService#build_headers`` (app/services/web_hook_service.rb), summarised in
reference/forge-protocols.md §1.1. Order: size, token, Content-Type, JSON, mapping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from bot.events import Actor, ChangeAction, CommentAction, EventKind, Forge, ForgeEvent, Repo
from bot.forges.webhooks import (
    BAD_REQUEST,
    REFS_HEADS,
    REFS_TAGS,
    UNAUTHORIZED,
    Fields,
    check_size,
    constant_time_equals,
    decode_json_object,
    first_header,
    full_ref,
    is_null_sha,
    normalise_headers,
    ref_kind,
    reject,
    require_json_content,
    require_secret,
    to_bytes,
)

TOKEN_HEADER = "x-gitlab-token"  # noqa: S105 (a header name)
EVENT_HEADER = "x-gitlab-event"
# X-Gitlab-Webhook-UUID is new on every attempt (MR !125338); X-Gitlab-Event-UUID is the older
# recursion-detection id. Both are for logs only; Idempotency-Key survives a manual resend
# (MR !160952, GitLab ≳17.4).
DELIVERY_HEADERS = ("x-gitlab-webhook-uuid", "x-gitlab-event-uuid")
IDEMPOTENCY_HEADER = "idempotency-key"
SYSTEM_HOOK = "System Hook"  # system hooks send this for every event (go-playground/webhooks#100)

TOKEN_MISSING = "missing X-Gitlab-Token header"  # noqa: S105 (a message)
TOKEN_INVALID = "invalid X-Gitlab-Token"  # noqa: S105 (a message)
EVENT_MISMATCH = "X-Gitlab-Event does not match object_kind"
NO_OBJECT_KIND = "payload has no object_kind: custom webhook templates are not supported"

# The object_kinds the bot models, each with the X-Gitlab-Event values that may carry it. Route on
# object_kind and use the header as a cross-check: the UI "Test" button once sent "Push Event"
# (gitlab-foss#37288) and a push payload for the tag-push test (gitlab#24660).
_KIND_HEADERS: dict[str, frozenset[str]] = {
    "push": frozenset({"Push Hook", "Push Event", "Tag Push Hook", "Tag Push Event"}),
    "tag_push": frozenset({"Tag Push Hook", "Tag Push Event"}),
    "merge_request": frozenset({"Merge Request Hook"}),
    "note": frozenset({"Note Hook", "Confidential Note Hook"}),
    "pipeline": frozenset({"Pipeline Hook"}),
}
_MODELLED_HEADERS = frozenset().union(*_KIND_HEADERS.values())

# object_attributes.action of a Merge Request Hook; "update" is decided by oldrev (see _merge_request).
_MR_ACTIONS: dict[str, ChangeAction] = {
    "open": ChangeAction.OPENED,
    "reopen": ChangeAction.REOPENED,
    "close": ChangeAction.CLOSED,
    "merge": ChangeAction.MERGED,
}
# object_attributes.action of a Note Hook, added in 16.11 (MR !147856); absent before: a creation.
_NOTE_ACTIONS: dict[str | None, CommentAction] = {
    None: CommentAction.CREATED,
    "create": CommentAction.CREATED,
    "update": CommentAction.EDITED,
}
NOTE_ON_MERGE_REQUEST = "MergeRequest"
NOTE_ON_ISSUE = "Issue"


def verify_gitlab(headers: Mapping[str, str], secret: str | None) -> None:
    """Check X-Gitlab-Token against ``secret`` in constant time; 401 otherwise.

    GitLab sends the configured token verbatim, not an HMAC of the body (forge-protocols §1.1.1),
    so the body plays no part. No secret configured means no delivery is authentic.
    """
    expected = require_secret(secret)
    token = normalise_headers(headers).get(TOKEN_HEADER)
    if not token:
        reject(UNAUTHORIZED, TOKEN_MISSING)
    if not constant_time_equals(to_bytes(token), expected):
        reject(UNAUTHORIZED, TOKEN_INVALID)


def parse_gitlab(headers: Mapping[str, str], body: bytes, *, secret: str | None) -> ForgeEvent | None:
    """Verify a GitLab delivery and normalise it; None for authentic events the bot does not model.

    Raises :class:`~bot.forges.webhooks.WebhookRejected` (401 token, 413 size, 415 Content-Type,
    400 body or fields).
    """
    lowered = normalise_headers(headers)
    check_size(body)
    verify_gitlab(lowered, secret)
    require_json_content(lowered)
    payload = Fields(decode_json_object(body))

    header_event = lowered.get(EVENT_HEADER)
    object_kind = payload.raw("object_kind")
    if not isinstance(object_kind, str) or object_kind not in _KIND_HEADERS:
        if header_event in _MODELLED_HEADERS:
            # A custom webhook template replaces the whole JSON payload (web_hook_service.rb).
            if object_kind is None:
                reject(BAD_REQUEST, NO_OBJECT_KIND)
            payload.text("object_kind")  # a 400 naming the field when it is not a string
            reject(BAD_REQUEST, EVENT_MISMATCH)
        return None  # Issue Hook, Job Hook, Member Hook, ...: authentic, not modelled
    cross_checked = header_event is not None and header_event != SYSTEM_HOOK
    if cross_checked and header_event not in _KIND_HEADERS[object_kind]:
        reject(BAD_REQUEST, EVENT_MISMATCH)

    delivery = _Delivery(
        delivery_id=first_header(lowered, *DELIVERY_HEADERS) or "",
        idempotency_key=lowered.get(IDEMPOTENCY_HEADER) or None,
        payload=payload,
    )
    return _MAPPERS[object_kind](delivery)


@dataclass(frozen=True, slots=True)
class _Delivery:
    delivery_id: str
    idempotency_key: str | None
    payload: Fields

    def event(self, kind: EventKind, actor: Actor) -> ForgeEvent:
        """The fields every event has; mappers add theirs with :func:`dataclasses.replace`."""
        return ForgeEvent(
            forge=Forge.GITLAB,
            kind=kind,
            delivery_id=self.delivery_id,
            idempotency_key=self.idempotency_key,
            repo=_repo(self.payload),
            actor=actor,
        )


def _repo(payload: Fields) -> Repo:
    project = payload.obj("project")
    return Repo(
        forge=Forge.GITLAB,
        id=str(project.integer("id")),
        path=project.text("path_with_namespace"),
        default_branch=project.opt_text("default_branch"),
        web_url=project.opt_text("web_url"),
    )


def _user(payload: Fields, *, required: bool) -> Actor:
    """``user{id, username}``; required where permission checks depend on it (MRs, notes)."""
    if not required:
        user = payload.opt_obj("user")
        if user is None:
            return Actor(id=None, username="")
        return Actor(id=user.opt_integer("id"), username=user.opt_text("username") or "")
    user = payload.obj("user")
    return Actor(id=user.integer("id"), username=user.text("username"))


def _source_ref(attrs: Fields) -> str | None:
    branch = attrs.opt_text("source_branch")
    return full_ref(branch, REFS_HEADS) if branch else None


def _push(delivery: _Delivery) -> ForgeEvent | None:
    # Push Hook and Tag Push Hook share one payload shape (webhook_events "Push events", "Tag events").
    payload = delivery.payload
    ref = payload.text("ref")
    after = payload.sha("after")
    if is_null_sha(after):
        return None  # a deleted branch or tag: nothing to build or register
    prefix = ref_kind(ref)
    if prefix == REFS_TAGS:
        kind = EventKind.TAG_PUSH
    elif prefix == REFS_HEADS:
        kind = EventKind.PUSH
    else:
        return None
    # checkout_sha is the commit to build; for an annotated tag ``after`` is the tag object.
    sha = payload.opt_sha("checkout_sha") or after
    # The documented tag example has user_id and user_name but no user_username.
    actor = Actor(id=payload.opt_integer("user_id"), username=payload.opt_text("user_username") or "")
    return replace(delivery.event(kind, actor), ref=ref, sha=sha)


def _merge_request(delivery: _Delivery) -> ForgeEvent:
    payload = delivery.payload
    attrs = payload.obj("object_attributes")
    action = attrs.text("action")
    if action == "update":
        # oldrev is present only when code changed (webhook_events "Merge request events"); label,
        # title and assignee edits also send "update" and must not trigger a check.
        changed_code = attrs.opt_sha("oldrev") is not None
        change_action = ChangeAction.NEW_COMMITS if changed_code else ChangeAction.EDITED
    else:
        change_action = _MR_ACTIONS.get(action, ChangeAction.OTHER)  # approvals and the like
    last_commit = attrs.opt_obj("last_commit")  # null for a merge request without commits
    return replace(
        delivery.event(EventKind.CHANGE_REQUEST, _user(payload, required=True)),
        ref=_source_ref(attrs),
        sha=last_commit.sha("id") if last_commit else None,
        number=attrs.integer("iid"),  # iid, not id, is what API paths take
        is_change_request=True,
        change_action=change_action,
    )


def _note(delivery: _Delivery) -> ForgeEvent | None:
    payload = delivery.payload
    attrs = payload.obj("object_attributes")
    noteable_type = attrs.text("noteable_type")
    if noteable_type not in (NOTE_ON_MERGE_REQUEST, NOTE_ON_ISSUE):
        return None  # comments on commits and snippets
    action_value = attrs.opt_text("action")
    if action_value not in _NOTE_ACTIONS:
        return None
    sha = ref = None
    if noteable_type == NOTE_ON_MERGE_REQUEST:
        target = payload.obj("merge_request")
        last_commit = target.opt_obj("last_commit")
        sha = last_commit.sha("id") if last_commit else None
        ref = _source_ref(target)
    else:
        target = payload.obj("issue")
    return replace(
        delivery.event(EventKind.COMMENT, _user(payload, required=True)),
        ref=ref,
        sha=sha,
        number=target.integer("iid"),
        is_change_request=noteable_type == NOTE_ON_MERGE_REQUEST,
        comment_id=attrs.integer("id"),
        comment_body=attrs.string("note"),
        comment_action=_NOTE_ACTIONS[action_value],
        system=attrs.flag("system"),  # "added 1 commit", "changed the description": never a command
    )


def _pipeline(delivery: _Delivery) -> ForgeEvent:
    payload = delivery.payload
    attrs = payload.obj("object_attributes")
    # ref is a bare branch or tag name; ``tag`` says which (webhook_events "Pipeline events").
    # Merge-request pipelines may carry a full refs/merge-requests/... ref, kept as is.
    prefix = REFS_TAGS if attrs.flag("tag") else REFS_HEADS
    merge_request = payload.opt_obj("merge_request")
    return replace(
        delivery.event(EventKind.PIPELINE, _user(payload, required=False)),
        ref=full_ref(attrs.text("ref"), prefix),
        sha=attrs.sha("sha"),
        number=merge_request.opt_integer("iid") if merge_request else None,
        pipeline_status=attrs.text("status"),
    )


_MAPPERS: dict[str, Callable[[_Delivery], ForgeEvent | None]] = {
    "push": _push,
    "tag_push": _push,
    "merge_request": _merge_request,
    "note": _note,
    "pipeline": _pipeline,
}
