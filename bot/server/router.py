"""From a normalised event to the jobs it means (SPEC §6.3), and the jobs themselves.

``dispatch`` runs inside the webhook request, so it only decides: no forge or registry call. Jobs
are keyed so that one merge request, issue or tag is worked on by one job at a time, in arrival
order; each job takes the configuration in force when it starts, and logs one event with the
delivery id, forge, project, event, handler, duration and outcome.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import structlog

from bot.chatops import first_command
from bot.config.schema import ScheduledJob
from bot.errors import ConfigError, ImglifeError
from bot.events import ChangeAction, CommentAction, EventKind, ForgeEvent, Repo
from bot.server.app import Work
from bot.server.metrics import Metrics
from bot.server.runtime import BotRuntime
from bot.server.schedule import schedule_key
from bot.server.waits import Waits
from handlers.chatops import ChatRequest, answer_comment
from handlers.context import BotContext, read_bot_config
from handlers.mirrors import sync_on_push
from handlers.reports import Thread
from handlers.review import review_change
from handlers.tagpush import register_tag

log = structlog.get_logger(__name__)

CHECKED_ACTIONS = frozenset({ChangeAction.OPENED, ChangeAction.REOPENED, ChangeAction.NEW_COMMITS})
PIPELINE_SUCCESS = "success"
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0

Handler = Callable[[BotContext], Awaitable[str]]


def describe_seconds(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest}s"
    return f"{minutes}m{rest:02d}s" if rest else f"{minutes}m"


class Router:
    def __init__(self, runtime: BotRuntime, waits: Waits, metrics: Metrics, *, config_dir: Path) -> None:
        self._runtime = runtime
        self._waits = waits
        self._metrics = metrics
        self._config_dir = config_dir

    # --- deciding (inside the request) ----------------------------------------------------------

    def dispatch(self, event: ForgeEvent) -> Sequence[Work]:
        repo = f"{event.forge}:{event.repo.id}"
        if event.kind is EventKind.TAG_PUSH and event.tag and event.sha:
            deadline = time.monotonic() + self._runtime.config.bot.register_wait
            tag = TagPush(event, event.repo, event.tag, event.sha, deadline, self._wake_key(event))
            register = partial(self._register, tag, None, FIRST_RETRY_SECONDS)
            return [self._work(f"{repo}:tag:{event.tag}", event, "register", register)]
        if event.kind is EventKind.PIPELINE:
            if event.pipeline_status == PIPELINE_SUCCESS and event.tag:
                self._waits.wake(self._wake_key(event))
            return []
        if event.kind is EventKind.CHANGE_REQUEST:
            if event.change_action in CHECKED_ACTIONS and event.sha and event.number is not None:
                thread = Thread(event.repo, event.number, change_request=True)
                review = partial(self._review, thread, event.sha, event.ref)
                return [self._work(f"{repo}:mr:{event.number}", event, "check", review)]
            return []
        if event.kind is EventKind.COMMENT:
            request = _chat_request(event)
            if request is None:
                return []
            kind = "mr" if event.is_change_request else "issue"
            answer = partial(self._chatops, request)
            return [self._work(f"{repo}:{kind}:{event.number}", event, "chatops", answer)]
        if event.kind is EventKind.PUSH and event.sha and self._is_config_push(event):
            # Same key: the mirrors are synced with the configuration just reloaded.
            return [
                self._work(f"{repo}:config", event, "reload", partial(self._reload, event.repo, event.sha)),
                self._work(
                    f"{repo}:config", event, "sync", partial(self._sync, event.repo, event.sha, event.ref)
                ),
            ]
        return []

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

    @staticmethod
    def _wake_key(event: ForgeEvent) -> str:
        return f"{event.forge}:{event.repo.id}:tag:{event.tag}:{event.sha}"

    # --- running (in a worker) ------------------------------------------------------------------

    def _work(self, key: str, event: ForgeEvent, name: str, handler: Handler) -> Work:
        return key, name, self._job(event, name, handler)

    def _job(self, event: ForgeEvent, name: str, handler: Handler) -> Callable[[], Awaitable[None]]:
        fields: dict[str, object] = {
            "delivery_id": event.delivery_id,
            "forge": str(event.forge),
            "project": event.repo.path,
            "webhook_event": str(event.kind),
        }

        async def body() -> tuple[str, str]:
            ctx = self._runtime.context(event.forge)
            if ctx is None:
                return "forge_not_configured", "warning"
            return await handler(ctx), "info"

        return self._logged(name, fields, body)

    def scheduled_job(self, job: ScheduledJob) -> Callable[[], Awaitable[None]]:
        """A ``bot.schedule`` run, logged and counted like every other job (handler ``schedule:<job>``)."""

        async def body() -> tuple[str, str]:
            return await self._runtime.run_scheduled(job), "info"

        return self._logged(schedule_key(job), {}, body)

    def _logged(
        self, name: str, extra: dict[str, object], body: Callable[[], Awaitable[tuple[str, str]]]
    ) -> Callable[[], Awaitable[None]]:
        """One ``job_finished`` event and the job metrics per run, whatever ``body`` does."""

        async def run() -> None:
            started = time.perf_counter()
            fields: dict[str, object] = {**extra, "handler": name}
            outcome, level = "error", "error"
            try:
                outcome, level = await body()
            except ConfigError as exc:
                fields["problems"] = exc.problems[:20]
                outcome, level = "config_error", "warning"
            except ImglifeError as exc:
                fields["error"] = str(exc)
                outcome, level = "failed", "warning"
            except Exception:
                log.exception("job_crashed", **fields)
            finally:
                seconds = time.perf_counter() - started
                self._metrics.jobs.labels(name, outcome).inc()
                self._metrics.job_seconds.labels(name).observe(seconds)
                getattr(log, level)(
                    "job_finished", outcome=outcome, duration_ms=round(seconds * 1000, 1), **fields
                )

        return run

    async def _register(
        self, tag: TagPush, pending: tuple[str, ...] | None, delay: float, ctx: BotContext
    ) -> str:
        wait = describe_seconds(ctx.config.bot.register_wait)
        final = time.monotonic() >= tag.deadline
        attempt = await register_tag(ctx, tag.repo, tag.tag, tag.sha, pending=pending, final=final, wait=wait)
        if attempt.failures:  # also an invalid .imglife.yml or git tag, before any image is known
            return "failed"
        if not attempt.images:
            return "no_images"
        if not attempt.missing:
            return "registered"
        if final:
            return "timed_out"
        # Wait without holding a worker: a timer (or a pipeline success) queues the next attempt.
        retry = partial(self._register, tag, attempt.missing, min(delay * 2, MAX_RETRY_SECONDS))
        self._waits.later(
            tag.wake_key,
            key=f"{tag.repo.forge}:{tag.repo.id}:tag:{tag.tag}",
            name="register",
            job=self._job(tag.event, "register", retry),
            delay=min(delay, max(tag.deadline - time.monotonic(), 0.0)),
        )
        return "waiting"

    async def _review(self, thread: Thread, sha: str, ref: str | None, ctx: BotContext) -> str:
        review = await review_change(ctx, thread, sha, ref=ref, bot_id=await ctx.forge.current_user_id())
        return str(review.state) if review.posted else "nothing_found"

    async def _chatops(self, request: ChatRequest, ctx: BotContext) -> str:
        bot_id = await ctx.forge.current_user_id()
        if request.actor.id == bot_id:
            return "own_comment"
        return str(await answer_comment(ctx, request, bot_id=bot_id))

    async def _sync(self, repo: Repo, sha: str, ref: str | None, ctx: BotContext) -> str:
        return await sync_on_push(ctx, repo, sha, ref=ref)

    async def _reload(self, repo: Repo, sha: str, ctx: BotContext) -> str:
        found = await read_bot_config(ctx.forge, repo, sha, base_dir=self._config_dir)
        if found is None:
            return "no_config_file"
        config, source = found
        self._runtime.replace_config(config, source)
        return "reloaded"


@dataclass(frozen=True, slots=True)
class TagPush:
    event: ForgeEvent
    repo: Repo
    tag: str
    sha: str
    deadline: float  # time.monotonic() after which the last attempt is made
    wake_key: str


def _chat_request(event: ForgeEvent) -> ChatRequest | None:
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
