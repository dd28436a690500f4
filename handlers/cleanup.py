"""``imglife cleanup``: apply ``retention`` to the base images and their mirrors.

**Repositories.** Every ``build.images`` entry (``{build.registry}/{name}``) and every sync entry's
``target`` (the mirrors). Type-orphans (repositories of the registry that are no longer declared)
are not looked for: the registry client has no catalog call, and GitLab, Harbor projects and
Docker Hub do not offer the catalog to ordinary users anyway.

**Policy, per repository** (upstream ``retention`` and ``cleanup`` pages, as documented):

1. Every tag (all pages of the tag list) is dated by the ``created`` of its image config; for an
   index, the config of its first platform image. A tag without ``created``, or with one at or
   before 1970-01-01 (what reproducible builds write), has no date.
2. Newest first; undated tags after every dated one; equal dates by version, then by text.
3. ``retention.exclude_tags`` are taken out: kept, and not counted in positions. Tags that cannot
   be read are taken out too: kept, and counted as errors.
4. The others are numbered from 1 (the newest). A tag is a **candidate** when it breaks **either**
   limit: its position is beyond ``keep_last``, **or** it was created more than ``max_age_days``
   days ago. An old tag goes even when it is among the ``keep_last`` newest (upstream: "a tag 120
   days old is deleted regardless of position"). An undated tag has no age: only its position
   counts, and it sorts last.
5. A candidate is kept anyway when it is protected, and the listing says by what:
   - a build record's ``base`` names it (by tag, or by digest);
   - it is the ``mirror_tag`` of a declared base image, in that image's ``mirror_image``;
   - it is the latest tag of a declared base image (``build.tag_format``). Upstream is silent
     on this one; it is ours: a base image without its latest tag breaks every new build;
   - in a mirror, its sync entry still selects it (the fixed ``tag``, or among the ``keep_last``
     newest tags its ``tag_regex`` matches). Ours too: otherwise every cleanup deletes mirrored
     tags older than ``max_age_days`` and every sync copies them back.
   Protected tags keep their position (they are real tags, usually among the newest).
6. Other candidates are deleted, or archived when ``retention.archive.enabled``.

Deleting one tag never deletes another: :func:`bot.oci.tags.remove_tag` re-points a tag whose
digest other tags (or an index) use to a throwaway manifest and deletes that instead.

**Safety guard** (upstream's variant B). When ``build.images`` is configured and the record store
holds records but none can be read, or some cannot be read, or none names a declared base image,
the run aborts (:class:`CleanupAborted`, exit 1) before touching anything, unless ``force``. A
store that cannot be reached is an error (it raises), never "no records"; a store that cleanly
has no records is a young project: the normal rules apply. The guard does not engage for configs
without ``build.images``, nor in dry runs and listings (they say what it would do).

**Archive.** A tag is copied digest-preserving to ``archive.registry`` + its path after the
registry host (``registry.example.com/bases/alpine:3.19.4-core1.0.0`` →
``registry.example.com/archive/bases/alpine:3.19.4-core1.0.0``), the copy is checked (same digest
at the target), its archive time is recorded in the ledger, and only then is the source tag
removed. Archived copies whose ``keep_days`` have passed are removed on a later run.

**The archive ledger** records when each copy was archived. It lives in the archive registry as a
small OCI artifact, ``{archive.registry}/imglife-archive-ledger:ledger`` (the OCI empty config and
one JSON layer), not in the package registry: cleanup's credential scope reads the package
registry but never writes it (SPEC §4), while it does push to the archive registry. Writes go
in an order that never loses an entry: copies are made first, the ledger is re-read, merged
(entries whose copies were removed go, new ones come in, an existing entry for the same digest
keeps its first archive time) and written once, and only then are the archived sources removed.
A failed ledger write leaves every source in place (counted as errors; the next run copies them
again, which costs nothing), and an entry whose copy is already gone is dropped on the next run.
Two cleanups running at once may still overwrite each other's ledger: run one at a time.

**Counts and exit.** ``Tags examined`` is every tag of every repository plus each archived copy
whose ``keep_days`` have passed; each ends in exactly one of deleted, archived, kept or errors. A
tag re-pushed between examination and deletion is kept. The run fails (exit 1) only when it could
not start (guard, unreachable store or registry, unreadable ledger) or when it tried to delete or
archive and every attempt failed (a registry that refuses deletes); partial deletions are a
completed run (exit 0, upstream), their errors listed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import partial
from typing import Any, Protocol

import structlog

from bot.config import Config, RetentionConfig
from bot.errors import (
    AuthError,
    ConfigError,
    ImglifeError,
    InvalidReference,
    NotFoundError,
    RegistryError,
    RegistryUnavailable,
)
from bot.oci.client import MAX_CONFIG_BYTES, Manifest, RegistryClient
from bot.oci.reference import ImageReference, parse_reference, parse_repository
from bot.oci.sansio import OCI_MANIFEST, sha256_digest
from bot.oci.tags import (
    EMPTY_BLOB,
    EMPTY_DIGEST,
    EMPTY_MEDIA_TYPE,
    TagMoved,
    TagSet,
    TagTarget,
    index_children,
    remove_tag,
    resolve_tags,
)
from bot.records import BuildRecord, RecordScan, RecordStore, format_timestamp, parse_timestamp
from bot.versions import version_sort_key
from handlers.inspect import describe_image
from handlers.status import md_code, md_text
from handlers.sync import Progress, keep_newest, match_tags

DESCRIBE_CONCURRENCY = 8
REPOSITORY_CONCURRENCY = 4
# Reproducible builds write the epoch (or Go's zero time) as `created`: not a build date.
NO_DATE_BEFORE = dt.datetime(1970, 1, 2, tzinfo=dt.UTC)
LEDGER_REPOSITORY = "imglife-archive-ledger"
LEDGER_TAG = "ledger"
LEDGER_MEDIA_TYPE = "application/vnd.imglife.archive-ledger.v1+json"
LEDGER_SCHEMA = "imglife.archive-ledger/v1"
SUMMARY_TITLE = "Cleanup Summary"
SUMMARY_RULE = "─" * 35
DRY_RUN_PREFIX = "[dry-run] "
MARKDOWN_LIST_LIMIT = 50
BOLD, RED, GREEN, YELLOW, RESET = "\033[1m", "\033[31m", "\033[32m", "\033[33m", "\033[0m"

MSG_NOTHING_DECLARED = (
    "cleanup has nothing to clean: declare base images in build.images or mirrors in sync.entries"
)
MSG_GUARD_UNREADABLE_ALL = "none of the {records} in {store} can be read (first: {first})"
MSG_GUARD_UNREADABLE_SOME = (
    "{count} of the {records} in {store} cannot be read (first: {first}); the base tags they use "
    "cannot be protected"
)
MSG_GUARD_NO_BASE = (
    "none of the {records} in {store} uses a base image declared in build.images "
    "(for example {example} uses {base})"
)
MSG_GUARD_ABORT = (
    "cleanup aborted by the safety guard: {problem}. Deleting now could remove base tags that "
    "applications use. Fix the records or the configuration, or run with --force once you are sure"
)
MSG_GUARD_WOULD_ABORT = "safety guard: {problem}; a real run aborts here unless --force"
MSG_GUARD_FORCED = "safety guard overridden by --force: {problem}"
MSG_NO_REPOSITORY = "{repository} does not exist in its registry: nothing to clean"
MSG_LATEST = "latest tag of base image {name}"
MSG_MIRROR_USE = "mirror_tag of base image {name}"
MSG_SYNC_SELECTED = "still selected by the sync entry of {source}"
MSG_RECORD_USE = "used by build record {image}"
MSG_RECORD_USE_MORE = "used by build record {image} and {more} more"
MSG_EXCLUDED = "in retention.exclude_tags"
MSG_UNREADABLE = "cannot be read: {problem}"
MSG_POSITION_OVER = "position {position} beyond keep_last {keep_last}"
MSG_POSITION_WITHIN = "position {position} within keep_last {keep_last}"
MSG_AGE_OVER = "{age} old, over max_age_days {max_age}"
MSG_AGE_WITHIN = "{age} old, within max_age_days {max_age}"
MSG_UNDATED = "no creation date (sorted as oldest)"
MSG_PROTECTED = "{protection} (otherwise: {violations})"
MSG_EXPIRED = "archived {archived}, keep_days {keep_days} passed on {due}"
MSG_UNDATED_WARNING = "{repository}: {count} without a creation date, sorted as the oldest: {tags}"
MSG_MOVED_KEPT = "{ref} was pushed again since it was examined; kept"
MSG_ARCHIVE_MISSING = "the archived copy {target} is not there after the copy"
MSG_ARCHIVE_DIGEST = "the archived copy {target} has digest {actual}, not {expected}"
MSG_ARCHIVE_ON_LEDGER = "{target} is where imglife keeps its archive ledger; {source} is not archived there"
MSG_LEDGER_FAILED = (
    "{source}: copied to {target}, but the archive ledger could not be written ({error}); the source "
    "stays until a run records the copy"
)
MSG_LEDGER_BAD = "the archive ledger {ref} is not readable ({detail}); fix or delete it, then run again"
MSG_ACTION_FAILED = "{ref}: {action} failed: {error}"

log = structlog.get_logger(__name__)


class Action(StrEnum):
    DELETE = "delete"
    ARCHIVE = "archive"
    KEEP = "keep"
    ERROR = "error"


class CleanupAborted(ImglifeError):
    """The safety guard stopped the run before anything was deleted (exit 1)."""


class Copier(Protocol):
    """What archiving needs of :class:`bot.oci.copy.ImageCopier`: a digest-preserving copy."""

    async def copy(
        self, source: ImageReference, target: ImageReference, *, platforms: Sequence[str] | None = None
    ) -> object: ...


# -- what is declared and what protects a tag (pure) --------------------------------------------


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository cleanup looks after: a base image or a mirror."""

    ref: ImageReference  # the repository, without tag
    role: str  # "base image alpine", "mirror of docker.io/library/alpine"

    @property
    def name(self) -> str:
        return self.ref.name


