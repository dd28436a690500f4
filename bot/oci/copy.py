"""Digest-preserving image copies between registries (the engine under ``imglife sync``).

A copy pushes content bottom-up: every blob of an image before its manifest, every child
manifest (by digest) before its index, and the tag last, so a failure half-way never leaves a
tag pointing at missing content. Without a platform filter the bytes are copied as served, so
the digest stays the same; a filter over an index makes a new, smaller index.

Blobs already in the target are skipped, mounted from another repository of the same registry
when one is known to hold them, and otherwise streamed from source to target piece by piece.
One semaphore per :class:`ImageCopier` bounds the blob transfers of all its concurrent copies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from bot.errors import AuthError, NotFoundError, RegistryError, RegistryUnavailable
from bot.oci.client import MAX_CONFIG_BYTES, STREAM_PIECE, Manifest, PushResult, RegistryClient
from bot.oci.reference import ImageReference
from bot.oci.sansio import (
    INDEX_MEDIA_TYPES,
    Descriptor,
    manifest_blobs,
    manifest_children,
    sha256_digest,
)
from handlers.inspect import UNKNOWN_PLATFORM, platform_string

DEFAULT_PARALLELISM = 4
# Layers that registries must not redistribute (Windows base layers): the manifest keeps them,
# the blobs themselves are fetched by clients from their ``urls``.
NON_DISTRIBUTABLE_MARKERS = ("nondistributable", "foreign")

MSG_BAD_PARALLELISM = "copy parallelism must be at least 1, got {parallelism}"
MSG_BAD_PLATFORM = "invalid platform {platform!r}: expected os/arch or os/arch/variant"
MSG_NO_MATCH = "{source} has no image for platform {wanted}; it has {available}"
MSG_IMAGE_MISMATCH = "{source} is a single image for {actual}, not for platform {wanted}"
MSG_UNSUPPORTED = "cannot copy {source}: media type {media_type!r} is neither an image nor an index"
MSG_BLOB_FAILED = "cannot copy blob {digest} from {source} to {target}: {error}"
MSG_MANIFEST_FAILED = "cannot push manifest {digest} of {source} to {target}: {error}"
MSG_CHILD_FAILED = "cannot read manifest {digest} of {source}: {error}"

log = structlog.get_logger(__name__)

T = TypeVar("T")


class CopyError(RegistryError):
    """A copy that cannot be done as asked (no child matches the platforms, unsupported type)."""


# What callers tell apart (exit messages, retry decisions); a wrapped error keeps its kind.
_ERROR_KINDS: tuple[type[RegistryError], ...] = (CopyError, AuthError, NotFoundError, RegistryUnavailable)


@dataclass(slots=True)
class CopyStats:
    """Counters summed over every copy of one :class:`ImageCopier` (and, per copy, in its result)."""

    blobs_uploaded: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0  # already in the target (HEAD), nothing sent
    bytes_uploaded: int = 0
    manifests_pushed: int = 0


@dataclass(frozen=True, slots=True)
class CopyResult:
    source: ImageReference
    target: ImageReference
    digest: str  # of the top manifest now at the target
    media_type: str
    platforms: tuple[str, ...]  # "os/arch[/variant]" copied; () when unknown
    blobs_uploaded: int
    blobs_mounted: int
    blobs_present: int
    bytes_uploaded: int


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one copy pushes at the top, and what has to exist below it first."""

    source_manifest: Manifest
    top: Manifest  # the source manifest itself, or the filtered index
    is_index: bool
    children: tuple[dict[str, Any], ...]  # index entries to copy first (by digest)
    platforms: tuple[str, ...]
    config: bytes | None = None  # a single image's config, when it was read for its platform


@dataclass(slots=True)
class _Run:
    """The state of one ``copy`` call: its own counters, added to the copier's as they change."""

    source: ImageReference
    target: ImageReference
    totals: CopyStats
    stats: CopyStats = field(default_factory=CopyStats)

    def count(self, result: PushResult, size: int) -> None:
        for stats in (self.stats, self.totals):
            if result is PushResult.UPLOADED:
                stats.blobs_uploaded += 1
                stats.bytes_uploaded += size
            elif result is PushResult.MOUNTED:
                stats.blobs_mounted += 1
            else:
                stats.blobs_present += 1

    def count_manifest(self) -> None:
        self.stats.manifests_pushed += 1
        self.totals.manifests_pushed += 1


