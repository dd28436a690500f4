"""Property tests: whatever arrives, the parsers answer with a ForgeEvent, None or WebhookRejected.

Deliveries are authentic (correct token/HMAC from ``delivery()``) so the mapping code is reached;
the payloads are the documented fixtures with keys dropped or values swapped for arbitrary JSON,
or arbitrary JSON and bytes altogether. Any other exception (KeyError, TypeError, RecursionError…)
would be a 500 from the view and, on GitLab, a step towards a disabled hook.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.events import EventKind, ForgeEvent
from bot.forges.webhooks import WebhookRejected
from tests.test_webhook_parsing import PARSERS, SECRET, delivery, fixture_names, load, sign

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FIXTURES = [(forge, name) for forge in sorted(PARSERS) for name in fixture_names(forge)]
SHA_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
GITLAB_EVENTS = [
    "Push Hook",
    "Tag Push Hook",
    "Merge Request Hook",
    "Note Hook",
    "Pipeline Hook",
    "System Hook",
]
GITEA_EVENTS = ["push", "create", "delete", "pull_request", "issue_comment", "issues"]

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path inside ``value`` (the places a mutation can hit)."""
    found: list[tuple[Any, ...]] = []
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


@functools.cache
def fixture(forge: str, name: str) -> tuple[str, tuple[tuple[Any, ...], ...]]:
    """The fixture's JSON text and its paths, computed once (the fuzz budget goes to parsing)."""
    payload = load(forge, name)
    return json.dumps(payload), tuple(paths(payload))


def mutate(payload: Any, path: tuple[Any, ...], replacement: Any, remove: bool) -> None:
    """Drop or replace the value at ``path`` in place; a path an earlier mutation removed is skipped."""
    target = payload
    try:
        for key in path[:-1]:
            target = target[key]
        if remove:
            del target[path[-1]]
        else:
            target[path[-1]] = replacement
    except (KeyError, IndexError, TypeError):
        pass


def check(forge: str, headers: Mapping[str, str], body: bytes) -> None:
    """The only outcomes allowed, and the invariants of an event that did come out."""
    rejection: WebhookRejected | None = None
    try:
        event = PARSERS[forge](headers, body, secret=SECRET)
    except WebhookRejected as exc:
        event, rejection = None, exc
    if rejection is not None:
        assert rejection.status in {400, 401, 413, 415}
        assert SECRET not in rejection.reason
        return
    if event is None:
        return
    assert isinstance(event, ForgeEvent)
    assert event.repo.id
    assert event.repo.path
    assert event.sha is None or SHA_RE.fullmatch(event.sha)
    assert event.ref is None or event.ref.startswith("refs/")
    if event.kind in (EventKind.PUSH, EventKind.TAG_PUSH, EventKind.PIPELINE):
        assert event.ref is not None
        assert event.sha is not None
    if event.kind is EventKind.TAG_PUSH:
        assert event.tag
    if event.kind is EventKind.CHANGE_REQUEST:
        assert isinstance(event.number, int)
        assert event.change_action is not None
    if event.kind is EventKind.COMMENT:
        assert isinstance(event.comment_id, int)
        assert isinstance(event.comment_body, str)
        assert event.comment_action is not None
        assert isinstance(event.actor.id, int)
    assert isinstance(event.content_key, str)


@FUZZ
@given(data=st.data())
def test_mutated_fixtures_never_raise_anything_else(data: st.DataObject) -> None:
    forge, name = data.draw(st.sampled_from(FIXTURES), label="fixture")
    text, candidates = fixture(forge, name)
    payload = json.loads(text)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(candidates), label="path")
        remove = data.draw(st.booleans(), label="remove")
        mutate(payload, path, None if remove else data.draw(json_values, label="value"), remove)
    headers, body = delivery(forge, name, payload=payload)

    check(forge, headers, body)


@FUZZ
@given(forge=st.sampled_from(sorted(PARSERS)), payload=json_values, data=st.data())
def test_arbitrary_json_never_raises_anything_else(forge: str, payload: Any, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(fixture_names(forge)), label="headers of")
    headers, body = delivery(forge, name, payload=payload)
    if forge == "gitlab":
        headers["X-Gitlab-Event"] = data.draw(st.sampled_from(GITLAB_EVENTS), label="event")
    else:
        headers["X-Gitea-Event"] = data.draw(st.sampled_from(GITEA_EVENTS), label="event")

    check(forge, headers, body)


@FUZZ
@given(forge=st.sampled_from(sorted(PARSERS)), body=st.binary(max_size=200), data=st.data())
def test_arbitrary_signed_bytes_never_raise_anything_else(
    forge: str, body: bytes, data: st.DataObject
) -> None:
    headers, _ = delivery(forge, "push__branch")
    if forge == "gitea":
        headers["X-Gitea-Signature"] = sign(SECRET, body)
    if data.draw(st.booleans(), label="form"):
        headers["Content-Type"] = "application/x-www-form-urlencoded"

    check(forge, headers, body)


header_names = st.sampled_from(
    [
        "Content-Type",
        "X-Gitlab-Token",
        "X-Gitlab-Event",
        "X-Gitlab-Webhook-UUID",
        "Idempotency-Key",
        "X-Gitea-Signature",
        "X-Forgejo-Signature",
        "X-Gitea-Event",
        "X-Forgejo-Event",
        "X-Gitea-Event-Type",
        "X-Gitea-Delivery",
    ]
) | st.text(min_size=1, max_size=12)


@FUZZ
@given(
    forge=st.sampled_from(sorted(PARSERS)),
    name=st.sampled_from(["push__branch", "push__tag", "note__merge_request", "pull_request__opened"]),
    overrides=st.dictionaries(header_names, st.text(max_size=70), max_size=5),
)
def test_random_header_values_never_raise_anything_else(
    forge: str, name: str, overrides: dict[str, str]
) -> None:
    if name not in fixture_names(forge):
        name = "push__branch"
    headers, body = delivery(forge, name)
    headers.update(overrides)

    check(forge, headers, body)
