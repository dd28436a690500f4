"""Several real ``imglife serve`` replicas sharing one real Redis and the GitLab fake.

What the issue promised of Redis mode, seen from outside: a delivery that reaches two replicas is
worked on once; the jobs of one merge request run one at a time, in delivery order, whichever
replica takes them; a replica killed in the middle of a job loses it to another after
``bot.visibility_timeout``; a replica stopped with SIGTERM hands its unfinished job back at once;
Redis away at start or in the middle of a run loses nothing; a job that always fails is given up
with a report and does not block its merge request. Asserted on what users see — commit statuses,
the one MR comment, records, HTTP answers — and on the replicas' JSON logs where they are the only
witness. In-process queue behaviour is in ``tests/test_jobs.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import itertools
import json
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import redis

from tests.fakes import DEVELOPER, FakeGitLab, GitLabToken
from tests.helpers.bot import (
    GITLAB_EVENTS,
    GITLAB_SECRET,
    IMGLIFE,
    MARKER,
    AppWorld,
    RunningBot,
    bot_config,
    fixture,
)
from tests.helpers.lifecycle import ALPINE_OLD_CORE
from tests.helpers.procs import ManagedProcess, free_port, wait_until
from tests.helpers.redis import RunningRedis

BOT_TOKEN = "glpat-imglife-replicas"
PROJECT = "team/app"
CHECK = "imglife/check"
REGISTER = "imglife/register"
IMGLIFE_YML = r"/repository/files/\.imglife\.yml/raw"
PREFIX = "imglife:"  # bot.server.redisqueue.PREFIX
WAIT = 30.0  # generous: every wait polls and returns as soon as the thing is there


def commit(label: str) -> str:
    """A 40-hex sha whose first 12 characters (what the MR comment shows) differ per label."""
    return hashlib.sha1(label.encode()).hexdigest()  # noqa: S324 - a name, not security


# --- a GitLab fake that can hold requests (a forge call that hangs: a job in the middle) ----------


@dataclass
class Hold:
    """Requests matching ``method`` and ``pattern`` wait (in the fake) until :meth:`release`."""

    method: str
    pattern: re.Pattern[str]
    released: threading.Event = field(default_factory=threading.Event)
    arrived: int = 0

    def release(self) -> None:
        self.released.set()


class HoldingGitLab(FakeGitLab):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._holds: list[Hold] = []

    def hold(self, method: str, path_regex: str) -> Hold:
        hold = Hold(method.upper(), re.compile(path_regex))
        with self.lock:
            self._holds.append(hold)
        return hold

    def release_all(self) -> None:
        with self.lock:
            for hold in self._holds:
                hold.release()

    async def _route(self, request: Any, raw_path: str, body: bytes) -> Any:
        with self.lock:
            hold = next(
                (
                    h
                    for h in self._holds
                    if not h.released.is_set() and h.method == request.method and h.pattern.search(raw_path)
                ),
                None,
            )
            if hold is not None:
                hold.arrived += 1
        if hold is not None:
            await asyncio.to_thread(hold.released.wait)
        return await super()._route(request, raw_path, body)


# --- the replicas -----------------------------------------------------------------------------------


def post_gitlab(
    url: str, payload: Mapping[str, Any], *, delivery: str | None = None, idempotency_key: str | None = None
) -> tuple[int, str]:
    """POST a signed GitLab delivery with the standard library (safe from any thread)."""
    parts = urlsplit(url)
    headers = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": GITLAB_EVENTS[str(payload["object_kind"])],
        "X-Gitlab-Token": GITLAB_SECRET,
        "X-Gitlab-Webhook-UUID": delivery or str(uuid.uuid4()),
    }
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=15)
    try:
        conn.request("POST", "/webhooks/gitlab", body=json.dumps(payload).encode(), headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read().decode().strip()
    finally:
        conn.close()


def read_log(bot: RunningBot) -> list[dict[str, Any]]:
    """A replica's JSON log lines (a line cut short by SIGKILL is skipped)."""
    lines = []
    for line in bot.proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def events(bot: RunningBot, name: str, **match: Any) -> list[dict[str, Any]]:
    return [
        line
        for line in read_log(bot)
        if line.get("event") == name and all(line.get(k) == v for k, v in match.items())
    ]


