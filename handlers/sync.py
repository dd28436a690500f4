"""``imglife sync``: mirror ``sync.entries`` into the target registry (SPEC §5.4, upstream §3.1).

One entry point, :func:`sync_mirrors`, serves the CLI and the bot; :func:`list_mirrors` is
``--list``. Per entry:

1. **Tags.** A fixed ``tag`` is that tag. A ``tag_regex`` is searched (``re.search``; upstream's
   examples anchor their patterns) in every tag of the source: from Docker Hub's tags API for a
   ``docker.io`` source (names, dates and digests in one listing; when that API fails, the
   registry's list is used instead, with a warning), else from the registry's tag list, every
   page. Matches are ordered by :func:`bot.versions.sort_tags` — versions by version, newest
   first, then non-versions by date — and the newest ``keep_last`` are kept (all when unset).
   Dates of a registry source's non-version tags come from the image config's ``created``, and
   are only read when the ``keep_last`` cut falls among them.
2. **os_normalize.** A source tag that is *only an OS variant* is written at the target under a
   version-prefixed name. "Only an OS variant" is decided by the source's own tags: ``T`` is one
   when it is not a version and some version tag of the source has exactly the variant suffix
   ``-T`` (golang's ``alpine3.21``, because ``1.22.3-alpine3.21`` exists; python's ``bookworm``,
   because of ``3.12.8-bookworm``). Debian's ``bookworm`` or anyone's ``latest`` are not, and
   keep their names. The new name is that of the **newest** version tag ending in ``-T`` with the
   same digest as ``T``, in :mod:`bot.versions` order, in which ``1.22.3-alpine3.21`` is newer
   than ``1.22-alpine3.21`` and ``1-alpine3.21``: the most specific name, the one no later patch
   release moves (upstream's example ``alpine3.21 → 1.22-alpine3.21`` is what this gives when
   ``1.22-alpine3.21`` is the most specific tag on that digest). When no such tag shares the
   digest, the tag keeps its name and the summary carries a warning saying so. Two selected
   tags that end up with one target name (``alpine3.21`` and ``1.22.3-alpine3.21`` both
   selected) have the same digest; the target tag is written once.
3. **Copy.** A target tag that exists is skipped, unless ``check_digest`` and the manifest the
   copy would push (:meth:`ImageCopier.planned_manifest` with the entry's platforms) has
   another digest than the target's, in which case it is copied again. Tags of all entries are
   worked on concurrently, at most ``IMGLIFE_SYNC_PARALLELISM`` (default 4) at a time; the same
   number bounds the copier's blob transfers. ``dry_run`` plans (reading the source manifest of
   every tag it would copy) and pushes nothing.
4. **Failures** are per tag: the others are still tried, and the run fails (exit 1). A tag that
   came from the source's listing and is gone from the source by the time it is copied
   (deleted upstream meanwhile) is reported **gone** — not a failure: upstream removed it, the
   next run will not select it. A fixed ``tag`` missing from the source is a failure (a typo
   must not pass silently), as is a listed tag whose copy failed while it still exists.
5. **Hooks** (not in a dry run): an entry's ``hooks.post_sync`` right after that entry, then
   ``sync.hooks.post_sync`` after all entries; see :mod:`bot.hooks`. They get the process
   environment plus :data:`HOOK_VARIABLES`. A failing hook without ``continue_on_error`` fails
   the run and stops the rest of its list; other lists still run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import structlog

from bot.config.schema import Config, SyncConfig, SyncEntry
from bot.errors import ImglifeError, UsageError
from bot.hooks import HookResult, run_hooks
from bot.oci.client import Manifest, RegistryClient
from bot.oci.hub import DockerHubTags, HubError
from bot.oci.reference import ImageReference, parse_repository
from bot.records.codec import parse_timestamp
from bot.versions import parse_version, sort_tags
from handlers.inspect import describe_image
from handlers.status import md_code, md_text

PARALLELISM_VARIABLE = "IMGLIFE_SYNC_PARALLELISM"
DEFAULT_SYNC_PARALLELISM = 4
# Registry sources without digests in their listing: how many version tags ending in -T are
# HEADed, newest first, to find the one sharing T's digest (the newest usually does).
MAX_NORMALIZE_LOOKUPS = 32
GLOBAL_HOOKS_LABEL = "sync.hooks.post_sync"
ENTRY_HOOKS_LABEL = "sync.entries[{index}].hooks.post_sync"

# Environment of post_sync hooks, on top of the process environment.
HOOK_SCOPE = "IMGLIFE_SYNC_SCOPE"  # "entry" (an entry's hooks) or "all" (sync.hooks.post_sync)
HOOK_SOURCE = "IMGLIFE_SYNC_SOURCE"  # entry hooks only: the entry's source, as configured
HOOK_TARGET = "IMGLIFE_SYNC_TARGET"  # entry hooks only: the entry's target, as configured
HOOK_ENTRIES = "IMGLIFE_SYNC_ENTRIES"  # entries synced (1 for an entry's hooks)
HOOK_COPIED = "IMGLIFE_SYNC_COPIED"
HOOK_SKIPPED = "IMGLIFE_SYNC_SKIPPED"
HOOK_FAILED = "IMGLIFE_SYNC_FAILED"  # failed tags, plus entries whose tags could not be listed
HOOK_GONE = "IMGLIFE_SYNC_GONE"
HOOK_BYTES = "IMGLIFE_SYNC_BYTES"  # bytes uploaded
HOOK_IMAGES = "IMGLIFE_SYNC_IMAGES"  # space-separated target references copied, e.g. host/repo:tag
HOOK_VARIABLES = (
    HOOK_SCOPE,
    HOOK_SOURCE,
    HOOK_TARGET,
    HOOK_ENTRIES,
    HOOK_COPIED,
    HOOK_SKIPPED,
    HOOK_FAILED,
    HOOK_GONE,
    HOOK_BYTES,
    HOOK_IMAGES,
)

MSG_BAD_PARALLELISM = f"{PARALLELISM_VARIABLE} must be a whole number of at least 1, got {{raw!r}}"
MSG_UNKNOWN_ENTRY = "{names}: not the source or target of a sync entry (configured: {known})"
MSG_NO_ENTRIES = "nothing to sync: sync.entries is empty"
MSG_HUB_FALLBACK = "Docker Hub's tags API failed ({error}); used the registry's tag list instead"
MSG_LIST_FAILED = "cannot list the tags of {source}: {error}"
MSG_NO_DIGEST_MATCH = (
    "os_normalize: {tag} keeps its name: no version tag ending in -{tag} has its digest {digest} "
    "({looked} looked at)"
)
MSG_NO_DIGEST = "os_normalize: {tag} keeps its name: its digest could not be read ({error})"
MSG_NO_DATE = "cannot read the creation date of {ref} ({error}); it sorts as undated"
MSG_INTERNAL = "internal error: {kind}: {error}"
MSG_NOT_IN_SOURCE = "not in the source ({error})"

REASON_NEW = "new"
REASON_CHANGED = "source digest changed"
REASON_EXISTS = "already in the target"
REASON_SAME = "already in the target, same digest"
REASON_GONE = "deleted from the source after it was listed"

log = structlog.get_logger(__name__)

Progress = Callable[[str], Awaitable[None]]  # one line at a time: a terminal, a bot reply


async def no_progress(_line: str) -> None:
    """Progress nobody watches (a status or a log carries the result)."""


class TagStatus(StrEnum):
    COPIED = "copied"
    WOULD_COPY = "would copy"  # dry run
    SKIPPED = "skipped"
    GONE = "gone"
    FAILED = "failed"


STATUS_ICONS = {
    TagStatus.COPIED: "✅",
    TagStatus.WOULD_COPY: "➡️",
    TagStatus.SKIPPED: "⏭️",
    TagStatus.GONE: "🗑️",
    TagStatus.FAILED: "❌",
}


class CopyOutcome(Protocol):
    """What sync reads from a :class:`bot.oci.copy.CopyResult`."""

    @property
    def digest(self) -> str: ...

    @property
    def bytes_uploaded(self) -> int: ...


class Copier(Protocol):
    """The part of :class:`bot.oci.copy.ImageCopier` sync uses."""

    async def planned_manifest(
        self, source: ImageReference, *, platforms: Sequence[str] | None = None
    ) -> Manifest: ...

    async def copy(
        self, source: ImageReference, target: ImageReference, *, platforms: Sequence[str] | None = None
    ) -> CopyOutcome: ...


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagPair:
    """A source tag and the tag it is written as at the target (they differ only by os_normalize)."""

    source: str
    target: str
    listed: bool = True  # seen in the source's tag listing (a fixed tag may not have been)


@dataclass(frozen=True, slots=True)
class TagOutcome:
    source: str
    target: str
    status: TagStatus
    reason: str
    digest: str | None = None
    bytes_uploaded: int = 0


@dataclass(slots=True)
class EntryOutcome:
    """One entry: the tags it selected and what happened to each, or why it could not list."""

    index: int
    source: str
    target: str
    tags: list[TagOutcome] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    hooks: list[HookResult] = field(default_factory=list)

    def count(self, status: TagStatus) -> int:
        return sum(1 for tag in self.tags if tag.status is status)

    @property
    def bytes_uploaded(self) -> int:
        return sum(tag.bytes_uploaded for tag in self.tags)

    def copied_images(self) -> list[str]:
        name = parse_repository(self.target).name
        return [f"{name}:{tag.target}" for tag in self.tags if tag.status is TagStatus.COPIED]


@dataclass(slots=True)
class SyncSummary:
    """The whole run: entries in configuration order, global hooks, totals and time."""

    entries: list[EntryOutcome]
    hooks: list[HookResult]
    dry_run: bool
    duration: float
    hooks_not_run: int = 0  # configured hooks a dry run left out

    def count(self, status: TagStatus) -> int:
        return sum(entry.count(status) for entry in self.entries)

    @property
    def bytes_uploaded(self) -> int:
        return sum(entry.bytes_uploaded for entry in self.entries)

    @property
    def failed_entries(self) -> int:
        return sum(1 for entry in self.entries if entry.error is not None)

    @property
    def failed_hooks(self) -> list[HookResult]:
        every = [h for entry in self.entries for h in entry.hooks] + self.hooks
        return [h for h in every if h.fails_run]

    @property
    def ok(self) -> bool:
        """Nothing failed: every tag copied, skipped or gone, every entry listed, no failing hook."""
        return not self.count(TagStatus.FAILED) and not self.failed_entries and not self.failed_hooks

    def headline(self) -> str:
        copied = (
            f"{self.count(TagStatus.WOULD_COPY)} to copy"
            if self.dry_run
            else f"{self.count(TagStatus.COPIED)} copied"
        )
        failed = self.count(TagStatus.FAILED) + self.failed_entries
        entries = len(self.entries)
        text = (
            f"{entries} entr{'y' if entries == 1 else 'ies'}, tags: {copied}, "
            f"{self.count(TagStatus.SKIPPED)} skipped, {failed} failed"
        )
        if self.count(TagStatus.GONE):
            text += f", {self.count(TagStatus.GONE)} gone upstream"
        if not self.dry_run:
            text += f"; {format_bytes(self.bytes_uploaded)} uploaded"
        return f"{text} in {self.duration:.1f}s"

    def text(self) -> str:
        """The person-facing summary for stdout."""
        prefix = "sync (dry run)" if self.dry_run else "sync"
        if not self.entries:
            return f"{prefix}: {MSG_NO_ENTRIES}\n"
        lines = [f"{prefix}: {self.headline()}"]
        for entry in self.entries:
            lines.append(f"{entry.source} -> {entry.target}")
            if entry.error is not None:
                lines.append(f"  FAILED   {entry.error}")
            for tag in entry.tags:
                name = tag.source if tag.source == tag.target else f"{tag.source} -> {tag.target}"
                lines.append(f"  {tag.status.value:<10} {name}  ({_detail(tag)})")
            lines.extend(f"  warning: {warning}" for warning in entry.warnings)
            lines.extend(f"  hook {_hook_line(hook)}" for hook in entry.hooks)
        lines.extend(f"hook {_hook_line(hook)}" for hook in self.hooks)
        if self.hooks_not_run:
            lines.append(f"hooks: {self.hooks_not_run} not run (dry run)")
        return "\n".join(lines) + "\n"

    def markdown(self) -> str:
        """The summary as Markdown for a forge comment; tags, messages and commands are escaped."""
        title = "imglife sync (dry run)" if self.dry_run else "imglife sync"
        icon = "✅" if self.ok else "❌"
        if not self.entries:
            return f"### {title}\n\n{icon} {MSG_NO_ENTRIES}\n"
        lines = [f"### {title}", "", f"{icon} {self.headline()}", ""]
        for entry in self.entries:
            lines.append(f"#### {md_code(entry.source)} → {md_code(entry.target)}")
            lines.append("")
            if entry.error is not None:
                lines += [f"❌ {md_text(entry.error)}", ""]
            if entry.tags:
                lines += ["| Tag | Result | Detail |", "|---|---|---|"]
                for tag in entry.tags:
                    name = md_code(tag.source)
                    if tag.target != tag.source:
                        name += f" → {md_code(tag.target)}"
                    label = f"{STATUS_ICONS[tag.status]} {tag.status.value}"
                    lines.append(f"| {name} | {label} | {md_text(_detail(tag))} |")
                lines.append("")
            lines += [f"- ⚠️ {md_text(warning)}" for warning in entry.warnings]
            lines += [f"- hook {_hook_markdown(hook)}" for hook in entry.hooks]
            if entry.warnings or entry.hooks:
                lines.append("")
        lines += [f"- hook {_hook_markdown(hook)}" for hook in self.hooks]
        if self.hooks_not_run:
            lines.append(f"_{self.hooks_not_run} hook(s) not run: dry run._")
        return "\n".join(lines).rstrip("\n") + "\n"


@dataclass(frozen=True, slots=True)
class EntryTags:
    """What ``--list`` prints for one entry: the tags that would be synced, or why there are none."""

    index: int
    source: str
    target: str
    tags: tuple[TagPair, ...]
    warnings: tuple[str, ...] = ()
    error: str | None = None


# --- configuration --------------------------------------------------------------------------


def sync_parallelism(environ: Mapping[str, str]) -> int:
    """``IMGLIFE_SYNC_PARALLELISM``: a whole number >= 1, default 4; anything else is a usage error."""
    raw = environ.get(PARALLELISM_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_SYNC_PARALLELISM
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(MSG_BAD_PARALLELISM.format(raw=raw))
    return int(raw)


def select_entries(sync: SyncConfig, only: Collection[str] = ()) -> list[tuple[int, SyncEntry]]:
    """The entries to run with their configuration index: all, or those whose source or target is named."""
    indexed = list(enumerate(sync.entries))
    if not only:
        return indexed
    known = {name for entry in sync.entries for name in (entry.source, entry.target)}
    unknown = sorted(set(only) - known)
    if unknown:
        raise UsageError(
            MSG_UNKNOWN_ENTRY.format(names=", ".join(unknown), known=", ".join(sorted(known)) or "none")
        )
    return [(index, entry) for index, entry in indexed if entry.source in only or entry.target in only]


# --- tag selection (pure) -------------------------------------------------------------------


def match_tags(names: Iterable[str], entry: SyncEntry) -> list[str]:
    """The entry's fixed tag, or the listed names its ``tag_regex`` finds (``re.search``)."""
    if entry.tag is not None:
        return [entry.tag]
    pattern = entry.tag_pattern
    if pattern is None:  # excluded by the schema (tag or tag_regex is required)
        return []
    return [name for name in dict.fromkeys(names) if pattern.search(name)]


