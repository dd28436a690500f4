"""Webhook verification and parsing for GitLab and Gitea/Forgejo, from the documented payloads.

Fixtures and their provenance: tests/fixtures/webhooks/README.md. ``delivery()`` turns a fixture
into what the forge would send (headers with the token or HMAC, raw body), so no test computes a
signature by hand.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from multidict import CIMultiDict

from bot.events import Actor, ChangeAction, CommentAction, EventKind, Forge, ForgeEvent, Repo
from bot.forges import gitea_hooks, gitlab_hooks, webhooks
from bot.forges.gitea_hooks import parse_gitea, verify_gitea
from bot.forges.gitlab_hooks import parse_gitlab, verify_gitlab
from bot.forges.webhooks import MAX_BODY_BYTES, WebhookRejected

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "wh-secret-7c1f0e"
Parser = Callable[..., ForgeEvent | None]
PARSERS: dict[str, Parser] = {"gitlab": parse_gitlab, "gitea": parse_gitea}

GITLAB_UUID = "0f3c5a52-8d39-4c2e-9d1c-3f7a2b1e6a10"
GITLAB_EVENT_UUID = "6d1b4f0e-2a3c-4b5d-8e9f-0a1b2c3d4e5f"
GITLAB_IDEMPOTENCY_KEY = "a4e5c1d2-3b4c-4d5e-8f90-123456789abc"
GITEA_DELIVERY = "f6266f16-1bf3-46a5-9ea4-602e06ead473"  # the id in Gitea's documented example

# X-Gitlab-Event per object_kind (webhook_events.md "Request header" lines).
GITLAB_EVENT_HEADERS = {
    "push": "Push Hook",
    "tag_push": "Tag Push Hook",
    "merge_request": "Merge Request Hook",
    "note": "Note Hook",
    "pipeline": "Pipeline Hook",
    "issue": "Issue Hook",
    "build": "Job Hook",
}
# X-Gitea-Event-Type of a pull_request delivery, by action (HookEventType, modules/webhook/type.go).
GITEA_PR_EVENT_TYPES = {
    "synchronized": "pull_request_sync",
    "label_updated": "pull_request_label",
    "label_cleared": "pull_request_label",
    "assigned": "pull_request_assign",
    "unassigned": "pull_request_assign",
    "milestoned": "pull_request_milestone",
    "demilestoned": "pull_request_milestone",
    "review_requested": "pull_request_review_request",
    "review_request_removed": "pull_request_review_request",
}


# --------------------------------------------------------------------------- loader


def fixture_names(forge: str) -> list[str]:
    return sorted(path.stem for path in (FIXTURES / forge).glob("*.json"))


def load(forge: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / forge / f"{name}.json").read_text())
    return data


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def gitea_event_type(event: str, payload: Mapping[str, Any]) -> str:
    if event == "pull_request":
        return GITEA_PR_EVENT_TYPES.get(str(payload.get("action")), "pull_request")
    if event == "issue_comment" and payload.get("is_pull") is True:
        return "pull_request_comment"
    return event


def delivery(
    forge: str,
    name: str,
    secret: str | None = SECRET,
    *,
    payload: Any = None,
    family: str = "gitea",
    form: bool = False,
) -> tuple[dict[str, str], bytes]:
    """The headers and raw body the forge would send for fixture ``name``.

    ``payload`` replaces the fixture's body (the event header still comes from the fixture name);
    ``family="forgejo"`` uses only the X-Forgejo-* headers; ``form=True`` posts Gitea's
    x-www-form-urlencoded variant (the signature stays over the JSON, as Gitea does).
    """
    if payload is None:  # the file's bytes, exactly: a signature is over the raw body
        body = (FIXTURES / forge / f"{name}.json").read_bytes()
        data = json.loads(body)
    else:
        data, body = payload, json.dumps(payload).encode()
    event = name.split("__", 1)[0]
    if forge == "gitlab":
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitLab/18.0.0",
            "X-Gitlab-Event": GITLAB_EVENT_HEADERS[event],
            "X-Gitlab-Webhook-UUID": GITLAB_UUID,
            "X-Gitlab-Event-UUID": GITLAB_EVENT_UUID,
            "Idempotency-Key": GITLAB_IDEMPOTENCY_KEY,
            "X-Gitlab-Instance": "https://gitlab.example.com",
        }
        if secret is not None:
            headers["X-Gitlab-Token"] = secret
        return headers, body
    prefix = "X-Forgejo" if family == "forgejo" else "X-Gitea"
    headers = {
        "Content-Type": "application/json",
        f"{prefix}-Delivery": GITEA_DELIVERY,
        f"{prefix}-Event": event,
        f"{prefix}-Event-Type": gitea_event_type(event, data if isinstance(data, dict) else {}),
        f"{prefix}-Signature": sign(secret, body) if secret else "",
        "X-Hub-Signature-256": f"sha256={sign(secret, body)}" if secret else "",
    }
    if form:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = b"payload=" + quote_plus(body.decode()).encode()
    return headers, body


def rejected(
    parser: Parser, headers: Mapping[str, str], body: bytes, secret: str | None = SECRET
) -> WebhookRejected:
    """The rejection ``parser`` raises; its reason must never carry the secret or the body."""
    with pytest.raises(WebhookRejected) as caught:
        parser(headers, body, secret=secret)
    reason = caught.value.reason
    assert SECRET not in reason
    assert len(body) < 16 or body.decode(errors="replace") not in reason
    assert caught.value.status in {400, 401, 413, 415}
    return caught.value


def drop(data: dict[str, Any], dotted: str) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    target = changed
    for key in parents:
        target = target[key]
    del target[last]
    return changed


def put(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    target = changed
    for key in parents:
        target = target[key]
    target[last] = value
    return changed


# --------------------------------------------------------------------------- expected events


def _gitlab(kind: EventKind, repo: Repo, actor: Actor, **fields: Any) -> ForgeEvent:
    return ForgeEvent(
        forge=Forge.GITLAB,
        kind=kind,
        delivery_id=GITLAB_UUID,
        idempotency_key=GITLAB_IDEMPOTENCY_KEY,
        repo=repo,
        actor=actor,
        **fields,
    )


def _gitea(kind: EventKind, actor: Actor, **fields: Any) -> ForgeEvent:
    repo = Repo(
        Forge.GITEA, "gitea/webhooks", "gitea/webhooks", "master", "http://localhost:3000/gitea/webhooks"
    )
    return ForgeEvent(
        forge=Forge.GITEA,
        kind=kind,
        delivery_id=GITEA_DELIVERY,
        idempotency_key=None,
        repo=repo,
        actor=actor,
        **fields,
    )


GL_ROOT = Actor(1, "root")
GL_TEST = Repo(Forge.GITLAB, "1", "gitlabhq/gitlab-test", "master", "http://example.com/gitlabhq/gitlab-test")
GL_ORG_TEST = Repo(
    Forge.GITLAB, "5", "gitlab-org/gitlab-test", "master", "http://example.com/gitlab-org/gitlab-test"
)
MR_HEAD = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
MR_NEW_HEAD = "3c2a5f3b1c0d6e8f9a7b4c5d6e7f8091a2b3c4d5"
NOTE_MR_HEAD = "562e173be03b8ff2efb05345d12df18815438a4b"
GT_ADMIN = Actor(1, "gitea")
GT_DEV = Actor(2, "dev")
GT_TAG_SHA = "bffeb74224043ba2feb48d137756c8a9331c449a"
PR_HEAD = "4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d"
PR_NEW_HEAD = "9f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6"


def _mr(action: ChangeAction, sha: str = MR_HEAD) -> ForgeEvent:
    return _gitlab(
        EventKind.CHANGE_REQUEST,
        GL_TEST,
        GL_ROOT,
        ref="refs/heads/ms-viewport",
        sha=sha,
        number=1,
        is_change_request=True,
        change_action=action,
    )


def _mr_note(comment_id: int, body: str, action: CommentAction, *, system: bool = False) -> ForgeEvent:
    return _gitlab(
        EventKind.COMMENT,
        GL_ORG_TEST,
        GL_ROOT,
        ref="refs/heads/master",
        sha=NOTE_MR_HEAD,
        number=1,
        is_change_request=True,
        comment_id=comment_id,
        comment_body=body,
        comment_action=action,
        system=system,
    )


def _pr(action: ChangeAction, sha: str, actor: Actor = GT_DEV) -> ForgeEvent:
    return _gitea(
        EventKind.CHANGE_REQUEST,
        actor,
        ref="refs/heads/alpine-3.20",
        sha=sha,
        number=12,
        is_change_request=True,
        change_action=action,
    )


EXPECTED: dict[tuple[str, str], ForgeEvent | None] = {
    ("gitlab", "push__branch"): _gitlab(
        EventKind.PUSH,
        Repo(Forge.GITLAB, "15", "mike/diaspora", "master", "http://example.com/mike/diaspora"),
        Actor(4, "jsmith"),
        ref="refs/heads/master",
        sha=MR_HEAD,
    ),
    ("gitlab", "tag_push__create"): _gitlab(
        EventKind.TAG_PUSH,
        Repo(Forge.GITLAB, "1", "jsmith/example", "master", "http://example.com/jsmith/example"),
        Actor(1, ""),  # the documented tag example has no user_username
        ref="refs/tags/v1.0.0",
        sha="82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
    ),
    ("gitlab", "tag_push__delete"): None,
    ("gitlab", "merge_request__open"): _mr(ChangeAction.OPENED),
    ("gitlab", "merge_request__update_oldrev"): _mr(ChangeAction.NEW_COMMITS, MR_NEW_HEAD),
    ("gitlab", "merge_request__update_labels"): _mr(ChangeAction.EDITED),
    ("gitlab", "merge_request__merge"): _mr(ChangeAction.MERGED),
    ("gitlab", "note__merge_request"): _mr_note(1244, "This MR needs work.", CommentAction.CREATED),
    ("gitlab", "note__merge_request_edited"): _mr_note(
        1244, "This MR needs work.\n\n/imglife check", CommentAction.EDITED
    ),
    ("gitlab", "note__merge_request_system"): _mr_note(
        1250,
        load("gitlab", "note__merge_request_system")["object_attributes"]["note"],
        CommentAction.CREATED,
        system=True,
    ),
    ("gitlab", "note__issue"): _gitlab(
        EventKind.COMMENT,
        GL_ORG_TEST,
        GL_ROOT,
        number=17,
        comment_id=1241,
        comment_body="Hello world",
        comment_action=CommentAction.CREATED,
    ),
    ("gitlab", "note__commit"): None,
    ("gitlab", "note__snippet"): None,
    ("gitlab", "pipeline__tag_success"): _gitlab(
        EventKind.PIPELINE,
        Repo(
            Forge.GITLAB,
            "1",
            "gitlab-org/gitlab-test",
            "master",
            "http://192.168.64.1:3005/gitlab-org/gitlab-test",
        ),
        GL_ROOT,
        ref="refs/tags/v1.0.0",
        sha="bcbb5ec396a2c0f828686f14fac9b80b780504f2",
        pipeline_status="success",
    ),
    ("gitlab", "issue__open"): None,
    ("gitlab", "build__created"): None,
    ("gitea", "push__branch"): _gitea(EventKind.PUSH, GT_ADMIN, ref="refs/heads/develop", sha=GT_TAG_SHA),
    ("gitea", "push__tag"): _gitea(EventKind.TAG_PUSH, GT_ADMIN, ref="refs/tags/v1.0.0", sha=GT_TAG_SHA),
    ("gitea", "create__tag"): _gitea(EventKind.TAG_PUSH, GT_ADMIN, ref="refs/tags/v1.0.0", sha=GT_TAG_SHA),
    ("gitea", "delete__tag"): None,
    ("gitea", "pull_request__opened"): _pr(ChangeAction.OPENED, PR_HEAD),
    ("gitea", "pull_request__synchronized"): _pr(ChangeAction.NEW_COMMITS, PR_NEW_HEAD),
    ("gitea", "pull_request__label_updated"): _pr(ChangeAction.EDITED, PR_HEAD),
    ("gitea", "pull_request__closed_merged"): _pr(ChangeAction.MERGED, PR_NEW_HEAD, GT_ADMIN),
    ("gitea", "issue_comment__created_on_pull"): _gitea(
        EventKind.COMMENT,
        GT_DEV,
        number=12,
        is_change_request=True,
        comment_id=45,
        comment_body="/imglife check",
        comment_action=CommentAction.CREATED,
    ),
    ("gitea", "issue_comment__created_on_issue"): _gitea(
        EventKind.COMMENT,
        GT_ADMIN,
        number=7,
        comment_id=46,
        comment_body="/imglife eol",
        comment_action=CommentAction.CREATED,
    ),
    ("gitea", "issue_comment__edited"): _gitea(
        EventKind.COMMENT,
        GT_DEV,
        number=12,
        is_change_request=True,
        comment_id=45,
        comment_body="/imglife check registry.example.com/base/alpine:3.20",
        comment_action=CommentAction.EDITED,
    ),
    ("gitea", "issues__opened"): None,
}


def test_every_fixture_has_an_expectation() -> None:
    on_disk = {(forge, name) for forge in PARSERS for name in fixture_names(forge)}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize(("forge", "name"), sorted(EXPECTED), ids=[f"{f}/{n}" for f, n in sorted(EXPECTED)])
def test_fixture_maps_to_expected_event(forge: str, name: str) -> None:
    headers, body = delivery(forge, name)

    assert PARSERS[forge](headers, body, secret=SECRET) == EXPECTED[forge, name]


@pytest.mark.parametrize("name", fixture_names("gitea"))
def test_forgejo_headers_are_accepted(name: str) -> None:
    headers, body = delivery("gitea", name, family="forgejo")

    assert not any(key.lower().startswith("x-gitea-") for key in headers)
    assert parse_gitea(headers, body, secret=SECRET) == EXPECTED["gitea", name]


def test_forgejo_sends_both_families() -> None:
    gitea_headers, body = delivery("gitea", "push__tag")
    forgejo_headers, _ = delivery("gitea", "push__tag", family="forgejo")

    assert (
        parse_gitea({**gitea_headers, **forgejo_headers}, body, secret=SECRET)
        == EXPECTED["gitea", "push__tag"]
    )


def test_gitea_fixtures_match_the_sdk_models() -> None:
    """The nested objects load into gitea-async-sdk 1.26 models: field names are Gitea's own."""
    from gitea_async.models.comment import Comment
    from gitea_async.models.issue import Issue
    from gitea_async.models.pull_request import PullRequest
    from gitea_async.models.repository import Repository
    from gitea_async.models.user import User

    models: dict[str, Any] = {
        "repository": Repository,
        "sender": User,
        "pull_request": PullRequest,
        "issue": Issue,
        "comment": Comment,
    }
    for name in fixture_names("gitea"):
        payload = load("gitea", name)
        for key, model in models.items():
            if payload.get(key) is None:
                continue
            known = {field.alias or field_name for field_name, field in model.model_fields.items()}
            # Gitea's User also carries the "username" copy the docs example shows.
            assert set(payload[key]) - known <= {"username"}, (name, key)
            assert model.from_dict(payload[key]) is not None


