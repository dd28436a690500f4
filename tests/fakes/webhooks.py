"""In-process webhook receivers: a Slack incoming webhook and a generic JSON webhook.

:class:`FakeSlack` follows Slack's incoming-webhook behaviour (``tests/fakes/README.md`` lists
the sources): a JSON ``POST`` with ``text`` and/or ``blocks`` gets ``200`` and the body ``ok``;
errors are a **bare code word** in the body (``invalid_payload``, ``no_text``, ...) with a status
from Slack's table, never JSON. Bodies are ``text/html``, as hooks.slack.com sends them.

:class:`FakeWebhookReceiver` is the receiving end of a generic JSON webhook: it records every
delivery (headers and body) and answers a configurable status (``204`` by default).

Both inherit :class:`~tests.fakes.server.FakeServer`: ``fail_next``, ``latency``, ``requests``::

    with FakeSlack() as slack:
        httpx.post(slack.webhook_url, json={"text": "3.19 is EOL"})
        assert slack.texts == ["3.19 is EOL"]
        slack.set_error("channel_is_archived")     # every post now answers 410

    with FakeWebhookReceiver(status=200) as hook:
        httpx.post(hook.webhook_url, json={"event": "eol"}, headers={"X-Signature": "..."})
        assert hook.deliveries[0].headers["x-signature"] == "..."
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs

from aiohttp import web

from .server import TEXT_CONTENT_TYPE, Call, FakeServer, HTTPFault, Router

__all__ = [
    "DEFAULT_HOOK_PATH",
    "DEFAULT_SLACK_PATH",
    "SLACK_ERRORS",
    "Delivery",
    "FakeSlack",
    "FakeWebhookReceiver",
    "SlackPost",
]

# Shape of a real webhook URL (https://hooks.slack.com/services/T.../B.../secret).
DEFAULT_SLACK_PATH = "/services/T000/B000/XXXX"
DEFAULT_HOOK_PATH = "/hook"
DEFAULT_WAIT_TIMEOUT = 5.0  # seconds wait_for_* blocks before failing the test

# hooks.slack.com answers webhook posts as text/html (grafana/alerting#67), success and errors.
SLACK_CONTENT_TYPE = "text/html"
SLACK_OK = b"ok"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
FORM_PAYLOAD_FIELD = "payload"  # the legacy form-encoded variant: payload=<json>

# Error code -> HTTP status. Slack's changelog of 2016-05-17 (incoming-webhook errors) for the
# first six; the rest as Slack answers them in the field (README lists where each comes from).
SLACK_ERRORS: Final[Mapping[str, int]] = {
    "invalid_payload": 400,
    "user_not_found": 400,
    "action_prohibited": 403,
    "channel_not_found": 404,
    "channel_is_archived": 410,
    "rollup_error": 500,
    "no_text": 400,
    "invalid_blocks": 400,
    "no_service": 404,
    "rate_limited": 429,
}
# What fail_next sends for a status when the test gives no body: Slack's code for that status.
SLACK_STATUS_CODES: Final[Mapping[int, str]] = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "channel_not_found",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "rollup_error",
}
# Fields that make a Slack message non-empty (attachments are the legacy way, still accepted).
SLACK_CONTENT_FIELDS = ("text", "blocks", "attachments")

HOOK_INVALID_JSON = b"invalid JSON body"


@dataclass(frozen=True)
class SlackPost:
    """One post to the webhook path as the handler saw it; ``payload`` is None when unreadable."""

    payload: dict[str, Any] | None
    status: int
    error: str | None  # Slack's code word, None when accepted
    content_type: str
    received_at: datetime


@dataclass(frozen=True)
class Delivery:
    """One delivery to a :class:`FakeWebhookReceiver`; header names are lower-case."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    is_json: bool
    json: Any  # the parsed body when is_json (JSON null parses to None, hence is_json)
    status: int
    received_at: datetime


def _slack_fault(code: str, headers: Mapping[str, str] | None = None) -> HTTPFault:
    return HTTPFault(
        SLACK_ERRORS[code], code.encode(), content_type=SLACK_CONTENT_TYPE, headers=headers or {}
    )