def dates_needed(tags: Sequence[str], keep_last: int | None) -> list[str]:
    """The tags whose dates decide which ``keep_last`` tags are kept (none when versions decide alone).

    Versions sort before every non-version, so dates only matter when the cut falls among the
    non-versions: fewer than ``keep_last`` versions, more than ``keep_last`` tags.
    """
    if keep_last is None or len(tags) <= keep_last:
        return []
    undecided = [tag for tag in tags if parse_version(tag) is None]
    if len(tags) - len(undecided) >= keep_last:
        return []
    return undecided


def keep_newest(
    tags: Sequence[str], keep_last: int | None, dates: Mapping[str, dt.datetime] | None = None
) -> list[str]:
    """``tags`` newest first (:func:`bot.versions.sort_tags`), cut to ``keep_last`` when given."""
    ordered = sort_tags(tags, dates=dates)
    return ordered if keep_last is None else ordered[:keep_last]


def os_variant_candidates(tag: str, names: Iterable[str]) -> list[str]:
    """Version tags of ``names`` whose variant suffix is exactly ``-tag``, newest first.

    Empty when ``tag`` is itself a version (nothing to normalise) or no version ends in ``-tag``
    (then ``tag`` is not an OS variant of this repository). Org base tags (``-core<n>``) are not
    upstream names and are left out.
    """
    if parse_version(tag) is not None:
        return []
    suffix = f"-{tag}"
    found = []
    for name in names:
        version = parse_version(name)
        if version is not None and version.suffix == suffix and version.core is None:
            found.append(name)
    return sort_tags(found)