# --------------------------------------------------------------------------- secrets


def test_gitlab_wrong_token_is_401() -> None:
    headers, body = delivery("gitlab", "push__branch", secret="not-the-secret")

    assert rejected(parse_gitlab, headers, body).status == 401
    assert rejected(parse_gitlab, headers, body).reason == gitlab_hooks.TOKEN_INVALID


def test_gitlab_missing_token_is_401() -> None:
    headers, body = delivery("gitlab", "push__branch", secret=None)

    error = rejected(parse_gitlab, headers, body)
    assert (error.status, error.reason) == (401, gitlab_hooks.TOKEN_MISSING)


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
@pytest.mark.parametrize("configured", [None, ""])
def test_unconfigured_secret_fails_closed(forge: str, configured: str | None) -> None:
    headers, body = delivery(forge, "push__branch", secret=SECRET)

    error = rejected(PARSERS[forge], headers, body, secret=configured)
    assert (error.status, error.reason) == (401, webhooks.SECRET_NOT_CONFIGURED)


def test_gitea_wrong_secret_is_401() -> None:
    headers, body = delivery("gitea", "push__branch", secret="not-the-secret")

    error = rejected(parse_gitea, headers, body)
    assert (error.status, error.reason) == (401, gitea_hooks.SIGNATURE_INVALID)


