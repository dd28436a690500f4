"""Benchmark: `imglife serve` scaled out on Redis, 1, 2 and 3 replicas sharing one job queue.

    scripts/bench replicas [--deliveries N] [--replicas 1,2,3] [--concurrency C] [--workers W]
                           [--jobs-timeout S] [--keep]

Each replica count R (default 1, then 2, then 3) does the same work from a clean start:

* **Redis**: Debian's ``redis-server`` on a free loopback port with a password and an
  append-only file in /dev/shm (tests/helpers/redis.py), set to ``appendfsync everysec`` as
  deploy/ runs it; started once and emptied with FLUSHALL before each round.
* **Replicas**: R ``imglife serve`` subprocesses on free ports, one imglife.yaml (the GitLab fake
  as forge, ``bot.workers: W``, default 4), ``IMGLIFE_REDIS_URL`` and ``IMGLIFE_REDIS_PASSWORD``
  in the environment; started fresh for the round and stopped (SIGTERM) after it.
* **Forge**: the in-repo GitLab fake (tests/fakes/gitlab.py) in a process of its own
  (bench/forge.py, as bench/webhooks.py uses it); fresh projects each round, 100 merge requests
  per project, each with a head commit and a Dockerfile of its own.

N signed GitLab "Merge Request Hook" deliveries (default 5,000; action open, each a different
merge request) each mean one ``check`` job doing forge work on the fake: read .imglife.yml and
the Dockerfile, judge the base image, post the ``imglife/check`` status and the comment. This
harness is the load balancer: delivery i goes to replica i mod R, with C (default 50) requests
in flight. Every 10th delivery is sent a second time, byte for byte (same X-Gitlab-Webhook-UUID
and Idempotency-Key, as a proxy retrying it would), to the next replica (the same one when R is
1) right behind the first copy, so that the two usually race: exactly one of the two must be
answered 202 "accepted" and the other 200 "duplicate". Before the N, each round sends 2 x W x R
warm-up deliveries (a project of their own) and waits for their jobs.

Measured per round:

* **accept**: from the first request written to the last answer read (the N and the copies);
  deliveries answered per second, acknowledgement latency p50 and p99.
* **jobs/s**: N / (from the first request written to the ``job_finished`` log line of the last of
  the N jobs). Completion is watched on the replicas' /metrics (``imglife_jobs_total``) and on
  Redis (no job left); the times are the replicas' JSON log timestamps.
* **duplicates run**: delivery ids with more than one ``job_finished`` across all replicas' logs,
  plus merge-request heads with more than one ``imglife/check`` status, or more than one bot
  comment, on the fake. Must be 0.
* **lost**: deliveries of the N without a ``job_finished``. Must be 0.
* **share**: jobs run by each replica.
* **where the CPU went**: CPU seconds of each replica, the fake, Redis, this harness and the
  machine's other processes (/proc/stat: others' tests make figures noisy), over the whole round
  and while the deliveries were being sent; CPU per job and the jobs/s that CPU allows on this
  machine's cores; Redis commands per job (INFO commandstats, Lua scripts' own commands included).

The exit status is non-zero when a duplicate ran, a job was lost or did not succeed, or a delivery
was not answered as expected. ``--keep`` keeps the replicas' configs and JSON logs (path printed).
Develop with a small run (``--deliveries 300``): a round of 5,000 takes under a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forge import FIXTURE, FakeProcess, hook_headers, merge_request_hook, write_imglife_config  # noqa: E402

from tests.helpers.procs import ManagedProcess, free_port  # noqa: E402
from tests.helpers.redis import RunningRedis, start_redis  # noqa: E402

TOKEN = "glpat-bench-replicas"  # noqa: S105 - a throwaway token for the fake
SECRET = "bench-replicas-secret"  # noqa: S105 - a throwaway webhook secret
HANDLER = "check"
IMGLIFE = Path(sys.executable).with_name("imglife")
MRS_PER_PROJECT = 100  # the fake scans a project's statuses on every post: keep projects small
RESEND_EVERY = 10  # every 10th delivery is sent twice, to two replicas
REDIS_PREFIX = "imglife:"  # bot/server/redisqueue.py PREFIX
START_TIMEOUT = 30.0
STOP_GRACE = 15.0
REQUEST_TIMEOUT = 60.0
POLL_SECONDS = 0.2
SETTLE_SECONDS = 1.0  # after the last job: time for a duplicate run, if any, to show up
GOOD_OUTCOMES = frozenset({"success", "failure", "pending", "running"})  # a review posted (CommitState)
WATCHED_EVENTS = (
    "job_taken_over",
    "job_lease_lost",
    "leases_expired",
    "job_finished_after_takeover",
    "jobs_handed_back",
    "job_crashed",
    "job_gave_up",
    "redis_unreachable",
    "delivery_refused",
    "held_deliveries_lost",
)
JOB_LINE = re.compile(r'^imglife_jobs_total\{handler="([^"]+)",outcome="([^"]+)"\} (\S+)$', re.MULTILINE)

# --- deliveries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    project_id: int
    path: str
    iid: int
    sha: str


@dataclass(frozen=True)
class Delivery:
    delivery_id: str
    replica: int  # index of the replica it is sent to
    body: bytes
    headers: dict[str, str]
    mr: int  # index of its merge request: a resent delivery shares it with the first copy


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (a client error)
    text: str
    seconds: float


def plan_changes(fake: FakeProcess, tag: str, count: int, prefix: str) -> list[Change]:
    """``count`` merge requests, ``MRS_PER_PROJECT`` per project, created on the fake."""
    projects: list[tuple[str, list[tuple[int, str]]]] = []
    for start in range(0, count, MRS_PER_PROJECT):
        iids = range(1, min(MRS_PER_PROJECT, count - start) + 1)
        index = start // MRS_PER_PROJECT
        changes = [(iid, f"{prefix}{index:06x}{iid:026x}") for iid in iids]
        projects.append((f"bench/{tag}-{index}", changes))
    ids = fake.add_projects(projects)
    return [
        Change(project_id, path, iid, sha)
        for project_id, (path, changes) in zip(ids, projects, strict=True)
        for iid, sha in changes
    ]


def delivery_body(template: dict[str, Any], fake_url: str, change: Change) -> bytes:
    """A Merge Request Hook body shaped like GitLab's documented example, for ``change``."""
    payload = merge_request_hook(
        template,
        fake_url,
        change.project_id,
        change.path,
        iid=change.iid,
        mr_id=100_000 + change.iid,
        sha=change.sha,
    )
    return json.dumps(payload).encode()