def merge_targets(pairs: Iterable[TagPair]) -> tuple[list[TagPair], list[TagPair]]:
    """Pairs with distinct target tags (first wins), and the ones dropped as duplicates."""
    kept: dict[str, TagPair] = {}
    dropped: list[TagPair] = []
    for pair in pairs:
        if pair.target in kept:
            dropped.append(pair)
        else:
            kept[pair.target] = pair
    return list(kept.values()), dropped


# --- resolving an entry's tags (IO) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Listed:
    date: dt.datetime | None = None
    digest: str | None = None


class _Resolver:
    """Lists an entry's source, selects and (with os_normalize) renames its tags."""

    def __init__(
        self,
        entry: SyncEntry,
        *,
        client: RegistryClient,
        hub: DockerHubTags | None,
        limiter: asyncio.Semaphore,
    ) -> None:
        self.entry = entry
        self.source = entry.source_ref
        self._client = client
        self._hub = hub
        self._limiter = limiter
        self._digests: dict[str, str] = {}  # from the listing, or from a HEAD
        self._headed: set[str] = set()  # asked with HEAD already (absent tags stay absent)
        self.warnings: list[str] = []

    async def resolve(self) -> list[TagPair]:
        entry = self.entry
        listed: dict[str, _Listed] = {}
        if entry.tag_regex is not None or entry.os_normalize:
            listed = await self._list()
        matched = match_tags(listed, entry)
        dates = {name: info.date for name in matched if (info := listed.get(name)) and info.date}
        missing = [tag for tag in dates_needed(matched, entry.keep_last) if tag not in dates]
        if missing:
            dates.update(await self._created_dates(missing))
        selected = keep_newest(matched, entry.keep_last, dates) if entry.tag is None else matched
        pairs = [TagPair(tag, tag, listed=tag in listed) for tag in selected]
        if entry.os_normalize:
            pairs = await self._normalize(pairs, listed)
        kept, dropped = merge_targets(pairs)
        for pair in dropped:
            log.info("sync_tag_merged", source=self.source.name, tag=pair.source, target_tag=pair.target)
        return kept

    async def _list(self) -> dict[str, _Listed]:
        if self._hub is not None and self._hub.serves(self.source):
            try:
                async with self._limiter:
                    hub_tags = await self._hub.list_tags(self.source)
            except HubError as exc:
                self.warnings.append(MSG_HUB_FALLBACK.format(error=exc))
                log.warning("sync_hub_fallback", source=self.source.name, error=str(exc))
            else:
                self._digests.update({tag.name: tag.digest for tag in hub_tags if tag.digest})
                return {tag.name: _Listed(tag.last_updated, tag.digest) for tag in hub_tags}
        async with self._limiter:
            names = await self._client.list_tags(self.source)
        return {name: _Listed() for name in names}

    async def _created_dates(self, tags: Sequence[str]) -> dict[str, dt.datetime]:
        async def created(tag: str) -> tuple[str, dt.datetime | None]:
            ref = self.source.with_tag(tag)
            try:
                async with self._limiter:
                    description = await describe_image(self._client, ref)
                return tag, parse_timestamp(description.created) if description.created else None
            except (ImglifeError, ValueError) as exc:
                log.warning("sync_date_unreadable", ref=str(ref), error=str(exc))
                self.warnings.append(MSG_NO_DATE.format(ref=ref, error=exc))
                return tag, None

        found = await asyncio.gather(*(created(tag) for tag in tags))
        return {tag: when for tag, when in found if when is not None}

    async def _digest(self, tag: str) -> str | None:
        """The tag's digest from the listing, else a HEAD; ``None`` when the tag does not exist."""
        if tag not in self._digests and tag not in self._headed:
            self._headed.add(tag)
            async with self._limiter:
                descriptor = await self._client.head_manifest(self.source.with_tag(tag))
            if descriptor is not None:
                self._digests[tag] = descriptor.digest
        return self._digests.get(tag)

    async def _normalize(self, pairs: list[TagPair], listed: Mapping[str, _Listed]) -> list[TagPair]:
        renamed: list[TagPair] = []
        for pair in pairs:
            candidates = os_variant_candidates(pair.source, listed)
            if not candidates:
                if parse_version(pair.source) is None:
                    log.info("sync_not_os_variant", source=self.source.name, tag=pair.source)
                renamed.append(pair)
                continue
            try:
                digest = await self._digest(pair.source)
                match = await self._same_digest(digest, candidates) if digest else None
            except ImglifeError as exc:
                self.warnings.append(MSG_NO_DIGEST.format(tag=pair.source, error=exc))
                renamed.append(pair)
                continue
            if digest is None:
                self.warnings.append(MSG_NO_DIGEST.format(tag=pair.source, error="not in the source"))
                renamed.append(pair)
            elif match is None:
                looked = min(len(candidates), MAX_NORMALIZE_LOOKUPS)
                self.warnings.append(
                    MSG_NO_DIGEST_MATCH.format(tag=pair.source, digest=digest, looked=looked)
                )
                log.warning("sync_os_normalize_unmatched", source=self.source.name, tag=pair.source)
                renamed.append(pair)
            else:
                log.info("sync_os_normalized", source=self.source.name, tag=pair.source, target_tag=match)
                renamed.append(TagPair(pair.source, match, pair.listed))
        return renamed

    async def _same_digest(self, digest: str, candidates: Sequence[str]) -> str | None:
        for candidate in candidates[:MAX_NORMALIZE_LOOKUPS]:
            if await self._digest(candidate) == digest:
                return candidate
        return None