def test_gitea_missing_signature_is_401() -> None:
    headers, body = delivery("gitea", "push__branch")
    del headers["X-Gitea-Signature"]

    error = rejected(parse_gitea, headers, body)
    assert (error.status, error.reason) == (401, gitea_hooks.SIGNATURE_MISSING)


def test_gitea_empty_signature_is_401_when_a_secret_is_configured() -> None:
    # What Gitea sends when the hook itself has no secret (deliver.go).
    headers, body = delivery("gitea", "push__branch", secret=None)
    assert headers["X-Gitea-Signature"] == ""

    error = rejected(parse_gitea, headers, body)
    assert (error.status, error.reason) == (401, gitea_hooks.SIGNATURE_EMPTY)


def test_gitea_signature_over_another_body_is_401() -> None:
    headers, _ = delivery("gitea", "push__branch")
    _, other_body = delivery("gitea", "push__tag")

    assert rejected(parse_gitea, headers, other_body).status == 401


def test_gitea_signature_is_over_the_raw_bytes() -> None:
    # The HMAC is over the raw bytes: the same JSON re-serialised is another body.
    headers, body = delivery("gitea", "push__branch")
    compact = json.dumps(json.loads(body)).encode()

    assert rejected(parse_gitea, headers, compact).status == 401


def test_gitea_every_signature_header_must_match() -> None:
    headers, body = delivery("gitea", "push__branch")
    headers["X-Forgejo-Signature"] = sign("another-secret", body)

    assert rejected(parse_gitea, headers, body).reason == gitea_hooks.SIGNATURE_INVALID


