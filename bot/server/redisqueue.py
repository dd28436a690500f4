"""The job queue on Redis (``bot.redis_url``): several ``imglife serve`` replicas share one stream of work.

Every change of state is one Lua script, so it happens whole or not at all, and no two replicas
can see the same job as theirs:

- ``enqueue``: the de-duplication keys are checked and set, deferred jobs woken and the jobs
  queued in one step — a delivery is queued exactly once, however many replicas it reaches.
- per ordering key, a list of job ids; a key with jobs is either *ready* (in the ``ready`` list)
  or *leased* by one worker (``leases``: key → expiry, ``owner``: key → "replica job-id").
  ``claim`` takes the first ready key and leases it; only the head job of a key runs, so the
  jobs of one merge request run one at a time, in arrival order, on whichever replica.
- a running job's lease is renewed every third of ``visibility_timeout``. A replica that stops
  renewing (killed, frozen, cut off) loses the lease when it expires; ``tick``, run by every
  replica twice a second, hands the key to the others and counts a *takeover* against the job
  (so a job that kills its replica every time is given up after ``bot.job_attempts``). When no
  replica has ticked for a third of the timeout — Redis itself was away, so nobody could renew —
  every lease first gets one more timeout, so an outage alone never makes a job run twice.
- ``finish`` removes the job and, for :class:`~bot.server.jobs.Later`, stores the next one in
  the ``delayed`` sorted set (by due time, and by wake key); ``tick`` queues jobs that came due.
- ``release`` hands a running job back (its worker was stopped): the key is ready again at once.

Times are Redis's own (``TIME``), so replicas with skewed clocks agree on expiries. Redis Cluster
is not supported (the scripts touch keys they compute). When Redis cannot be reached, deliveries
are held in a bounded in-process outbox, in order, and queued when it is back; workers wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import structlog
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.server.dedupe import DEFAULT_TTL
from bot.server.jobs import YIELD_MAX_SECONDS, Enqueued, Idle, JobSpec, Later, QueueUnavailable, Runner
from bot.server.runtime import SharedConfig

log = structlog.get_logger(__name__)

PREFIX = "imglife:"
TICK_SECONDS = 0.5
SIGNAL_WAIT_SECONDS = 1  # an idle worker looks for work at least this often (a lost wake-up costs this)
OUTBOX_MAX = 10_000  # deliveries held while Redis is away; beyond that they are answered 503
SOCKET_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 3.0
RECONNECT_MIN_SECONDS = 0.2
RECONNECT_MAX_SECONDS = 1.0  # connection refused is cheap to ask again; held work waits for it
RELEASE_TIMEOUT_SECONDS = 2.0
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)

_PRELUDE = """
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function offer(key, front)
  if front then redis.call('LPUSH', P .. 'ready', key) else redis.call('RPUSH', P .. 'ready', key) end
  redis.call('LPUSH', P .. 'signal', '1')
  redis.call('LTRIM', P .. 'signal', 0, 63)
end
local function append(id, key)
  local n = redis.call('RPUSH', P .. 'key:' .. key, id)
  if n == 1 and not redis.call('ZSCORE', P .. 'leases', key) then offer(key, false) end
end
local function unwake(id)
  redis.call('ZREM', P .. 'delayed', id)
  local wake = redis.call('HGET', P .. 'wakeof', id)
  if wake then
    redis.call('HDEL', P .. 'wake', wake)
    redis.call('HDEL', P .. 'wakeof', id)
  end
end
local function forget(id)
  unwake(id)
  redis.call('HDEL', P .. 'jobs', id)
  redis.call('HDEL', P .. 'jobkey', id)
  redis.call('HDEL', P .. 'takeovers', id)
end
local function promote(id)
  unwake(id)
  local key = redis.call('HGET', P .. 'jobkey', id)
  if key then append(id, key) end
end
"""

# ARGV: prefix, ttl, n, dedupe keys..., n, wake keys..., if_idle key or "", n, (id, key, job)...
_ENQUEUE = """
local i = 2
local ttl = ARGV[i]
local nd = tonumber(ARGV[i + 1])
i = i + 2
for j = i, i + nd - 1 do
  if redis.call('EXISTS', P .. 'seen:' .. ARGV[j]) == 1 then return 'duplicate' end
