"""The job queues: the in-process one and the Redis one keep the same promises (ordering per key,
parallel keys, de-duplication, deferred jobs, drain), and the Redis one keeps them across replicas.

Redis tests run Debian's redis-server (tests/helpers/redis.py); a "replica" here is a second
:class:`RedisQueue` on the same Redis. The same guarantees with real ``imglife serve`` processes,
SIGKILL and SIGTERM are in tests/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from structlog.testing import capture_logs

from bot.events import Actor, EventKind, Forge, ForgeEvent, Repo
from bot.server.dedupe import Deduplicator
from bot.server.jobs import Enqueued, JobSpec, Later, MemoryQueue, Runner
from bot.server.redisqueue import RedisQueue, connect
from tests.helpers.redis import RunningRedis

Factory = Callable[..., Awaitable[object]]
EVENT = ForgeEvent(
    Forge.GITLAB,
    EventKind.TAG_PUSH,
    "delivery-1",
    "idem-1",
    Repo(Forge.GITLAB, "42", "team/app", "main", "https://gitlab.example/team/app"),
    Actor(7, "alice"),
    ref="refs/tags/v1.2.0",
    sha="a" * 40,
)


def job(key: str, name: str = "test", **state: object) -> JobSpec:
    return JobSpec(key, name, EVENT, state)


async def wait_for(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture(params=["memory", "redis"])
async def make_queue(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Builds started queues of the parametrised kind; drains them all at the end."""
    made: list[MemoryQueue | RedisQueue] = []
    clients = []
    server: RunningRedis | None = (
        request.getfixturevalue("redis_server") if request.param == "redis" else None
    )

    async def factory(run: Runner, *, workers: int = 2, visibility: float = 30.0) -> MemoryQueue | RedisQueue:
        queue: MemoryQueue | RedisQueue
        if server is None:
            queue = MemoryQueue(run, workers=workers)
        else:
            client = connect(server.url, username=None, password=server.password)
            clients.append(client)
            queue = RedisQueue(run, client=client, workers=workers, visibility_timeout=visibility)
        queue.start()
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.drain(1)
    for client in clients:
        await client.aclose()


async def settle(queue: MemoryQueue | RedisQueue, done: Callable[[], bool]) -> None:
    await wait_for(done)
    await asyncio.sleep(0.05)  # anything that would run twice has had its chance


# --- the contract, for both queues -------------------------------------------------------------


async def test_jobs_of_one_key_run_in_order_and_one_at_a_time(make_queue: Factory) -> None:
    log: list[str] = []
    running: Counter[str] = Counter()

    async def run(spec: JobSpec) -> None:
        running[spec.key] += 1
        assert running[spec.key] == 1, "two jobs of one key ran at once"
        await asyncio.sleep(0.001 * (5 - spec.state["n"]))
        log.append(f"{spec.key}{spec.state['n']}")
        running[spec.key] -= 1

    queue = await make_queue(run, workers=4)
    for n in range(5):
        for key in ("a", "b", "c"):
            assert await queue.enqueue([job(key, n=n)]) is Enqueued.ACCEPTED
    await settle(queue, lambda: len(log) == 15)
    for key in ("a", "b", "c"):
        assert [entry for entry in log if entry[0] == key] == [f"{key}{n}" for n in range(5)]


async def test_keys_run_in_parallel_up_to_the_worker_count(make_queue: Factory) -> None:
    active, peak, finished = 0, 0, 0
    gate = asyncio.Event()

    async def run(_spec: JobSpec) -> None:
        nonlocal active, peak, finished
        active += 1
        peak = max(peak, active)
        await gate.wait()
        active -= 1
        finished += 1

    queue = await make_queue(run, workers=2)
    for key in "abcdef":
        await queue.enqueue([job(key)])
    await wait_for(lambda: active == 2)
    await asyncio.sleep(0.6)  # more than a Redis tick: nobody else starts
    assert peak == 2
    assert queue.depth == 4
    gate.set()
    await settle(queue, lambda: finished == 6)
    assert peak == 2


async def test_a_crashing_job_does_not_stop_the_queue(make_queue: Factory) -> None:
    done: list[str] = []

    async def run(spec: JobSpec) -> None:
        if spec.handler == "boom":
            raise RuntimeError("handler bug")
        done.append(spec.handler)

    queue = await make_queue(run, workers=1)
    with capture_logs() as logs:
        await queue.enqueue([job("k", "boom"), job("k", "ok")])
        await settle(queue, lambda: done == ["ok"])
    assert [entry["job"] for entry in logs if entry["event"] == "job_crashed"] == ["boom"]


