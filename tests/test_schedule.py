"""``bot.schedule``: next fire times, the scheduler driven by an injected clock, and the logged runs."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError
from structlog.testing import capture_logs

from bot.config import load_config
from bot.config.schema import Cron, ScheduledJob
from bot.errors import ImglifeError
from bot.records import BuildRecord
from bot.records.local import LocalRecordStore
from bot.server.jobs import Job, JobQueue
from bot.server.metrics import Metrics
from bot.server.router import Router
from bot.server.runtime import BotRuntime
from bot.server.schedule import MAX_SLEEP_SECONDS, Scheduler, next_fire, schedule_key
from bot.server.waits import Waits
from tests.fakes.webhooks import FakeSlack
from tests.helpers.lifecycle import ALPINE_EOL, write_project

UTC = dt.UTC
# A Friday.
START = dt.datetime(2026, 11, 27, 10, 53, 20, tzinfo=UTC)
HALF_MINUTE = dt.timedelta(seconds=30)


def at(hour: int, minute: int, day: int = 27, month: int = 11, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


class FakeTime:
    """A clock that moves only when the scheduler sleeps, and stops at ``until`` until released."""

    def __init__(self, start: dt.datetime, until: dt.datetime) -> None:
        self.now = start
        self.until = until
        self.sleeps: list[float] = []
        self.reached = asyncio.Event()
        self._resume = asyncio.Event()

    def clock(self) -> dt.datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        target = self.now + dt.timedelta(seconds=seconds)
        if target > self.until:
            self.reached.set()
            self._resume.clear()
            await self._resume.wait()  # stays here until the test moves ``until`` on
            return
        self.now = target
        await asyncio.sleep(0)

    def advance_to(self, until: dt.datetime) -> None:
        self.until = until
        self.reached.clear()
        self._resume.set()


class FakeQueue:
    """Records submissions; runs them only when ``run_jobs`` is set (else they stay 'queued')."""

    def __init__(self, time: FakeTime, *, run_jobs: bool) -> None:
        self.time = time
        self.run_jobs = run_jobs
        self.submitted: list[tuple[str, str, dt.datetime]] = []
        self.held: list[Job] = []

    def submit(self, key: str, job: Job, *, name: str) -> bool:
        self.submitted.append((key, name, self.time.now))
        if self.run_jobs:
            asyncio.get_running_loop().create_task(job())
        else:
            self.held.append(job)
        return True


def recording(ran: list[ScheduledJob]):
    def job_for(job: ScheduledJob) -> Job:
        async def run() -> None:
            ran.append(job)

        return run

    return job_for


# --- next fire times -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("*/15 * * * *", START, at(11, 0)),
        ("*/15 * * * *", at(11, 0), at(11, 15)),  # strictly after: a fire time is not fired twice
        ("0 5 * * mon", START, at(5, 0, day=30)),
        ("0 5 * * 7", START, at(5, 0, day=29)),  # 7 is Sunday, like 0
        ("0 5 * * SUN", START, at(5, 0, day=29)),
        ("30 2 * * mon-fri", START, at(2, 30, day=30)),  # the weekend is skipped
        ("0 */6 * * *", START, at(12, 0)),
        ("10-50/20 * * * *", START, at(11, 10)),
        ("0 0 1 jan *", START, at(0, 0, day=1, month=1, year=2027)),
        ("0 0 29 2 *", START, at(0, 0, day=29, month=2, year=2028)),
    ],
)
def test_next_fire(cron: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert next_fire(cron, after) == expected


def test_next_fire_is_in_utc_whatever_the_zone_of_now() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    assert next_fire("0 5 * * *", dt.datetime(2026, 11, 27, 7, 0, tzinfo=paris)) == at(5, 0, day=28)
    with pytest.raises(ValueError, match="aware"):
        next_fire("0 5 * * *", dt.datetime(2026, 11, 27, 7, 0))  # naive: refused


def test_config_refuses_a_cron_that_never_fires() -> None:
    adapter = TypeAdapter(Cron)
    assert adapter.validate_python("0 5 * * mon") == "0 5 * * mon"
    with pytest.raises(ValidationError, match="never fires"):
        adapter.validate_python("0 0 30 feb *")


# --- the scheduler ---------------------------------------------------------------------------


async def test_each_job_is_submitted_at_its_ticks() -> None:
    time = FakeTime(START, until=at(12, 1))
    queue = FakeQueue(time, run_jobs=True)
    ran: list[ScheduledJob] = []
    scheduler = Scheduler(
        {"sync": "*/15 * * * *", "eol notify": "0 * * * *"},
        queue=queue,
        job_for=recording(ran),
        clock=time.clock,
        sleep=time.sleep,
    )
    with capture_logs() as logs:
        scheduler.start()
        await time.reached.wait()
        await scheduler.stop()
    sync_ticks = [when for key, _, when in queue.submitted if key == "schedule:sync"]
    notify_ticks = [when for key, _, when in queue.submitted if key == "schedule:eol notify"]
    assert sync_ticks == [at(11, 0), at(11, 15), at(11, 30), at(11, 45), at(12, 0)]
    assert notify_ticks == [at(11, 0), at(12, 0)]
    assert {name for _, name, _ in queue.submitted} == {"schedule:sync", "schedule:eol notify"}
    assert sorted(ran) == sorted(["sync"] * 5 + ["eol notify"] * 2)
    # One sleep per wait, never longer than the cap, never a busy loop of zero-length sleeps.
    assert all(0 < seconds <= MAX_SLEEP_SECONDS for seconds in time.sleeps)
    first = [entry for entry in logs if entry["event"] == "schedule_next"][:2]
    assert {(entry["job"], entry["at"]) for entry in first} == {
        ("sync", "2026-11-27T11:00:00+00:00"),
        ("eol notify", "2026-11-27T11:00:00+00:00"),
    }


async def test_a_tick_is_skipped_while_the_previous_run_is_not_finished() -> None:
    time = FakeTime(START, until=at(11, 2) + HALF_MINUTE)
    queue = FakeQueue(time, run_jobs=False)
    ran: list[ScheduledJob] = []
    scheduler = Scheduler(
        {"cleanup": "* * * * *"}, queue=queue, job_for=recording(ran), clock=time.clock, sleep=time.sleep
    )
    with capture_logs() as logs:
        scheduler.start()
        await time.reached.wait()
        # 10:54 was submitted and never ran; the eight ticks up to 11:02 were skipped.
        assert [when for _, _, when in queue.submitted] == [at(10, 54)]
        skipped = [entry for entry in logs if entry["event"] == "schedule_skipped"]
        assert len(skipped) == 8
        assert skipped[0]["job"] == "cleanup"
        assert skipped[0]["tick"] == "2026-11-27T10:55:00+00:00"
        # Once the run finishes, the next tick is submitted again.
        await queue.held.pop()()
        time.advance_to(at(11, 3) + HALF_MINUTE)
        await time.reached.wait()
        await scheduler.stop()
    assert ran == ["cleanup"]
    assert [when for _, _, when in queue.submitted] == [at(10, 54), at(11, 3)]


async def test_stop_cancels_the_timer_and_nothing_fires_after_it() -> None:
    time = FakeTime(START, until=at(10, 59))
    queue = FakeQueue(time, run_jobs=True)
    scheduler = Scheduler(
        {"eol update": "0 * * * *"}, queue=queue, job_for=recording([]), clock=time.clock, sleep=time.sleep
    )
    scheduler.start()
    await time.reached.wait()
    assert scheduler.running
    with capture_logs() as logs:
        await scheduler.stop()
    assert not scheduler.running
    assert [entry["event"] for entry in logs] == ["schedule_stopped"]
    time.advance_to(at(13, 0))
    await asyncio.sleep(0)
    assert queue.submitted == []
    await scheduler.stop()  # a second stop (the shutdown path) is harmless


async def test_without_a_schedule_nothing_starts() -> None:
    scheduler = Scheduler({}, queue=FakeQueue(FakeTime(START, START), run_jobs=True), job_for=recording([]))
    scheduler.start()
    assert not scheduler.running
    await scheduler.stop()


async def test_a_draining_queue_refuses_the_tick_and_the_job_is_not_stuck() -> None:
    queue = JobQueue(workers=1)
    queue.start()
    await queue.drain(0.1)
    time = FakeTime(START, until=at(11, 1) + HALF_MINUTE)
    scheduler = Scheduler(
        {"sync": "0 * * * *"}, queue=queue, job_for=recording([]), clock=time.clock, sleep=time.sleep
    )
    with capture_logs() as logs:
        scheduler.start()
        await time.reached.wait()
        await scheduler.stop()
    skipped = [entry for entry in logs if entry["event"] == "schedule_skipped"]
    assert [(entry["job"], entry["reason"]) for entry in skipped] == [("sync", "draining")]


# --- a scheduled run is logged like every job ------------------------------------------------


class StubRuntime:
    def __init__(self, outcomes: dict[str, str | Exception]) -> None:
        self.outcomes = outcomes

    async def run_scheduled(self, job: ScheduledJob) -> str:
        outcome = self.outcomes[job]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def test_scheduled_runs_log_job_finished_and_survive_failures() -> None:
    queue = JobQueue(workers=2)
    queue.start()
    metrics = Metrics.create()
    runtime = StubRuntime(
        {
            "sync": "synced",
            "eol notify": ImglifeError("https://hooks.example answered HTTP 500"),
            "cleanup": RuntimeError("bug"),
        }
    )
    router = Router(runtime, Waits(queue), metrics, config_dir=Path())  # type: ignore[arg-type]
    with capture_logs() as logs:
        for job in ("sync", "eol notify", "cleanup"):
            queue.submit(schedule_key(job), router.scheduled_job(job), name=schedule_key(job))
        await queue.join()
    await queue.drain(1)
    finished = {entry["handler"]: entry for entry in logs if entry["event"] == "job_finished"}
    assert finished["schedule:sync"]["outcome"] == "synced"
    assert finished["schedule:eol notify"]["outcome"] == "failed"
    assert "HTTP 500" in finished["schedule:eol notify"]["error"]
    assert finished["schedule:cleanup"]["outcome"] == "error"
    assert [entry["handler"] for entry in logs if entry["event"] == "job_crashed"] == ["schedule:cleanup"]
    assert metrics.jobs.labels("schedule:sync", "synced")._value.get() == 1


# -- the jobs themselves, run by the bot's runtime as the scheduler would ---------------------------


async def test_scheduled_eol_notify_and_update_run_with_the_configuration_in_force(tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date()
    config_path = write_project(tmp_path, today)
    text = config_path.read_text().replace("eol_provider: endoflife", "eol_provider: local")
    config_path.write_text(text)
    store = LocalRecordStore(tmp_path / "records")
    await store.put(
        BuildRecord(
            image="registry.example.com/apps/legacy:0.9.0",
            base=ALPINE_EOL,
            revision="r",
            project="team/x",
            platforms=(),
            built_at=dt.datetime.now(dt.UTC),
        )
    )
    with FakeSlack() as slack:
        environ = {"IMGLIFE_SLACK_WEBHOOK_URL": slack.webhook_url}
        runtime = BotRuntime(load_config(config_path), config_path, environ, critical_days=30)
        try:
            assert await runtime.run_scheduled("eol notify") == "sent"
            assert await runtime.run_scheduled("eol update") == "local_provider"
        finally:
            await runtime.aclose()
    (message,) = slack.texts
    assert f"{ALPINE_EOL}` — eol" in message
    assert "registry.example.com/apps/legacy:0.9.0" in message