def when(line: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"])).timestamp()


@dataclass
class Cluster(AppWorld):
    fake: HoldingGitLab
    redis: RunningRedis
    config: Path
    environ: dict[str, str]
    project_id: int
    bot_user_id: int
    log_dir: Path
    stack: ExitStack
    replicas: list[RunningBot] = field(default_factory=list)

    # --- processes

    def start(self, count: int = 1, *, ready: bool = True) -> list[RunningBot]:
        """Start ``count`` replicas side by side; with ``ready``, wait until each answers /readyz 200."""
        started = []
        for _ in range(count):
            port = free_port()
            env = {"PATH": "/usr/bin:/bin", "HOME": str(self.log_dir), **self.environ}
            argv = [str(IMGLIFE), "--config", str(self.config), "serve"]
            argv += ["--host", "127.0.0.1", "--port", str(port)]
            proc = ManagedProcess(argv, log_path=self.log_dir / f"imglife-serve-{port}.log", env=env)
            bot = RunningBot(proc, f"http://127.0.0.1:{port}")
            # No kept-alive connections: replicas here are killed, and a pooled socket to a dead
            # replica is left for the garbage collector (a ResourceWarning in a later test).
            bot.http.close()
            bot.http = httpx.Client(
                base_url=bot.url, timeout=10.0, limits=httpx.Limits(max_keepalive_connections=0)
            )
            self.stack.callback(proc.stop, grace=10)
            self.stack.callback(bot.http.close)
            started.append(bot)
        self.replicas += started
        probe = "/readyz" if ready else "/healthz"  # /readyz waits for Redis too
        for bot in started:

            def answers(bot: RunningBot = bot) -> bool:
                return bot.http.get(probe).status_code == 200

            wait_until(answers, timeout=WAIT, what=f"imglife serve {probe}", proc=bot.proc, interval=0.05)
        return started

    # --- what the forge shows

    def status_rows(self, sha: str, name: str = CHECK) -> list[Any]:
        """Every status row the bot posted for ``sha`` (superseded ones included), oldest first."""
        return [s for s in self.fake.statuses(self.project_id, sha) if s.name == name]

    def bot_notes(self, iid: int) -> list[Any]:
        notes = self.fake.notes(self.project_id, "merge_requests", iid)
        return [n for n in notes if n.author.id == self.bot_user_id]

    # --- what the replicas logged

    def all_events(self, name: str, **match: Any) -> list[dict[str, Any]]:
        found = [line for bot in self.replicas for line in events(bot, name, **match)]
        return sorted(found, key=when)

    def finished(self, handler: str = "check") -> list[dict[str, Any]]:
        return self.all_events("job_finished", handler=handler)

    # --- Redis

    def queue_empty(self) -> bool:
        """No job queued, running or waiting for a retry, in Redis itself."""
        client = redis.Redis(host="127.0.0.1", port=self.redis.port, password=self.redis.password)
        try:
            return client.hlen(PREFIX + "jobs") == 0 and client.zcard(PREFIX + "leases") == 0
        finally:
            client.close()

    def wait(self, check: Any, what: str, *, timeout: float = WAIT) -> None:
        wait_until(check, timeout=timeout, what=what, interval=0.05)

    # --- deliveries (GitLab's documented examples, re-pointed at this project)

    def project_payload(self) -> dict[str, Any]:
        return {
            "id": self.project_id,
            "name": "app",
            "path_with_namespace": PROJECT,
            "default_branch": "main",
            "web_url": f"{self.fake.url}/{PROJECT}",
        }

    def merge_request(self, iid: int, head: str, *, oldrev: str | None = None) -> dict[str, Any]:
        """An MR opened at ``head``, or (with ``oldrev``) updated with new commits up to ``head``."""
        with self.fake.lock:
            known = iid in self.fake.project(self.project_id).merge_requests
        if not known:
            self.fake.add_merge_request(PROJECT, iid, "feature", head)
        self.fake.add_file(PROJECT, head, "Dockerfile", f"ARG BASE={ALPINE_OLD_CORE}\nFROM $BASE\n")
        name = "merge_request__open" if oldrev is None else "merge_request__update_oldrev"
        payload = fixture("gitlab", name)
        payload["project"] = self.project_payload()
        attrs = payload["object_attributes"]
        attrs.update(iid=iid, source_branch="feature", target_branch="main")
        attrs["target_project_id"] = self.project_id
        attrs["last_commit"]["id"] = head
        if oldrev is not None:
            attrs["oldrev"] = oldrev
        return payload

    def tag_push(self, tag: str, sha: str) -> dict[str, Any]:
        payload = fixture("gitlab", "tag_push__create")
        payload.update(ref=f"refs/tags/{tag}", after=sha, checkout_sha=sha, project_id=self.project_id)
        payload["project"] = self.project_payload()
        return payload

    def checked(self, iid: int, sha: str) -> bool:
        """The MR shows a finished check of ``sha``: its status and the comment naming it."""
        rows = self.status_rows(sha)
        notes = self.bot_notes(iid)
        return bool(rows) and rows[-1].status == "success" and any(sha[:12] in n.body for n in notes)


@contextmanager
def make_cluster(
    tmp_path: Path,
    registry: Any,
    redis_server: RunningRedis,
    *,
    workers: int = 2,
    visibility: str = "2s",
    drain: str = "5s",
    attempts: int = 3,
    retry_delay: str = "200ms",
    latency: float = 0.0,
) -> Iterator[Cluster]:
    fake = HoldingGitLab(tokens={BOT_TOKEN: GitLabToken("imglife-bot")}, latency=latency)
    with fake, ExitStack() as stack:
        stack.callback(fake.release_all)  # a held request must not outlive the test
        project = fake.add_project(PROJECT, members={"imglife-bot": DEVELOPER})
        bot_user = fake.add_user("imglife-bot", bot=True)
        names = AppWorld.names(registry)
        fake.add_file(PROJECT, "main", ".imglife.yml", f"images:\n  - {names['image_repo']}\n")
        block = (
            f"  gitlab: {{url: '{fake.url}'}}\n"
            f"  workers: {workers}\n"
            f"  redis_url: '{redis_server.url}'\n"
            f"  visibility_timeout: {visibility}\n"
            f"  drain_timeout: {drain}\n"
            f"  job_attempts: {attempts}\n"
            f"  retry_delay: {retry_delay}\n"
            "  register_wait: 5s\n"
        )
        config = bot_config(tmp_path, registry, names, block)
        environ = {
            "IMGLIFE_GITLAB_WEBHOOK_SECRET": GITLAB_SECRET,
            "GITLAB_TOKEN": BOT_TOKEN,
            "IMGLIFE_REDIS_PASSWORD": redis_server.password,
        }
        yield Cluster(
            registry=registry,
            image_repo=names["image_repo"],
            records=tmp_path / "records",
            upstream=names["upstream"],
            mirrors=names["mirrors"],
            fake=fake,
            redis=redis_server,
            config=config,
            environ=environ,
            project_id=project.id,
            bot_user_id=bot_user.id,
            log_dir=tmp_path,
            stack=stack,
        )


def assert_checked_once(c: Cluster, iid: int, sha: str) -> None:
    """Exactly one check status row for ``sha`` (a second run would add one) and one bot comment."""
    rows = c.status_rows(sha)
    assert [(r.status, r.description) for r in rows] == [("success", "1 base image: 1 outdated")], iid
    (note,) = c.bot_notes(iid)
    assert note.body.startswith(MARKER)
    assert sha[:12] in note.body


# --- 1. exactly once ---------------------------------------------------------------------------------


def test_a_delivery_reaching_two_replicas_is_worked_on_once(
    tmp_path: Path, anon_registry: Any, redis_server: RunningRedis
) -> None:
    with make_cluster(tmp_path, anon_registry, redis_server, workers=2, latency=0.02) as c:
        replicas = c.start(3)
        deliveries: list[dict[str, Any]] = []
        mrs = {iid: commit(f"mr-{iid}") for iid in range(1, 31)}
        deliveries += [c.merge_request(iid, head) for iid, head in mrs.items()]
        tags = {f"v1.0.{n}": commit(f"tag-{n}") for n in range(3)}
        for tag, sha in tags.items():
            c.push_app_image(tag)
            deliveries.append(c.tag_push(tag, sha))

        def send_twice(n: int) -> list[tuple[int, str]]:
            # The same delivery (a GitLab retry: same Idempotency-Key) lands on two replicas at once.
            payload, key = deliveries[n], f"retry-{n}"
            pair = (replicas[n % 3], replicas[(n + 1) % 3])
            with ThreadPoolExecutor(2) as both:
                sent = [both.submit(post_gitlab, bot.url, payload, idempotency_key=key) for bot in pair]
                return sorted(f.result() for f in sent)

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send_twice, range(len(deliveries))))
        assert answers == [[(200, "duplicate"), (202, "accepted")]] * len(deliveries)

        c.wait(
            lambda: len(c.finished("check")) >= 30 and len(c.finished("register")) >= 3 and c.queue_empty(),
            "every job to finish and Redis to hold no more work",
        )
        checks, registrations = c.finished("check"), c.finished("register")
        assert len(checks) == 30  # the sum over all replicas' logs: one job per distinct delivery
        assert len(registrations) == 3
        assert {line["outcome"] for line in checks} == {"success"}
        assert {line["outcome"] for line in registrations} == {"registered"}
        for iid, head in mrs.items():
            assert_checked_once(c, iid, head)
        for tag, sha in tags.items():
            (row,) = c.status_rows(sha, REGISTER)
            assert (row.status, row.ref) == ("success", tag)
        assert sorted(r["image"] for r in c.stored_records()) == sorted(f"{c.image_repo}:{t}" for t in tags)
        # The work was shared: more than one replica ran jobs.
        working = [bot for bot in replicas if events(bot, "job_finished")]
        assert len(working) >= 2, [len(events(bot, "job_finished")) for bot in replicas]
        assert [len(events(bot, "serve_started", queue="redis")) for bot in replicas] == [1, 1, 1]


