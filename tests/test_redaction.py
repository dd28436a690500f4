"""Secrets are masked wherever they would be written."""

from bot.redaction import MASK, redact_event, redact_text, register_secret


def test_registered_secrets_are_masked_anywhere_in_text():
    register_secret("zq-registered-secret-91")
    assert redact_text("failed with zq-registered-secret-91 in it") == f"failed with {MASK} in it"


def test_secret_shapes_are_masked_without_registration():
    assert "abc.def" not in redact_text("Authorization: Bearer abc.def")
    assert redact_text("Basic dXNlcjpwYXNz") == f"Basic {MASK}"
    assert redact_text("https://user:pa55@host/x") == f"https://{MASK}@host/x"
    assert (
        redact_text("GET https://s3/x?X-Amz-Signature=deadbeef&a=1")
        == f"GET https://s3/x?X-Amz-Signature={MASK}&a=1"
    )
    assert redact_text('{"token": "eyJabc"}') == f'{{"token": "{MASK}"}}'


def test_log_events_mask_secret_keys_and_nested_values():
    register_secret("zq-nested-secret-42")
    event = redact_event(
        None,
        "info",
        {
            "event": "registry_request",
            "password": "whatever",
            "headers": {"Authorization": "Bearer x"},
            "detail": ["ok", "zq-nested-secret-42"],
            "token_requests": 3,
        },
    )
    assert event["password"] == MASK
    assert event["headers"] == {"Authorization": MASK}
    assert event["detail"] == ["ok", MASK]
    assert event["event"] == "registry_request"
    assert event["token_requests"] == 3


def test_short_values_are_not_registered_as_secrets():
    register_secret("ab")
    assert redact_text("ab cd") == "ab cd"
