"""``bot.schedule``: next fire times, the scheduler driven by an injected clock, and the logged runs."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError
from structlog.testing import capture_logs

from bot.config import load_config
from bot.config.loader import parse_config
from bot.config.schema import Cron, ScheduledJob
from bot.errors import ImglifeError
from bot.records import BuildRecord
from bot.records.local import LocalRecordStore
from bot.server.jobs import JobSpec, MemoryQueue
from bot.server.metrics import Metrics
from bot.server.router import Router
from bot.server.runtime import BotRuntime
from bot.server.schedule import MAX_SLEEP_SECONDS, Scheduler, next_fire, scheduled_job
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


class ScheduledRuns:
    """A real in-process queue whose runner records the scheduled jobs, held while ``gate`` is clear."""

    def __init__(self, *, run_jobs: bool) -> None:
        self.ran: list[ScheduledJob] = []
        self.gate = asyncio.Event()
        if run_jobs:
            self.gate.set()
        self.queue = MemoryQueue(self._run, workers=2)
        self.queue.start()

    async def _run(self, job: JobSpec) -> None:
        await self.gate.wait()
        self.ran.append(job.state["job"])


def submitted(logs: list[dict], job: str | None = None) -> list[dt.datetime]:
    return [
        dt.datetime.fromisoformat(entry["tick"])
        for entry in logs
        if entry["event"] == "schedule_submitted" and job in (None, entry["job"])
    ]


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
    runs = ScheduledRuns(run_jobs=True)
    scheduler = Scheduler(
        {"sync": "*/15 * * * *", "eol notify": "0 * * * *"},
        queue=runs.queue,
        clock=time.clock,
        sleep=time.sleep,
    )
    with capture_logs() as logs:
        scheduler.start()
        await time.reached.wait()
        await scheduler.stop()
        await runs.queue.join()
    assert submitted(logs, "sync") == [at(11, 0), at(11, 15), at(11, 30), at(11, 45), at(12, 0)]
    assert submitted(logs, "eol notify") == [at(11, 0), at(12, 0)]
    assert sorted(runs.ran) == sorted(["sync"] * 5 + ["eol notify"] * 2)
    # One sleep per wait, never longer than the cap, never a busy loop of zero-length sleeps.
    assert all(0 < seconds <= MAX_SLEEP_SECONDS for seconds in time.sleeps)
    first = [entry for entry in logs if entry["event"] == "schedule_next"][:2]
    assert {(entry["job"], entry["at"]) for entry in first} == {
        ("sync", "2026-11-27T11:00:00+00:00"),
        ("eol notify", "2026-11-27T11:00:00+00:00"),
    }
    await runs.queue.drain(1)


async def test_a_tick_is_skipped_while_the_previous_run_is_not_finished() -> None:
    time = FakeTime(START, until=at(11, 2) + HALF_MINUTE)
    runs = ScheduledRuns(run_jobs=False)
    scheduler = Scheduler({"cleanup": "* * * * *"}, queue=runs.queue, clock=time.clock, sleep=time.sleep)
    with capture_logs() as logs:
        scheduler.start()
        await time.reached.wait()
        # 10:54 was submitted and never ran; the eight ticks up to 11:02 were skipped.
        assert submitted(logs) == [at(10, 54)]
        skipped = [entry for entry in logs if entry["event"] == "schedule_skipped"]
        assert len(skipped) == 8
        assert (skipped[0]["job"], skipped[0]["reason"]) == ("cleanup", "previous run not finished")
        assert skipped[0]["tick"] == "2026-11-27T10:55:00+00:00"
        # Once the run finishes, the next tick is submitted again.
        runs.gate.set()
        await runs.queue.join()
        time.advance_to(at(11, 3) + HALF_MINUTE)
        await time.reached.wait()
        await scheduler.stop()
        await runs.queue.join()
    assert runs.ran == ["cleanup", "cleanup"]
    assert submitted(logs) == [at(10, 54), at(11, 3)]
    await runs.queue.drain(1)


async def test_a_tick_another_replica_queued_is_not_queued_again() -> None:
    """Redis mode: every replica's scheduler fires; the tick's de-duplication key lets one through."""
    time = FakeTime(START, until=at(11, 0) + HALF_MINUTE)
    runs = ScheduledRuns(run_jobs=True)
    first = Scheduler({"sync": "0 * * * *"}, queue=runs.queue, clock=time.clock, sleep=time.sleep)
    second = Scheduler({"sync": "0 * * * *"}, queue=runs.queue, clock=time.clock, sleep=time.sleep)
    with capture_logs() as logs:
        first.start()
        second.start()
        await time.reached.wait()
        await first.stop()
        await second.stop()
        await runs.queue.join()
    assert runs.ran == ["sync"]
    assert [entry["event"] for entry in logs if entry.get("job") == "sync" and "tick" in entry] == [
        "schedule_submitted",
        "schedule_taken",
    ]
    await runs.queue.drain(1)


async def test_stop_cancels_the_timer_and_nothing_fires_after_it() -> None:
    time = FakeTime(START, until=at(10, 59))
    runs = ScheduledRuns(run_jobs=True)
    scheduler = Scheduler({"eol update": "0 * * * *"}, queue=runs.queue, clock=time.clock, sleep=time.sleep)
    scheduler.start()
    await time.reached.wait()
    assert scheduler.running
    with capture_logs() as logs:
        await scheduler.stop()
        assert not scheduler.running
        time.advance_to(at(13, 0))
        await asyncio.sleep(0.01)
    assert [entry["event"] for entry in logs] == ["schedule_stopped"]
    assert runs.ran == []
    await scheduler.stop()  # a second stop (the shutdown path) is harmless
    await runs.queue.drain(1)


async def test_without_a_schedule_nothing_starts() -> None:
    scheduler = Scheduler({}, queue=ScheduledRuns(run_jobs=True).queue)
    scheduler.start()
    assert not scheduler.running
    await scheduler.stop()


async def test_a_draining_queue_refuses_the_tick_and_the_job_is_not_stuck() -> None:
    runs = ScheduledRuns(run_jobs=True)
    await runs.queue.drain(0.1)
    time = FakeTime(START, until=at(11, 1) + HALF_MINUTE)
    scheduler = Scheduler({"sync": "0 * * * *"}, queue=runs.queue, clock=time.clock, sleep=time.sleep)
    with capture_logs() as logs:
        scheduler.start()
        await time.reached.wait()
        await scheduler.stop()
    skipped = [entry for entry in logs if entry["event"] == "schedule_skipped"]
    assert [(entry["job"], entry["reason"]) for entry in skipped] == [("sync", "draining")]


# --- a scheduled run is logged like every job ------------------------------------------------


class StubRuntime:
    """What the router asks of the bot's runtime, for scheduled jobs only."""

    def __init__(self, outcomes: dict[str, str | Exception], *, attempts: int = 1) -> None:
        self.outcomes = outcomes
        bot = f"bot: {{job_attempts: {attempts}, retry_delay: 50ms}}\n"
        self.config = load_config_text("registry: {provider: local, path: /nonexistent}\n" + bot)
        self.calls: list[str] = []

    async def refresh(self) -> None:
        return None

    async def run_scheduled(self, job: ScheduledJob) -> str:
        self.calls.append(job)
        outcome = self.outcomes[job]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def load_config_text(text: str):
    return parse_config(text, "imglife.yaml", Path("/nonexistent"))