async def _resolve_entry(
    index: int,
    entry: SyncEntry,
    *,
    client: RegistryClient,
    hub: DockerHubTags | None,
    limiter: asyncio.Semaphore,
) -> EntryTags:
    resolver = _Resolver(entry, client=client, hub=hub, limiter=limiter)
    try:
        pairs = await resolver.resolve()
    except ImglifeError as exc:
        error = MSG_LIST_FAILED.format(source=entry.source, error=exc)
        log.warning("sync_entry_failed", source=entry.source, error=str(exc))
        return EntryTags(index, entry.source, entry.target, (), tuple(resolver.warnings), error)
    except Exception as exc:  # a bug must not stop the other entries; it is logged in full
        log.exception("sync_entry_internal_error", source=entry.source)
        error = MSG_INTERNAL.format(kind=type(exc).__name__, error=exc)
        return EntryTags(index, entry.source, entry.target, (), tuple(resolver.warnings), error)
    log.info(
        "sync_tags_selected",
        source=entry.source,
        target=entry.target,
        tags=[pair.source for pair in pairs],
    )
    return EntryTags(index, entry.source, entry.target, tuple(pairs), tuple(resolver.warnings))


async def list_mirrors(
    config: Config,
    *,
    client: RegistryClient,
    hub: DockerHubTags | None,
    only: Collection[str] = (),
    parallelism: int = DEFAULT_SYNC_PARALLELISM,
) -> list[EntryTags]:
    """``--list``: per entry, the tags that would be synced (and their target names); nothing pushed."""
    limiter = asyncio.Semaphore(parallelism)
    selected = select_entries(config.sync, only)
    return list(
        await asyncio.gather(
            *(
                _resolve_entry(index, entry, client=client, hub=hub, limiter=limiter)
                for index, entry in selected
            )
        )
    )


