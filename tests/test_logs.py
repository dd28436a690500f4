"""Log output: text or JSON on the chosen stream, with secrets masked in every line."""

import io
import json
import logging

import pytest
import structlog

from bot.logs import configure_logging
from bot.redaction import register_secret

SECRET = "zq-log-secret-5d1e77"


@pytest.fixture(autouse=True)
def reset_logging():
    yield
    logging.getLogger().handlers = []
    structlog.reset_defaults()


def test_json_lines_carry_event_fields_and_mask_secrets():
    register_secret(SECRET)
    stream = io.StringIO()
    configure_logging(fmt="json", level="info", stream=stream)
    structlog.get_logger("t").info(
        "registry_request", registry="r.io", detail=f"token {SECRET}", password="pw"
    )
    structlog.get_logger("t").debug("hidden_below_level")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1
    event = lines[0]
    assert event["event"] == "registry_request"
    assert event["registry"] == "r.io"
    assert event["level"] == "info"
    assert event["detail"] == "token ***"
    assert event["password"] == "***"
    assert "timestamp" in event


def test_standard_library_loggers_are_formatted_and_redacted_too():
    register_secret(SECRET)
    stream = io.StringIO()
    configure_logging(fmt="json", level="debug", stream=stream)
    logging.getLogger("httpx").debug(
        "HTTP Request: GET https://user:%s@r.io/v2/ Authorization: Bearer abc", SECRET
    )
    (line,) = stream.getvalue().splitlines()
    event = json.loads(line)
    assert SECRET not in line
    assert "Bearer abc" not in line
    assert event["logger"] == "httpx"


def test_exceptions_in_logs_are_redacted():
    register_secret(SECRET)
    stream = io.StringIO()
    configure_logging(fmt="text", level="info", stream=stream)
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        structlog.get_logger("t").exception("job_failed")
    assert "job_failed" in stream.getvalue()
    assert SECRET not in stream.getvalue()


def test_chatty_libraries_stay_quiet_unless_debugging():
    stream = io.StringIO()
    configure_logging(fmt="text", level="info", stream=stream)
    logging.getLogger("httpx").info("HTTP Request: GET https://r.io/v2/")
    assert stream.getvalue() == ""