def declared_repositories(config: Config) -> list[Repository]:
    """Base images first, then mirrors; a repository declared twice is looked after once."""
    found: dict[str, Repository] = {}
    build = config.build
    if build is not None:
        for image in build.images:
            ref = parse_repository(build.repository_of(image))
            found.setdefault(ref.name, Repository(ref, f"base image {image.name}"))
    for entry in config.sync.entries:
        found.setdefault(
            entry.target_ref.name, Repository(entry.target_ref, f"mirror of {entry.source_ref.name}")
        )
    return list(found.values())


@dataclass(slots=True)
class Protections:
    """Tags that are kept whatever their age: by repository name and tag, or by digest."""

    fixed: dict[tuple[str, str], str] = field(default_factory=dict)  # (repository, tag) -> reason
    users: dict[tuple[str, str], list[str]] = field(
        default_factory=dict
    )  # (repository, tag|digest) -> images

    def reason(self, repository: str, tag: str, digest: str | None) -> str | None:
        fixed = self.fixed.get((repository, tag))
        if fixed is not None:
            return fixed
        images = [*self.users.get((repository, tag), [])]
        if digest is not None:
            images += [i for i in self.users.get((repository, digest), []) if i not in images]
        if not images:
            return None
        if len(images) == 1:
            return MSG_RECORD_USE.format(image=images[0])
        return MSG_RECORD_USE_MORE.format(image=images[0], more=len(images) - 1)