def render_list(listing: Sequence[EntryTags]) -> str:
    """``--list`` output: each entry, then one tag per line (``source -> target`` when renamed)."""
    if not listing:
        return MSG_NO_ENTRIES + "\n"
    lines: list[str] = []
    for entry in listing:
        lines.append(f"{entry.source} -> {entry.target}")
        if entry.error is not None:
            lines.append(f"  FAILED {entry.error}")
        for pair in entry.tags:
            lines.append(
                f"  {pair.source}" if pair.source == pair.target else f"  {pair.source} -> {pair.target}"
            )
        if not entry.tags and entry.error is None:
            lines.append("  (no tag matches)")
        lines.extend(f"  warning: {warning}" for warning in entry.warnings)
    return "\n".join(lines) + "\n"


# --- syncing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Context:
    client: RegistryClient
    copier: Copier
    limiter: asyncio.Semaphore
    dry_run: bool
    on_progress: Progress | None


async def sync_mirrors(
    config: Config,
    *,
    client: RegistryClient,
    copier: Copier,
    hub: DockerHubTags | None,
    only: Collection[str] = (),
    dry_run: bool = False,
    on_progress: Progress | None = None,
    parallelism: int = DEFAULT_SYNC_PARALLELISM,
    environ: Mapping[str, str] | None = None,
) -> SyncSummary:
    """Mirror the configured entries (or those ``only`` names); see the module docstring.

    ``only`` holds sources or targets exactly as the configuration writes them (an unknown name
    is a :class:`UsageError`); ``on_progress`` gets one line per tag copied or failed;
    ``environ`` is the environment hooks inherit (default: this process's).
    """
    selected = select_entries(config.sync, only)
    started = time.monotonic()
    context = _Context(client, copier, asyncio.Semaphore(parallelism), dry_run, on_progress)
    base_env = dict(os.environ if environ is None else environ)
    log.info("sync_started", entries=len(selected), dry_run=dry_run, parallelism=parallelism)
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_run_entry(index, entry, config.sync, hub, context, base_env))
            for index, entry in selected
        ]
    outcomes = [task.result() for task in tasks]
    hooks: list[HookResult] = []
    if not dry_run and config.sync.hooks.post_sync:
        env = {**base_env, **_hook_env(outcomes, scope="all")}
        hooks = await run_hooks(config.sync.hooks.post_sync, env=env, label=GLOBAL_HOOKS_LABEL)
    not_run = 0
    if dry_run:
        configured = [config.sync.hooks.post_sync, *(entry.hooks.post_sync for _, entry in selected)]
        not_run = sum(len(hooks_) for hooks_ in configured)
    summary = SyncSummary(outcomes, hooks, dry_run, time.monotonic() - started, not_run)
    log.info(
        "sync_finished",
        entries=len(outcomes),
        copied=summary.count(TagStatus.COPIED),
        would_copy=summary.count(TagStatus.WOULD_COPY),
        skipped=summary.count(TagStatus.SKIPPED),
        gone=summary.count(TagStatus.GONE),
        failed=summary.count(TagStatus.FAILED),
        failed_entries=summary.failed_entries,
        failed_hooks=len(summary.failed_hooks),
        bytes_uploaded=summary.bytes_uploaded,
        duration_s=round(summary.duration, 3),
        dry_run=dry_run,
    )
    return summary


