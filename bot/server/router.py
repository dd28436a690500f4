"""From a normalised event to the jobs it means (SPEC §6.3), and running them.

``dispatch`` runs inside the webhook request, so it only decides: no forge or registry call. It
answers :class:`~bot.server.jobs.JobSpec` values, keyed so that one merge request, issue or tag is
worked on by one job at a time, in arrival order, on whichever replica takes it. ``run`` runs one
with the configuration in force when it starts, and logs one ``job_finished`` event with the
delivery id, forge, project, event, handler, duration and outcome.

A job that raises is retried (``bot.retry_delay``, doubled each time) until ``bot.job_attempts``
runs have failed; then it is given up: a ``job_gave_up`` event and, where the job reports, a
failure status or comment (:mod:`handlers.failures`). Its key is free again for the next job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from bot.chatops import first_command
from bot.errors import ConfigError, ImglifeError
from bot.events import ChangeAction, CommentAction, EventKind, ForgeEvent
from bot.server.app import NO_WORK, Work
from bot.server.jobs import JobSpec, Later
from bot.server.metrics import Metrics
from bot.server.runtime import BotRuntime
from bot.server.schedule import SCHEDULE_HANDLER
from handlers.chatops import ChatRequest, answer_comment
from handlers.context import BotContext, read_bot_config
from handlers.failures import MSG_INTERNAL, report_gave_up
from handlers.mirrors import sync_on_push
from handlers.reports import Thread
from handlers.review import review_change
from handlers.tagpush import register_tag

log = structlog.get_logger(__name__)

CHECKED_ACTIONS = frozenset({ChangeAction.OPENED, ChangeAction.REOPENED, ChangeAction.NEW_COMMITS})
PIPELINE_SUCCESS = "success"
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0

Outcome = tuple[str, Later | None]
Handler = Callable[[BotContext, JobSpec, ForgeEvent], Awaitable[Outcome]]


def describe_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest}s"
    return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"


def wake_key(event: ForgeEvent) -> str:
    """Names the registration waiting for a tag's image; a pipeline success for the tag wakes it."""
    return f"{event.forge}:{event.repo.id}:tag:{event.tag}:{event.sha}"