def test_gitea_signature_must_be_lowercase_hex() -> None:
    headers, body = delivery("gitea", "push__branch")
    headers["X-Gitea-Signature"] = headers["X-Gitea-Signature"].upper()

    assert rejected(parse_gitea, headers, body).status == 401


def test_verify_functions_accept_a_good_delivery() -> None:
    gitlab_headers, _ = delivery("gitlab", "push__branch")
    gitea_headers, gitea_body = delivery("gitea", "push__branch")

    verify_gitlab(gitlab_headers, SECRET)
    verify_gitea(gitea_headers, gitea_body, SECRET)


def test_comparisons_are_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    original = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    gitlab_headers, gitlab_body = delivery("gitlab", "push__branch")
    gitea_headers, gitea_body = delivery("gitea", "push__branch")

    parse_gitlab(gitlab_headers, gitlab_body, secret=SECRET)
    parse_gitea(gitea_headers, gitea_body, secret=SECRET)
    rejected(parse_gitlab, {**gitlab_headers, "X-Gitlab-Token": "wrong"}, gitlab_body)
    rejected(parse_gitea, {**gitea_headers, "X-Gitea-Signature": "0" * 64}, gitea_body)

    assert calls == [
        (SECRET.encode(), SECRET.encode()),
        (gitea_headers["X-Gitea-Signature"].encode(), gitea_headers["X-Gitea-Signature"].encode()),
        (b"wrong", SECRET.encode()),
        (b"0" * 64, gitea_headers["X-Gitea-Signature"].encode()),
    ]
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