# --- 2. ordering per merge request -------------------------------------------------------------------


def test_updates_of_one_merge_request_run_one_at_a_time_in_delivery_order(
    tmp_path: Path, anon_registry: Any, redis_server: RunningRedis
) -> None:
    # Every forge call takes 50 ms: a check lasts a few hundred, so the updates pile up behind it.
    with make_cluster(tmp_path, anon_registry, redis_server, workers=4, latency=0.05) as c:
        a, b = c.start(2)
        heads = [commit(f"order-{n}") for n in range(1, 6)]
        sent: list[str] = []  # delivery ids, in delivery order
        for n, head in enumerate(heads):
            payload = c.merge_request(40, head, oldrev=heads[n - 1] if n else None)
            delivery = str(uuid.uuid4())
            assert post_gitlab((a, b)[n % 2].url, payload, delivery=delivery) == (202, "accepted")
            sent.append(delivery)

        c.wait(lambda: len(c.finished()) >= 5 and c.queue_empty(), "the five checks")
        finished = c.finished()
        assert len(finished) == 5
        # Ran in delivery order, on both replicas...
        assert [line["delivery_id"] for line in finished] == sent
        assert all(events(bot, "job_finished") for bot in (a, b))
        # ...and one at a time: each started after the one before had finished.
        for before, after in itertools.pairwise(finished):
            assert when(after) - after["duration_ms"] / 1000 >= when(before) - 0.001, (before, after)
        # The forge saw the statuses in that order, one per head, and one comment showing the last.
        rows = sorted((row for head in heads for row in c.status_rows(head)), key=lambda row: row.id)
        assert [row.sha for row in rows] == heads
        (note,) = c.bot_notes(40)
        assert heads[-1][:12] in note.body
        assert not any(head[:12] in note.body for head in heads[:-1])


