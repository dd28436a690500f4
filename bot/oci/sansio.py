"""The registry protocol without IO: media types, challenges, scopes, pagination, digests.

Everything here takes and returns plain values so it can be tested without a network.
OCI distribution spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
# distribution 2.8 answers 404 for an OCI index when the Accept header does not name it, so the
# header always lists all four (services.md §1).
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST])
# The distribution spec asks registries to accept manifests of at least 4 MiB; anything larger is
# not a manifest we should hold in memory.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024

_CHALLENGE_PARAM_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')
_LINK_RE = re.compile(r"<([^>]*)>\s*;\s*([^,]*)")


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a registry tells about a manifest or blob: its media type, digest and size."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True, slots=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: scheme (lower-case) and its parameters."""

    scheme: str
    params: Mapping[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        scope = self.params.get("scope", "")
        return tuple(s for s in scope.split(" ") if s)


@dataclass(frozen=True, slots=True)
class RegistryErrorBody:
    """The first entry of a registry's ``{"errors": [...]}`` body."""

    code: str | None
    message: str | None


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse one ``WWW-Authenticate`` challenge (registries send exactly one)."""
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM_RE.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else (bare or "")
        params[match.group(1).lower()] = value
    return Challenge(scheme=scheme.lower(), params=params)


def repository_scope(repository: str, actions: Iterable[str]) -> str:
    return f"repository:{repository}:{','.join(sorted(set(actions)))}"


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """Union scopes per resource (``repository:a:pull`` + ``repository:a:push`` → ``pull,push``).

    The result is sorted, so it doubles as a stable token-cache key.
    """
    merged: dict[str, set[str]] = {}
    for group in groups:
        for scope in group:
            resource, _, actions = scope.rpartition(":")
            if not resource:
                continue
            merged.setdefault(resource, set()).update(a for a in actions.split(",") if a)
    return tuple(f"{resource}:{','.join(sorted(actions))}" for resource, actions in sorted(merged.items()))


def next_page_url(link_header: str | None, current_url: str) -> str | None:
    """Return the absolute URL of the ``rel="next"`` page from a ``Link`` header."""
    if not link_header:
        return None
    for target, params in _LINK_RE.findall(link_header):
        if re.search(r'rel\s*=\s*"?next"?', params):
            return urljoin(current_url, str(target))
    return None


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def parse_error_body(body: bytes) -> RegistryErrorBody:
    try:
        data = json.loads(body)
        first = data["errors"][0]
        message = first.get("message")
        return RegistryErrorBody(
            code=str(first.get("code") or "") or None, message=str(message) if message is not None else None
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return RegistryErrorBody(code=None, message=None)


def media_type_of(body: bytes, content_type: str | None) -> str:
    """The manifest's media type: its ``mediaType`` field, else the response's Content-Type."""
    try:
        declared = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        declared = None
    if isinstance(declared, str) and declared:
        return declared
    return (content_type or "").split(";")[0].strip()


def manifest_children(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The descriptors of an index's child manifests."""
    children = manifest.get("manifests") or []
    return [c for c in children if isinstance(c, dict)]


def manifest_blobs(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The config and layer descriptors of an image manifest."""
    blobs: list[dict[str, Any]] = []
    config = manifest.get("config")
    if isinstance(config, dict):
        blobs.append(config)
    blobs.extend(layer for layer in manifest.get("layers") or [] if isinstance(layer, dict))
    return blobs