def _slack_error_for(payload: Any) -> str | None:
    """Slack's verdict on a parsed body: None when it would post the message."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    blocks = payload.get("blocks")
    if blocks is not None and not (
        isinstance(blocks, list)
        and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks)
    ):
        return "invalid_blocks"
    if not any(payload.get(key) for key in SLACK_CONTENT_FIELDS):
        # A JSON object without content: Slack says no_text (gitlab#332611), not invalid_payload.
        return "no_text"
    return None


def _decode_slack_body(content_type: str, body: bytes) -> Any:
    """The JSON document in a Slack post; raises ValueError when there is none."""
    if content_type == FORM_CONTENT_TYPE:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        values = fields.get(FORM_PAYLOAD_FIELD)
        if not values:
            raise ValueError("no payload field")
        return json.loads(values[0])
    # Slack reads the body as JSON whatever the declared type (curl's default is form-encoded).
    return json.loads(body.decode("utf-8"))


class _Waitable(FakeServer):
    """A condition on the fake's lock, so tests can wait for deliveries made in the background."""

    def __init__(self, *, latency: float, clock: Callable[[], datetime] | None) -> None:
        super().__init__(latency=latency, clock=clock)
        self._arrived = threading.Condition(self.lock)

    def _notify(self) -> None:
        with self._arrived:
            self._arrived.notify_all()

    def _wait(self, count: int, size: Callable[[], int], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while size() < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{type(self).__name__}: {size()} {what} after {timeout}s, wanted {count}"
                    )
                self._arrived.wait(remaining)


