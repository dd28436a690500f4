"""Background work for the bot: bounded workers, one job at a time per key, graceful drain.

Jobs for one merge request, issue or repository share a key and run in arrival order, one after
another; jobs with different keys run side by side on up to ``workers`` tasks. ``drain`` stops
accepting work, lets running jobs finish (bounded by a timeout) and reports what was left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)

Job = Callable[[], Awaitable[None]]

# Acknowledgements come first: a forge gives up on a delivery after 5-10 s and disables hooks that
# keep failing, while a job has no deadline. A worker about to start a job waits until no delivery
# is being answered, for at most YIELD_MAX_SECONDS (a steady stream of deliveries slows jobs down
# but never starves them).
YIELD_MAX_SECONDS = 0.25
Idle = Callable[[], Awaitable[object]]


@dataclass(slots=True)
class _Pending:
    name: str
    run: Job
    queued_at: float = field(default_factory=time.monotonic)


class JobQueue:
    def __init__(self, *, workers: int, idle: Idle | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._workers = workers
        self._idle_deliveries = idle
        self._pending: dict[str, deque[_Pending]] = {}
        self._ready: asyncio.Queue[str] = asyncio.Queue()
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
    def depth(self) -> int:
        """Jobs waiting (not yet started)."""
        return self._queued - self._running

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"imglife-worker-{i}") for i in range(self._workers)
            ]

    def submit(self, key: str, job: Job, *, name: str) -> bool:
        """Queue ``job`` after the other jobs of ``key``; False when draining (the job is refused)."""
        if not self._accepting:
            return False
        queue = self._pending.get(key)
        if queue is None:
            self._pending[key] = deque([_Pending(name, job)])
            self._ready.put_nowait(key)
        else:
            queue.append(_Pending(name, job))
        self._queued += 1
        self._idle.clear()
        return True

    async def join(self) -> None:
        """Wait until every queued job has run (tests and drain use this)."""
        await self._idle.wait()

    async def drain(self, grace: float) -> int:
        """Refuse new jobs, wait up to ``grace`` seconds for queued ones; returns how many never finished."""
        self._accepting = False
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
        return left

    async def _yield_to_deliveries(self) -> None:
        if self._idle_deliveries is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle_deliveries(), YIELD_MAX_SECONDS)

    async def _work(self) -> None:
        while True:
            key = await self._ready.get()
            await self._yield_to_deliveries()
            queue = self._pending[key]
            pending = queue[0]
            self._running += 1
            started = time.monotonic()
            try:
                await pending.run()
            except asyncio.CancelledError:
                raise
            except Exception:  # the job boundary: one failing job must not stop the worker
                log.exception("job_crashed", job=pending.name, key=key)
            finally:
                self._running -= 1
                self._queued -= 1
                queue.popleft()
                log.debug("job_done", job=pending.name, key=key, seconds=round(time.monotonic() - started, 3))
                if queue:
                    self._ready.put_nowait(key)
                else:
                    del self._pending[key]
                    if not self._pending:
                        self._idle.set()