async def _run_entry(
    index: int,
    entry: SyncEntry,
    sync: SyncConfig,
    hub: DockerHubTags | None,
    context: _Context,
    base_env: Mapping[str, str],
) -> EntryOutcome:
    resolved = await _resolve_entry(index, entry, client=context.client, hub=hub, limiter=context.limiter)
    outcome = EntryOutcome(index, entry.source, entry.target, warnings=list(resolved.warnings))
    outcome.error = resolved.error
    platforms = sync.platforms_for(entry)
    outcome.tags = list(
        await asyncio.gather(*(_sync_tag(entry, pair, platforms, context) for pair in resolved.tags))
    )
    if not context.dry_run and entry.hooks.post_sync:
        env = {**base_env, **_hook_env([outcome], scope="entry")}
        label = ENTRY_HOOKS_LABEL.format(index=index)
        outcome.hooks = await run_hooks(entry.hooks.post_sync, env=env, label=label)
    return outcome


async def _sync_tag(
    entry: SyncEntry, pair: TagPair, platforms: Sequence[str] | None, context: _Context
) -> TagOutcome:
    source = entry.source_ref.with_tag(pair.source)
    target = entry.target_ref.with_tag(pair.target)
    async with context.limiter:
        try:
            outcome = await _plan_and_copy(entry, pair, source, target, platforms, context)
        except ImglifeError as exc:
            outcome = await _failure(pair, source, str(exc), context.client)
        except Exception as exc:  # a bug must not stop the other tags; it is logged in full
            log.exception("sync_tag_internal_error", source=str(source), target=str(target))
            outcome = TagOutcome(
                pair.source,
                pair.target,
                TagStatus.FAILED,
                MSG_INTERNAL.format(kind=type(exc).__name__, error=exc),
            )
    log.info(
        "sync_tag",
        source=str(source),
        target=str(target),
        status=outcome.status.value,
        reason=outcome.reason,
        digest=outcome.digest,
        bytes_uploaded=outcome.bytes_uploaded,
    )
    if outcome.status in (TagStatus.COPIED, TagStatus.FAILED):
        await _progress(context, f"{outcome.status.value} {source} -> {target} ({_detail(outcome)})")
    return outcome


