"""What both forge webhook parsers share (pure): the rejection error, headers, secrets, JSON, fields.

Every function here works on ``(headers, bytes)`` or on decoded JSON values and never does IO, so
the aiohttp view stays thin (house-style §3.3-3.4): it reads the body, calls a parser, and turns a
:class:`WebhookRejected` into an HTTP answer with ``status`` and ``reason``.

Reasons are short constant texts plus, at most, names that come from this code (header and field
names): never the secret, never the body, never a value the sender chose, so they are safe to send
back and to log.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from typing import NoReturn

import orjson

# GitLab caps webhook request bodies at 25 MB (REQUEST_BODY_SIZE_LIMIT in
# app/services/web_hook_service.rb, reference/forge-protocols.md §1.1.1); the server enforces the
# same limit (SPEC §6.1), this is the parsers' own guard when called from elsewhere.
MAX_BODY_BYTES = 25 * 1024 * 1024

BAD_REQUEST = 400
UNAUTHORIZED = 401
PAYLOAD_TOO_LARGE = 413
UNSUPPORTED_MEDIA_TYPE = 415

JSON_MEDIA_TYPE = "application/json"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"

SECRET_NOT_CONFIGURED = "webhook secret not configured"  # noqa: S105 (a message)
BODY_TOO_LARGE = f"body larger than {MAX_BODY_BYTES} bytes"
NOT_JSON_CONTENT = "Content-Type must be application/json"
BODY_NOT_JSON = "body is not valid JSON"
BODY_NOT_OBJECT = "JSON body is not an object"
FIELD_MISSING = "field {field} missing"
FIELD_WRONG_TYPE = "field {field} is not {kind}"

REFS_HEADS = "refs/heads/"
REFS_TAGS = "refs/tags/"
# Git object names: SHA-1 (40 hex) or SHA-256 (64 hex) repositories. Checking the shape keeps a
# forged-but-authentic oddity (say "../x") out of the API paths handlers build from it.
_SHA_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")

# Secrets and header values are compared as UTF-8 bytes. "surrogatepass" keeps a value holding lone
# surrogates (aiohttp never produces one, another caller's Mapping might) comparable: a 401, not a
# UnicodeEncodeError.
_ENCODING = "utf-8"
_ENCODING_ERRORS = "surrogatepass"


class WebhookRejected(Exception):
    """A delivery that must not be processed; ``status`` is the HTTP answer, ``reason`` its text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def __repr__(self) -> str:
        return f"WebhookRejected({self.status}, {self.reason!r})"


def reject(status: int, reason: str) -> NoReturn:
    raise WebhookRejected(status, reason)


# --------------------------------------------------------------------------- headers