async def run_through_a_queue(runtime: StubRuntime, jobs: list[ScheduledJob]) -> tuple[list[dict], Metrics]:
    metrics = Metrics.create()
    router = Router(runtime, metrics, config_dir=Path())  # type: ignore[arg-type]
    queue = MemoryQueue(router.run, workers=2)
    queue.start()
    with capture_logs() as logs:
        await queue.enqueue([scheduled_job(job) for job in jobs])
        await queue.join()
        await asyncio.sleep(0.3)  # retries come back after retry_delay
        await queue.join()
    await queue.drain(1)
    return logs, metrics


async def test_scheduled_runs_log_job_finished_and_survive_failures() -> None:
    runtime = StubRuntime(
        {
            "sync": "synced",
            "eol notify": ImglifeError("https://hooks.example answered HTTP 500"),
            "cleanup": RuntimeError("bug"),
        }
    )
    logs, metrics = await run_through_a_queue(runtime, ["sync", "eol notify", "cleanup"])
    finished = {entry["handler"]: entry for entry in logs if entry["event"] == "job_finished"}
    assert finished["schedule:sync"]["outcome"] == "synced"
    assert finished["schedule:eol notify"]["outcome"] == "failed"
    assert "HTTP 500" in finished["schedule:eol notify"]["error"]
    assert finished["schedule:cleanup"]["outcome"] == "error"
    assert [entry["handler"] for entry in logs if entry["event"] == "job_crashed"] == ["schedule:cleanup"]
    assert metrics.jobs.labels("schedule:sync", "synced")._value.get() == 1
    gave_up = {entry["handler"]: entry for entry in logs if entry["event"] == "job_gave_up"}
    assert set(gave_up) == {"schedule:eol notify", "schedule:cleanup"}
    assert gave_up["schedule:cleanup"]["reason"].startswith("an internal error")  # no exception text
    assert "bug" not in gave_up["schedule:cleanup"]["reason"]


async def test_a_failing_job_is_retried_then_given_up_and_its_key_is_free_again() -> None:
    runtime = StubRuntime({"cleanup": ImglifeError("registry answered 503"), "sync": "synced"}, attempts=3)
    logs, _ = await run_through_a_queue(runtime, ["cleanup", "sync"])
    runs = [
        entry for entry in logs if entry["event"] == "job_finished" and entry["handler"] == "schedule:cleanup"
    ]
    assert [entry["outcome"] for entry in runs] == ["retrying", "retrying", "failed"]
    assert [entry.get("attempt", 1) for entry in runs] == [1, 2, 3]
    assert [entry["retry_in_s"] for entry in runs[:2]] == [0.1, 0.1]  # 50 ms, doubled: 0.05 -> 0.1 rounded
    (gave_up,) = [entry for entry in logs if entry["event"] == "job_gave_up"]
    assert (gave_up["attempts"], gave_up["reason"], gave_up["reported"]) == (
        3,
        "registry answered 503",
        "log",
    )
    assert runtime.calls.count("cleanup") == 3
    # A new run of the same job is taken as usual afterwards.
    logs, _ = await run_through_a_queue(runtime, ["sync"])
    assert [entry["outcome"] for entry in logs if entry["event"] == "job_finished"] == ["synced"]


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