class _BlobStream:
    """The ``source`` callable handed to ``push_blob``: each call opens a fresh download.

    ``push_blob`` calls it once per upload attempt, so a download that broke off is restarted
    from the first byte. Every stream opened is closed by :meth:`aclose`, also those the HTTP
    client stopped reading when the upload failed.
    """

    def __init__(
        self,
        client: RegistryClient,
        repo: ImageReference,
        digest: str,
        progress: Callable[[int], None],
        data: bytes | None = None,
    ) -> None:
        self._client = client
        self._repo = repo
        self._digest = digest
        self._progress = progress
        self._data = data
        self._opened: list[AsyncGenerator[bytes, None]] = []

    def __call__(self) -> AsyncIterator[bytes]:
        stream = self._pieces()
        self._opened.append(stream)
        return stream

    async def _pieces(self) -> AsyncGenerator[bytes, None]:
        if self._data is not None:
            for start in range(0, len(self._data), STREAM_PIECE):
                piece = self._data[start : start + STREAM_PIECE]
                self._progress(len(piece))
                yield piece
            return
        async with self._client.open_blob(self._repo, self._digest) as blob:
            async for piece in blob.chunks():
                self._progress(len(piece))
                yield piece

    async def aclose(self) -> None:
        for stream in self._opened:
            await stream.aclose()
        self._opened.clear()