end
for j = i, i + nd - 1 do redis.call('SET', P .. 'seen:' .. ARGV[j], '1', 'EX', ttl) end
i = i + nd
local nw = tonumber(ARGV[i])
local wakes = i + 1
i = wakes + nw
local idle = ARGV[i]
if idle ~= '' and redis.call('EXISTS', P .. 'key:' .. idle) == 1 then return 'busy' end
for j = wakes, wakes + nw - 1 do
  local id = redis.call('HGET', P .. 'wake', ARGV[j])
  if id then promote(id) end
end
local nj = tonumber(ARGV[i + 1])
i = i + 2
for j = 0, nj - 1 do
  local id, key = ARGV[i + 3 * j], ARGV[i + 3 * j + 1]
  redis.call('HSET', P .. 'jobs', id, ARGV[i + 3 * j + 2])
  redis.call('HSET', P .. 'jobkey', id, key)
  append(id, key)
end
return 'accepted'
"""

# ARGV: prefix, replica, lease ms -> {key, id, job, takeovers} or nil
_CLAIM = """
local now = now_ms()
while true do
  local key = redis.call('LPOP', P .. 'ready')
  if not key then return false end
  local id = redis.call('LINDEX', P .. 'key:' .. key, 0)
  if id and not redis.call('ZSCORE', P .. 'leases', key) then
    redis.call('ZADD', P .. 'leases', now + tonumber(ARGV[3]), key)
    redis.call('HSET', P .. 'owner', key, ARGV[2] .. ' ' .. id)
    local job = redis.call('HGET', P .. 'jobs', id) or ''
    return {key, id, job, redis.call('HGET', P .. 'takeovers', id) or '0'}
  end
end
"""

# ARGV: prefix, key, owner token, lease ms -> 1 (renewed) or 0 (not ours any more)
_EXTEND = """
if redis.call('HGET', P .. 'owner', ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('ZADD', P .. 'leases', 'XX', now_ms() + tonumber(ARGV[4]), ARGV[2])
return 1
"""

# ARGV: prefix, key, owner token, id, next id or "", next key, next job, delay ms, wake or ""
_FINISH = """
local key = ARGV[2]
if redis.call('HGET', P .. 'owner', key) ~= ARGV[3] then return 'lost' end
redis.call('ZREM', P .. 'leases', key)
redis.call('HDEL', P .. 'owner', key)
redis.call('LREM', P .. 'key:' .. key, 1, ARGV[4])
forget(ARGV[4])
local nxt = ARGV[5]
if nxt ~= '' then
  local wake = ARGV[9]
  if wake ~= '' then
    local old = redis.call('HGET', P .. 'wake', wake)
    if old then forget(old) end
    redis.call('HSET', P .. 'wake', wake, nxt)
    redis.call('HSET', P .. 'wakeof', nxt, wake)
  end
  redis.call('HSET', P .. 'jobs', nxt, ARGV[7])
  redis.call('HSET', P .. 'jobkey', nxt, ARGV[6])
  redis.call('ZADD', P .. 'delayed', now_ms() + tonumber(ARGV[8]), nxt)
end
if redis.call('EXISTS', P .. 'key:' .. key) == 1 then offer(key, false) end
return 'ok'
"""

# ARGV: prefix, key, owner token -> 1 (handed back) or 0
_RELEASE = """
local key = ARGV[2]
if redis.call('HGET', P .. 'owner', key) ~= ARGV[3] then return 0 end
redis.call('ZREM', P .. 'leases', key)
redis.call('HDEL', P .. 'owner', key)
if redis.call('EXISTS', P .. 'key:' .. key) == 1 then offer(key, true) end
return 1
"""

# ARGV: prefix, lease ms, gap ms -> {depth, deferred jobs queued, keys taken over...}
_TICK = """
local now = now_ms()
local lease = tonumber(ARGV[2])
local result = {0, 0}
local last = tonumber(redis.call('GET', P .. 'ticked') or '0')
redis.call('SET', P .. 'ticked', now)
if now - last > tonumber(ARGV[3]) then
  -- Nobody ticked for a while: Redis (or every replica) was away, and no owner could renew its
  -- leases. Give them one more lease before anything counts as abandoned.
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now + lease)) do
    redis.call('ZADD', P .. 'leases', now + lease, key)
  end
end
for _, key in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 100)) do
  local token = redis.call('HGET', P .. 'owner', key)
  redis.call('ZREM', P .. 'leases', key)
  redis.call('HDEL', P .. 'owner', key)
  if token then
    local id = string.match(token, ' (.+)$')
    if id and redis.call('HEXISTS', P .. 'jobs', id) == 1 then
      redis.call('HINCRBY', P .. 'takeovers', id, 1)
    end
  end
  if redis.call('EXISTS', P .. 'key:' .. key) == 1 then offer(key, true) end
  table.insert(result, key)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'delayed', '-inf', now, 'LIMIT', 0, 100)) do
  promote(id)
  result[2] = result[2] + 1