# --- 3. takeover after SIGKILL -----------------------------------------------------------------------


def test_a_job_of_a_killed_replica_is_finished_by_another_after_the_visibility_timeout(
    tmp_path: Path, anon_registry: Any, redis_server: RunningRedis
) -> None:
    with make_cluster(tmp_path, anon_registry, redis_server, visibility="2s") as c:
        hold = c.fake.hold("GET", IMGLIFE_YML)  # the check stops at its first read of the project
        (a,) = c.start(1)
        head = commit("takeover")
        assert post_gitlab(a.url, c.merge_request(50, head)) == (202, "accepted")
        c.wait(lambda: hold.arrived == 1, "replica A to be in the middle of the check")
        (b,) = c.start(1)
        os.kill(a.proc.pid, signal.SIGKILL)
        assert a.proc.wait(timeout=10) == -signal.SIGKILL
        hold.release()

        c.wait(lambda: c.checked(50, head), "replica B to finish the check")
        c.wait(c.queue_empty, "the job to leave Redis")
        assert_checked_once(c, 50, head)
        key = f"gitlab:{c.project_id}:mr:50"
        assert [line["keys"] for line in events(b, "leases_expired")] == [[key]]
        (taken,) = events(b, "job_taken_over")
        assert (taken["key"], taken["job"], taken["takeovers"]) == (key, "check", 1)
        (done,) = events(b, "job_finished")
        assert (done["handler"], done["outcome"], done["attempt"]) == ("check", "success", 2)
        assert events(a, "job_finished") == []  # A never got as far as finishing it