def protections(config: Config, records: Iterable[BuildRecord]) -> Protections:
    """What protects tags: build records' bases, and (with ``build``) latest and mirror tags."""
    protected = Protections()
    build = config.build
    if build is not None:
        for image in build.images:
            repository = parse_repository(build.repository_of(image)).name
            protected.fixed[(repository, build.latest_tag(image))] = MSG_LATEST.format(name=image.name)
            if image.mirror_image is not None and image.mirror_tag is not None:
                mirror = parse_repository(image.mirror_image).name
                protected.fixed.setdefault((mirror, image.mirror_tag), MSG_MIRROR_USE.format(name=image.name))
    for record in sorted(records, key=lambda r: r.image):
        try:
            base = parse_reference(record.base)
        except InvalidReference:
            continue
        for key in (base.tag, base.digest):
            if key is not None:
                protected.users.setdefault((base.name, key), []).append(record.image)
    return protected


def guard_problem(config: Config, scan: RecordScan, *, store: str) -> str | None:
    """Why the safety guard would stop this run, or None (module docstring, *Safety guard*)."""
    build = config.build
    if build is None or not build.images:
        return None
    records = _plural(len(scan.problems) + len(scan.records), "build record")
    if scan.problems and not scan.records:
        return MSG_GUARD_UNREADABLE_ALL.format(records=records, store=store, first=scan.problems[0])
    if scan.problems:
        return MSG_GUARD_UNREADABLE_SOME.format(
            count=len(scan.problems), records=records, store=store, first=scan.problems[0]
        )
    if scan.records and not any(build.find_image(record.base) is not None for record in scan.records):
        example = min(scan.records, key=lambda r: r.image)
        return MSG_GUARD_NO_BASE.format(
            records=records, store=store, example=example.image, base=example.base
        )
    return None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# -- the retention policy (pure) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagFacts:
    """What examining a tag found: its digest, creation time, index children, or why it failed."""

    tag: str
    digest: str | None = None
    created: dt.datetime | None = None
    children: tuple[str, ...] = ()
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    tag: str
    action: Action
    reason: str
    created: dt.datetime | None = None
    digest: str | None = None


def parse_created(value: str | None) -> dt.datetime | None:
    """An image config's ``created`` as an aware time; None when absent, unparsable or not a date."""
    if not value:
        return None
    try:
        when = parse_timestamp(value)
    except ValueError:
        return None
    return None if when < NO_DATE_BEFORE else when


def order_tags(facts: Iterable[TagFacts]) -> list[TagFacts]:
    """Newest first: dated by date, then undated; ties by version (newest first), then by text."""

    def key(item: TagFacts) -> tuple[Any, ...]:
        dated = item.created is not None
        stamp = item.created.timestamp() if item.created is not None else 0.0
        return (dated, stamp, version_sort_key(item.tag))

    return sorted(facts, key=key, reverse=True)


def _days(now: dt.datetime, created: dt.datetime) -> int:
    return (now - created) // dt.timedelta(days=1)


def _protect_synced(config: Config, repository: str, tags: Sequence[str], protected: Protections) -> None:
    """Keep the mirror tags their sync entry still selects: deleting them only makes the next sync
    copy them again (mirrored images are often older than ``max_age_days`` on the day they land)."""
    for entry in config.sync.entries:
        if parse_repository(entry.target).name != repository:
            continue
        for tag in keep_newest(match_tags(tags, entry), entry.keep_last):
            protected.fixed.setdefault((repository, tag), MSG_SYNC_SELECTED.format(source=entry.source))


