"""Jobs as data, and the in-process queue that runs them (the default without ``bot.redis_url``).

A :class:`JobSpec` is everything needed to run a job on any replica: the ordering key, the handler
name, the delivery's event and the handler's own state (a waiting registration's deadline, say).
A :data:`Runner` runs one and may answer :class:`Later`: run this (next) job again after a delay,
or at once when a wake key is named (a GitLab pipeline succeeding for a tag).

Both queues — :class:`MemoryQueue` here and :class:`bot.server.redisqueue.RedisQueue` — keep the
same promises: a delivery seen before (any of its de-duplication keys, within the TTL) queues
nothing; jobs of one key run one at a time in arrival order; jobs of different keys run side by
side on up to ``workers`` tasks; ``drain`` stops taking work, lets running jobs finish within a
grace period and says what was left. The memory queue forgets everything at exit (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

import orjson
import structlog

from bot.events import ForgeEvent, event_from_dict, event_to_dict
from bot.server.dedupe import Deduplicator

log = structlog.get_logger(__name__)

# Acknowledgements come first: a forge gives up on a delivery after 5-10 s and disables hooks that
# keep failing, while a job has no deadline. A worker about to start a job waits until no delivery
# is being answered, for at most YIELD_MAX_SECONDS (a steady stream of deliveries slows jobs down
# but never starves them).
YIELD_MAX_SECONDS = 0.25
Idle = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class JobSpec:
    key: str  # jobs of one key run one at a time, in order: "gitlab:42:mr:7"
    handler: str  # what runs it: "check", "register", "schedule", ...
    event: ForgeEvent | None = None  # the delivery it came from (None for scheduled work)
    state: Mapping[str, Any] = field(default_factory=dict)  # JSON values only
    attempt: int = 0  # earlier runs that failed or were cut short
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "key": self.key,
                "handler": self.handler,
                "event": None if self.event is None else event_to_dict(self.event),
                "state": dict(self.state),
                "attempt": self.attempt,
            }
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> JobSpec:
        """The job :meth:`encode` wrote; ``ValueError`` for anything else."""
        try:
            data = orjson.loads(raw)
            event = data["event"]
            return cls(
                key=str(data["key"]),
                handler=str(data["handler"]),
                event=None if event is None else event_from_dict(event),
                state=dict(data["state"]),
                attempt=int(data["attempt"]),
                id=str(data["id"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a job: {exc}") from exc

    def again(self, *, state: Mapping[str, Any] | None = None, failed: bool = False) -> JobSpec:
        """The next run of this job, under a new id (``failed`` counts one more attempt)."""
        return replace(
            self,
            state=self.state if state is None else state,
            attempt=self.attempt + 1 if failed else self.attempt,
            id=uuid.uuid4().hex,
        )


@dataclass(frozen=True, slots=True)
class Later:
    """Queue ``job`` (under its own key) after ``delay`` seconds, or as soon as ``wake`` is named."""

    job: JobSpec
    delay: float
    wake: str | None = None


Runner = Callable[[JobSpec], Awaitable[Later | None]]


class Enqueued(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # a de-duplication key was seen before: nothing queued
    BUSY = "busy"  # ``if_idle`` named a key with work queued or running: nothing queued
    DRAINING = "draining"  # the process is stopping: nothing queued


class QueueUnavailable(Exception):
    """The queue can neither take nor hold the work (Redis away and the outbox full)."""


class Queue(Protocol):
    @property
    def accepting(self) -> bool: ...

    @property
    def ready(self) -> bool:
        """Able to take work (Redis mode: Redis was reached since the start)."""
        ...

    @property
    def depth(self) -> int:
        """Jobs waiting to start (not running, not deferred)."""
        ...

    async def enqueue(
        self,
        jobs: Sequence[JobSpec],
        *,
        dedupe: Sequence[str] = (),
        wakes: Sequence[str] = (),
        if_idle: str | None = None,
    ) -> Enqueued:
        """Queue ``jobs`` and wake deferred jobs, unless a ``dedupe`` key was seen or ``if_idle`` is busy.

        All or nothing: the keys are remembered exactly when the jobs are queued (also for BUSY:
        the tick or delivery counts as handled).
        """
        ...

    def start(self) -> None: ...

    async def drain(self, grace: float) -> int:
        """Stop taking work; wait up to ``grace`` s for running jobs; how many jobs did not finish here."""
        ...


@dataclass(slots=True)
class _Deferred:
    job: JobSpec
    timer: asyncio.TimerHandle


class MemoryQueue:
    """The queue of one process: jobs, deferred jobs and de-duplication keys in memory."""

    def __init__(
        self,
        run: Runner,
        *,
        workers: int,
        idle: Idle | None = None,
        dedupe: Deduplicator | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._run = run
        self._workers = workers
        self._idle_deliveries = idle
        self._dedupe = dedupe or Deduplicator()
        self._pending: dict[str, deque[JobSpec]] = {}
        self._deferred: dict[str, _Deferred] = {}  # by wake key (or job id when none)
        self._ready_keys: asyncio.Queue[str] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = True
        self._running = 0
        self._queued = 0  # submitted, not finished: kept as a count, the gauge reads it per delivery
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def ready(self) -> bool:
        return True

    @property
    def depth(self) -> int:
        return self._queued - self._running

    @property
    def deferred(self) -> int:
        return len(self._deferred)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"imglife-worker-{i}") for i in range(self._workers)
            ]

    async def enqueue(
        self,
        jobs: Sequence[JobSpec],
        *,
        dedupe: Sequence[str] = (),
        wakes: Sequence[str] = (),
        if_idle: str | None = None,
    ) -> Enqueued:
        if not self._accepting:
            return Enqueued.DRAINING
        if dedupe and not self._dedupe.first_time(*dedupe):
            return Enqueued.DUPLICATE
        if if_idle is not None and if_idle in self._pending:
            return Enqueued.BUSY
        for wake in wakes:
            self._wake(wake)
        for job in jobs:
            self._push(job)
        return Enqueued.ACCEPTED

    async def join(self) -> None:
        """Wait until every queued job has run (tests use this)."""
        await self._idle.wait()

    async def drain(self, grace: float) -> int:
        if not self._accepting:
            return 0
        self._accepting = False
        deferred = len(self._deferred)
        for waiting in self._deferred.values():
            waiting.timer.cancel()
        self._deferred.clear()
        if deferred:
            log.warning("retries_abandoned", count=deferred)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.join()
        left = self._queued
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if left:
            log.warning("jobs_abandoned", count=left)
        return left + deferred

    def _push(self, job: JobSpec) -> None:
        queue = self._pending.get(job.key)
        if queue is None:
            self._pending[job.key] = deque([job])
            self._ready_keys.put_nowait(job.key)
        else:
            queue.append(job)
        self._queued += 1
        self._idle.clear()

    def _defer(self, later: Later) -> None:
        slot = later.wake or later.job.id
        previous = self._deferred.pop(slot, None)
        if previous is not None:
            previous.timer.cancel()
        timer = asyncio.get_running_loop().call_later(max(later.delay, 0.0), self._due, slot)
        self._deferred[slot] = _Deferred(later.job, timer)

    def _wake(self, wake: str) -> None:
        waiting = self._deferred.get(wake)
        if waiting is not None:
            waiting.timer.cancel()
            log.info("retry_woken", job=waiting.job.handler, key=waiting.job.key)
            self._due(wake)

    def _due(self, slot: str) -> None:
        waiting = self._deferred.pop(slot, None)
        if waiting is not None and self._accepting:
            self._push(waiting.job)

    async def _yield_to_deliveries(self) -> None:
        if self._idle_deliveries is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle_deliveries(), YIELD_MAX_SECONDS)

    async def _work(self) -> None:
        while True:
            key = await self._ready_keys.get()
            await self._yield_to_deliveries()
            queue = self._pending[key]
            job = queue[0]
            self._running += 1
            started = time.monotonic()
            try:
                later = await self._run(job)
                if later is not None and self._accepting:
                    self._defer(later)
            except asyncio.CancelledError:
                raise
            except Exception:  # the job boundary: one failing job must not stop the worker
                log.exception("job_crashed", job=job.handler, key=key)
            finally:
                self._running -= 1
                self._queued -= 1
                queue.popleft()
                log.debug("job_done", job=job.handler, key=key, seconds=round(time.monotonic() - started, 3))
                if queue:
                    self._ready_keys.put_nowait(key)
                else:
                    del self._pending[key]
                    if not self._pending:
                        self._idle.set()