async def test_a_delivery_seen_before_queues_nothing(make_queue: Factory) -> None:
    ran: list[str] = []

    async def run(spec: JobSpec) -> None:
        ran.append(spec.id)

    queue = await make_queue(run)
    assert await queue.enqueue([job("k")], dedupe=["content:1", "idempotency:x"]) is Enqueued.ACCEPTED
    assert await queue.enqueue([job("k")], dedupe=["content:1"]) is Enqueued.DUPLICATE
    # A resend with a new body but the same Idempotency-Key is the same delivery.
    assert await queue.enqueue([job("k")], dedupe=["content:2", "idempotency:x"]) is Enqueued.DUPLICATE
    await settle(queue, lambda: len(ran) == 1)
    assert len(ran) == 1


async def test_if_idle_refuses_while_the_key_has_work(make_queue: Factory) -> None:
    gate = asyncio.Event()
    ran: list[str] = []

    async def run(spec: JobSpec) -> None:
        await gate.wait()
        ran.append(spec.key)

    queue = await make_queue(run)
    assert (
        await queue.enqueue([job("schedule:sync")], dedupe=["tick:1"], if_idle="schedule:sync")
        is Enqueued.ACCEPTED
    )
    assert (
        await queue.enqueue([job("schedule:sync")], dedupe=["tick:2"], if_idle="schedule:sync")
        is Enqueued.BUSY
    )
    # The busy tick still counts as handled: another replica will not queue it either.
    assert await queue.enqueue([job("schedule:sync")], dedupe=["tick:2"]) is Enqueued.DUPLICATE
    gate.set()
    await settle(queue, lambda: ran == ["schedule:sync"])
    assert (
        await queue.enqueue([job("schedule:sync")], dedupe=["tick:3"], if_idle="schedule:sync")
        is Enqueued.ACCEPTED
    )
    await settle(queue, lambda: len(ran) == 2)


async def test_a_later_job_runs_after_its_delay_or_at_once_when_woken(make_queue: Factory) -> None:
    ran: list[str] = []

    async def run(spec: JobSpec) -> Later | None:
        ran.append(spec.handler)
        if spec.handler == "first-slow":
            return Later(JobSpec(spec.key, "slow", spec.event), delay=60, wake="wake:slow")
        if spec.handler == "first-soon":
            return Later(JobSpec(spec.key, "soon", spec.event), delay=0.2)
        return None

    queue = await make_queue(run)
    await queue.enqueue([job("k1", "first-slow"), job("k2", "first-soon")])
    await wait_for(lambda: "soon" in ran)
    assert "slow" not in ran
    assert await queue.enqueue([], wakes=["wake:unknown"]) is Enqueued.ACCEPTED  # nothing waits there
    with capture_logs():
        assert await queue.enqueue([], wakes=["wake:slow"]) is Enqueued.ACCEPTED
    await settle(queue, lambda: "slow" in ran)
    assert sorted(ran) == ["first-slow", "first-soon", "slow", "soon"]


async def test_a_new_wait_under_the_same_wake_key_replaces_the_old_one(make_queue: Factory) -> None:
    ran: list[str] = []

    async def run(spec: JobSpec) -> Later | None:
        ran.append(spec.handler)
        if spec.handler.startswith("start"):
            return Later(JobSpec("k", "retry-of-" + spec.handler, spec.event), delay=60, wake="w")
        return None

    queue = await make_queue(run, workers=1)
    await queue.enqueue([job("k", "start-1")])
    await wait_for(lambda: ran == ["start-1"])
    await queue.enqueue([job("k", "start-2")])
    await wait_for(lambda: ran == ["start-1", "start-2"])
    await queue.enqueue([], wakes=["w"])
    await settle(queue, lambda: len(ran) == 3)
    assert ran[-1] == "retry-of-start-2"


async def test_drain_refuses_new_work_and_says_what_did_not_finish(make_queue: Factory) -> None:
    forever = asyncio.Event()

    async def run(_spec: JobSpec) -> None:
        await forever.wait()

    queue = await make_queue(run, workers=1)
    await queue.enqueue([job("a", "stuck"), job("a", "queued behind it")])
    await wait_for(lambda: queue.depth == 1 or isinstance(queue, RedisQueue))
    await asyncio.sleep(0.1)
    left = await queue.drain(0.05)
    # In memory both are lost; on Redis only the running one was interrupted (and handed back),
    # the queued one never left Redis.
    assert left == (2 if isinstance(queue, MemoryQueue) else 1)
    assert await queue.enqueue([job("b", "late")]) is Enqueued.DRAINING
    assert not queue.accepting