def decide(
    repository: str,
    facts: Iterable[TagFacts],
    *,
    retention: RetentionConfig,
    now: dt.datetime,
    protected: Protections,
) -> list[Decision]:
    """The fate of every tag of one repository, in listing order (module docstring, *Policy*)."""
    excluded = set(retention.exclude_tags)
    max_age = dt.timedelta(days=retention.max_age_days)
    candidate_action = Action.ARCHIVE if retention.archive.enabled else Action.DELETE
    decisions: list[Decision] = []
    position = 0
    for item in order_tags(facts):
        if item.tag in excluded:
            decisions.append(Decision(item.tag, Action.KEEP, MSG_EXCLUDED, item.created, item.digest))
            continue
        if item.problem is not None or item.digest is None:
            reason = MSG_UNREADABLE.format(problem=item.problem or "no digest")
            decisions.append(Decision(item.tag, Action.ERROR, reason, item.created, item.digest))
            continue
        position += 1
        over_position = position > retention.keep_last
        too_old = item.created is not None and now - item.created > max_age
        limits = dict(position=position, keep_last=retention.keep_last)
        parts = [(MSG_POSITION_OVER if over_position else MSG_POSITION_WITHIN).format(**limits)]
        if item.created is None:
            parts.append(MSG_UNDATED)
        else:
            ages = dict(age=_plural(_days(now, item.created), "day"), max_age=retention.max_age_days)
            parts.append((MSG_AGE_OVER if too_old else MSG_AGE_WITHIN).format(**ages))
        reason = "; ".join(parts)
        if not (over_position or too_old):
            decisions.append(Decision(item.tag, Action.KEEP, reason, item.created, item.digest))
            continue
        protection = protected.reason(repository, item.tag, item.digest)
        if protection is not None:
            reason = MSG_PROTECTED.format(protection=protection, violations=reason)
            decisions.append(Decision(item.tag, Action.KEEP, reason, item.created, item.digest))
            continue
        decisions.append(Decision(item.tag, candidate_action, reason, item.created, item.digest))
    return decisions


def archive_reference(archive_registry: str, source: ImageReference) -> ImageReference:
    """``archive.registry`` + the source's path after its host, with the source's tag."""
    target = parse_repository(f"{archive_registry.rstrip('/')}/{source.repository}")
    return target.with_tag(source.tag) if source.tag else target


# -- the archive ledger -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    archive: str  # the archived copy, registry/repository:tag
    source: str  # where it came from
    digest: str
    archived_at: dt.datetime

    def due(self, keep_days: int) -> dt.datetime:
        return self.archived_at + dt.timedelta(days=keep_days)


@dataclass(slots=True)
class Ledger:
    """When each archived copy was archived, keyed by the copy's reference."""

    entries: dict[str, LedgerEntry] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes, *, where: str) -> Ledger:
        try:
            document = json.loads(data)
            if not isinstance(document, dict) or document.get("schema") != LEDGER_SCHEMA:
                raise ValueError(f"not a {LEDGER_SCHEMA} document")
            entries = {
                key: LedgerEntry(
                    archive=key,
                    source=str(value["source"]),
                    digest=str(value["digest"]),
                    archived_at=parse_timestamp(str(value["archived_at"])),
                )
                for key, value in dict(document["entries"]).items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(MSG_LEDGER_BAD.format(ref=where, detail=exc)) from None
        return cls(entries)

    def encode(self, *, now: dt.datetime) -> bytes:
        entries = {
            key: {
                "source": entry.source,
                "digest": entry.digest,
                "archived_at": format_timestamp(entry.archived_at),
            }
            for key, entry in sorted(self.entries.items())
        }
        # updated_at also makes every write a new manifest, whose predecessor can then be deleted.
        document = {"schema": LEDGER_SCHEMA, "updated_at": now.isoformat(), "entries": entries}
        return json.dumps(document, indent=1).encode() + b"\n"

    def due(self, now: dt.datetime, keep_days: int) -> list[LedgerEntry]:
        return sorted((e for e in self.entries.values() if e.due(keep_days) <= now), key=lambda e: e.archive)

    def merged(self, *, removed: Iterable[LedgerEntry], added: Iterable[LedgerEntry]) -> Ledger:
        """This ledger without ``removed`` (when unchanged since) and with ``added``."""
        entries = dict(self.entries)
        for entry in removed:
            if (current := entries.get(entry.archive)) is not None and current.digest == entry.digest:
                del entries[entry.archive]
        for entry in added:
            current = entries.get(entry.archive)
            if current is not None and current.digest == entry.digest:
                entry = replace(entry, archived_at=min(current.archived_at, entry.archived_at))
            entries[entry.archive] = entry
        return Ledger(entries)


class RegistryLedger:
    """The ledger as an OCI artifact: ``{archive.registry}/imglife-archive-ledger:ledger``."""

    def __init__(self, client: RegistryClient, archive_registry: str) -> None:
        self._client = client
        self.ref = parse_repository(f"{archive_registry.rstrip('/')}/{LEDGER_REPOSITORY}").with_tag(
            LEDGER_TAG
        )

    async def read(self) -> tuple[Ledger, str | None]:
        """The ledger and its manifest digest; an empty ledger (and None) when there is none yet."""
        try:
            manifest = await self._client.get_manifest(self.ref)
        except NotFoundError:
            return Ledger(), None
        layers = [
            layer
            for layer in manifest.json().get("layers") or []
            if isinstance(layer, dict) and layer.get("mediaType") == LEDGER_MEDIA_TYPE
        ]
        if len(layers) != 1:
            raise RegistryError(MSG_LEDGER_BAD.format(ref=self.ref, detail=f"{len(layers)} ledger layers"))
        data = await self._client.get_blob(self.ref, str(layers[0].get("digest")), limit=MAX_CONFIG_BYTES)
        return Ledger.parse(data, where=str(self.ref)), manifest.digest

    async def write(self, ledger: Ledger, *, now: dt.datetime, previous: str | None) -> str:
        data = ledger.encode(now=now)
        digest = sha256_digest(data)
        await self._client.push_blob(self.ref, EMPTY_DIGEST, len(EMPTY_BLOB), EMPTY_BLOB)
        await self._client.push_blob(self.ref, digest, len(data), data)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": LEDGER_MEDIA_TYPE,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": EMPTY_DIGEST, "size": len(EMPTY_BLOB)},
            "layers": [{"mediaType": LEDGER_MEDIA_TYPE, "digest": digest, "size": len(data)}],
        }
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        written = await self._client.put_manifest(self.ref, raw, OCI_MANIFEST)
        log.info("archive_ledger_written", ref=str(self.ref), digest=written, entries=len(ledger.entries))
        if previous is not None and previous != written:
            # The previous version is untagged now; without this every run would leave one behind.
            try:
                await self._client.delete_manifest(self.ref.with_digest(previous))
            except RegistryError as exc:
                log.info("archive_ledger_previous_kept", ref=str(self.ref), digest=previous, error=str(exc))
        return written


