"""``bot.schedule``: run ``sync``, ``cleanup``, ``eol update`` and ``eol notify`` at cron times (UTC).

One task sleeps until the earliest next fire time, then queues each due job under the key
``schedule:<job>``, with the tick as its de-duplication key: in Redis mode every replica runs a
scheduler and the first to queue a tick wins, the others find it taken (``schedule_taken``), so
each tick runs on exactly one replica. A job whose previous run is still queued or running skips
the tick (log ``schedule_skipped``) instead of queueing a second run behind it. Missed ticks (the
process was busy or asleep) are not replayed: after a run the next time is computed from "now".

The clock and the sleep are injected so that tests drive time without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping

import structlog
from croniter import croniter

from bot.config.schema import ScheduledJob
from bot.server.jobs import Enqueued, JobSpec, Queue, QueueUnavailable

log = structlog.get_logger(__name__)

KEY_PREFIX = "schedule:"
SCHEDULE_HANDLER = "schedule"
# The wall clock can jump (NTP, a suspended VM): waking at least this often re-reads it, so a
# jump delays a tick by at most this much instead of by the whole sleep computed before it.
MAX_SLEEP_SECONDS = 300.0

Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], Awaitable[object]]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def next_fire(cron: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` that matches ``cron``, in UTC."""
    if after.tzinfo is None:
        raise ValueError("next_fire needs an aware datetime")
    fire: dt.datetime = croniter(cron, after.astimezone(dt.UTC)).get_next(dt.datetime)
    return fire.astimezone(dt.UTC)


def schedule_key(job: ScheduledJob) -> str:
    return f"{KEY_PREFIX}{job}"


def scheduled_job(job: ScheduledJob) -> JobSpec:
    return JobSpec(schedule_key(job), SCHEDULE_HANDLER, state={"job": job})


class Scheduler:
    def __init__(
        self,
        schedule: Mapping[ScheduledJob, str],
        *,
        queue: Queue,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._schedule = dict(schedule)
        self._queue = queue
        self._clock = clock
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the timer task; nothing to do without a ``bot.schedule``."""
        if self._schedule and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="imglife-scheduler")

    async def stop(self) -> None:
        """Stop firing; runs already submitted are left to the queue's drain."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("schedule_stopped")

    async def _loop(self) -> None:
        now = self._clock()
        upcoming = {job: next_fire(cron, now) for job, cron in self._schedule.items()}
        for job, at in upcoming.items():
            log.info("schedule_next", job=job, cron=self._schedule[job], at=at.isoformat())
        while True:
            delay = (min(upcoming.values()) - self._clock()).total_seconds()
            if delay > 0:
                await self._sleep(min(delay, MAX_SLEEP_SECONDS))
                continue  # re-read the clock: the sleep may have been cut short or the clock moved
            now = self._clock()
            for job, at in upcoming.items():
                if at <= now:
                    await self._fire(job, at)
                    upcoming[job] = next_fire(self._schedule[job], now)
                    log.info("schedule_next", job=job, cron=self._schedule[job], at=upcoming[job].isoformat())

    async def _fire(self, job: ScheduledJob, tick: dt.datetime) -> None:
        key = schedule_key(job)
        try:
            queued = await self._queue.enqueue(
                [scheduled_job(job)], dedupe=[f"{key}:{tick.isoformat()}"], if_idle=key
            )
        except QueueUnavailable as exc:  # Redis away and the outbox full: the next tick may do
            log.error("schedule_skipped", job=job, tick=tick.isoformat(), reason=str(exc))
            return
        if queued is Enqueued.ACCEPTED:
            log.info("schedule_submitted", job=job, tick=tick.isoformat())
        elif queued is Enqueued.DUPLICATE:
            log.info("schedule_taken", job=job, tick=tick.isoformat(), reason="another replica queued it")
        else:
            reason = "previous run not finished" if queued is Enqueued.BUSY else "draining"
            log.warning("schedule_skipped", job=job, tick=tick.isoformat(), reason=reason)