class ImageCopier:
    """Copy images between (or inside) registries through one :class:`RegistryClient`."""

    def __init__(
        self,
        client: RegistryClient,
        *,
        parallelism: int = DEFAULT_PARALLELISM,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        if parallelism < 1:
            raise ValueError(MSG_BAD_PARALLELISM.format(parallelism=parallelism))
        self._client = client
        self._on_bytes = on_bytes
        self._transfers = asyncio.Semaphore(parallelism)
        self.stats = CopyStats()
        # registry -> digest -> a repository there known to hold the blob (mount source).
        self._seen: dict[str, dict[str, str]] = {}
        # (registry, repository, digest) -> outcome of a transfer in progress, so that concurrent
        # copies sharing a layer send it once; None when that transfer failed.
        self._inflight: dict[tuple[str, str, str], asyncio.Future[PushResult | None]] = {}

    # -- public -------------------------------------------------------------------------------

    async def planned_manifest(
        self, source: ImageReference, *, platforms: Sequence[str] | None = None
    ) -> Manifest:
        """The top manifest :meth:`copy` would push for ``source`` and ``platforms``, pushing nothing."""
        plan = await self._plan(source, _wanted(platforms), need_platform=False)
        return plan.top

    async def copy(
        self, source: ImageReference, target: ImageReference, *, platforms: Sequence[str] | None = None
    ) -> CopyResult:
        """Copy ``source`` (tag or digest) to ``target``'s tag; children and blobs go first."""
        started = time.perf_counter()
        wanted = _wanted(platforms)
        log.info("copy_started", source=str(source), target=str(target), platforms=list(wanted))
        plan = await self._plan(source, wanted, need_platform=True)
        run = _Run(source=source, target=target, totals=self.stats)
        if plan.is_index:
            await self._copy_children(run, plan.children)
        else:
            preloaded: dict[str, bytes] = {}
            config = plan.top.json().get("config")
            if plan.config is not None and isinstance(config, dict):
                preloaded[str(config.get("digest"))] = plan.config
            await self._copy_blobs(run, _distributable(manifest_blobs(plan.top.json())), preloaded)
        top_ref = target.with_tag(target.tag) if target.tag else target.with_digest(plan.top.digest)
        digest = await self._put_manifest(run, top_ref, plan.top)
        result = CopyResult(
            source=source,
            target=target,
            digest=digest,
            media_type=plan.top.media_type,
            platforms=plan.platforms,
            blobs_uploaded=run.stats.blobs_uploaded,
            blobs_mounted=run.stats.blobs_mounted,
            blobs_present=run.stats.blobs_present,
            bytes_uploaded=run.stats.bytes_uploaded,
        )
        log.info(
            "copy_finished",
            source=str(source),
            target=str(target),
            digest=digest,
            platforms=list(plan.platforms),
            blobs_uploaded=result.blobs_uploaded,
            blobs_mounted=result.blobs_mounted,
            blobs_present=result.blobs_present,
            bytes_uploaded=result.bytes_uploaded,
            manifests_pushed=run.stats.manifests_pushed,
            duration_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return result

    # -- planning -----------------------------------------------------------------------------

    async def _plan(self, source: ImageReference, wanted: tuple[str, ...], *, need_platform: bool) -> _Plan:
        manifest = await self._client.get_manifest(source)
        doc = manifest.json()
        if _is_index(manifest, doc):
            children = manifest_children(doc)
            available = [p for p in (_entry_platform(c) for c in children) if p is not None]
            if not wanted:
                return _Plan(manifest, manifest, True, tuple(children), tuple(available))
            kept = [c for c in children if _matches_any(_entry_platform(c), wanted)]
            if not kept:
                raise CopyError(
                    MSG_NO_MATCH.format(
                        source=source, wanted=", ".join(wanted), available=", ".join(available) or "none"
                    )
                )
            platforms = tuple(p for p in (_entry_platform(c) for c in kept) if p is not None)
            if len(kept) == len(children):
                # Nothing dropped: keep the source's bytes, and with them its digest.
                return _Plan(manifest, manifest, True, tuple(children), platforms)
            filtered = {**doc, "manifests": kept}
            raw = _serialise(filtered)
            media_type = manifest.media_type
            top = Manifest(Descriptor(media_type=media_type, digest=sha256_digest(raw), size=len(raw)), raw)
            return _Plan(manifest, top, True, tuple(kept), platforms)
        if not _is_image(doc):
            raise CopyError(MSG_UNSUPPORTED.format(source=source, media_type=manifest.media_type))
        config: bytes | None = None
        platform: str | None = None
        if wanted or need_platform:
            config, platform = await self._image_platform(source, doc)
        if wanted and not _matches_any(platform, wanted):
            raise CopyError(
                MSG_IMAGE_MISMATCH.format(
                    source=source, actual=platform or "an unknown platform", wanted=", ".join(wanted)
                )
            )
        return _Plan(manifest, manifest, False, (), (platform,) if platform else (), config)

    async def _image_platform(
        self, source: ImageReference, doc: dict[str, Any]
    ) -> tuple[bytes | None, str | None]:
        """A single image's config (to push from memory later) and its platform, when it has one."""
        descriptor = doc.get("config")
        if not isinstance(descriptor, dict) or not descriptor.get("digest"):
            return None, None
        size = descriptor.get("size")
        if not isinstance(size, int) or size > MAX_CONFIG_BYTES or not _is_distributable(descriptor):
            return None, None
        raw = await self._client.get_blob(source, str(descriptor["digest"]))
        try:
            config = json.loads(raw)
        except ValueError:
            # Artifacts (Helm charts, signatures) carry configs that are not image configs.
            return raw, None
        if not isinstance(config, dict) or not config.get("os") or not config.get("architecture"):
            return raw, None
        return raw, platform_string(config)

    # -- copying ------------------------------------------------------------------------------

    async def _copy_children(self, run: _Run, entries: Iterable[dict[str, Any]]) -> None:
        """Copy the children of an index (recursively) so that they exist before the index."""
        levels: list[list[Manifest]] = []
        blobs: dict[str, dict[str, Any]] = {}
        await self._collect(run.source, list(entries), 0, levels, blobs, set())
        await self._copy_blobs(run, list(blobs.values()), {})
        # Deepest first: a nested index only goes up once all of its children are there.
        for level in reversed(levels):
            await _gather([self._put_manifest(run, run.target.with_digest(m.digest), m) for m in level])

    async def _collect(
        self,
        source: ImageReference,
        entries: list[dict[str, Any]],
        depth: int,
        levels: list[list[Manifest]],
        blobs: dict[str, dict[str, Any]],
        seen: set[str],
    ) -> None:
        digests = [str(e.get("digest")) for e in entries if str(e.get("digest")) not in seen]
        digests = list(dict.fromkeys(digests))
        seen.update(digests)
        if not digests:
            return
        manifests = await _gather([self._get_child(source, d) for d in digests])
        while len(levels) <= depth:
            levels.append([])
        levels[depth].extend(manifests)
        for manifest in manifests:
            doc = manifest.json()
            if _is_index(manifest, doc):
                await self._collect(source, manifest_children(doc), depth + 1, levels, blobs, seen)
            elif _is_image(doc):
                for descriptor in _distributable(manifest_blobs(doc)):
                    blobs.setdefault(str(descriptor.get("digest")), descriptor)
            else:
                raise CopyError(
                    MSG_UNSUPPORTED.format(
                        source=source.with_digest(manifest.digest), media_type=manifest.media_type
                    )
                )

    async def _get_child(self, source: ImageReference, digest: str) -> Manifest:
        ref = source.with_digest(digest)
        try:
            return await self._client.get_manifest(ref)
        except RegistryError as exc:
            raise _with_context(
                exc, MSG_CHILD_FAILED.format(digest=digest, source=source, error=exc)
            ) from exc

    async def _copy_blobs(
        self, run: _Run, descriptors: Sequence[dict[str, Any]], preloaded: dict[str, bytes]
    ) -> None:
        unique = {str(d.get("digest")): d for d in descriptors}
        for digest in unique:
            self._seen.setdefault(run.source.registry, {}).setdefault(digest, run.source.repository)
        await _gather([self._copy_blob(run, d, preloaded.get(digest)) for digest, d in unique.items()])

    async def _copy_blob(self, run: _Run, descriptor: dict[str, Any], data: bytes | None) -> None:
        digest = str(descriptor.get("digest"))
        size = int(descriptor.get("size") or 0)
        key = (run.target.registry, run.target.repository, digest)
        while (pending := self._inflight.get(key)) is not None:
            # Another copy is sending this blob to the same repository: wait for it rather
            # than send it twice; if it failed, try ourselves.
            if await asyncio.shield(pending) is not None:
                run.count(PushResult.EXISTS, size)
                return
        done: asyncio.Future[PushResult | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        outcome: PushResult | None = None
        try:
            result = await self._transfer(run, digest, size, data)
            outcome = result
        finally:
            del self._inflight[key]
            done.set_result(outcome)
        run.count(result, size)
        self._seen.setdefault(run.target.registry, {})[digest] = run.target.repository
        log.debug("copy_blob", digest=digest, size=size, result=result.value, target=run.target.name)

    async def _transfer(self, run: _Run, digest: str, size: int, data: bytes | None) -> PushResult:
        source, target = run.source, run.target
        mount_from = self._mount_source(source, target, digest)
        stream = _BlobStream(self._client, source, digest, self._progress, data)
        try:
            async with self._transfers:
                try:
                    return await self._client.push_blob(target, digest, size, stream, mount_from=mount_from)
                except AuthError:
                    if mount_from is None:
                        raise
                    # The credentials may push here but not pull from the mount's repository:
                    # mounting is only a shortcut, so upload instead.
                    log.info("copy_mount_refused", digest=digest, target=target.name, mount_from=mount_from)
                    return await self._client.push_blob(target, digest, size, stream)
        except RegistryError as exc:
            message = MSG_BLOB_FAILED.format(digest=digest, source=source, target=target, error=exc)
            raise _with_context(exc, message) from exc
        finally:
            await stream.aclose()

    def _mount_source(self, source: ImageReference, target: ImageReference, digest: str) -> str | None:
        if source.registry == target.registry and source.repository != target.repository:
            return source.repository
        known = self._seen.get(target.registry, {}).get(digest)
        if known is not None and known != target.repository:
            return known
        return None

    def _progress(self, count: int) -> None:
        if self._on_bytes is not None:
            self._on_bytes(count)

    async def _put_manifest(self, run: _Run, ref: ImageReference, manifest: Manifest) -> str:
        try:
            digest = await self._client.put_manifest(ref, manifest.raw, manifest.media_type)
        except RegistryError as exc:
            message = MSG_MANIFEST_FAILED.format(
                digest=manifest.digest, source=run.source, target=ref, error=exc
            )
            raise _with_context(exc, message) from exc
        run.count_manifest()
        return digest


# -- helpers (pure) ---------------------------------------------------------------------------


def _wanted(platforms: Sequence[str] | None) -> tuple[str, ...]:
    if not platforms:
        return ()
    wanted: list[str] = []
    for platform in platforms:
        text = platform.strip()
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise CopyError(MSG_BAD_PLATFORM.format(platform=platform))
        wanted.append(text)
    return tuple(dict.fromkeys(wanted))


def _entry_platform(entry: dict[str, Any]) -> str | None:
    """An index entry's platform, or None for attestations and entries without one."""
    platform = entry.get("platform")
    if not isinstance(platform, dict) or not platform.get("os") or not platform.get("architecture"):
        return None
    text = platform_string(platform)
    return None if text == UNKNOWN_PLATFORM else text


def _matches_any(platform: str | None, wanted: Sequence[str]) -> bool:
    """Exact match, or a wanted ``os/arch`` matching any variant (``linux/arm64`` ~ ``linux/arm64/v8``)."""
    if platform is None:
        return False
    parts = platform.split("/")
    return any(w == platform or (w.count("/") == 1 and w.split("/") == parts[:2]) for w in wanted)


def _is_index(manifest: Manifest, doc: dict[str, Any]) -> bool:
    return manifest.media_type in INDEX_MEDIA_TYPES or ("manifests" in doc and "layers" not in doc)


def _is_image(doc: dict[str, Any]) -> bool:
    return isinstance(doc.get("config"), dict) or isinstance(doc.get("layers"), list)


def _is_distributable(descriptor: dict[str, Any]) -> bool:
    media_type = str(descriptor.get("mediaType") or "").lower()
    if descriptor.get("urls"):
        return False
    return not any(marker in media_type for marker in NON_DISTRIBUTABLE_MARKERS)


def _distributable(descriptors: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in descriptors if d.get("digest") and _is_distributable(d)]


def _serialise(doc: dict[str, Any]) -> bytes:
    # Compact and in the source's key order: the same input always gives the same bytes, so
    # planned_manifest and copy agree on the digest.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _with_context(exc: RegistryError, message: str) -> RegistryError:
    """The same kind of error (auth, not found, unavailable...) with the copy's context added."""
    kind = next((k for k in _ERROR_KINDS if isinstance(exc, k)), RegistryError)
    return kind(message, status=exc.status, code=exc.code)


async def _gather(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Run concurrently; on the first failure cancel the others, wait for them, and raise it."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