def normalise_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-case the header names; HTTP names are case-insensitive (RFC 9110 §5.1).

    For a multi-dict with repeated names the first value wins, as ``CIMultiDict.get`` does, so the
    parser sees what the aiohttp view would see.
    """
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value)
    return lowered


def first_header(headers: Mapping[str, str], *names: str) -> str | None:
    """The first of ``names`` (lower-case) that is present, or None."""
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value
    return None


def media_type(headers: Mapping[str, str]) -> str | None:
    """The bare, lower-case media type: ``Application/JSON; charset=utf-8`` → ``application/json``."""
    value = headers.get("content-type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower()


def is_null_sha(sha: str) -> bool:
    """True for the all-zeros name both forges send as ``after`` when a ref is deleted."""
    return set(sha) == {"0"}


def ref_kind(ref: str) -> str | None:
    """``refs/heads/`` or ``refs/tags/`` when ``ref`` is a branch or tag with a name, else None."""
    for prefix in (REFS_HEADS, REFS_TAGS):
        if ref.startswith(prefix) and len(ref) > len(prefix):
            return prefix
    return None


def full_ref(name: str, prefix: str) -> str:
    """``v1.0`` → ``refs/tags/v1.0``; a name that is already a full ref is kept."""
    return name if name.startswith("refs/") else prefix + name


def check_size(body: bytes) -> None:
    if len(body) > MAX_BODY_BYTES:
        reject(PAYLOAD_TOO_LARGE, BODY_TOO_LARGE)


def require_json_content(headers: Mapping[str, str]) -> None:
    if media_type(headers) != JSON_MEDIA_TYPE:
        reject(UNSUPPORTED_MEDIA_TYPE, NOT_JSON_CONTENT)


# --------------------------------------------------------------------------- secrets


def to_bytes(value: str) -> bytes:
    return value.encode(_ENCODING, _ENCODING_ERRORS)


def constant_time_equals(received: bytes, expected: bytes) -> bool:
    """Compare secrets without a timing side channel (forge-protocols.md §4.3: gidgetlab uses ``!=``).

    ``hmac.compare_digest`` still reveals the length; a token's length is not the token.
    """
    return hmac.compare_digest(received, expected)


def require_secret(secret: str | None) -> bytes:
    """The configured secret as bytes; none configured means nobody is authentic (fail closed)."""
    if not secret:
        reject(UNAUTHORIZED, SECRET_NOT_CONFIGURED)
    return to_bytes(secret)


# --------------------------------------------------------------------------- JSON


def decode_json_object(body: bytes) -> dict[str, object]:
    """Decode a JSON object, or reject with 400 (never a ValueError or RecursionError escaping)."""
    try:
        # orjson: a quarter of json's cost on a GitLab payload, and it refuses NaN/Infinity itself.
        value: object = orjson.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError, UnicodeDecodeError and the int-digits limit (the
        # CVE-2020-10735 guard); RecursionError covers deeply nested arrays and objects.
        reject(BAD_REQUEST, BODY_NOT_JSON)
    if not isinstance(value, dict):
        reject(BAD_REQUEST, BODY_NOT_OBJECT)
    return value


# --------------------------------------------------------------------------- payload fields


class Fields:
    """Typed reads from one JSON object; any missing or mistyped field becomes a 400 naming it.

    ``path`` is the dotted location of this object in the payload, used only in reasons.
    """

    __slots__ = ("_data", "_path")

    def __init__(self, data: Mapping[str, object], path: str = "") -> None:
        self._data = data
        self._path = path

    def _name(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def missing(self, key: str) -> NoReturn:
        """Reject the delivery because ``key`` is absent (for checks the typed reads can't make)."""
        reject(BAD_REQUEST, FIELD_MISSING.format(field=self._name(key)))

    def wrong(self, key: str, kind: str) -> NoReturn:
        """Reject the delivery because ``key`` is not ``kind`` ("a tag name", "an integer")."""
        reject(BAD_REQUEST, FIELD_WRONG_TYPE.format(field=self._name(key), kind=kind))

    def raw(self, key: str) -> object:
        """The value as decoded, None when absent; for checks that need no type."""
        return self._data.get(key)

    def has(self, key: str) -> bool:
        return self._data.get(key) is not None

    def obj(self, key: str) -> Fields:
        found = self.opt_obj(key)
        if found is None:
            self.missing(key)
        return found

    def opt_obj(self, key: str) -> Fields | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.wrong(key, "an object")
        return Fields(value, self._name(key))

    def text(self, key: str) -> str:
        """A non-empty string."""
        found = self.opt_text(key)
        if found is None:
            self.missing(key)
        return found

    def opt_text(self, key: str) -> str | None:
        """A string, None when absent, null or empty (GitLab sends ``""`` for absent SHAs)."""
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            self.wrong(key, "a string")
        return value or None

    def string(self, key: str) -> str:
        """A string that may be empty (a comment body); absent or null is still missing."""
        value = self._data.get(key)
        if value is None:
            self.missing(key)
        if not isinstance(value, str):
            self.wrong(key, "a string")
        return value

    def sha(self, key: str) -> str:
        found = self.opt_sha(key)
        if found is None:
            self.missing(key)
        return found

    def opt_sha(self, key: str) -> str | None:
        value = self.opt_text(key)
        if value is not None and not _SHA_RE.fullmatch(value):
            self.wrong(key, "a commit SHA")
        return value

    def integer(self, key: str) -> int:
        found = self.opt_integer(key)
        if found is None:
            self.missing(key)
        return found

    def opt_integer(self, key: str) -> int | None:
        value = self._data.get(key)
        if value is None:
            return None
        # bool is an int subclass: ``true`` is not an id.
        if not isinstance(value, int) or isinstance(value, bool):
            self.wrong(key, "an integer")
        return value

    def flag(self, key: str, *, default: bool = False) -> bool:
        value = self._data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.wrong(key, "a boolean")
        return value