def plan_deliveries(changes: list[Change], fake_url: str, replicas: int, resend_every: int) -> list[Delivery]:
    """One delivery per change, round-robin; every ``resend_every``-th again, to the next replica."""
    template = json.loads(FIXTURE.read_text())
    deliveries = []
    for i, change in enumerate(changes):
        delivery_id = str(uuid.uuid4())
        headers = {
            **hook_headers(fake_url, SECRET),
            "X-Gitlab-Webhook-UUID": delivery_id,
            "X-Gitlab-Event-UUID": delivery_id,
            "Idempotency-Key": delivery_id,
        }
        body = delivery_body(template, fake_url, change)
        deliveries.append(Delivery(delivery_id, i % replicas, body, headers, i))
        if resend_every and (i + 1) % resend_every == 0:
            deliveries.append(Delivery(delivery_id, (i + 1) % replicas, body, headers, i))
    return deliveries


async def post_all(
    session: aiohttp.ClientSession, urls: list[str], deliveries: list[Delivery], concurrency: int
) -> tuple[list[Answer], float, float]:
    """Post ``deliveries`` in order with ``concurrency`` in flight: answers, wall-clock start, seconds."""
    answers: list[Answer | None] = [None] * len(deliveries)
    order = iter(range(len(deliveries)))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)

    async def sender() -> None:
        for i in order:
            delivery = deliveries[i]
            started = time.perf_counter()
            try:
                async with session.post(
                    urls[delivery.replica], data=delivery.body, headers=delivery.headers, timeout=timeout
                ) as response:
                    text = (await response.text()).strip()
                    answers[i] = Answer(response.status, text, time.perf_counter() - started)
            except (aiohttp.ClientError, TimeoutError) as exc:
                answers[i] = Answer(0, type(exc).__name__, time.perf_counter() - started)

    wall, started = time.time(), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return [a or Answer(0, "not sent", 0.0) for a in answers], wall, seconds