async def _plan_and_copy(
    entry: SyncEntry,
    pair: TagPair,
    source: ImageReference,
    target: ImageReference,
    platforms: Sequence[str] | None,
    context: _Context,
) -> TagOutcome:
    existing = await context.client.head_manifest(target)
    reason = REASON_NEW
    planned: Manifest | None = None
    if existing is not None:
        if not entry.check_digest:
            return TagOutcome(pair.source, pair.target, TagStatus.SKIPPED, REASON_EXISTS, existing.digest)
        planned = await context.copier.planned_manifest(source, platforms=platforms)
        if planned.digest == existing.digest:
            return TagOutcome(pair.source, pair.target, TagStatus.SKIPPED, REASON_SAME, existing.digest)
        reason = REASON_CHANGED
    if context.dry_run:
        # Reading the source now makes the dry run say what a real run would find missing.
        planned = planned or await context.copier.planned_manifest(source, platforms=platforms)
        return TagOutcome(pair.source, pair.target, TagStatus.WOULD_COPY, reason, planned.digest)
    result = await context.copier.copy(source, target, platforms=platforms)
    return TagOutcome(
        pair.source, pair.target, TagStatus.COPIED, reason, result.digest, result.bytes_uploaded
    )


async def _failure(pair: TagPair, source: ImageReference, error: str, client: RegistryClient) -> TagOutcome:
    """A failed tag, or a gone one: listed a moment ago, and no longer in the source."""
    try:
        still_there = await client.head_manifest(source) is not None
    except ImglifeError:
        still_there = True  # cannot tell: report the original failure
    if not still_there and pair.listed:
        log.warning("sync_tag_gone", source=str(source), error=error)
        return TagOutcome(pair.source, pair.target, TagStatus.GONE, REASON_GONE)
    if not still_there:
        error = MSG_NOT_IN_SOURCE.format(error=error)
    return TagOutcome(pair.source, pair.target, TagStatus.FAILED, error)


