"""Mirrors follow the base-images repository: a push to its default branch syncs them, with a status.

The bot reloads ``imglife.yaml`` from that push first (same job key, so in order); this then runs
``imglife sync`` with the configuration now in force and reports on the pushed commit as
``imglife/sync``: running, then success or failure with the summary's headline.
"""

from __future__ import annotations

from bot.errors import ImglifeError
from bot.events import Repo
from bot.forges.api import CommitState, CommitStatus
from handlers.context import BotContext
from handlers.sync import no_progress

STATUS_CONTEXT = "imglife/sync"
MSG_SYNCING = "syncing {count} mirror entries"


async def sync_on_push(ctx: BotContext, repo: Repo, sha: str, *, ref: str | None) -> str:
    """Sync every entry; the outcome for the job log (``synced``, ``failed``, ``no_entries``)."""
    entries = len(ctx.config.sync.entries)
    if not entries:
        return "no_entries"
    running = CommitStatus(STATUS_CONTEXT, CommitState.RUNNING, MSG_SYNCING.format(count=entries))
    await ctx.forge.set_status(repo, sha, running, ref=ref)
    try:
        summary = await ctx.mirror(only=(), dry_run=False, on_progress=no_progress)
    except ImglifeError as exc:
        await ctx.forge.set_status(
            repo, sha, CommitStatus(STATUS_CONTEXT, CommitState.FAILURE, str(exc)), ref=ref
        )
        raise
    state = CommitState.SUCCESS if summary.ok else CommitState.FAILURE
    await ctx.forge.set_status(repo, sha, CommitStatus(STATUS_CONTEXT, state, summary.headline()), ref=ref)
    return "synced" if summary.ok else "failed"