class Router:
    def __init__(self, runtime: BotRuntime, metrics: Metrics, *, config_dir: Path) -> None:
        self._runtime = runtime
        self._metrics = metrics
        self._config_dir = config_dir
        self._handlers: dict[str, Handler] = {
            "register": self._register,
            "check": self._review,
            "chatops": self._chatops,
            "reload": self._reload,
            "sync": self._sync,
        }

    # --- deciding (inside the request) ----------------------------------------------------------

    def dispatch(self, event: ForgeEvent) -> Work:
        repo = f"{event.forge}:{event.repo.id}"
        if event.kind is EventKind.TAG_PUSH and event.tag and event.sha:
            state = {
                "deadline": time.time() + self._runtime.config.bot.register_wait,
                "delay": FIRST_RETRY_SECONDS,
                "pending": None,
            }
            return Work([JobSpec(f"{repo}:tag:{event.tag}", "register", event, state)])
        if event.kind is EventKind.PIPELINE:
            if event.pipeline_status == PIPELINE_SUCCESS and event.tag:
                return Work(wakes=[wake_key(event)])
            return NO_WORK
        if event.kind is EventKind.CHANGE_REQUEST:
            if event.change_action in CHECKED_ACTIONS and event.sha and event.number is not None:
                return Work([JobSpec(f"{repo}:mr:{event.number}", "check", event)])
            return NO_WORK
        if event.kind is EventKind.COMMENT:
            if chat_request(event) is None:
                return NO_WORK
            kind = "mr" if event.is_change_request else "issue"
            return Work([JobSpec(f"{repo}:{kind}:{event.number}", "chatops", event)])
        if event.kind is EventKind.PUSH and event.sha and self._is_config_push(event):
            # Same key: the mirrors are synced with the configuration just reloaded.
            key = f"{repo}:config"
            return Work([JobSpec(key, "reload", event), JobSpec(key, "sync", event)])
        return NO_WORK

    def _is_config_push(self, event: ForgeEvent) -> bool:
        wanted = self._runtime.config.bot.config_repo
        branch = event.repo.default_branch
        return (
            wanted is not None
            and event.repo.path.casefold() == wanted.casefold()
            and branch is not None
            and event.ref == f"refs/heads/{branch}"
            and event.sha is not None
        )

    # --- running (in a worker, on any replica) --------------------------------------------------

    async def run(self, job: JobSpec) -> Later | None:
        """Run ``job``; the next job to queue later, if any. Never raises (but CancelledError)."""
        event = job.event
        name = (
            f"{SCHEDULE_HANDLER}:{job.state.get('job')}" if job.handler == SCHEDULE_HANDLER else job.handler
        )
        fields: dict[str, object] = {"handler": name}
        if event is not None:
            fields |= {
                "delivery_id": event.delivery_id,
                "forge": str(event.forge),
                "project": event.repo.path,
                "webhook_event": str(event.kind),
            }
        if job.attempt:
            fields["attempt"] = job.attempt + 1
        started = time.perf_counter()
        outcome, level, later = "error", "error", None
        attempts = self._runtime.config.bot.job_attempts
        try:
            if job.attempt >= attempts:  # its runs stopped the bot (taken over from a dead replica)
                raise _Exhausted
            await self._runtime.refresh()
            outcome, later = await self._body(job, event)
            level = "info"
        except asyncio.CancelledError:
            # Stopped by the drain: in Redis mode the job goes back to the queue and runs again.
            outcome, level = "interrupted", "warning"
            raise
        except ConfigError as exc:
            fields["problems"] = exc.problems[:20]
            outcome, level = "config_error", "warning"
        except Exception as exc:
            if isinstance(exc, ImglifeError):
                reason = fields["error"] = str(exc)
            elif isinstance(exc, _Exhausted):
                reason = f"it was cut short {job.attempt} times (the bot stopped while running it)"
            else:
                log.exception("job_crashed", **fields)
                reason = MSG_INTERNAL.format(delivery=event.delivery_id if event else "-")
            if job.attempt + 1 < attempts:
                delay = self._runtime.config.bot.retry_delay * 2**job.attempt
                later = Later(job.again(failed=True), delay)
                outcome, level = "retrying", "warning"
                fields["retry_in_s"] = round(delay, 1)
            else:
                outcome, level = ("failed" if isinstance(exc, ImglifeError) else "error"), "error"
                fields["gave_up"] = await self._give_up(job, event, reason, fields)
        finally:
            seconds = time.perf_counter() - started
            self._metrics.jobs.labels(name, outcome).inc()
            self._metrics.job_seconds.labels(name).observe(seconds)
            getattr(log, level)(
                "job_finished", outcome=outcome, duration_ms=round(seconds * 1000, 1), **fields
            )
        return later

    async def _body(self, job: JobSpec, event: ForgeEvent | None) -> Outcome:
        if job.handler == SCHEDULE_HANDLER:
            return await self._runtime.run_scheduled(job.state["job"]), None
        handler = self._handlers.get(job.handler)
        if handler is None or event is None:
            raise RuntimeError(f"no handler {job.handler!r} for this job")  # a replica of another version
        ctx = self._runtime.context(event.forge)
        if ctx is None:
            return "forge_not_configured", None
        return await handler(ctx, job, event)

    async def _give_up(
        self, job: JobSpec, event: ForgeEvent | None, reason: str, fields: dict[str, object]
    ) -> str:
        posted = "log"
        ctx = None if event is None else self._runtime.context(event.forge)
        if ctx is not None and event is not None:
            try:
                posted = await report_gave_up(
                    ctx, job.handler, event, attempts=job.attempt + 1, reason=reason
                )
            except Exception as exc:  # noqa: BLE001 - the forge may be what keeps failing
                log.warning("gave_up_report_failed", error=str(exc) or type(exc).__name__, **fields)
        log.error("job_gave_up", attempts=job.attempt + 1, reason=reason, reported=posted, **fields)
        return posted

    async def _register(self, ctx: BotContext, job: JobSpec, event: ForgeEvent) -> Outcome:
        if event.tag is None or event.sha is None:
            return "not_a_tag", None
        deadline, delay = float(job.state["deadline"]), float(job.state["delay"])
        pending = job.state.get("pending")
        wait = describe_seconds(ctx.config.bot.register_wait)
        final = time.time() >= deadline
        attempt = await register_tag(
            ctx, event.repo, event.tag, event.sha,
            pending=None if pending is None else tuple(pending), final=final, wait=wait,
        )  # fmt: skip
        if attempt.failures:  # also an invalid .imglife.yml or git tag, before any image is known
            return "failed", None
        if not attempt.images:
            return "no_images", None
        if not attempt.missing:
            return "registered", None
        if final:
            return "timed_out", None
        # Wait without holding a worker: the queue runs the next attempt after the delay, or at
        # once when a pipeline succeeds for the tag.
        state = {
            "deadline": deadline,
            "delay": min(delay * 2, MAX_RETRY_SECONDS),
            "pending": list(attempt.missing),
        }
        retry = Later(job.again(state=state), min(delay, max(deadline - time.time(), 0.0)), wake_key(event))
        return "waiting", retry

    async def _review(self, ctx: BotContext, _job: JobSpec, event: ForgeEvent) -> Outcome:
        if event.number is None or event.sha is None:
            return "no_head", None
        thread = Thread(event.repo, event.number, change_request=True)
        review = await review_change(
            ctx, thread, event.sha, ref=event.ref, bot_id=await ctx.forge.current_user_id()
        )
        return (str(review.state) if review.posted else "nothing_found"), None

    async def _chatops(self, ctx: BotContext, _job: JobSpec, event: ForgeEvent) -> Outcome:
        request = chat_request(event)
        if request is None:
            return "not_a_command", None
        bot_id = await ctx.forge.current_user_id()
        if request.actor.id == bot_id:
            return "own_comment", None
        return str(await answer_comment(ctx, request, bot_id=bot_id)), None

    async def _sync(self, ctx: BotContext, _job: JobSpec, event: ForgeEvent) -> Outcome:
        if event.sha is None:
            return "no_commit", None
        return await sync_on_push(ctx, event.repo, event.sha, ref=event.ref), None

    async def _reload(self, ctx: BotContext, _job: JobSpec, event: ForgeEvent) -> Outcome:
        if event.sha is None:
            return "no_commit", None
        found = await read_bot_config(ctx.forge, event.repo, event.sha, base_dir=self._config_dir)
        if found is None:
            return "no_config_file", None
        config, source = found
        await self._runtime.replace_config(config, source, label=f"{event.repo.path}@{event.sha[:12]}")
        return "reloaded", None


class _Exhausted(Exception):
    """A job that already used up its attempts before this run."""


def chat_request(event: ForgeEvent) -> ChatRequest | None:
    """A comment that may hold a command, as a request; None for everything the bot must not answer."""
    if (
        event.comment_action is not CommentAction.CREATED
        or event.system
        or event.number is None
        or event.comment_id is None
        or first_command(event.comment_body or "") is None
    ):
        return None
    return ChatRequest(
        thread=Thread(event.repo, event.number, change_request=event.is_change_request),
        comment_id=event.comment_id,
        actor=event.actor,
        body=event.comment_body or "",
        sha=event.sha,
        ref=event.ref,
    )