def test_a_job_is_data_that_survives_a_round_trip() -> None:
    spec = JobSpec(
        "gitlab:42:tag:v1.2.0", "register", EVENT, {"deadline": 1.5, "pending": ["r/a:1"]}, attempt=2
    )
    assert JobSpec.decode(spec.encode()) == spec
    retry = spec.again(failed=True)
    assert (retry.attempt, retry.key, retry.event) == (3, spec.key, spec.event)
    assert retry.id != spec.id
    with pytest.raises(ValueError, match="not a job"):
        JobSpec.decode(b'{"key": "k"}')


def test_deduplicator_remembers_for_the_ttl_and_by_any_key() -> None:
    now = [0.0]
    memory = Deduplicator(ttl=10, clock=lambda: now[0])
    assert memory.first_time("content:1", "idempotency:x")
    assert not memory.first_time("content:1")
    assert not memory.first_time("content:2", "idempotency:x")
    now[0] = 11
    assert memory.first_time("content:1")


def test_deduplicator_is_bounded() -> None:
    memory = Deduplicator(ttl=100, max_entries=3)
    for key in "abcd":
        assert memory.first_time(key)
    assert memory.first_time("a")  # the oldest was forgotten
    assert not memory.first_time("d")


def test_worker_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MemoryQueue(lambda _spec: asyncio.sleep(0), workers=0)


# --- Redis: several replicas, takeover, hand-back, outages -------------------------------------


@contextlib.asynccontextmanager
async def replicas(
    server: RunningRedis, run: Runner, count: int, **options: object
) -> AsyncIterator[list[RedisQueue]]:
    clients = [connect(server.url, username=None, password=server.password) for _ in range(count)]
    queues = [
        RedisQueue(
            run,
            client=client,
            workers=options.get("workers", 3),
            visibility_timeout=options.get("visibility", 30.0),
            replica=f"r{i}",
        )  # type: ignore[arg-type]
        for i, client in enumerate(clients)
    ]
    for queue in queues:
        queue.start()
    try:
        yield queues
    finally:
        for queue in queues:
            await queue.drain(1)
        for client in clients:
            await client.aclose()


async def test_replicas_share_the_work_and_run_every_job_exactly_once_in_order(
    redis_server: RunningRedis,
) -> None:
    ran: list[tuple[str, int, str]] = []
    running: Counter[str] = Counter()
    overlaps: list[str] = []

    def runner_for(name: str) -> Runner:
        async def run(spec: JobSpec) -> None:
            running[spec.key] += 1
            if running[spec.key] > 1:
                overlaps.append(spec.key)
            await asyncio.sleep(0.002)
            ran.append((spec.key, spec.state["n"], name))
            running[spec.key] -= 1

        return run

    keys = [f"gitlab:1:mr:{i}" for i in range(12)]
    clients = [connect(redis_server.url, username=None, password=redis_server.password) for _ in range(3)]
    queues = [
        RedisQueue(runner_for(f"r{i}"), client=client, workers=3, visibility_timeout=30)
        for i, client in enumerate(clients)
    ]
    try:
        # Every delivery reaches two replicas (a retried delivery, a second load balancer path);
        # the work piles up before any replica starts, so all of them find every key busy.
        for n in range(20):
            for i, key in enumerate(keys):
                first, second = queues[(n + i) % 3], queues[(n + i + 1) % 3]
                answers = {
                    await first.enqueue([job(key, n=n)], dedupe=[f"{key}:{n}"]),
                    await second.enqueue([job(key, n=n)], dedupe=[f"{key}:{n}"]),
                }
                assert answers == {Enqueued.ACCEPTED, Enqueued.DUPLICATE}
        for queue in queues:
            queue.start()
        await wait_for(lambda: len(ran) >= 240, within=30)
        await asyncio.sleep(0.3)
    finally:
        for queue in queues:
            await queue.drain(1)
        for client in clients:
            await client.aclose()
    assert overlaps == []
    assert len(ran) == 240
    assert len({(key, n) for key, n, _ in ran}) == 240  # none twice
    for key in keys:
        assert [n for k, n, _ in ran if k == key] == list(range(20))  # in order, per key
    assert {name for *_, name in ran} == {"r0", "r1", "r2"}  # all replicas worked