# -- examining the registries -------------------------------------------------------------------


class _CachingSource:
    """The registry as :func:`describe_image` reads it, remembering manifests and configs.

    Tags that share a digest (or a config) are read once; the top manifests stay available for
    their index children.
    """

    def __init__(self, client: RegistryClient) -> None:
        self._client = client
        self._manifests: dict[str, Manifest] = {}
        self._blobs: dict[str, bytes] = {}

    async def get_manifest(self, ref: ImageReference) -> Manifest:
        key = ref.digest or str(ref)
        if key not in self._manifests:
            self._manifests[key] = await self._client.get_manifest(ref)
        return self._manifests[key]

    async def get_blob(self, repo: ImageReference, digest: str, *, limit: int = MAX_CONFIG_BYTES) -> bytes:
        if digest not in self._blobs:
            self._blobs[digest] = await self._client.get_blob(repo, digest, limit=limit)
        return self._blobs[digest]


async def _examine_tag(source: _CachingSource, repo: ImageReference, tag: str) -> TagFacts | None:
    """The facts of one tag; None when it vanished since the tag list was read."""
    ref = repo.with_tag(tag)
    try:
        top = await source.get_manifest(ref)
    except NotFoundError:
        return None
    except (RegistryUnavailable, AuthError):
        raise
    except RegistryError as exc:
        return TagFacts(tag, problem=str(exc))
    try:
        description = await describe_image(source, ref)
    except (RegistryUnavailable, AuthError):
        raise
    except RegistryError as exc:
        return TagFacts(tag, digest=top.digest, problem=str(exc))
    return TagFacts(tag, top.digest, parse_created(description.created), index_children(top))


@dataclass(slots=True)
class RepositoryPlan:
    repository: Repository
    decisions: list[Decision] = field(default_factory=list)
    tags: TagSet = field(default_factory=TagSet)
    note: str | None = None

    def with_action(self, action: Action) -> list[Decision]:
        return [d for d in self.decisions if d.action is action]