def test_secret_is_checked_before_the_body_is_read() -> None:
    # Unauthenticated garbage learns nothing about our parser: 401, not 400.
    headers, _ = delivery("gitlab", "push__branch", secret="wrong")

    assert rejected(parse_gitlab, headers, b"not json").status == 401
    gitea_headers, _ = delivery("gitea", "push__branch", secret="wrong")
    assert rejected(parse_gitea, gitea_headers, b"not json").status == 401


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_headers_are_case_insensitive(forge: str) -> None:
    headers, body = delivery(forge, "push__branch")
    expected = EXPECTED[forge, "push__branch"]

    for variant in (
        {k.lower(): v for k, v in headers.items()},
        {k.upper(): v for k, v in headers.items()},
        CIMultiDict(headers),
    ):
        assert PARSERS[forge](variant, body, secret=SECRET) == expected


# --------------------------------------------------------------------------- content type and body


def test_gitea_form_encoded_delivery_is_415_with_a_fix() -> None:
    headers, body = delivery("gitea", "push__branch", form=True)

    error = rejected(parse_gitea, headers, body)
    assert error.status == 415
    assert "application/json" in error.reason


def test_gitea_form_encoded_delivery_is_still_authenticated_first() -> None:
    headers, body = delivery("gitea", "push__branch", secret="wrong", form=True)

    assert rejected(parse_gitea, headers, body).status == 401
    headers, body = delivery("gitea", "push__branch", form=True)
    assert rejected(parse_gitea, headers, body.replace(b"payload=", b"other=")).status == 401


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_other_content_types_are_415(forge: str, content_type: str | None) -> None:
    headers, body = delivery(forge, "push__branch")
    del headers["Content-Type"]
    if content_type is not None:
        headers["Content-Type"] = content_type

    assert rejected(PARSERS[forge], headers, body).status == 415


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_json_content_type_parameters_are_fine(forge: str) -> None:
    headers, body = delivery(forge, "push__branch")
    headers["Content-Type"] = "Application/JSON; charset=utf-8"

    assert PARSERS[forge](headers, body, secret=SECRET) == EXPECTED[forge, "push__branch"]


def _signed(forge: str, body: bytes) -> dict[str, str]:
    headers, _ = delivery(forge, "push__branch")
    if forge == "gitea":
        headers["X-Gitea-Signature"] = sign(SECRET, body)
    return headers


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", webhooks.BODY_NOT_JSON),
        (b"", webhooks.BODY_NOT_JSON),
        (b"\xff\xfe\x00", webhooks.BODY_NOT_JSON),
        (b'{"a": NaN}', webhooks.BODY_NOT_JSON),
        (b"[" * 100_000 + b"]" * 100_000, webhooks.BODY_NOT_JSON),
        (b'{"n": ' + b"9" * 5000 + b"}", webhooks.BODY_NOT_JSON),
        (b"[1, 2]", webhooks.BODY_NOT_OBJECT),
        (b'"push"', webhooks.BODY_NOT_OBJECT),
        (b"null", webhooks.BODY_NOT_OBJECT),
    ],
    ids=["garbage", "empty", "not-utf8", "nan", "deep", "huge-int", "array", "string", "null"],
)
def test_bodies_that_are_not_a_json_object_are_400(forge: str, body: bytes, reason: str) -> None:
    error = rejected(PARSERS[forge], _signed(forge, body), body)

    assert (error.status, error.reason) == (400, reason)


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_bodies_over_25_mib_are_413(forge: str) -> None:
    body = b" " * (MAX_BODY_BYTES + 1)

    assert rejected(PARSERS[forge], _signed(forge, body), body).status == 413


# --------------------------------------------------------------------------- missing and mistyped fields


