"""Deferred retries: a job that found nothing yet comes back after a delay, or at once when woken.

A tag's registration waits for its image (SPEC §6.3) without holding a worker: the attempt ends,
and a timer queues the next one. A GitLab pipeline that succeeds for the tag wakes the waiting
attempt early. In-process only: a restart forgets waiting attempts (the log says how many).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from bot.server.jobs import Job, JobQueue

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Waiting:
    key: str
    name: str
    job: Job
    timer: asyncio.TimerHandle


class Waits:
    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._waiting: dict[str, _Waiting] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def later(self, wake: str, *, key: str, name: str, job: Job, delay: float) -> None:
        """Queue ``job`` under ``key`` after ``delay`` seconds, or when :meth:`wake` names ``wake``."""
        previous = self._waiting.pop(wake, None)
        if previous is not None:
            previous.timer.cancel()
        timer = asyncio.get_running_loop().call_later(max(delay, 0.0), self._fire, wake)
        self._waiting[wake] = _Waiting(key, name, job, timer)

    def wake(self, wake: str) -> bool:
        """Run the job waiting under ``wake`` now; False when nothing waits there."""
        waiting = self._waiting.get(wake)
        if waiting is None:
            return False
        waiting.timer.cancel()
        log.info("retry_woken", job=waiting.name, key=waiting.key)
        self._fire(wake)
        return True

    def cancel_all(self) -> int:
        """Forget every waiting job (shutdown); returns how many there were."""
        count = len(self._waiting)
        for waiting in self._waiting.values():
            waiting.timer.cancel()
        self._waiting.clear()
        if count:
            log.warning("retries_abandoned", count=count)
        return count

    def _fire(self, wake: str) -> None:
        waiting = self._waiting.pop(wake, None)
        if waiting is not None and not self._queue.submit(waiting.key, waiting.job, name=waiting.name):
            log.warning("retry_refused_while_draining", job=waiting.name, key=waiting.key)