@dataclass(slots=True)
class CleanupPlan:
    """What a run would do: per repository, the fate of every tag; and the expired archives."""

    repositories: list[RepositoryPlan]
    expired: list[LedgerEntry]
    keep_days: int
    warnings: list[str]

    def listing(self) -> str:
        """The ``--list`` text: per repository, every tag with its action and the reason."""
        lines: list[str] = []
        for plan in self.repositories:
            lines.append(
                f"{plan.repository.name} ({plan.repository.role}): {_plural(len(plan.decisions), 'tag')}"
            )
            if plan.note:
                lines.append(f"  {plan.note}")
            width = max((len(d.tag) for d in plan.decisions), default=0)
            for decision in plan.decisions:
                created = decision.created.date().isoformat() if decision.created else "-"
                lines.append(
                    f"  {decision.action.value:<8} {decision.tag:<{width}}  {created:<10}  {decision.reason}"
                )
        if self.expired:
            lines.append(f"archived copies past keep_days {self.keep_days}: {len(self.expired)}")
            for entry in self.expired:
                archived, due = entry.archived_at.date(), entry.due(self.keep_days).date()
                reason = MSG_EXPIRED.format(archived=archived, keep_days=self.keep_days, due=due)
                lines.append(f"  {Action.DELETE.value:<8} {entry.archive}  {reason}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


async def _say(on_progress: Progress | None, message: str) -> None:
    if on_progress is not None:
        await on_progress(message)


async def plan_cleanup(
    config: Config,
    *,
    client: RegistryClient,
    store: RecordStore,
    now: dt.datetime,
    guard: bool,
    forced: bool = False,
    on_progress: Progress | None = None,
) -> CleanupPlan:
    """Read the records, the registries and the ledger, and decide; changes nothing.

    With ``guard`` the safety guard raises :class:`CleanupAborted` right after the records are
    read; otherwise its finding is a warning of the plan.
    """
    now = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    repositories = declared_repositories(config)
    if not repositories:
        raise ConfigError([MSG_NOTHING_DECLARED])
    await _say(on_progress, f"reading build records from {store.description}")
    scan = await store.scan()
    warnings: list[str] = []
    problem = guard_problem(config, scan, store=store.description)
    if problem is not None:
        if guard:
            log.warning("cleanup_guard_aborted", problem=problem, records=len(scan.records))
            raise CleanupAborted(MSG_GUARD_ABORT.format(problem=problem))
        warnings.append((MSG_GUARD_FORCED if forced else MSG_GUARD_WOULD_ABORT).format(problem=problem))
    protected = protections(config, scan.records)
    slots = asyncio.Semaphore(DESCRIBE_CONCURRENCY)

    async def examine(source: _CachingSource, repo: ImageReference, tag: str) -> TagFacts | None:
        async with slots:
            return await _examine_tag(source, repo, tag)

    plans: list[RepositoryPlan] = []
    for repository in repositories:
        plan = RepositoryPlan(repository)
        plans.append(plan)
        try:
            tags = await client.list_tags(repository.ref)
        except NotFoundError:
            plan.note = MSG_NO_REPOSITORY.format(repository=repository.name)
            continue
        await _say(on_progress, f"examining {repository.name}: {len(tags)} tags")
        # One cache per repository: tags sharing a manifest or config are read once, and the
        # memory goes with the repository (configs with a long history weigh tens of KB each).
        source = _CachingSource(client)
        examined = await asyncio.gather(*(examine(source, repository.ref, t) for t in tags))
        found = [f for f in examined if f is not None]
        _protect_synced(config, repository.name, [f.tag for f in found], protected)
        plan.decisions = decide(
            repository.name, found, retention=config.retention, now=now, protected=protected
        )
        plan.tags = TagSet({f.tag: TagTarget(f.digest, f.children) for f in found if f.digest is not None})
        undated = [f.tag for f in found if f.created is None and f.problem is None]
        if undated:
            shown = ", ".join(sorted(undated)[:5]) + (", ..." if len(undated) > 5 else "")
            warnings.append(
                MSG_UNDATED_WARNING.format(
                    repository=repository.name, count=_plural(len(undated), "tag"), tags=shown
                )
            )
        log.info(
            "cleanup_repository_examined",
            repository=repository.name,
            tags=len(tags),
            **{action.value: len(plan.with_action(action)) for action in Action},
        )
    archive = config.retention.archive
    expired: list[LedgerEntry] = []
    if archive.registry is not None:
        ledger, _digest = await RegistryLedger(client, archive.registry).read()
        expired = ledger.due(now, archive.keep_days)
    return CleanupPlan(plans, expired, archive.keep_days, warnings)


# -- doing it -------------------------------------------------------------------------------------


@dataclass(slots=True)
class CleanupSummary:
    """What a run did (or, in a dry run, would do); ``text()`` is upstream's summary block."""

    dry_run: bool = False
    duration: float = 0.0
    examined: int = 0
    deleted: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    kept: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failed_actions: int = 0  # deletions and archives that failed (not unreadable tags)

    @property
    def failed(self) -> bool:
        """Every deletion or archive that was tried failed: nothing could be cleaned."""
        return self.failed_actions > 0 and not self.deleted and not self.archived

    def text(self, *, color: bool = False) -> str:
        def paint(code: str, text: str) -> str:
            return f"{code}{text}{RESET}" if color else text

        prefix = DRY_RUN_PREFIX if self.dry_run else ""
        errors = len(self.errors)
        return "\n".join(
            [
                paint(BOLD, f"{prefix}{SUMMARY_TITLE} · {self.duration:.1f}s"),
                SUMMARY_RULE,
                f"Tags examined {self.examined}",
                f"├─ Deleted {paint(RED, str(len(self.deleted))) if self.deleted else 0}",
                f"├─ Archived {paint(YELLOW, str(len(self.archived))) if self.archived else 0}",
                f"├─ Kept {paint(GREEN, str(self.kept))}",
                f"└─ Errors {paint(RED, str(errors)) if errors else 0}",
            ]
        )

    def markdown(self) -> str:
        """The summary for a bot comment; references and errors are escaped or in code spans."""
        title = f"{DRY_RUN_PREFIX}{SUMMARY_TITLE} · {self.duration:.1f}s"
        lines = [
            f"**{md_text(title)}**",
            "",
            "| | |",
            "|---|---:|",
            f"| Tags examined | {self.examined} |",
            f"| {'Would delete' if self.dry_run else 'Deleted'} | {len(self.deleted)} |",
            f"| {'Would archive' if self.dry_run else 'Archived'} | {len(self.archived)} |",
            f"| Kept | {self.kept} |",
            f"| Errors | {len(self.errors)} |",
        ]
        sections = [
            ("Deleted", [md_code(ref) for ref in self.deleted]),
            ("Archived", [md_code(ref) for ref in self.archived]),
            ("Errors", [md_text(error) for error in self.errors]),
            ("Warnings", [md_text(warning) for warning in self.warnings]),
        ]
        for name, items in sections:
            if not items:
                continue
            shown = items[:MARKDOWN_LIST_LIMIT]
            lines += ["", f"<details><summary>{name} ({len(items)})</summary>", ""]
            lines += [f"- {item}" for item in shown]
            if len(items) > len(shown):
                lines.append(f"- … and {len(items) - len(shown)} more")
            lines += ["", "</details>"]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Pending:
    """An archived copy made in this run, whose source goes once the ledger has it."""

    plan: RepositoryPlan
    decision: Decision
    entry: LedgerEntry


class _Run:
    """One run's changes: removals, copies, the ledger; every outcome lands in the summary."""

    def __init__(
        self,
        config: Config,
        *,
        client: RegistryClient,
        copier: Copier,
        now: dt.datetime,
        summary: CleanupSummary,
        on_progress: Progress | None,
    ) -> None:
        self._config = config
        self._client = client
        self._copier = copier
        self._now = now
        self._summary = summary
        self._on_progress = on_progress
        self._slots = asyncio.Semaphore(REPOSITORY_CONCURRENCY)
        archive = config.retention.archive.registry
        self._ledger = RegistryLedger(client, archive) if archive is not None else None
        self._expired: list[LedgerEntry] = []
        self._pending: list[_Pending] = []

    async def _each_repository(self, jobs: Iterable[Callable[[], Awaitable[None]]]) -> None:
        """Run one job per repository, a few repositories at a time (each job is sequential inside)."""

        async def run(job: Callable[[], Awaitable[None]]) -> None:
            async with self._slots:
                await job()

        await asyncio.gather(*(run(job) for job in jobs))

    def _failed(self, ref: str, action: str, error: Exception) -> None:
        self._summary.failed_actions += 1
        self._summary.errors.append(MSG_ACTION_FAILED.format(ref=ref, action=action, error=error))
        log.warning("cleanup_action_failed", ref=ref, action=action, error=str(error))

    async def _remove(self, plan: RepositoryPlan, decision: Decision) -> bool:
        """Remove one source tag; True when it is gone. A tag pushed again is kept, not an error."""
        ref = plan.repository.ref.with_tag(decision.tag)
        try:
            removal = await remove_tag(
                self._client, ref, shared=plan.tags.shared_with(decision.tag), expected_digest=decision.digest
            )
        except TagMoved:
            self._summary.kept += 1
            self._summary.warnings.append(MSG_MOVED_KEPT.format(ref=ref))
            log.info("cleanup_tag_moved", ref=str(ref), digest=decision.digest)
            return False
        except RegistryError as exc:
            self._failed(str(ref), "delete", exc)
            return False
        plan.tags.discard(decision.tag)
        log.info("cleanup_tag_removed", ref=str(ref), digest=decision.digest, removal=removal.value)
        return True

    async def expire(self, entries: Sequence[LedgerEntry], keep_days: int) -> None:
        """Remove archived copies past ``keep_days`` (grouped by repository, one at a time in each)."""
        by_repository: dict[str, list[tuple[ImageReference, LedgerEntry]]] = {}
        for entry in entries:
            try:
                ref = parse_reference(entry.archive)
            except InvalidReference as exc:
                self._failed(entry.archive, "delete archived copy", exc)
                continue
            by_repository.setdefault(ref.name, []).append((ref, entry))

        async def expire_repository(items: list[tuple[ImageReference, LedgerEntry]]) -> None:
            repo = items[0][0]
            try:
                tags = await resolve_tags(self._client, repo, await self._client.list_tags(repo))
            except NotFoundError:
                tags = TagSet()
            except RegistryError as exc:
                for ref, _entry in items:
                    self._failed(str(ref), "delete archived copy", exc)
                return
            for ref, entry in items:
                tag = ref.tag or ""
                await _say(self._on_progress, f"deleting archived copy {ref}")
                try:
                    removal = await remove_tag(self._client, ref, shared=tags.shared_with(tag))
                except RegistryError as exc:
                    self._failed(str(ref), "delete archived copy", exc)
                    continue
                tags.discard(tag)
                self._expired.append(entry)
                self._summary.deleted.append(str(ref))
                log.info(
                    "cleanup_archive_expired",
                    ref=str(ref),
                    archived_at=format_timestamp(entry.archived_at),
                    keep_days=keep_days,
                    removal=removal.value,
                )

        await self._each_repository(partial(expire_repository, items) for items in by_repository.values())

    async def apply(self, plans: Sequence[RepositoryPlan]) -> None:
        """Delete the tags to delete, copy the tags to archive (their sources go in :meth:`commit`)."""

        async def apply_repository(plan: RepositoryPlan) -> None:
            for decision in plan.decisions:
                if decision.action is Action.DELETE:
                    await _say(self._on_progress, f"deleting {plan.repository.name}:{decision.tag}")
                    if await self._remove(plan, decision):
                        self._summary.deleted.append(f"{plan.repository.name}:{decision.tag}")
                elif decision.action is Action.ARCHIVE:
                    await self._archive_copy(plan, decision)

        await self._each_repository(partial(apply_repository, plan) for plan in plans)

    async def _archive_copy(self, plan: RepositoryPlan, decision: Decision) -> None:
        archive = self._config.retention.archive.registry
        source = plan.repository.ref.with_tag(decision.tag)
        if archive is None or decision.digest is None or self._ledger is None:  # excluded by decide()
            self._failed(str(source), "archive", RegistryError("no archive registry or digest"))
            return
        target = archive_reference(archive, source)
        await _say(self._on_progress, f"archiving {source} to {target}")
        try:
            if target.name == self._ledger.ref.name:
                raise RegistryError(MSG_ARCHIVE_ON_LEDGER.format(target=target.name, source=source))
            await self._copier.copy(source.with_digest(decision.digest), target)
            copied = await self._client.head_manifest(target)
            if copied is None:
                raise RegistryError(MSG_ARCHIVE_MISSING.format(target=target))
            if copied.digest != decision.digest:
                raise RegistryError(
                    MSG_ARCHIVE_DIGEST.format(target=target, actual=copied.digest, expected=decision.digest)
                )
        except RegistryError as exc:
            self._failed(str(source), "archive", exc)
            return
        log.info("cleanup_tag_copied_to_archive", ref=str(source), target=str(target), digest=decision.digest)
        entry = LedgerEntry(str(target), str(source), decision.digest, self._now)
        self._pending.append(_Pending(plan, decision, entry))

    async def commit(self) -> None:
        """Record removed and new archived copies in the ledger, then remove the archived sources."""
        if self._ledger is None or not (self._pending or self._expired):
            return
        try:
            current, digest = await self._ledger.read()
            ledger = current.merged(removed=self._expired, added=[p.entry for p in self._pending])
            await self._ledger.write(ledger, now=self._now, previous=digest)
        except RegistryError as exc:
            log.warning("archive_ledger_failed", ref=str(self._ledger.ref), error=str(exc))
            for pending in self._pending:
                self._summary.failed_actions += 1
                self._summary.errors.append(
                    MSG_LEDGER_FAILED.format(
                        source=pending.entry.source, target=pending.entry.archive, error=exc
                    )
                )
            if not self._pending:
                self._summary.warnings.append(f"archive ledger {self._ledger.ref} not updated: {exc}")
            return
        by_plan: dict[str, list[_Pending]] = {}
        for pending in self._pending:
            by_plan.setdefault(pending.plan.repository.name, []).append(pending)

        async def remove_sources(items: list[_Pending]) -> None:
            for pending in items:
                if await self._remove(pending.plan, pending.decision):
                    self._summary.archived.append(pending.entry.source)
                    log.info("cleanup_tag_archived", ref=pending.entry.source, target=pending.entry.archive)

        await self._each_repository(partial(remove_sources, items) for items in by_plan.values())


async def cleanup_registry(
    config: Config,
    *,
    client: RegistryClient,
    copier: Copier,
    store: RecordStore,
    now: dt.datetime,
    dry_run: bool = False,
    force: bool = False,
    on_progress: Progress | None = None,
) -> CleanupSummary:
    """Apply ``retention`` (module docstring); shared by ``imglife cleanup`` and the bot.

    Raises :class:`CleanupAborted` (guard), :class:`~bot.errors.ConfigError` (nothing declared),
    and the store's or registry's error when they cannot be read; per-tag failures are counted.
    """
    started = time.monotonic()
    now = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    log.info("cleanup_started", dry_run=dry_run, force=force)
    plan = await plan_cleanup(
        config,
        client=client,
        store=store,
        now=now,
        guard=not (dry_run or force),
        forced=force,
        on_progress=on_progress,
    )
    summary = CleanupSummary(dry_run=dry_run, warnings=list(plan.warnings))
    for repository in plan.repositories:
        summary.examined += len(repository.decisions)
        summary.kept += len(repository.with_action(Action.KEEP))
        summary.errors += [
            f"{repository.repository.name}:{d.tag}: {d.reason}" for d in repository.with_action(Action.ERROR)
        ]
    summary.examined += len(plan.expired)
    if dry_run:
        for repository in plan.repositories:
            name = repository.repository.name
            summary.deleted += [f"{name}:{d.tag}" for d in repository.with_action(Action.DELETE)]
            summary.archived += [f"{name}:{d.tag}" for d in repository.with_action(Action.ARCHIVE)]
        summary.deleted += [entry.archive for entry in plan.expired]
    else:
        run = _Run(config, client=client, copier=copier, now=now, summary=summary, on_progress=on_progress)
        await run.expire(plan.expired, plan.keep_days)
        await run.apply(plan.repositories)
        await run.commit()
    summary.duration = time.monotonic() - started
    log.info(
        "cleanup_finished",
        dry_run=dry_run,
        examined=summary.examined,
        deleted=len(summary.deleted),
        archived=len(summary.archived),
        kept=summary.kept,
        errors=len(summary.errors),
        duration_s=round(summary.duration, 3),
    )
    return summary
