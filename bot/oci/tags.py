"""Remove one tag without touching the others, on registries that delete by digest.

distribution (and most registries) cannot delete a tag: ``DELETE /manifests/<digest>`` removes
the manifest and with it **every** tag pointing at that digest, and a manifest deleted while an
index lists it breaks that index. :func:`remove_tag` therefore deletes a tag's digest directly
only when nothing else in the repository uses it; otherwise it re-points the tag to a unique
throwaway manifest (the OCI empty config ``{}``, no layers, a random annotation) and deletes the
throwaway's digest, which only that tag points at. If that last delete fails, the tag is put back
on its original manifest (same bytes, same digest), so a registry that refuses deletes is left as
it was, apart from an untagged throwaway of a few hundred bytes.

Whether a digest is shared is the caller's knowledge (:class:`TagSet` holds what a repository's
tags point at); the helper re-reads the tag first, so a tag re-pushed since it was examined is
reported (:class:`TagMoved`) instead of deleted.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import structlog

from bot.errors import NotFoundError, RegistryError
from bot.oci.client import Manifest, RegistryClient
from bot.oci.reference import ImageReference
from bot.oci.sansio import OCI_MANIFEST, manifest_children, sha256_digest

# The OCI 1.1 "empty" descriptor: the two bytes ``{}`` as a config for artifacts without one.
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DIGEST = sha256_digest(EMPTY_BLOB)
THROWAWAY_ANNOTATION = "org.imglife.cleanup.throwaway"
RESOLVE_CONCURRENCY = 8

MSG_MOVED = "{ref} now points at {current}, not at {expected} as when it was examined; left in place"
MSG_RESTORED = "cannot delete {ref}: {error}; the tag was put back on {digest}"
MSG_NOT_RESTORED = (
    "cannot delete {ref}: {error}; putting the tag back on {digest} failed too ({restore}): "
    "it now points at the empty throwaway manifest {throwaway}"
)

log = structlog.get_logger(__name__)


class Removal(StrEnum):
    DELETED = "deleted"  # the digest was deleted: no other tag used it
    UNTAGGED = "untagged"  # re-pointed to a throwaway, which was deleted: the digest stays for others
    ABSENT = "absent"  # the tag was already gone


class TagMoved(RegistryError):
    """The tag points at another manifest than the one the caller decided about."""


@dataclass(frozen=True, slots=True)
class TagTarget:
    """What a tag points at: its manifest digest and, for an index, the digests it lists."""

    digest: str
    children: tuple[str, ...] = ()


def index_children(manifest: Manifest) -> tuple[str, ...]:
    """The digests of the manifests an index lists (empty for an image manifest)."""
    return tuple(str(entry["digest"]) for entry in manifest_children(manifest.json()) if entry.get("digest"))


class TagSet:
    """The tags of one repository and what they point at, as known to the caller (mutable)."""

    def __init__(self, targets: Mapping[str, TagTarget] | None = None) -> None:
        self._targets: dict[str, TagTarget] = dict(targets or {})

    def __contains__(self, tag: object) -> bool:
        return tag in self._targets

    def __len__(self) -> int:
        return len(self._targets)

    def set(self, tag: str, target: TagTarget) -> None:
        self._targets[tag] = target

    def discard(self, tag: str) -> None:
        self._targets.pop(tag, None)

    def get(self, tag: str) -> TagTarget | None:
        return self._targets.get(tag)

    def shares(self, tag: str, digest: str) -> bool:
        """Whether another tag points at ``digest`` or at an index that lists it."""
        return any(
            other != tag and (target.digest == digest or digest in target.children)
            for other, target in self._targets.items()
        )

    def shared_with(self, tag: str) -> Callable[[str], bool]:
        """:meth:`shares` for one tag, in the form :func:`remove_tag` takes."""
        return lambda digest: self.shares(tag, digest)


def throwaway_manifest(nonce: str | None = None) -> bytes:
    """A minimal OCI manifest that no other tag can share: empty config, no layers, a random note."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": len(EMPTY_BLOB)},
        "layers": [],
        "annotations": {THROWAWAY_ANNOTATION: nonce or secrets.token_hex(16)},
    }
    return json.dumps(document, separators=(",", ":")).encode()


async def resolve_tags(
    client: RegistryClient,
    repo: ImageReference,
    tags: Iterable[str],
    *,
    concurrency: int = RESOLVE_CONCURRENCY,
) -> TagSet:
    """Read what each tag points at (tags that vanish meanwhile are left out)."""
    slots = asyncio.Semaphore(concurrency)
    found = TagSet()

    async def resolve(tag: str) -> None:
        async with slots:
            try:
                manifest = await client.get_manifest(repo.with_tag(tag))
            except NotFoundError:
                return
        found.set(tag, TagTarget(manifest.digest, index_children(manifest)))

    await asyncio.gather(*(resolve(tag) for tag in tags))
    return found


async def remove_tag(
    client: RegistryClient,
    ref: ImageReference,
    *,
    shared: Callable[[str], bool],
    expected_digest: str | None = None,
) -> Removal:
    """Remove the tag ``ref.tag`` and nothing else (see the module docstring).

    ``shared(digest)`` says whether another tag of the repository uses the tag's digest;
    ``expected_digest`` (when given) must still be what the tag points at, else :class:`TagMoved`.
    """
    if ref.tag is None or ref.digest is not None:
        raise ValueError(f"remove_tag needs a reference by tag, got {ref}")
    current = await client.head_manifest(ref)
    if current is None:
        return Removal.ABSENT
    if expected_digest is not None and current.digest != expected_digest:
        raise TagMoved(MSG_MOVED.format(ref=ref, current=current.digest, expected=expected_digest))
    if not shared(current.digest):
        await client.delete_manifest(ref.with_digest(current.digest))
        return Removal.DELETED
    # Kept to put the tag back if the throwaway cannot be deleted (same bytes: same digest).
    original = await client.get_manifest(ref.with_digest(current.digest))
    await client.push_blob(ref, EMPTY_DIGEST, len(EMPTY_BLOB), EMPTY_BLOB)
    throwaway = await client.put_manifest(ref, throwaway_manifest(), OCI_MANIFEST)
    try:
        await client.delete_manifest(ref.with_digest(throwaway))
    except RegistryError as exc:
        try:
            await client.put_manifest(ref, original.raw, original.media_type)
        except RegistryError as restore:
            raise RegistryError(
                MSG_NOT_RESTORED.format(
                    ref=ref, error=exc, digest=original.digest, restore=restore, throwaway=throwaway
                ),
                status=exc.status,
            ) from exc
        log.info("tag_restored", ref=str(ref), digest=original.digest, error=str(exc))
        raise RegistryError(
            MSG_RESTORED.format(ref=ref, error=exc, digest=original.digest), status=exc.status
        ) from exc
    return Removal.UNTAGGED