@pytest.mark.parametrize(
    ("forge", "name", "field"),
    [
        ("gitlab", "push__branch", "ref"),
        ("gitlab", "push__branch", "after"),
        ("gitlab", "push__branch", "project"),
        ("gitlab", "push__branch", "project.path_with_namespace"),
        ("gitlab", "merge_request__open", "object_attributes"),
        ("gitlab", "merge_request__open", "object_attributes.iid"),
        ("gitlab", "merge_request__open", "object_attributes.action"),
        ("gitlab", "merge_request__open", "user"),
        ("gitlab", "note__merge_request", "merge_request"),
        ("gitlab", "note__merge_request", "object_attributes.note"),
        ("gitlab", "note__merge_request", "object_attributes.noteable_type"),
        ("gitlab", "note__issue", "issue.iid"),
        ("gitlab", "note__issue", "user.id"),
        ("gitlab", "pipeline__tag_success", "object_attributes.sha"),
        ("gitlab", "pipeline__tag_success", "object_attributes.status"),
        ("gitea", "push__branch", "repository"),
        ("gitea", "push__branch", "repository.full_name"),
        ("gitea", "push__branch", "after"),
        ("gitea", "create__tag", "sha"),
        ("gitea", "create__tag", "ref_type"),
        ("gitea", "pull_request__opened", "number"),
        ("gitea", "pull_request__opened", "pull_request.head.sha"),
        ("gitea", "pull_request__opened", "sender"),
        ("gitea", "issue_comment__created_on_pull", "comment.id"),
        ("gitea", "issue_comment__created_on_pull", "comment.body"),
        ("gitea", "issue_comment__created_on_pull", "issue.number"),
    ],
)
def test_missing_fields_are_400_naming_the_field(forge: str, name: str, field: str) -> None:
    headers, body = delivery(forge, name, payload=drop(load(forge, name), field))

    error = rejected(PARSERS[forge], headers, body)
    assert (error.status, error.reason) == (400, f"field {field} missing")


@pytest.mark.parametrize(
    ("forge", "name", "field", "value", "kind"),
    [
        ("gitlab", "merge_request__open", "object_attributes.iid", "1", "an integer"),
        ("gitlab", "merge_request__open", "object_attributes.iid", True, "an integer"),
        ("gitlab", "merge_request__open", "object_attributes.iid", 1.0, "an integer"),
        ("gitlab", "merge_request__open", "object_attributes", [], "an object"),
        ("gitlab", "merge_request__open", "object_attributes.last_commit.id", "../../etc", "a commit SHA"),
        ("gitlab", "push__branch", "project.id", "15", "an integer"),
        ("gitlab", "note__merge_request", "object_attributes.system", "false", "a boolean"),
        ("gitlab", "pipeline__tag_success", "object_attributes.tag", 1, "a boolean"),
        ("gitea", "pull_request__opened", "number", "12", "an integer"),
        ("gitea", "pull_request__opened", "pull_request.head", "alpine-3.20", "an object"),
        ("gitea", "issue_comment__created_on_pull", "comment.body", 7, "a string"),
        ("gitea", "issue_comment__created_on_pull", "is_pull", "yes", "a boolean"),
        ("gitea", "push__tag", "after", "HEAD", "a commit SHA"),
    ],
)
def test_mistyped_fields_are_400_naming_the_field(
    forge: str, name: str, field: str, value: Any, kind: str
) -> None:
    headers, body = delivery(forge, name, payload=put(load(forge, name), field, value))

    error = rejected(PARSERS[forge], headers, body)
    assert (error.status, error.reason) == (400, f"field {field} is not {kind}")


def test_gitlab_custom_template_payload_is_400() -> None:
    # An admin-set custom webhook template replaces the JSON: still authentic, not our payload.
    headers, body = delivery("gitlab", "push__branch", payload={"text": "pushed to master"})

    error = rejected(parse_gitlab, headers, body)
    assert (error.status, error.reason) == (400, gitlab_hooks.NO_OBJECT_KIND)


def test_gitlab_header_contradicting_object_kind_is_400() -> None:
    headers, body = delivery("gitlab", "merge_request__open")
    headers["X-Gitlab-Event"] = "Note Hook"

    assert rejected(parse_gitlab, headers, body).reason == gitlab_hooks.EVENT_MISMATCH


def test_gitea_missing_event_header_is_400() -> None:
    headers, body = delivery("gitea", "push__branch")
    del headers["X-Gitea-Event"]

    assert rejected(parse_gitea, headers, body).reason == gitea_hooks.EVENT_MISSING


# --------------------------------------------------------------------------- events the bot ignores


def test_gitlab_branch_delete_is_ignored() -> None:
    payload = load("gitlab", "push__branch")
    payload.update(after="0" * 40, checkout_sha=None, commits=[], total_commits_count=0)
    headers, body = delivery("gitlab", "push__branch", payload=payload)

    assert parse_gitlab(headers, body, secret=SECRET) is None


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        ("Member Hook", {"event_name": "user_add_to_group", "group_id": 100, "user_id": 64}),
        ("Subgroup Hook", {"event_name": "subgroup_create", "group_id": 10}),
        ("Release Hook", {"object_kind": "release", "action": "create", "tag": "v1.1"}),
        ("Emoji Hook", {"object_kind": "emoji", "event_type": "award"}),
    ],
)
def test_gitlab_events_not_modelled_are_none(header: str, payload: dict[str, Any]) -> None:
    headers, body = delivery("gitlab", "push__branch", payload=payload)
    headers["X-Gitlab-Event"] = header

    assert parse_gitlab(headers, body, secret=SECRET) is None


