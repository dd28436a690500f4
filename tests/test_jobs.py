"""The bot's job queue and de-duplication memory."""

from __future__ import annotations

import asyncio

import pytest

from bot.server.dedupe import Deduplicator
from bot.server.jobs import JobQueue


async def test_jobs_of_one_key_run_in_order_and_one_at_a_time():
    queue = JobQueue(workers=4)
    queue.start()
    log: list[str] = []
    running: dict[str, int] = {}

    def job(key: str, n: int):
        async def run() -> None:
            running[key] = running.get(key, 0) + 1
            assert running[key] == 1, "two jobs of one key ran at once"
            await asyncio.sleep(0.001 * (5 - n))
            log.append(f"{key}{n}")
            running[key] -= 1

        return run

    for n in range(5):
        for key in ("a", "b", "c"):
            queue.submit(key, job(key, n), name=f"{key}{n}")
    await queue.join()
    for key in ("a", "b", "c"):
        assert [entry for entry in log if entry[0] == key] == [f"{key}{n}" for n in range(5)]
    await queue.drain(1)


async def test_keys_run_in_parallel_up_to_the_worker_count():
    queue = JobQueue(workers=2)
    queue.start()
    active, peak = 0, 0
    gate = asyncio.Event()

    async def job() -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await gate.wait()
        active -= 1

    for key in "abcdef":
        queue.submit(key, job, name=key)
    await asyncio.sleep(0.05)
    assert peak == 2
    assert queue.depth == 4
    gate.set()
    await queue.join()
    await queue.drain(1)


async def test_a_crashing_job_does_not_stop_the_queue():
    queue = JobQueue(workers=1)
    queue.start()
    done: list[str] = []

    async def boom() -> None:
        raise RuntimeError("handler bug")

    async def ok() -> None:
        done.append("ok")

    queue.submit("k", boom, name="boom")
    queue.submit("k", ok, name="ok")
    await queue.join()
    assert done == ["ok"]
    await queue.drain(1)


async def test_drain_refuses_new_work_and_reports_what_did_not_finish():
    queue = JobQueue(workers=1)
    queue.start()
    forever = asyncio.Event()

    async def stuck() -> None:
        await forever.wait()

    async def quick() -> None:
        return None

    queue.submit("a", stuck, name="stuck")
    queue.submit("a", quick, name="queued behind it")
    await asyncio.sleep(0.01)
    left = await queue.drain(0.05)
    assert left == 2
    assert queue.submit("b", quick, name="late") is False
    assert not queue.accepting


def test_deduplicator_remembers_for_the_ttl_and_by_any_key():
    now = [0.0]
    memory = Deduplicator(ttl=10, clock=lambda: now[0])
    assert memory.first_time("content:1", "idempotency:x")
    assert not memory.first_time("content:1")
    assert not memory.first_time("content:2", "idempotency:x")  # a resend with a new body
    now[0] = 11
    assert memory.first_time("content:1")


def test_deduplicator_is_bounded():
    memory = Deduplicator(ttl=100, max_entries=3)
    for key in "abcd":
        assert memory.first_time(key)
    assert memory.first_time("a")  # the oldest was forgotten
    assert not memory.first_time("d")


def test_worker_count_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        JobQueue(workers=0)
