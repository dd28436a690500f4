"""FakeSlack and FakeWebhookReceiver against the documented webhook behaviour.

Slack: ``200 ok`` for a message, a bare error word with Slack's status otherwise (changelog
2016-05-17 "Improving error conditions for Incoming Webhooks", and the codes Slack sends today).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.webhooks import DEFAULT_SLACK_PATH, SLACK_ERRORS, FakeSlack, FakeWebhookReceiver

# One TLS context for the module: httpx loads the CA bundle per client otherwise (~90 ms).
TLS = ssl.create_default_context()
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*alpine 3.19* is EOL"}}]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(verify=TLS) as client:
        yield client


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


@pytest.fixture
def hook() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as server:
        yield server


# --------------------------------------------------------------------------- Slack


@pytest.mark.parametrize(
    "payload",
    [{"text": "alpine 3.19 is EOL"}, {"blocks": BLOCKS}, {"text": "fallback", "blocks": BLOCKS}],
    ids=["text", "blocks", "both"],
)
def test_slack_accepts_text_and_or_blocks(
    slack: FakeSlack, http: httpx.Client, payload: dict[str, Any]
) -> None:
    response = http.post(slack.webhook_url, json=payload)

    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["content-type"] == "text/html"
    assert slack.messages == [payload]


def test_slack_webhook_url_uses_the_configured_path(http: httpx.Client) -> None:
    with FakeSlack(path="/services/T1/B2/secret") as slack:
        assert slack.webhook_url == f"{slack.url}/services/T1/B2/secret"
        assert http.post(slack.webhook_url, json={"text": "x"}).status_code == 200
        assert http.post(f"{slack.url}{DEFAULT_SLACK_PATH}", json={"text": "x"}).status_code == 404


def test_slack_records_messages_in_order(slack: FakeSlack, http: httpx.Client) -> None:
    for text in ("one", "two"):
        http.post(slack.webhook_url, json={"text": text})
    http.post(slack.webhook_url, json={"blocks": BLOCKS})

    assert slack.texts == ["one", "two", None]
    assert [p.status for p in slack.posts] == [200, 200, 200]


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"not json", "application/json"), (b"[1, 2]", "application/json"), (b"\xff\xfe", "application/json")],
    ids=["garbage", "not-an-object", "not-utf8"],
)
def test_slack_refuses_unreadable_bodies_with_invalid_payload(
    slack: FakeSlack, http: httpx.Client, body: bytes, content_type: str
) -> None:
    response = http.post(slack.webhook_url, content=body, headers={"Content-Type": content_type})

    assert (response.status_code, response.text) == (400, "invalid_payload")
    assert slack.messages == []
    assert slack.posts[0].error == "invalid_payload"


@pytest.mark.parametrize(
    "payload", [{}, {"text": ""}, {"username": "imglife"}], ids=["empty", "blank", "no-text"]
)
def test_slack_refuses_a_message_without_content_with_no_text(
    slack: FakeSlack, http: httpx.Client, payload: dict[str, Any]
) -> None:
    response = http.post(slack.webhook_url, json=payload)

    assert (response.status_code, response.text) == (400, "no_text")
    assert slack.messages == []


def test_slack_refuses_malformed_blocks(slack: FakeSlack, http: httpx.Client) -> None:
    response = http.post(slack.webhook_url, json={"text": "x", "blocks": [{"text": "no type"}]})

    assert (response.status_code, response.text) == (400, "invalid_blocks")


def test_slack_accepts_the_legacy_form_encoded_payload(slack: FakeSlack, http: httpx.Client) -> None:
    response = http.post(slack.webhook_url, data={"payload": '{"text": "from a form"}'})

    assert response.status_code == 200
    assert slack.texts == ["from a form"]


def test_slack_unknown_path_is_no_service(slack: FakeSlack, http: httpx.Client) -> None:
    response = http.post(f"{slack.url}/services/T000/B000/revoked", json={"text": "x"})

    assert (response.status_code, response.text) == (404, "no_service")
    assert slack.posts == []


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("channel_is_archived", 410),
        ("action_prohibited", 403),
        ("no_service", 404),
        ("channel_not_found", 404),
    ],
)
def test_slack_set_error_refuses_every_post(
    slack: FakeSlack, http: httpx.Client, code: str, status: int
) -> None:
    slack.set_error(code)

    responses = [http.post(slack.webhook_url, json={"text": "x"}) for _ in range(2)]

    assert [(r.status_code, r.text) for r in responses] == [(status, code)] * 2
    assert SLACK_ERRORS[code] == status
    slack.set_error(None)
    assert http.post(slack.webhook_url, json={"text": "again"}).status_code == 200
    assert slack.texts == ["again"]


def test_slack_set_error_rejects_unknown_codes(slack: FakeSlack) -> None:
    with pytest.raises(ValueError, match="unknown Slack error"):
        slack.set_error("not_a_slack_error")


def test_slack_fail_next_uses_slack_bodies(slack: FakeSlack, http: httpx.Client) -> None:
    slack.fail_next("POST", "^/services/", 500)

    failed = http.post(slack.webhook_url, json={"text": "x"})
    retried = http.post(slack.webhook_url, json={"text": "x"})

    assert (failed.status_code, failed.text) == (500, "rollup_error")
    assert retried.status_code == 200
    assert len(slack.messages) == 1  # the faulted post changed nothing


def test_slack_rate_limit_sends_retry_after(slack: FakeSlack, http: httpx.Client) -> None:
    slack.rate_limit_next(retry_after=7)

    limited = http.post(slack.webhook_url, json={"text": "x"})

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert limited.text == "rate_limited"
    assert http.post(slack.webhook_url, json={"text": "x"}).status_code == 200


def test_slack_wait_for_messages_sees_a_background_sender(slack: FakeSlack) -> None:
    sender = threading.Thread(
        target=lambda: httpx.post(slack.webhook_url, json={"text": "later"}, verify=TLS)
    )
    sender.start()

    messages = slack.wait_for_messages(1, timeout=5)

    sender.join()
    assert messages == [{"text": "later"}]
    with pytest.raises(TimeoutError):
        slack.wait_for_messages(2, timeout=0.05)


# --------------------------------------------------------------------------- generic receiver


def test_receiver_records_json_and_headers(hook: FakeWebhookReceiver, http: httpx.Client) -> None:
    response = http.post(
        f"{hook.webhook_url}?source=imglife",
        json={"event": "eol", "product": "alpine"},
        headers={"X-Imglife-Signature": "sha256=abc"},
    )

    assert response.status_code == 204
    assert response.content == b""
    delivery = hook.deliveries[0]
    assert delivery.is_json
    assert delivery.json == {"event": "eol", "product": "alpine"}
    assert delivery.headers["x-imglife-signature"] == "sha256=abc"
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.query == "source=imglife"
    assert hook.payloads == [{"event": "eol", "product": "alpine"}]


def test_receiver_status_is_configurable(http: httpx.Client) -> None:
    with FakeWebhookReceiver(path="/notify", status=202) as hook:
        assert http.post(hook.webhook_url, json={}).status_code == 202
        hook.status = 503
        failed = http.post(hook.webhook_url, json={"n": 2})

    assert (failed.status_code, failed.text) == (503, "Service Unavailable")
    assert [d.status for d in hook.deliveries] == [202, 503]
    assert hook.payloads == [{}, {"n": 2}]  # a delivery answered 503 still arrived


def test_receiver_refuses_non_json_unless_told_otherwise(http: httpx.Client) -> None:
    with FakeWebhookReceiver() as strict, FakeWebhookReceiver(require_json=False) as lenient:
        refused = http.post(strict.webhook_url, content=b"plain words")
        taken = http.post(lenient.webhook_url, content=b"plain words")

    assert (refused.status_code, refused.text) == (400, "invalid JSON body")
    assert taken.status_code == 204
    for receiver in (strict, lenient):
        assert [(d.body, d.is_json) for d in receiver.deliveries] == [(b"plain words", False)]
        assert receiver.payloads == []


def test_receiver_fail_next_is_not_a_delivery(hook: FakeWebhookReceiver, http: httpx.Client) -> None:
    hook.fail_next("POST", "^/hook$", 502)

    failed = http.post(hook.webhook_url, json={"try": 1})
    retried = http.post(hook.webhook_url, json={"try": 2})

    assert (failed.status_code, retried.status_code) == (502, 204)
    assert hook.payloads == [{"try": 2}]
    assert hook.request_count("POST", "^/hook$") == 2


def test_receiver_other_paths_and_methods(hook: FakeWebhookReceiver, http: httpx.Client) -> None:
    assert http.post(f"{hook.url}/elsewhere", json={}).status_code == 404
    assert http.get(hook.webhook_url).status_code == 405
    assert hook.deliveries == []


def test_receiver_wait_for_deliveries(hook: FakeWebhookReceiver) -> None:
    sender = threading.Thread(target=lambda: httpx.post(hook.webhook_url, json={"bg": True}, verify=TLS))
    sender.start()

    deliveries = hook.wait_for_deliveries(1, timeout=5)

    sender.join()
    assert deliveries[0].json == {"bg": True}
    hook.reset()
    assert hook.deliveries == []