# --- 4. drain on SIGTERM -----------------------------------------------------------------------------


def test_sigterm_hands_the_running_job_back_and_queued_jobs_wait_in_redis(
    tmp_path: Path, anon_registry: Any, redis_server: RunningRedis
) -> None:
    # A large visibility timeout: only a hand-back lets another replica run the job within WAIT.
    with make_cluster(tmp_path, anon_registry, redis_server, workers=1, visibility="60s", drain="1s") as c:
        hold = c.fake.hold("GET", IMGLIFE_YML)
        (a,) = c.start(1)
        heads = {iid: commit(f"drain-{iid}") for iid in (61, 62, 63, 64)}
        assert post_gitlab(a.url, c.merge_request(61, heads[61])) == (202, "accepted")
        c.wait(lambda: hold.arrived == 1, "replica A to be in the middle of the first check")
        for iid in (62, 63):  # queued behind it: A has one worker
            assert post_gitlab(a.url, c.merge_request(iid, heads[iid])) == (202, "accepted")

        os.kill(a.proc.pid, signal.SIGTERM)
        c.wait(lambda: a.http.get("/readyz").status_code == 503, "A's /readyz to answer 503 while draining")
        assert a.http.get("/readyz").text.strip() == "draining"
        late = c.merge_request(64, heads[64])
        assert post_gitlab(a.url, late) == (503, "shutting down")
        assert a.proc.wait(timeout=WAIT) == 0
        (handed,) = events(a, "jobs_handed_back")
        assert handed["count"] == 1
        assert c.status_rows(heads[61]) == []  # A posted nothing for the job it gave back

        hold.release()
        (b,) = c.start(1)
        # The refused delivery was not remembered as seen: GitLab's retry to B is accepted.
        assert post_gitlab(b.url, late) == (202, "accepted")
        c.wait(lambda: all(c.checked(iid, head) for iid, head in heads.items()), "B to run all four checks")
        c.wait(c.queue_empty, "the jobs to leave Redis")
        for iid, head in heads.items():
            assert_checked_once(c, iid, head)
        assert events(b, "leases_expired") == []  # handed back, not left to expire
        assert events(b, "job_taken_over") == []
        assert sorted(line["outcome"] for line in events(b, "job_finished")) == ["success"] * 4
        # Handing a job back at shutdown is no failure of the job: A must not log (or count) it as one.
        failed_on_a = [
            line
            for line in events(a, "job_finished")
            if line["outcome"] in {"error", "failed"} or line["level"] == "error"
        ]
        assert failed_on_a == []