def test_gitlab_confidential_note_is_a_comment() -> None:
    payload = put(load("gitlab", "note__issue"), "event_type", "confidential_note")
    headers, body = delivery("gitlab", "note__issue", payload=payload)
    headers["X-Gitlab-Event"] = "Confidential Note Hook"

    assert parse_gitlab(headers, body, secret=SECRET) == EXPECTED["gitlab", "note__issue"]


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Push Event", "push__branch"),  # the old UI test button (gitlab-foss#37288)
        ("Tag Push Hook", "push__branch"),  # tag-push test sent a push payload (gitlab#24660)
        ("System Hook", "merge_request__open"),  # system hooks name every event so
    ],
)
def test_gitlab_header_quirks_route_on_object_kind(header: str, name: str) -> None:
    headers, body = delivery("gitlab", name)
    headers["X-Gitlab-Event"] = header

    assert parse_gitlab(headers, body, secret=SECRET) == EXPECTED["gitlab", name]


def test_gitlab_event_header_is_only_a_cross_check() -> None:
    headers, body = delivery("gitlab", "push__branch")
    del headers["X-Gitlab-Event"]

    assert parse_gitlab(headers, body, secret=SECRET) == EXPECTED["gitlab", "push__branch"]


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("push__tag", {"after": "0" * 40}),  # tag deleted through a push
        ("push__branch", {"after": "0" * 40}),  # branch deleted through a push
        ("create__tag", {"ref": "feature", "ref_type": "branch"}),
        ("push__branch", {"ref": "refs/notes/commits"}),
    ],
)
def test_gitea_ref_changes_not_modelled_are_none(name: str, change: dict[str, Any]) -> None:
    headers, body = delivery("gitea", name, payload={**load("gitea", name), **change})

    assert parse_gitea(headers, body, secret=SECRET) is None


@pytest.mark.parametrize(
    ("event", "name"),
    [
        ("release", "issues__opened"),
        ("fork", "push__branch"),
        ("wiki", "push__branch"),
        ("repository", "push__branch"),
        ("pull_request_approved", "pull_request__opened"),
        ("pull_request_comment", "pull_request__opened"),  # a review comment: PullRequestPayload
        ("workflow_run", "push__branch"),
    ],
)
def test_gitea_events_not_modelled_are_none(event: str, name: str) -> None:
    headers, body = delivery("gitea", name)
    headers["X-Gitea-Event"] = event

    assert parse_gitea(headers, body, secret=SECRET) is None


# --------------------------------------------------------------------------- mapping rules


def _gitea_event(name: str, payload: dict[str, Any] | None = None) -> ForgeEvent:
    headers, body = delivery("gitea", name, payload=payload)
    event = parse_gitea(headers, body, secret=SECRET)
    assert event is not None
    return event


def _gitlab_event(name: str, payload: dict[str, Any] | None = None) -> ForgeEvent:
    headers, body = delivery("gitlab", name, payload=payload)
    event = parse_gitlab(headers, body, secret=SECRET)
    assert event is not None
    return event


def test_gitea_push_and_create_of_one_tag_share_a_content_key() -> None:
    pushed = _gitea_event("push__tag")
    created = _gitea_event("create__tag")
    # Forgejo "Forgejo"-type hooks leave the full ref in create (services/webhook/default.go).
    forgejo_created = _gitea_event(
        "create__tag", put(load("gitea", "create__tag"), "ref", "refs/tags/v1.0.0")
    )
    # A 1.20 release candidate said "tags" (gitea#25185).
    rc_created = _gitea_event("create__tag", put(load("gitea", "create__tag"), "ref_type", "tags"))

    assert pushed.kind is created.kind is EventKind.TAG_PUSH
    assert pushed.content_key == created.content_key == forgejo_created.content_key == rc_created.content_key
    assert created.tag == "v1.0.0"
    assert pushed.content_key == f"gitea:gitea/webhooks:tag_push:refs/tags/v1.0.0:{GT_TAG_SHA}"


def test_gitlab_label_edit_is_edited_but_a_push_is_new_commits() -> None:
    edited = _gitlab_event("merge_request__update_labels")
    pushed = _gitlab_event("merge_request__update_oldrev")

    assert edited.change_action is ChangeAction.EDITED
    assert pushed.change_action is ChangeAction.NEW_COMMITS
    assert edited.content_key != pushed.content_key


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("open", ChangeAction.OPENED),
        ("reopen", ChangeAction.REOPENED),
        ("close", ChangeAction.CLOSED),
        ("merge", ChangeAction.MERGED),
        ("approved", ChangeAction.OTHER),
        ("unapproval", ChangeAction.OTHER),
    ],
)
def test_gitlab_merge_request_actions(action: str, expected: ChangeAction) -> None:
    payload = put(load("gitlab", "merge_request__open"), "object_attributes.action", action)

    assert _gitlab_event("merge_request__open", payload).change_action is expected


def test_gitlab_merge_request_without_commits_has_no_sha() -> None:
    payload = put(load("gitlab", "merge_request__open"), "object_attributes.last_commit", None)

    assert _gitlab_event("merge_request__open", payload).sha is None