class FakeSlack(_Waitable):
    """A Slack incoming webhook at ``webhook_url`` (path ``path``); other paths are ``no_service``."""

    thread_name = "fake-slack"

    def __init__(
        self,
        *,
        path: str = DEFAULT_SLACK_PATH,
        latency: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        self.path = path
        self._messages: list[dict[str, Any]] = []
        self._posts: list[SlackPost] = []
        self._error: str | None = None
        super().__init__(latency=latency, clock=clock)

    # ------------------------------------------------------------------ test API

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{self.path}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every accepted payload (parsed JSON), oldest first."""
        with self.lock:
            return copy.deepcopy(self._messages)

    @property
    def texts(self) -> list[str | None]:
        """The ``text`` of every accepted message (None for blocks-only messages)."""
        return [m.get("text") for m in self.messages]

    @property
    def posts(self) -> list[SlackPost]:
        """Every post that reached the webhook handler, accepted or refused (not fail_next ones)."""
        with self.lock:
            return list(self._posts)

    def set_error(self, code: str | None) -> None:
        """Refuse every post from now on with Slack's ``code`` (see SLACK_ERRORS); None accepts again.

        ``no_service`` is a revoked webhook, ``channel_is_archived`` an archived channel, ...
        """
        if code is not None and code not in SLACK_ERRORS:
            raise ValueError(f"unknown Slack error {code!r}; known: {', '.join(SLACK_ERRORS)}")
        with self.lock:
            self._error = code

    def rate_limit_next(self, retry_after: int = 1, *, times: int | None = 1) -> None:
        """Answer the next ``times`` posts ``429`` with ``Retry-After`` (Slack allows ~1 post/s)."""
        self.fail_next(
            "POST",
            f"^{re.escape(self.path)}$",
            SLACK_ERRORS["rate_limited"],
            times=times,
            body="rate_limited",
            headers={"Retry-After": str(retry_after), "Content-Type": SLACK_CONTENT_TYPE},
        )

    def wait_for_messages(self, count: int, timeout: float = DEFAULT_WAIT_TIMEOUT) -> list[dict[str, Any]]:
        """Block until ``count`` messages were accepted (for senders running in the background)."""
        self._wait(count, lambda: len(self._messages), "messages", timeout)
        return self.messages

    def reset(self) -> None:
        """Forget messages and posts; keeps any set_error."""
        with self.lock:
            self._messages.clear()
            self._posts.clear()

    # ------------------------------------------------------------------ server hooks

    def routes(self, router: Router) -> None:
        router.post(self.path, self._post)

    def route_not_found(self, method: str, path: str) -> HTTPFault:
        # A URL that is not (or no longer) a webhook.
        return _slack_fault("no_service")

    def default_fault_body(self, status: int) -> tuple[bytes, str]:
        code = SLACK_STATUS_CODES.get(status)
        if code is None:
            return super().default_fault_body(status)
        return code.encode(), SLACK_CONTENT_TYPE

    async def _post(self, call: Call) -> web.StreamResponse:
        content_type = (call.header("Content-Type") or "").split(";")[0].strip().lower()
        payload: Any = None
        with self.lock:
            error = self._error
        if error is None:
            try:
                payload = _decode_slack_body(content_type, call.body)
            except (ValueError, UnicodeDecodeError):
                error = "invalid_payload"
            else:
                error = _slack_error_for(payload)
        post = SlackPost(
            payload=payload if isinstance(payload, dict) else None,
            status=SLACK_ERRORS[error] if error else 200,
            error=error,
            content_type=content_type,
            received_at=self.now(),
        )
        with self.lock:
            self._posts.append(post)
            if error is None:
                self._messages.append(payload)
        self._notify()
        if error is not None:
            raise _slack_fault(error)
        return web.Response(status=200, body=SLACK_OK, headers={"Content-Type": SLACK_CONTENT_TYPE})


class FakeWebhookReceiver(_Waitable):
    """A generic JSON webhook endpoint at ``webhook_url``: records deliveries, answers ``status``.

    With ``require_json`` (default) a body that is not JSON gets ``400`` (it is still recorded).
    Requests answered by ``fail_next`` are not deliveries: they never reached the receiver.
    """

    thread_name = "fake-webhook"

    def __init__(
        self,
        *,
        path: str = DEFAULT_HOOK_PATH,
        status: int = HTTPStatus.NO_CONTENT,
        require_json: bool = True,
        latency: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        self.path = path
        self.require_json = require_json
        self._status = int(status)
        self._deliveries: list[Delivery] = []
        super().__init__(latency=latency, clock=clock)

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{self.path}"

    @property
    def status(self) -> int:
        """The status every delivery is answered with (settable while running)."""
        with self.lock:
            return self._status

    @status.setter
    def status(self, value: int) -> None:
        with self.lock:
            self._status = int(value)

    @property
    def deliveries(self) -> list[Delivery]:
        with self.lock:
            return list(self._deliveries)

    @property
    def payloads(self) -> list[Any]:
        """The parsed JSON of every delivery that was JSON, oldest first."""
        return [copy.deepcopy(d.json) for d in self.deliveries if d.is_json]

    def wait_for_deliveries(self, count: int, timeout: float = DEFAULT_WAIT_TIMEOUT) -> list[Delivery]:
        """Block until ``count`` deliveries arrived (for senders running in the background)."""
        self._wait(count, lambda: len(self._deliveries), "deliveries", timeout)
        return self.deliveries

    def reset(self) -> None:
        with self.lock:
            self._deliveries.clear()

    def routes(self, router: Router) -> None:
        router.post(self.path, self._deliver)

    async def _deliver(self, call: Call) -> web.StreamResponse:
        try:
            document, is_json = json.loads(call.body.decode("utf-8")), True
        except (ValueError, UnicodeDecodeError):
            document, is_json = None, False
        refused = self.require_json and not is_json
        status = HTTPStatus.BAD_REQUEST if refused else self.status
        delivery = Delivery(
            method=call.method,
            path=call.request.rel_url.raw_path,
            query=call.request.rel_url.raw_query_string,
            headers={k.lower(): v for k, v in call.request.headers.items()},
            body=call.body,
            is_json=is_json,
            json=document,
            status=int(status),
            received_at=self.now(),
        )
        with self.lock:
            self._deliveries.append(delivery)
        self._notify()
        if refused:
            return web.Response(status=status, body=HOOK_INVALID_JSON, content_type=TEXT_CONTENT_TYPE)
        if status < HTTPStatus.BAD_REQUEST:
            return web.Response(status=status)  # success answers carry no body
        return web.Response(status=status, text=_phrase(status), content_type=TEXT_CONTENT_TYPE)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