async def _progress(context: _Context, line: str) -> None:
    if context.on_progress is None:
        return
    try:
        await context.on_progress(line)
    except Exception as exc:  # noqa: BLE001 - a progress display that fails must not fail the sync
        log.warning("sync_progress_failed", error=f"{type(exc).__name__}: {exc}")


def _hook_env(outcomes: Sequence[EntryOutcome], *, scope: str) -> dict[str, str]:
    def total(status: TagStatus) -> int:
        return sum(outcome.count(status) for outcome in outcomes)

    env = {
        HOOK_SCOPE: scope,
        HOOK_ENTRIES: str(len(outcomes)),
        HOOK_COPIED: str(total(TagStatus.COPIED)),
        HOOK_SKIPPED: str(total(TagStatus.SKIPPED)),
        HOOK_FAILED: str(total(TagStatus.FAILED) + sum(1 for o in outcomes if o.error is not None)),
        HOOK_GONE: str(total(TagStatus.GONE)),
        HOOK_BYTES: str(sum(outcome.bytes_uploaded for outcome in outcomes)),
        HOOK_IMAGES: " ".join(image for outcome in outcomes for image in outcome.copied_images()),
    }
    if scope == "entry" and len(outcomes) == 1:
        env[HOOK_SOURCE] = outcomes[0].source
        env[HOOK_TARGET] = outcomes[0].target
    return env


# --- rendering helpers ----------------------------------------------------------------------


def format_bytes(count: int) -> str:
    """``1536`` → ``1.5 KiB``; whole bytes below 1 KiB."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _detail(tag: TagOutcome) -> str:
    if tag.status is TagStatus.COPIED:
        return f"{tag.reason}; {format_bytes(tag.bytes_uploaded)} uploaded; {tag.digest}"
    if tag.status in (TagStatus.WOULD_COPY, TagStatus.SKIPPED) and tag.digest:
        return f"{tag.reason}; {tag.digest}"
    return tag.reason


def _hook_line(hook: HookResult) -> str:
    text = f"{hook.label} `{hook.cmd}`: {hook.describe()}"
    if not hook.ok and hook.continue_on_error:
        text += " (continue_on_error)"
    return text


def _hook_markdown(hook: HookResult) -> str:
    icon = "✅" if hook.ok else ("⚠️" if hook.continue_on_error else "❌")
    return f"{icon} {md_code(hook.label)} {md_code(hook.cmd)}: {md_text(hook.describe())}"