def test_gitlab_note_edit_is_edited() -> None:
    event = _gitlab_event("note__merge_request_edited")

    assert event.comment_action is CommentAction.EDITED
    assert event.content_key != _gitlab_event("note__merge_request").content_key


def test_gitlab_note_before_16_11_has_no_action_and_is_created() -> None:
    payload = drop(load("gitlab", "note__merge_request"), "object_attributes.action")

    assert _gitlab_event("note__merge_request", payload).comment_action is CommentAction.CREATED


def test_gitlab_note_with_an_unknown_action_is_ignored() -> None:
    payload = put(load("gitlab", "note__merge_request"), "object_attributes.action", "destroy")
    headers, body = delivery("gitlab", "note__merge_request", payload=payload)

    assert parse_gitlab(headers, body, secret=SECRET) is None


def test_gitlab_system_note_is_flagged() -> None:
    assert _gitlab_event("note__merge_request_system").system is True
    assert _gitlab_event("note__merge_request").system is False


def test_gitlab_branch_pipeline_ref() -> None:
    payload = put(load("gitlab", "pipeline__tag_success"), "object_attributes.tag", False)
    payload = put(payload, "object_attributes.ref", "main")
    payload = put(payload, "merge_request", {"iid": 4})

    event = _gitlab_event("pipeline__tag_success", payload)
    assert (event.ref, event.number) == ("refs/heads/main", 4)


def test_gitlab_push_prefers_checkout_sha() -> None:
    # For an annotated tag ``after`` names the tag object, checkout_sha the commit.
    payload = put(load("gitlab", "tag_push__create"), "after", "1" * 40)

    assert _gitlab_event("tag_push__create", payload).sha == "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"


def test_gitlab_delivery_id_falls_back_to_the_event_uuid() -> None:
    headers, body = delivery("gitlab", "push__branch")
    del headers["X-Gitlab-Webhook-UUID"], headers["Idempotency-Key"]

    event = parse_gitlab(headers, body, secret=SECRET)
    assert event is not None
    assert (event.delivery_id, event.idempotency_key) == (GITLAB_EVENT_UUID, None)
    del headers["X-Gitlab-Event-UUID"]
    event = parse_gitlab(headers, body, secret=SECRET)
    assert event is not None
    assert event.delivery_id == ""


def test_gitea_closed_without_merge_is_closed() -> None:
    payload = put(load("gitea", "pull_request__closed_merged"), "pull_request.merged", False)

    assert _gitea_event("pull_request__closed_merged", payload).change_action is ChangeAction.CLOSED


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("reopened", ChangeAction.REOPENED),
        ("edited", ChangeAction.EDITED),
        ("assigned", ChangeAction.EDITED),
        ("label_cleared", ChangeAction.EDITED),
        ("review_requested", ChangeAction.EDITED),
        ("reviewed", ChangeAction.OTHER),
    ],
)
def test_gitea_pull_request_actions(action: str, expected: ChangeAction) -> None:
    payload = put(load("gitea", "pull_request__opened"), "action", action)

    assert _gitea_event("pull_request__opened", payload).change_action is expected


def test_gitea_comment_deleted_and_unknown_actions() -> None:
    deleted = put(load("gitea", "issue_comment__created_on_pull"), "action", "deleted")
    assert _gitea_event("issue_comment__created_on_pull", deleted).comment_action is CommentAction.DELETED

    unknown = put(load("gitea", "issue_comment__created_on_pull"), "action", "pinned")
    headers, body = delivery("gitea", "issue_comment__created_on_pull", payload=unknown)
    assert parse_gitea(headers, body, secret=SECRET) is None


def test_gitea_comment_on_pull_without_is_pull_uses_the_event_type() -> None:
    payload = drop(load("gitea", "issue_comment__created_on_pull"), "is_pull")
    payload = put(payload, "issue.pull_request", None)
    headers, body = delivery("gitea", "issue_comment__created_on_pull", payload=payload)
    assert headers["X-Gitea-Event-Type"] == "issue_comment"
    event = parse_gitea(headers, body, secret=SECRET)
    assert event is not None
    assert event.is_change_request is False

    headers["X-Gitea-Event-Type"] = "pull_request_comment"
    event = parse_gitea(headers, body, secret=SECRET)
    assert event is not None
    assert event.is_change_request is True


def test_gitea_comment_on_pull_without_is_pull_uses_the_issue_marker() -> None:
    payload = drop(load("gitea", "issue_comment__created_on_pull"), "is_pull")

    assert _gitea_event("issue_comment__created_on_pull", payload).is_change_request is True


def test_gitea_comment_actor_falls_back_to_the_sender() -> None:
    payload = drop(load("gitea", "issue_comment__created_on_pull"), "comment.user")
    payload = put(payload, "sender", load("gitea", "push__branch")["sender"])

    assert _gitea_event("issue_comment__created_on_pull", payload).actor == GT_ADMIN