# --- 5. Redis unreachable at start -------------------------------------------------------------------


def test_a_replica_started_without_redis_holds_deliveries_until_redis_is_there(
    tmp_path: Path, anon_registry: Any, redis_server: RunningRedis
) -> None:
    redis_server.stop()
    with make_cluster(tmp_path, anon_registry, redis_server) as c:
        (a,) = c.start(1, ready=False)
        c.wait(lambda: events(a, "redis_unreachable") != [], "the replica to say Redis is unreachable")
        assert a.http.get("/healthz").status_code == 200
        ready = a.http.get("/readyz")
        assert (ready.status_code, ready.text.strip()) == (503, "waiting for redis")
        head = commit("held")
        assert post_gitlab(a.url, c.merge_request(70, head)) == (202, "accepted")

        (unreachable,) = events(a, "redis_unreachable")
        assert f"127.0.0.1:{redis_server.port}" in unreachable["error"]
        assert "connect" in unreachable["error"].lower()  # the client's own words, not a class name
        assert unreachable["redis"] == redis_server.url
        assert c.status_rows(head) == []

        redis_server.start()
        c.wait(lambda: a.http.get("/readyz").status_code == 200, "/readyz to turn 200 once Redis is up")
        c.wait(lambda: c.checked(70, head), "the held delivery's check")
        assert_checked_once(c, 70, head)
        (held,) = events(a, "held_delivery_queued")
        assert held["outcome"] == "accepted"
        assert events(a, "redis_connected") != []
        assert redis_server.password not in a.proc.log_path.read_text()


# --- 6. Redis lost mid-run ---------------------------------------------------------------------------


def lose_redis_mid_run(c: Cluster, *, keep_away: float) -> dict[int, str]:
    """Both replicas in the middle of a check and one more check waiting in Redis when Redis goes
    away; two deliveries while it is away (each to both replicas); the running checks end; Redis
    stays away ``keep_away`` s more and comes back on the same port with its append-only file."""
    hold = c.fake.hold("GET", IMGLIFE_YML)
    a, b = c.start(2)  # one worker each
    heads = {iid: commit(f"outage-{iid}") for iid in (81, 82, 83, 84, 85)}
    assert post_gitlab(a.url, c.merge_request(81, heads[81])) == (202, "accepted")
    c.wait(lambda: hold.arrived == 1, "a replica in the middle of a check")
    assert post_gitlab(b.url, c.merge_request(82, heads[82])) == (202, "accepted")
    c.wait(lambda: hold.arrived == 2, "the other replica in the middle of another")
    assert post_gitlab(a.url, c.merge_request(83, heads[83])) == (202, "accepted")  # waits in Redis

    c.redis.stop()
    for iid in (84, 85):
        payload = c.merge_request(iid, heads[iid])
        # Both replicas get it (a retried delivery): neither can tell a duplicate yet, both hold it.
        assert post_gitlab(a.url, payload, idempotency_key=f"k{iid}") == (202, "accepted")
        assert post_gitlab(b.url, payload, idempotency_key=f"k{iid}") == (202, "accepted")
    hold.release()
    c.wait(lambda: c.checked(81, heads[81]) and c.checked(82, heads[82]), "the running checks to end")
    assert all(c.status_rows(heads[iid]) == [] for iid in (83, 84, 85))
    assert a.http.get("/healthz").status_code == 200
    time.sleep(keep_away)  # the outage itself, not a measurement

    c.redis.start()
    c.wait(lambda: all(c.checked(iid, head) for iid, head in heads.items()), "every check")
    c.wait(c.queue_empty, "the jobs to leave Redis")
    return heads