async def test_a_job_whose_replica_died_is_taken_over_after_the_visibility_timeout(
    redis_server: RunningRedis,
) -> None:
    started: list[tuple[str, int]] = []
    hang = asyncio.Event()

    async def dying(spec: JobSpec) -> None:
        started.append(("dead", spec.attempt))
        await hang.wait()

    async def healthy(spec: JobSpec) -> None:
        started.append(("alive", spec.attempt))

    async with replicas(redis_server, dying, 1, workers=1, visibility=1.0) as (a,):
        await a.enqueue([job("gitlab:1:mr:1")])
        await wait_for(lambda: started == [("dead", 0)])
        # What SIGKILL does to a replica, as far as Redis can tell: nothing more arrives from it —
        # no lease renewal, no end of the job, no hand-back (tests/test_replicas.py kills for real).
        a._scripts = {name: _silent for name in a._scripts}
        async with replicas(redis_server, healthy, 1) as _:
            with capture_logs() as logs:
                await wait_for(lambda: ("alive", 1) in started, within=10)
        hang.set()
    assert started == [("dead", 0), ("alive", 1)]  # the takeover counts as an attempt
    expired = [entry for entry in logs if entry["event"] == "leases_expired"]
    assert [entry["keys"] for entry in expired] == [["gitlab:1:mr:1"]]


async def _silent(*_args: object, **_kwargs: object) -> object:
    await asyncio.Event().wait()  # never answers, like a process that is gone
    return None


async def test_drain_hands_running_jobs_back_at_once(redis_server: RunningRedis) -> None:
    started: list[str] = []

    def runner(name: str) -> Runner:
        async def run(_spec: JobSpec) -> None:
            started.append(name)
            if name == "stopping":
                await asyncio.Event().wait()

        return run

    async with replicas(redis_server, runner("stopping"), 1, workers=1) as (a,):
        await a.enqueue([job("gitlab:1:mr:1", "interrupted"), job("gitlab:1:mr:1", "queued")])
        await wait_for(lambda: started == ["stopping"])
        with capture_logs() as logs:
            assert await a.drain(0.1) == 1
        assert any(entry["event"] == "jobs_handed_back" for entry in logs)
        clock = time.monotonic()
        async with replicas(redis_server, runner("other"), 1) as _:
            await wait_for(lambda: started.count("other") == 2)
        # Well before the 30 s visibility timeout: the lease was given back, not left to expire.
        assert time.monotonic() - clock < 5


async def test_redis_unreachable_at_start_holds_deliveries_until_it_is_there(
    redis_server: RunningRedis,
) -> None:
    redis_server.stop()
    ran: list[int] = []

    async def run(spec: JobSpec) -> None:
        ran.append(spec.state["n"])

    with capture_logs() as logs:
        async with replicas(redis_server, run, 1) as (queue,):
            await asyncio.sleep(0.3)
            assert not queue.ready
            for n in range(3):
                assert await queue.enqueue([job("k", n=n)], dedupe=[f"d{n}"]) is Enqueued.ACCEPTED
            assert (
                await queue.enqueue([job("k", n=0)], dedupe=["d0"]) is Enqueued.ACCEPTED
            )  # held: unknown yet
            assert queue.held == 4
            redis_server.start()
            await wait_for(lambda: len(ran) >= 3, within=15)
            await asyncio.sleep(0.3)
            assert queue.ready
            assert queue.held == 0
    assert ran == [0, 1, 2]  # in order, and the duplicate was found out once Redis could say
    events = [entry["event"] for entry in logs]
    assert "redis_unreachable" in events
    assert events.index("redis_unreachable") < events.index("redis_connected")
    unreachable = next(entry for entry in logs if entry["event"] == "redis_unreachable")
    assert str(redis_server.port) in unreachable["error"]
    assert redis_server.password not in str(logs)


async def test_redis_lost_mid_run_loses_nothing(redis_server: RunningRedis) -> None:
    ran: list[int] = []
    gate = asyncio.Event()

    async def run(spec: JobSpec) -> None:
        if spec.state["n"] == 0:
            await gate.wait()
        ran.append(spec.state["n"])

    async with replicas(redis_server, run, 1) as (queue,):
        await queue.enqueue([job("k", n=0)], dedupe=["d0"])
        await wait_for(lambda: queue.ready and queue.depth == 0 and not ran)
        await asyncio.sleep(0.2)
        redis_server.stop()  # the queue is in its append-only file
        for n in (1, 2):
            assert await queue.enqueue([job("k", n=n)], dedupe=[f"d{n}"]) is Enqueued.ACCEPTED
        gate.set()  # job 0 ends while Redis is away: its end waits for Redis too
        await asyncio.sleep(0.5)
        assert ran == [0]
        redis_server.start()
        await wait_for(lambda: len(ran) >= 3, within=20)
        await asyncio.sleep(0.5)
    assert ran == [0, 1, 2]
