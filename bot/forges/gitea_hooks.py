"""Gitea and Forgejo webhook deliveries: verify the HMAC, then map to a :class:`ForgeEvent` (pure).

Headers: ``addDefaultHeaders`` in services/webhook/deliver.go (go-gitea/gitea; Forgejo adds an
``X-Forgejo-*`` copy of each); payloads: modules/structs/hook.go and the example on
https://docs.gitea.com/usage/webhooks. Summary in reference/forge-protocols.md §1.3.
Order: size, signature, Content-Type, JSON, mapping.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from urllib.parse import unquote_to_bytes

from bot.events import Actor, ChangeAction, CommentAction, EventKind, Forge, ForgeEvent, Repo
from bot.forges.webhooks import (
    BAD_REQUEST,
    FORM_MEDIA_TYPE,
    REFS_HEADS,
    REFS_TAGS,
    UNAUTHORIZED,
    UNSUPPORTED_MEDIA_TYPE,
    Fields,
    check_size,
    constant_time_equals,
    decode_json_object,
    first_header,
    full_ref,
    is_null_sha,
    media_type,
    normalise_headers,
    ref_kind,
    reject,
    require_json_content,
    require_secret,
    to_bytes,
)

# Gitea sends X-Gitea-*, Forgejo sends the same values under X-Forgejo-* as well; accept either.
SIGNATURE_HEADERS = ("x-gitea-signature", "x-forgejo-signature")
EVENT_HEADERS = ("x-gitea-event", "x-forgejo-event")
EVENT_TYPE_HEADERS = ("x-gitea-event-type", "x-forgejo-event-type")
# A new UUID per hook task, and "Replay" makes a new task: for logs, never for de-duplication.
DELIVERY_HEADERS = ("x-gitea-delivery", "x-forgejo-delivery")

SIGNATURE_MISSING = "missing X-Gitea-Signature / X-Forgejo-Signature header"
# Gitea sends an empty signature when the webhook has no secret (deliver.go).
SIGNATURE_EMPTY = "empty signature: set the same secret on the webhook"
SIGNATURE_INVALID = "invalid signature"
FORM_CONTENT = "form-encoded delivery: set the webhook's POST Content Type to application/json"
EVENT_MISSING = "missing X-Gitea-Event / X-Forgejo-Event header"

FORM_PAYLOAD_FIELD = b"payload"

PULL_REQUEST_COMMENT_TYPE = "pull_request_comment"  # X-Gitea-Event-Type of a comment on a PR
TAG_REF_TYPES = frozenset({"tag", "tags"})  # "tags" in a 1.20 release candidate (gitea#25185)

# pull_request ``action`` (HookIssueAction in modules/structs/hook.go); "closed" depends on merged.
# Gitea says "synchronized" where GitHub says "synchronize".
_PR_ACTIONS: dict[str, ChangeAction] = {
    "opened": ChangeAction.OPENED,
    "reopened": ChangeAction.REOPENED,
    "synchronized": ChangeAction.NEW_COMMITS,
    "edited": ChangeAction.EDITED,
    "assigned": ChangeAction.EDITED,
    "unassigned": ChangeAction.EDITED,
    "label_updated": ChangeAction.EDITED,
    "label_cleared": ChangeAction.EDITED,
    "milestoned": ChangeAction.EDITED,
    "demilestoned": ChangeAction.EDITED,
    "review_requested": ChangeAction.EDITED,
    "review_request_removed": ChangeAction.EDITED,
}
# issue_comment ``action`` (HookIssueCommentAction).
_COMMENT_ACTIONS: dict[str, CommentAction] = {
    "created": CommentAction.CREATED,
    "edited": CommentAction.EDITED,
    "deleted": CommentAction.DELETED,
}


def verify_gitea(headers: Mapping[str, str], body: bytes, secret: str | None) -> None:
    """Check the lowercase-hex HMAC-SHA256 of ``body`` in constant time; 401 otherwise.

    Every signature header present must match, so a delivery cannot pair a good Gitea signature
    with an arbitrary Forgejo one. No secret configured means no delivery is authentic.
    """
    key = require_secret(secret)
    lowered = normalise_headers(headers)
    signatures = [lowered[name] for name in SIGNATURE_HEADERS if name in lowered]
    if not signatures:
        reject(UNAUTHORIZED, SIGNATURE_MISSING)
    expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
    for signature in signatures:
        if not signature:
            reject(UNAUTHORIZED, SIGNATURE_EMPTY)
        if not constant_time_equals(to_bytes(signature), expected):
            reject(UNAUTHORIZED, SIGNATURE_INVALID)


def parse_gitea(headers: Mapping[str, str], body: bytes, *, secret: str | None) -> ForgeEvent | None:
    """Verify a Gitea/Forgejo delivery and normalise it; None for authentic events not modelled.

    Raises :class:`~bot.forges.webhooks.WebhookRejected` (401 signature, 413 size, 415 form or
    other Content-Type, 400 body, headers or fields).
    """
    lowered = normalise_headers(headers)
    check_size(body)
    if media_type(lowered) == FORM_MEDIA_TYPE:
        # A form-encoded hook posts ``payload=<json>`` but signs the JSON itself (deliver.go), so
        # authenticate that, then tell an authentic sender how to fix the hook; the JSON inside
        # is never used.
        signed = _form_payload(body)
        verify_gitea(lowered, body if signed is None else signed, secret)
        reject(UNSUPPORTED_MEDIA_TYPE, FORM_CONTENT)
    verify_gitea(lowered, body, secret)
    require_json_content(lowered)
    payload = Fields(decode_json_object(body))

    event = first_header(lowered, *EVENT_HEADERS)
    if not event:
        reject(BAD_REQUEST, EVENT_MISSING)
    mapper = _MAPPERS.get(event)
    if mapper is None:
        return None  # delete, issues, release, fork, wiki, reviews, ...: authentic, not modelled
    delivery = _Delivery(
        delivery_id=first_header(lowered, *DELIVERY_HEADERS) or "",
        event_type=first_header(lowered, *EVENT_TYPE_HEADERS),
        payload=payload,
    )
    return mapper(delivery)


def _form_payload(body: bytes) -> bytes | None:
    """The ``payload`` field of an x-www-form-urlencoded body, decoded, or None.

    Parsed by hand on bytes: ``urllib.parse.parse_qs`` decodes to text first and would not give
    back the exact bytes Gitea signed.
    """
    for pair in body.split(b"&"):
        name, _, value = pair.partition(b"=")
        if unquote_to_bytes(name.replace(b"+", b" ")) == FORM_PAYLOAD_FIELD:
            return unquote_to_bytes(value.replace(b"+", b" "))
    return None


@dataclass(frozen=True, slots=True)
class _Delivery:
    delivery_id: str
    event_type: str | None
    payload: Fields

    def event(self, kind: EventKind, actor: Actor) -> ForgeEvent:
        """The fields every event has; mappers add theirs with :func:`dataclasses.replace`."""
        return ForgeEvent(
            forge=Forge.GITEA,
            kind=kind,
            delivery_id=self.delivery_id,
            idempotency_key=None,  # Gitea has no such header; the content key does the work
            repo=_repo(self.payload),
            actor=actor,
        )


def _repo(payload: Fields) -> Repo:
    repository = payload.obj("repository")
    full_name = repository.text("full_name")
    return Repo(
        forge=Forge.GITEA,
        id=full_name,
        path=full_name,
        default_branch=repository.opt_text("default_branch"),
        web_url=repository.opt_text("html_url"),
    )


def _user(user: Fields, *, required: bool) -> Actor:
    # Gitea's User has ``login`` and a ``username`` copy (kept for Gogs compatibility).
    login = user.opt_text("login") or user.opt_text("username")
    if required:
        if login is None:
            user.missing("login")
        return Actor(id=user.integer("id"), username=login)
    return Actor(id=user.opt_integer("id"), username=login or "")


def _sender(payload: Fields, *, required: bool) -> Actor:
    sender = payload.obj("sender") if required else payload.opt_obj("sender")
    return _user(sender, required=required) if sender else Actor(id=None, username="")


def _push(delivery: _Delivery) -> ForgeEvent | None:
    payload = delivery.payload
    ref = payload.text("ref")
    after = payload.sha("after")
    if is_null_sha(after):
        return None
    prefix = ref_kind(ref)
    if prefix == REFS_TAGS:
        # The canonical tag signal (forge-protocols §1.3.3); the matching ``create`` maps to the
        # same content key because both carry the new ref's object name.
        kind = EventKind.TAG_PUSH
    elif prefix == REFS_HEADS:
        kind = EventKind.PUSH
    else:
        return None
    return replace(delivery.event(kind, _sender(payload, required=False)), ref=ref, sha=after)


def _create(delivery: _Delivery) -> ForgeEvent | None:
    payload = delivery.payload
    if payload.text("ref_type") not in TAG_REF_TYPES:
        return None  # a new branch: its push event is the one that matters
    # Gitea (and Forgejo "Gitea"-type hooks) send the short name, Forgejo-type hooks the full ref.
    name = payload.text("ref").removeprefix(REFS_TAGS)
    if not name:
        payload.wrong("ref", "a tag name")
    return replace(
        delivery.event(EventKind.TAG_PUSH, _sender(payload, required=False)),
        ref=REFS_TAGS + name,
        sha=payload.sha("sha"),
    )


def _pull_request(delivery: _Delivery) -> ForgeEvent:
    payload = delivery.payload
    action = payload.text("action")
    pull_request = payload.obj("pull_request")
    if action == "closed":
        merged = pull_request.flag("merged")
        change_action = ChangeAction.MERGED if merged else ChangeAction.CLOSED
    else:
        change_action = _PR_ACTIONS.get(action, ChangeAction.OTHER)  # "reviewed" and newer ones
    head = pull_request.obj("head")
    head_ref = head.opt_text("ref")
    return replace(
        delivery.event(EventKind.CHANGE_REQUEST, _sender(payload, required=True)),
        ref=full_ref(head_ref, REFS_HEADS) if head_ref else None,
        sha=head.sha("sha"),
        number=payload.integer("number"),
        is_change_request=True,
        change_action=change_action,
    )


def _issue_comment(delivery: _Delivery) -> ForgeEvent | None:
    # X-Gitea-Event "issue_comment" covers both event types issue_comment and pull_request_comment
    # (HookEventType.Event in modules/webhook/type.go).
    payload = delivery.payload
    comment_action = _COMMENT_ACTIONS.get(payload.text("action"))
    if comment_action is None:
        return None
    issue = payload.obj("issue")
    comment = payload.obj("comment")
    is_pull = payload.raw("is_pull")
    if is_pull is None:  # older servers: fall back on the event type and the issue's PR marker
        on_change_request = delivery.event_type == PULL_REQUEST_COMMENT_TYPE or issue.has("pull_request")
    else:
        on_change_request = payload.flag("is_pull")
    author = comment.opt_obj("user")
    actor = _user(author, required=True) if author else _sender(payload, required=True)
    return replace(
        delivery.event(EventKind.COMMENT, actor),
        number=issue.integer("number"),
        is_change_request=on_change_request,
        comment_id=comment.integer("id"),
        comment_body=comment.string("body"),
        comment_action=comment_action,
    )


_MAPPERS: dict[str, Callable[[_Delivery], ForgeEvent | None]] = {
    "push": _push,
    "create": _create,
    "pull_request": _pull_request,
    "issue_comment": _issue_comment,
}
