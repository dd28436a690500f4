"""Keep secrets out of every line imglife writes (pure, process-wide registry of secret values).

Two layers: every secret value imglife reads (env tokens, passwords, docker config entries,
tokens from a realm) is registered with :func:`register_secret` and replaced wherever it shows
up; and shapes that carry secrets whoever produced them (``Authorization`` values, URL
user-info, ``token=``-style query parameters) are masked by pattern.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

MASK = "***"
# Shorter values would mask ordinary words; such weak secrets are still masked by the patterns.
MIN_SECRET_LENGTH = 4
SECRET_KEY_RE = re.compile(
    r"(pass(word|wd)?|secret|token|authorization|auth|credential|api[_-]?key|private[_-]?key|cookie)",
    re.IGNORECASE,
)
# Each pattern with a cheap test that must pass before the regex can match: log lines are mostly
# short words and numbers, and running four regexes over each value cost more than the rest of
# the logging (measured: ~100 µs of ~210 µs per event).
_PATTERNS: tuple[tuple[Callable[[str], bool], re.Pattern[str], str], ...] = (
    (
        lambda t: "bearer" in (low := t.lower()) or "basic" in low,
        re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
        rf"\1 {MASK}",
    ),
    (
        lambda t: "@" in t and "://" in t,
        re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@"),
        rf"\1{MASK}@",
    ),
    (
        lambda t: "=" in t,
        re.compile(
            r"(?i)([?&](?:access_token|refresh_token|token|password|secret|signature|x-amz-signature)=)[^&\s]+"
        ),
        rf"\1{MASK}",
    ),
    (
        lambda t: '"' in t,
        re.compile(r"(?i)(\"(?:token|access_token|refresh_token|password|secret)\"\s*:\s*\")[^\"]*"),
        rf"\1{MASK}",
    ),
)

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it appears later."""
    global _secret_re
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets.add(value)
        # Longest first, so a secret that contains another is masked whole.
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def redact_text(text: str) -> str:
    """Mask registered secrets and secret-shaped substrings in ``text``."""
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for may_match, regex, replacement in _PATTERNS:
        if may_match(text):
            text = regex.sub(replacement, text)
    return text


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return SECRET_KEY_RE.search(key) is not None  # the same few keys come back in every event


def redact_value(key: str | None, value: Any) -> Any:
    """Redact one value; values under secret-looking keys are masked whole."""
    # Numbers and flags under such keys (token_requests=3) carry no secret; strings might.
    if key is not None and _secret_key(key) and isinstance(value, str | bytes) and value:
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(None, v) for v in value)
    if isinstance(value, BaseException):
        return redact_text(str(value))
    return value


def redact_event(_logger: object, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: redact every field of a log event (keys ``event`` and ``exception`` too)."""
    return {
        key: redact_value(None if key in ("event", "exception") else key, value)
        for key, value in event_dict.items()
    }