# --- replicas -------------------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    proc: ManagedProcess
    base: str

    @classmethod
    def start(cls, name: str, config: Path, env: dict[str, str], workdir: Path) -> Replica:
        port = free_port()
        argv = [str(IMGLIFE), "--config", str(config), "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = ManagedProcess(argv, log_path=workdir / f"{name}.log", cwd=workdir, env=env)
        return cls(name, proc, f"http://127.0.0.1:{port}")

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.proc.alive():
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.base}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise SystemExit(f"{self.name} did not become ready at {self.base}:\n{self.proc.log_tail()}")

    async def jobs(self, session: aiohttp.ClientSession) -> int:
        """``check`` jobs finished so far, any outcome (/metrics)."""
        async with session.get(f"{self.base}/metrics") as response:
            text = await response.text()
        return sum(int(float(n)) for handler, _, n in JOB_LINE.findall(text) if handler == HANDLER)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def log(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.proc.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sum_jobs(session: aiohttp.ClientSession, replicas: list[Replica]) -> int:
    return sum(await asyncio.gather(*(r.jobs(session) for r in replicas)))


async def wait_for_jobs(
    session: aiohttp.ClientSession,
    replicas: list[Replica],
    store: redis.Redis,
    expected: int,
    within: float,
) -> bool:
    """Until ``expected`` jobs have finished across ``replicas`` and Redis holds no job; False on timeout."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not all(r.proc.alive() for r in replicas):
            return False
        with contextlib.suppress(aiohttp.ClientError):
            if await sum_jobs(session, replicas) >= expected and not store.hlen(REDIS_PREFIX + "jobs"):
                return True
        await asyncio.sleep(POLL_SECONDS)
    return False


# --- one round ------------------------------------------------------------------------------------


@dataclass
class Round:
    replicas: int
    deliveries: int  # the N
    sent: int  # the N and the copies
    accept_seconds: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)  # "202 accepted", "200 duplicate", ...
    pairs: int = 0
    pairs_wrong: int = 0  # copies of one delivery not answered one "accepted", one "duplicate"
    singles_wrong: int = 0  # deliveries sent once not answered 202 "accepted"
    completed: bool = False
    work_seconds: float | None = None  # first request written to the last job_finished
    jobs_run: int = 0  # job_finished lines of the N (duplicates included)
    during_accept: int = 0  # jobs of the N finished before the last answer was read
    duplicates_run: int = 0  # delivery ids of the N (or warm-up) run more than once
    lost: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    share: list[int] = field(default_factory=list)  # jobs of the N run by each replica
    fake: dict[str, int] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)
    leftover: dict[str, int] = field(default_factory=dict)  # Redis keys still holding work
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds of each process, and "wall"
    cpu_accept: dict[str, float] = field(default_factory=dict)  # the same, while deliveries were sent
    redis_calls: dict[str, int] = field(default_factory=dict)  # commands Redis ran, by name
    exited: list[str] = field(default_factory=list)

    @property
    def jobs_per_second(self) -> float:
        return self.deliveries / self.work_seconds if self.work_seconds else 0.0

    @property
    def duplicates(self) -> int:
        """Jobs run twice, as the logs or the fake tell: the larger of the three counts."""
        return max(self.duplicates_run, self.fake.get("heads_twice", 0), self.fake.get("mrs_twice", 0))

    @property
    def bad_outcomes(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome not in GOOD_OUTCOMES)

    @property
    def ok(self) -> bool:
        return (
            self.completed
            and not self.duplicates
            and not self.lost
            and not self.pairs_wrong
            and not self.singles_wrong
            and not self.bad_outcomes
            and not self.exited
        )


def judge_answers(result: Round, deliveries: list[Delivery], answers: list[Answer]) -> None:
    by_mr: dict[int, list[Answer]] = {}
    for delivery, answer in zip(deliveries, answers, strict=True):
        by_mr.setdefault(delivery.mr, []).append(answer)
        result.answers[f"{answer.status} {answer.text}"] += 1
    for copies in by_mr.values():
        said = sorted(f"{a.status} {a.text}" for a in copies)
        if len(copies) == 1:
            result.singles_wrong += said != ["202 accepted"]
        else:
            result.pairs += 1
            result.pairs_wrong += said != ["200 duplicate", "202 accepted"]
    latencies = sorted(a.seconds * 1000 for a in answers if a.status)
    if latencies:
        q = (
            statistics.quantiles(latencies, n=100, method="inclusive")
            if len(latencies) > 1
            else latencies * 99
        )
        result.latency_ms = {"p50": q[49], "p99": q[98], "max": latencies[-1]}


def judge_logs(result: Round, replicas: list[Replica], measured: set[str], started_wall: float) -> None:
    runs: Counter[str] = Counter()
    last_finished = 0.0
    result.share = [0] * len(replicas)
    for index, replica in enumerate(replicas):
        for line in replica.log():
            event = line.get("event")
            if event in WATCHED_EVENTS:
                result.events[str(event)] += 1
            if event != "job_finished" or line.get("handler") != HANDLER:
                continue
            delivery_id = str(line.get("delivery_id"))
            runs[delivery_id] += 1
            if delivery_id in measured:
                result.jobs_run += 1
                result.share[index] += 1
                result.outcomes[str(line.get("outcome"))] += 1
                finished = datetime.fromisoformat(str(line["timestamp"])).timestamp()
                last_finished = max(last_finished, finished)
                result.during_accept += finished <= started_wall + result.accept_seconds
    result.duplicates_run = sum(1 for n in runs.values() if n > 1)
    result.lost = len(measured - set(runs))
    if result.completed and not result.lost and last_finished > started_wall:
        result.work_seconds = last_finished - started_wall


async def run_round(
    count: int,
    number: int,
    args: argparse.Namespace,
    fake: FakeProcess,
    server: RunningRedis,
    store: redis.Redis,
    workdir: Path,
) -> Round:
    store.flushall()
    round_dir = workdir / f"round-{number}-{count}"
    round_dir.mkdir()
    config = write_imglife_config(round_dir, fake.url, args.workers)
    env = {
        **os.environ,
        "IMGLIFE_GITLAB_WEBHOOK_SECRET": SECRET,
        "GITLAB_TOKEN": TOKEN,
        "IMGLIFE_REDIS_URL": server.url,
        "IMGLIFE_REDIS_PASSWORD": server.password,
        "IMGLIFE_LOG_FORMAT": "json",
    }
    warmups = 2 * args.workers * count
    warm_changes = plan_changes(fake, f"r{number}-warm", warmups, f"{number:04x}ffff")
    changes = plan_changes(fake, f"r{number}", args.deliveries, f"{number:04x}0000")
    warm = plan_deliveries(warm_changes, fake.url, count, 0)
    deliveries = plan_deliveries(changes, fake.url, count, RESEND_EVERY)
    measured = {d.delivery_id for d in deliveries}
    result = Round(count, args.deliveries, len(deliveries))

    replicas = [Replica.start(f"replica-{i + 1}", config, env, round_dir) for i in range(count)]
    urls = [f"{r.base}/webhooks/gitlab" for r in replicas]
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(r.wait_ready(session) for r in replicas))
            answers, _, _ = await post_all(session, urls, warm, min(args.concurrency, len(warm)))
            bad = [a for a in answers if a.status != 202]
            if bad or not await wait_for_jobs(session, replicas, store, warmups, START_TIMEOUT):
                tails = "\n".join(f"--- {r.name}\n{r.proc.log_tail(20)}" for r in replicas)
                raise SystemExit(f"{count} replica(s): the warm-up was not handled ({bad[:3]}):\n{tails}")
            baseline = await sum_jobs(session, replicas)
            store.config_resetstat()
            cpu_before = cpu_snapshot(replicas, fake, server)

            answers, started_wall, result.accept_seconds = await post_all(
                session, urls, deliveries, args.concurrency
            )
            cpu_accepted = cpu_snapshot(replicas, fake, server)
            result.cpu_accept = {k: cpu_accepted[k] - cpu_before[k] for k in cpu_before}
            result.completed = await wait_for_jobs(
                session, replicas, store, baseline + args.deliveries, args.jobs_timeout
            )
            cpu_after = cpu_snapshot(replicas, fake, server)
            result.cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_before}
            result.redis_calls = {
                name.removeprefix("cmdstat_"): int(stats["calls"])
                for name, stats in store.info("commandstats").items()
            }
            await asyncio.sleep(SETTLE_SECONDS)
            result.leftover = {
                name: n
                for name, n in (
                    ("jobs", store.hlen(REDIS_PREFIX + "jobs")),
                    ("leases", store.zcard(REDIS_PREFIX + "leases")),
                    ("ready", store.llen(REDIS_PREFIX + "ready")),
                    ("delayed", store.zcard(REDIS_PREFIX + "delayed")),
                )
                if n
            }
    finally:
        result.exited = [f"{r.name} ({r.proc.returncode})" for r in replicas if not r.proc.alive()]
        await asyncio.gather(*(asyncio.to_thread(r.proc.stop, STOP_GRACE) for r in replicas))
    judge_answers(result, deliveries, answers)
    judge_logs(result, replicas, measured, started_wall)
    result.fake = fake.tally(sorted({c.project_id for c in changes}))
    if result.fake.get("statuses", 0) < args.deliveries:
        result.lost = max(result.lost, args.deliveries - result.fake.get("heads", 0))
    return result


def cpu_snapshot(replicas: list[Replica], fake: FakeProcess, server: RunningRedis) -> dict[str, float]:
    snapshot = {r.name: r.cpu_seconds() for r in replicas}
    snapshot["fake"] = fake.cpu_seconds()
    snapshot["redis"] = proc_cpu_seconds(server.proc.pid) if server.proc else 0.0
    snapshot["harness"] = time.process_time()
    snapshot["wall"] = time.monotonic()
    snapshot["machine"] = machine_cpu_seconds()
    return snapshot


def machine_cpu_seconds() -> float:
    """CPU time all processes of the machine have used so far (Linux /proc/stat, idle and iowait not)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu(cpu: dict[str, float]) -> float:
    """CPU seconds of the bench's own processes in a snapshot difference."""
    return sum(c for k, c in cpu.items() if k not in {"wall", "machine"})


# --- report ---------------------------------------------------------------------------------------


def print_header(args: argparse.Namespace) -> None:
    cpus = os.cpu_count()
    print(
        f"\nimglife serve on Redis, scaled out: {args.deliveries} Merge Request Hook deliveries "
        f"(+1 copy of every {RESEND_EVERY}th to another replica), concurrency {args.concurrency}, "
        f"bot.workers {args.workers} per replica, round-robin over the replicas by this harness"
    )
    print(
        f"os.cpu_count() = {cpus}. Nothing is pinned: the replicas, the GitLab fake (one Python "
        f"process), Redis and this harness share these {cpus} CPUs, so the scale-out gain is bounded "
        f"by the cores here: once they are busy, another replica only splits the same CPU (the fake's "
        f"and Redis's share of it stays). Below that bound, each replica adds bot.workers jobs in "
        f"flight, which is what helps while jobs mostly wait on the forge and Redis."
    )


def print_report(results: list[Round]) -> bool:
    cpus = os.cpu_count() or 1
    print(
        f"\n{'replicas':>8} {'sent':>6} {'accept s':>8} {'deliv/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'jobs':>6} {'work s':>7} {'jobs/s':>7} {'dup ans':>7} {'dup run':>7} {'lost':>5}  jobs per replica"
    )
    for r in results:
        work = f"{r.work_seconds:.1f}" if r.work_seconds else "-"
        rate = f"{r.jobs_per_second:.1f}" if r.work_seconds else "-"
        p50, p99 = (f"{r.latency_ms.get(p, 0):.1f}" for p in ("p50", "p99"))
        share = " / ".join(str(n) for n in r.share)
        print(
            f"{r.replicas:>8} {r.sent:>6} {r.accept_seconds:>8.2f} {r.sent / r.accept_seconds:>8.0f} "
            f"{p50:>8} {p99:>8} {r.jobs_run:>6} {work:>7} {rate:>7} {r.answers['200 duplicate']:>7} "
            f"{r.duplicates:>7} {r.lost:>5}  {share}"
        )
    print()
    for r in results:
        replicas_cpu = [r.cpu[f"replica-{i + 1}"] for i in range(r.replicas)]
        busy = own_cpu(r.cpu) / r.cpu["wall"]
        others = max(r.cpu["machine"] - own_cpu(r.cpu), 0.0)
        cpu = (
            f"replicas {sum(replicas_cpu):.1f} ({' / '.join(f'{c:.1f}' for c in replicas_cpu)}), "
            f"fake {r.cpu['fake']:.1f}, redis {r.cpu['redis']:.1f}, harness {r.cpu['harness']:.1f}, "
            f"other processes of the machine {others:.1f}"
        )
        per_job = own_cpu(r.cpu) / r.deliveries
        print(
            f"{r.replicas} replica(s): CPU s {cpu}; {busy:.2f} CPUs busy on average "
            f"(over {r.cpu['wall']:.1f} s: first delivery to all jobs seen done); "
            f"{per_job * 1000:.1f} ms CPU per job, all processes: at most ~{cpus / per_job:.0f} jobs/s "
            f"on {cpus} CPUs"
        )
        accepting = [r.cpu_accept[f"replica-{i + 1}"] for i in range(r.replicas)]
        print(
            f"    while accepting ({r.cpu_accept['wall']:.1f} s): replicas "
            f"{' / '.join(f'{c:.1f}' for c in accepting)} CPU s, fake {r.cpu_accept['fake']:.1f}, "
            f"harness {r.cpu_accept['harness']:.1f}; {r.during_accept} of the jobs had finished"
        )
        print(f"    outcomes {dict(r.outcomes)}; answers {dict(r.answers)}")
        calls = sorted(r.redis_calls.items(), key=lambda item: -item[1])
        print(
            f"    redis: {sum(r.redis_calls.values()) / r.deliveries:.1f} commands per job "
            f"({', '.join(f'{name} {n}' for name, n in calls[:6])})"
        )
        fake = r.fake
        print(
            f"    fake: {fake.get('statuses')} imglife/check statuses on {fake.get('heads')} heads "
            f"({fake.get('heads_twice')} twice), {fake.get('comments')} comments on "
            f"{fake.get('mrs_commented')} merge requests ({fake.get('mrs_twice')} twice)"
        )
        notes = []
        if r.events:
            notes.append(f"log events {dict(r.events)}")
        if r.leftover:
            notes.append(f"left in Redis {r.leftover}")
        if r.pairs_wrong or r.singles_wrong:
            notes.append(
                f"{r.pairs_wrong} of {r.pairs} resent pairs not answered one accepted + one duplicate, "
                f"{r.singles_wrong} single deliveries not answered 202 accepted"
            )
        if not r.completed:
            notes.append("NOT all jobs finished within --jobs-timeout")
        if r.exited:
            notes.append(f"exited early: {', '.join(r.exited)}")
        if r.bad_outcomes:
            notes.append(f"{r.bad_outcomes} jobs with an outcome other than {sorted(GOOD_OUTCOMES)}")
        for note in notes:
            print(f"    {note}")
    one = next((r for r in results if r.replicas == 1 and r.work_seconds), None)
    if one is not None:
        for r in results:
            if r.replicas != 1 and r.work_seconds:
                jobs = r.jobs_per_second / one.jobs_per_second
                accept = (r.sent / r.accept_seconds) / (one.sent / one.accept_seconds)
                print(f"jobs/s {r.replicas} replicas / 1 replica: {jobs:.2f} (accept rate: {accept:.2f})")
    print(
        "accept s = first request written to last answer read (the N and the copies); "
        "jobs/s = N / (first request written to the last job_finished); dup ans = copies answered "
        "200 duplicate; dup run = delivery ids run more than once in the replicas' logs, or heads with "
        "two statuses or merge requests with two bot comments on the fake if more (must be 0); lost = "
        "deliveries whose job never finished (must be 0)"
    )
    return all(r.ok for r in results)


async def bench(args: argparse.Namespace) -> bool:
    print_header(args)
    fake = FakeProcess(TOKEN)
    results: list[Round] = []
    try:
        with start_redis() as server, workspace(args.keep) as tmp:
            store = redis.Redis(host="127.0.0.1", port=server.port, password=server.password)
            store.config_set("appendfsync", "everysec")  # as deploy/ runs Redis
            try:
                for number, count in enumerate(args.replicas, start=1):
                    result = await run_round(count, number, args, fake, server, store, Path(tmp))
                    rate = f"{result.jobs_per_second:.1f} jobs/s" if result.work_seconds else "incomplete"
                    print(
                        f"{count} replica(s): {rate}, {result.duplicates} duplicates run, {result.lost} lost",
                        file=sys.stderr,
                    )
                    results.append(result)
            finally:
                store.close()
    finally:
        fake.stop(STOP_GRACE)
    return print_report(results)


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[str]:
    """Where the rounds' configs and logs go; kept (and named) with ``--keep``."""
    if not keep:
        with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
            yield tmp
        return
    tmp = tempfile.mkdtemp(prefix="bench-replicas-")
    print(f"replicas' configs and logs: {tmp}", file=sys.stderr)
    yield tmp


def replica_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("replica counts must be at least 1")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=5_000, help="merge requests delivered per round")
    parser.add_argument(
        "--replicas", type=replica_counts, default=[1, 2, 3], help="replica counts, one round each (1,2,3)"
    )
    parser.add_argument("--concurrency", type=int, default=50, help="deliveries in flight")
    parser.add_argument("--workers", type=int, default=4, help="bot.workers of each replica")
    parser.add_argument(
        "--jobs-timeout", type=float, default=600.0, help="seconds to wait for a round's jobs to finish"
    )
    parser.add_argument("--keep", action="store_true", help="keep the replicas' logs (the path is printed)")
    args = parser.parse_args()
    if args.deliveries < 1 or args.concurrency < 1 or args.workers < 1:
        parser.error("--deliveries, --concurrency and --workers must be at least 1")
    if not shutil.which("redis-server"):
        parser.error("redis-server is not installed: scripts/bench installs it (Debian package redis-server)")
    if not asyncio.run(bench(args)):
        raise SystemExit("a duplicate ran, a job was lost or failed, or a delivery was answered wrongly")


if __name__ == "__main__":
    main()