end
result[1] = redis.call('HLEN', P .. 'jobs') - redis.call('ZCARD', P .. 'delayed')
  - redis.call('ZCARD', P .. 'leases')
return result
"""


def replica_name() -> str:
    """How this process names itself in leases: host, pid and a random part (pids repeat in containers)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def connect(url: str, *, username: str | None, password: str | None) -> aioredis.Redis:
    """A client for ``url``; nothing is sent until the first command. TLS (``rediss://``) verifies."""
    client: aioredis.Redis = aioredis.Redis.from_url(
        url,
        username=username or None,
        password=password or None,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=10,
        # One immediate retry on a fresh connection (a pooled one may be stale after a Redis
        # restart), not redis-py's default of ten with backoff: the loops here retry themselves,
        # and a delivery must not wait seconds for an answer.
        retry=Retry(NoBackoff(), 1),
    )
    return client


class RedisQueue:
    def __init__(
        self,
        run: Runner,
        *,
        client: aioredis.Redis,
        workers: int,
        visibility_timeout: float,
        idle: Idle | None = None,
        prefix: str = PREFIX,
        dedupe_ttl: float = DEFAULT_TTL,
        replica: str | None = None,
        where: str = "redis",
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._run = run
        self._redis = client
        self._lease_ms = max(int(visibility_timeout * 1000), 1000)
        self._idle_deliveries = idle
        self._prefix = prefix
        self._ttl = str(max(int(dedupe_ttl), 1))
        self.replica = replica or replica_name()
        self._where = where  # for logs: the URL without credentials
        self._scripts = {
            name: client.register_script(_PRELUDE + body)
            for name, body in (
                ("enqueue", _ENQUEUE),
                ("claim", _CLAIM),
                ("extend", _EXTEND),
                ("finish", _FINISH),
                ("release", _RELEASE),
                ("tick", _TICK),
            )
        }
        self._slots = asyncio.Semaphore(workers)
        self._running: dict[asyncio.Task[None], str] = {}
        self._outbox: deque[list[str]] = deque()
        self._batch: list[tuple[list[str], asyncio.Future[object]]] = []
        self._batches: set[asyncio.Task[None]] = set()
        self._outbox_ready = asyncio.Event()
        self._outbox_empty = asyncio.Event()
        self._outbox_empty.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = True
        self._stopping = False
        self._claim: asyncio.Future[bool] | None = None
        self._connected = asyncio.Event()
        self._available = True
        self._depth = 0

    # --- the Queue protocol -----------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def ready(self) -> bool:
        return self._connected.is_set()

    @property
    def depth(self) -> int:
        return self._depth + len(self._outbox)

    @property
    def held(self) -> int:
        """Deliveries waiting in the outbox for Redis to come back."""
        return len(self._outbox)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._connect_then_work(), name="imglife-redis-fetch"),
                asyncio.create_task(self._flush_outbox(), name="imglife-redis-outbox"),
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
        args = [self._prefix, self._ttl, str(len(dedupe)), *dedupe, str(len(wakes)), *wakes]
        args += [if_idle or "", str(len(jobs))]
        for job in jobs:
            args += [job.id, job.key, job.encode().decode()]
        if not self._outbox:  # behind held deliveries, a new one waits its turn
            try:
                answer = await self._enqueue_batched(args)
            except UNAVAILABLE as exc:
                self._unavailable(exc)
            else:
                self._back()
                return Enqueued(_text(answer))
        if len(self._outbox) >= OUTBOX_MAX:
            raise QueueUnavailable(f"Redis is unreachable and {OUTBOX_MAX} deliveries are already held")
        self._outbox.append(args)
        self._outbox_empty.clear()
        self._outbox_ready.set()
        return Enqueued.ACCEPTED

    async def _enqueue_batched(self, args: list[str]) -> object:
        """Run the enqueue script, in one pipeline with the others of this moment.

        A burst of deliveries then costs Redis one round trip per event-loop turn instead of one
        per delivery, and their answers come back together, in arrival order.
        """
        answer: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._batch.append((args, answer))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._send_batch)
        return await answer

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.create_task(self._run_batch(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, batch: list[tuple[list[str], asyncio.Future[object]]]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for args, _ in batch:
                    await self._scripts["enqueue"](args=args, client=pipe)
                answers = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # noqa: BLE001 - every waiting delivery gets the reason
            answers = [exc] * len(batch)
        for (_, waiting), answer in zip(batch, answers, strict=True):
            if waiting.done():
                continue
            if isinstance(answer, BaseException):
                waiting.set_exception(answer)
            else:
                waiting.set_result(answer)

    async def drain(self, grace: float) -> int:
        """Stop claiming; running jobs get ``grace`` s, then are handed back to Redis for other replicas."""
        if self._stopping:
            return 0
        self._accepting = False
        self._stopping = True
        if self._tasks:
            self._tasks[0].cancel()  # the fetch loop: no new claims
            await asyncio.gather(self._tasks[0], return_exceptions=True)
        if self._claim is not None:
            await asyncio.gather(self._claim, return_exceptions=True)
        running = list(self._running)
        if running:
            await asyncio.wait(running, timeout=grace)
        unfinished = [task for task in running if not task.done()]
        for task in unfinished:
            task.cancel()  # the task hands its lease back on the way out
        await asyncio.gather(*unfinished, return_exceptions=True)
        if unfinished:
            log.warning("jobs_handed_back", count=len(unfinished))
        held = await self._flush_before_exit()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        return len(unfinished) + held

    async def aclose(self) -> None:
        await self._redis.aclose()

    # --- working ------------------------------------------------------------------------------

    async def _connect_then_work(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            try:
                await self._redis.ping()
                break
            except UNAVAILABLE as exc:
                self._unavailable(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
        self._back()
        self._connected.set()
        log.info("redis_connected", redis=self._where, replica=self.replica)
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="imglife-redis-tick"))
        await self._fetch_loop()

    async def _fetch_loop(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while not self._stopping:
            await self._slots.acquire()
            # Before claiming, not after: a replica busy answering deliveries leaves the work to
            # idle replicas instead of holding jobs it cannot start yet.
            await self._yield_to_deliveries()
            if self._stopping:
                self._slots.release()
                return
            # Shielded: a claim Redis has made must become a running job even if drain cancels
            # this loop meanwhile; drain waits for it.
            self._claim = asyncio.ensure_future(self._claim_one())
            try:
                claimed = await asyncio.shield(self._claim)
            except UNAVAILABLE as exc:
                self._unavailable(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                continue
            delay = RECONNECT_MIN_SECONDS
            self._back()
            if not claimed:
                await self._wait_for_work()

    async def _claim_one(self) -> bool:
        """Lease the next ready key and start its head job; False (slot given back) when none is ready."""
        try:
            claimed = await self._scripts["claim"](args=[self._prefix, self.replica, self._lease_ms])
        except BaseException:
            self._slots.release()
            raise
        if not claimed:
            self._slots.release()
            return False
        key, job_id, raw, takeovers = (_text(part) for part in claimed)
        task = asyncio.create_task(self._execute(key, job_id, raw, int(takeovers)), name=f"job-{job_id}")
        self._running[task] = key
        return True

    async def _wait_for_work(self) -> None:
        with contextlib.suppress(*UNAVAILABLE):
            await self._redis.blpop([self._prefix + "signal"], timeout=SIGNAL_WAIT_SECONDS)

    async def _execute(self, key: str, job_id: str, raw: str, takeovers: int) -> None:
        token = f"{self.replica} {job_id}"
        later: Later | None = None
        try:
            try:
                job = JobSpec.decode(raw)
            except ValueError as exc:
                log.error("job_unreadable", key=key, job_id=job_id, error=str(exc))
            else:
                if takeovers:
                    log.warning("job_taken_over", key=key, job=job.handler, takeovers=takeovers)
                    job = replace(job, attempt=job.attempt + takeovers)
                renew = asyncio.create_task(self._keep_lease(key, token))
                try:
                    later = await self._run(job)
                except Exception:  # the job boundary: one failing job must not stop the worker
                    log.exception("job_crashed", job=job.handler, key=key)
                finally:
                    renew.cancel()
            await self._finish(key, token, job_id, later)
        except asyncio.CancelledError:
            await self._release(key, token)
            raise
        finally:
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._slots.release()

    async def _keep_lease(self, key: str, token: str) -> None:
        every = self._lease_ms / 3000
        while True:
            await asyncio.sleep(every)
            try:
                renewed = await self._scripts["extend"](args=[self._prefix, key, token, self._lease_ms])
            except UNAVAILABLE as exc:
                self._unavailable(exc)
                continue
            if not renewed:
                log.warning("job_lease_lost", key=key)  # another replica took it over: it will run it too
                return

    async def _finish(self, key: str, token: str, job_id: str, later: Later | None) -> None:
        args: list[Any] = [self._prefix, key, token, job_id]
        if later is None:
            args += ["", "", "", 0, ""]
        else:
            nxt = later.job
            args += [
                nxt.id,
                nxt.key,
                nxt.encode().decode(),
                int(max(later.delay, 0) * 1000),
                later.wake or "",
            ]
        delay = RECONNECT_MIN_SECONDS
        while True:  # the job ran: its end must reach Redis, or another replica runs it again
            try:
                answer = _text(await self._scripts["finish"](args=args))
                break
            except UNAVAILABLE as exc:
                self._unavailable(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
        self._back()
        if answer == "lost":
            log.warning("job_finished_after_takeover", key=key, job_id=job_id)

    async def _release(self, key: str, token: str) -> None:
        with contextlib.suppress(*UNAVAILABLE, asyncio.CancelledError):
            async with asyncio.timeout(RELEASE_TIMEOUT_SECONDS):
                await self._scripts["release"](args=[self._prefix, key, token])

    async def _tick_loop(self) -> None:
        while True:
            try:
                gap_ms = self._lease_ms // 3  # a shorter silence cannot have let a renewed lease expire
                result = await self._scripts["tick"](args=[self._prefix, self._lease_ms, gap_ms])
            except UNAVAILABLE as exc:
                self._unavailable(exc)
            else:
                self._back()
                self._depth = max(int(result[0]), 0)
                taken = [_text(key) for key in result[2:]]
                if taken:
                    log.warning("leases_expired", keys=taken)
            await asyncio.sleep(TICK_SECONDS)

    async def _yield_to_deliveries(self) -> None:
        if self._idle_deliveries is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle_deliveries(), YIELD_MAX_SECONDS)

    # --- while Redis is away ------------------------------------------------------------------

    async def _flush_outbox(self) -> None:
        delay = RECONNECT_MIN_SECONDS
        while True:
            await self._outbox_ready.wait()
            while self._outbox:
                try:
                    answer = await self._scripts["enqueue"](args=self._outbox[0])
                except UNAVAILABLE as exc:
                    self._unavailable(exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                    continue
                self._outbox.popleft()
                delay = RECONNECT_MIN_SECONDS
                self._back()
                log.info("held_delivery_queued", outcome=_text(answer), still_held=len(self._outbox))
            self._outbox_ready.clear()
            self._outbox_empty.set()

    async def _flush_before_exit(self) -> int:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RELEASE_TIMEOUT_SECONDS):
                await self._outbox_empty.wait()
        if self._outbox:
            log.error("held_deliveries_lost", count=len(self._outbox), reason="Redis unreachable at exit")
        return len(self._outbox)

    def _unavailable(self, exc: BaseException) -> None:
        if self._available:
            self._available = False
            log.error("redis_unreachable", redis=self._where, error=str(exc) or type(exc).__name__)

    def _back(self) -> None:
        if not self._available:
            self._available = True
            log.info("redis_reachable_again", redis=self._where, held=len(self._outbox))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_PUBLISH_CONFIG = """
local v = redis.call('HINCRBY', P .. 'config', 'version', 1)
redis.call('HSET', P .. 'config', 'source', ARGV[2], 'label', ARGV[3], 'base', ARGV[4])
return v
"""


class RedisConfigShare:
    """A reloaded configuration, shared by the replicas (see :class:`bot.server.runtime.ConfigShare`)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = PREFIX) -> None:
        self._redis = client
        self._key = prefix + "config"
        self._prefix = prefix
        self._publish = client.register_script(_PRELUDE + _PUBLISH_CONFIG)

    async def publish(self, source: bytes, label: str, base: str) -> int:
        return int(await self._publish(args=[self._prefix, source, label, base]))

    async def newer_than(self, version: int) -> SharedConfig | None:
        current = await self._redis.hget(self._key, "version")
        if current is None or int(current) <= version:
            return None
        fields = ["version", "source", "label", "base"]
        number, source, label, base = await self._redis.hmget(self._key, fields)
        if number is None or not isinstance(source, bytes):
            return None
        return SharedConfig(int(number), source, _text(label), _text(base))