def assert_each_ran_once(c: Cluster, heads: Mapping[int, str]) -> None:
    for iid, head in heads.items():
        assert_checked_once(c, iid, head)
    assert len(c.finished()) == len(heads)
    assert c.all_events("job_taken_over") == []
    held = sorted(line["outcome"] for line in c.all_events("held_delivery_queued"))
    assert held == ["accepted"] * 2 + ["duplicate"] * 2


def test_redis_lost_mid_run_loses_nothing_and_runs_every_job_once(
    tmp_path: Path, anon_registry: Any, redis_server: RunningRedis
) -> None:
    with make_cluster(tmp_path, anon_registry, redis_server, workers=1, visibility="60s") as c:
        heads = lose_redis_mid_run(c, keep_away=0)
        assert_each_ran_once(c, heads)


def test_jobs_that_ended_while_redis_was_away_longer_than_the_visibility_timeout_run_once(
    tmp_path: Path, anon_registry: Any, redis_server: RunningRedis
) -> None:
    # An outage longer than bot.visibility_timeout (a Redis restart or failover can take that long
    # with the 60 s default): nobody could renew a lease meanwhile, and the jobs had ended.
    with make_cluster(tmp_path, anon_registry, redis_server, workers=1, visibility="2s") as c:
        heads = lose_redis_mid_run(c, keep_away=3)
        assert_each_ran_once(c, heads)


# --- 7. a poison job ---------------------------------------------------------------------------------


def test_a_job_that_always_fails_is_given_up_with_a_report_and_blocks_nothing(
    tmp_path: Path, anon_registry: Any, redis_server: RunningRedis
) -> None:
    with make_cluster(tmp_path, anon_registry, redis_server, attempts=3, retry_delay="200ms") as c:
        c.start(2)
        # Reading the project's .imglife.yml fails (Retry-After: 0 keeps the HTTP retries quick);
        # statuses and comments still go through.
        c.fake.fail_next("GET", IMGLIFE_YML, 500, times=None, headers={"Retry-After": "0"})
        head = commit("poison")
        assert post_gitlab(c.replicas[0].url, c.merge_request(90, head)) == (202, "accepted")
        c.wait(lambda: c.all_events("job_gave_up") != [] and c.queue_empty(), "the job to be given up")

        finished = c.finished()
        assert [line["outcome"] for line in finished] == ["retrying", "retrying", "failed"]
        assert [line.get("attempt") for line in finished] == [None, 2, 3]
        assert all("HTTP 500" in line["error"] for line in finished)
        (gave_up,) = c.all_events("job_gave_up")
        assert (gave_up["handler"], gave_up["attempts"], gave_up["reported"]) == ("check", 3, "comment")
        (row,) = c.status_rows(head)
        assert row.status == "failed"  # GitLab's name for the error state
        assert (row.description or "").startswith("imglife gave up after 3 attempts: GitLab GET")
        assert "HTTP 500" in (row.description or "")
        (note,) = c.bot_notes(90)
        assert note.body.startswith(MARKER)
        assert "imglife gave up after 3 attempts" in note.body

        # Fixed: the next push to the merge request is checked as usual, on the same comment.
        c.fake.clear_faults()
        fixed = commit("fixed")
        assert post_gitlab(c.replicas[1].url, c.merge_request(90, fixed, oldrev=head)) == (202, "accepted")
        c.wait(lambda: c.checked(90, fixed), "the next check of the merge request")
        assert_checked_once(c, 90, fixed)
        (edited,) = c.bot_notes(90)
        assert edited.id == note.id
        assert "gave up" not in edited.body
