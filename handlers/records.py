"""List build records and purge old ones (``imglife app list`` / ``app purge``).

Purge policy, per image repository: the newest ``keep_last`` records are always kept; of the
others, those built more than ``older_than_days`` ago are removed (all of them when no age is
given). Records that cannot be read are reported and never removed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from bot.errors import RecordStoreError, UsageError
from bot.records import BuildRecord, RecordScan, RecordStore, format_timestamp

MSG_NO_POLICY = "app purge needs --older-than-days N, --keep-last N, or both"
PURGE_CONCURRENCY = 16


@dataclass(slots=True)
class PurgeResult:
    examined: int
    purged: list[BuildRecord] = field(default_factory=list)
    kept: int = 0
    errors: list[str] = field(default_factory=list)


async def list_records(store: RecordStore) -> RecordScan:
    scan = await store.scan()
    scan.records.sort(key=lambda r: (r.reference.name, r.built_at, r.image))
    return scan


def purge_plan(
    records: Iterable[BuildRecord], *, now: dt.datetime, older_than_days: int | None, keep_last: int | None
) -> list[BuildRecord]:
    """The records the policy of the module docstring removes (pure)."""
    if older_than_days is None and keep_last is None:
        raise UsageError(MSG_NO_POLICY)
    cutoff = now - dt.timedelta(days=older_than_days) if older_than_days is not None else None
    by_repository: dict[str, list[BuildRecord]] = defaultdict(list)
    for record in records:
        by_repository[record.reference.name].append(record)
    doomed: list[BuildRecord] = []
    for group in by_repository.values():
        # built_at has one-second resolution: ties (two CI jobs in one second) go by image name.
        group.sort(key=lambda r: (r.built_at, r.image), reverse=True)
        for record in group[keep_last or 0 :]:
            if cutoff is None or record.built_at < cutoff:
                doomed.append(record)
    doomed.sort(key=lambda r: (r.reference.name, r.built_at))
    return doomed


async def purge_records(
    store: RecordStore,
    *,
    now: dt.datetime,
    older_than_days: int | None,
    keep_last: int | None,
    dry_run: bool,
) -> PurgeResult:
    scan = await store.scan()
    doomed = purge_plan(scan.records, now=now, older_than_days=older_than_days, keep_last=keep_last)
    result = PurgeResult(examined=len(scan.records), errors=list(scan.problems))
    if dry_run:
        result.purged = doomed
    else:
        slots = asyncio.Semaphore(PURGE_CONCURRENCY)

        async def remove(record: BuildRecord) -> None:
            async with slots:
                try:
                    await store.delete(record.reference)
                except RecordStoreError as exc:
                    result.errors.append(str(exc))
                    return
            result.purged.append(record)

        await asyncio.gather(*(remove(r) for r in doomed))
        result.purged.sort(key=lambda r: (r.reference.name, r.built_at))
    result.kept = result.examined - len(result.purged)
    return result


def records_table(records: Iterable[BuildRecord]) -> str:
    """A plain-text table for people (one line per record)."""
    rows = [("IMAGE", "BASE", "BUILT", "PROJECT", "REVISION")]
    rows += [(r.image, r.base, format_timestamp(r.built_at), r.project, r.revision[:12]) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
