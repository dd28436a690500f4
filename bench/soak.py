"""Soak: `imglife serve` under a bounded, mixed stream of GitLab deliveries, its memory and fds sampled.

    scripts/bench soak [--minutes 30] [--rate 25] [--redis] [--workers 4] [--warmup-minutes M]
                       [--sample-seconds 10] [--settle 35] [--register-wait 20] [--projects 8]
                       [--mrs 25] [--no-registry] [--max-growth-mb 20] [--fd-slack 5] [--keep]

Everything runs on loopback:

* **Forge**: the in-repo GitLab fake (tests/fakes/gitlab.py) in a process of its own, as
  bench/forge.py runs it, with the few extra commands a soak needs (new merge-request heads,
  trimming). It has ``--projects`` projects (default 8) of ``--mrs`` merge requests (default 25)
  and 3 issues each; the bot user and a developer are members, and a guest. Each project's
  ``.imglife.yml`` lists one image. Every ``--sample-seconds`` the fake forgets old statuses, old
  head commits and all but the last chat-ops replies of each thread (never the bot's one check
  comment), and its request log, so that the forge's size and the bot's work per job stay flat.
* **Registry**: Debian's docker-registry (tests/helpers/registry.py), unless ``--no-registry``
  or it is not installed. Two tags of each project's image are pushed (skopeo): tag pushes of
  those register at once; three other tags are never pushed, so their registrations wait
  (``bot.register_wait``: ``--register-wait``, default 20 s), retry later, are woken by a tag
  pipeline's success, and time out. Without the registry every registration waits and times out.
* **Bot**: one ``imglife serve`` (``bot.workers``: ``--workers``), its imglife.yaml from
  bench/forge.py with ``bot.max_body_bytes: 1 MiB`` so that oversized bodies stay cheap. With
  ``--redis`` it runs in Redis mode on Debian's redis-server (tests/helpers/redis.py,
  ``appendfsync everysec`` as deploy/ runs it), so the Redis paths soak too.

For ``--minutes`` (default 30), deliveries are sent at a fixed ``--rate`` (default 25/s, at most 8
in flight), each of a kind drawn by weight (``KINDS``): merge requests opened, reopened and updated
with a new head (the fake learns the head and its Dockerfile first), label edits and closes
(ignored); notes with ``/imglife help``, ``status``, ``check`` (with and without bases), ``eol``,
``register`` (a pushed tag, or one the registry lacks), unknown and hostile commands, a guest's
command and a developer's ``sync`` (both refused, nothing runs), an issue's ``status``, and notes
that must run nothing (quoted, in code, plain, edited, system); tag pushes and tag pipelines
(success wakes a waiting registration; others are ignored); other events (Issue, Job, branch push,
deleted tag, commit and snippet notes); replays of accepted deliveries (byte for byte, a manual
resend with the same Idempotency-Key, the same event under a new key: all "200 duplicate"); a
wrong or missing token (401), non-JSON, non-object, a missing field and an event mismatch (400),
form data (415), bodies over the limit (413) and a Gitea delivery without a Gitea secret (401).
Every answer is compared with the one its kind must get. Merge-request numbers, tags and users are
reused, so nothing but the stream itself grows.

Sampled every ``--sample-seconds`` (default 10) from /proc: the bot's RSS (VmRSS), open fds (by
type) and threads; /metrics: jobs finished and the queue depth; the fake's RSS (and Redis's, with
its key count, in Redis mode). The **warm-up** is 10% of the run, at least 30 s and at most 3 min
(``--warmup-minutes``). At its end, and at the end of the run, the stream pauses: the jobs finish
and the connections idle out (``--settle`` s, default 35: aiohttp closes an idle connection 15 to
30 s after its last use), then RSS and fds are read again: those two readings are the baseline
and the end. Reported: RSS at both, its maximum and growth, the least-squares slope (MB/hour)
over the samples after the warm-up; fds at the start, both readings (by kind: TCP sockets by peer)
and their maximum under load; deliveries by kind and answers by status; jobs by handler and
outcome (/metrics); the warning and error events of the bot's JSON log. In memory mode the
de-duplication memory is set apart: SPEC §6.2 keeps every key of an accepted delivery 24 h (at
most 200,000 keys), so RSS grows with the deliveries accepted until the table is full. It is
measured with tracemalloc on a Deduplicator fed as many deliveries as the bot had accepted at each
sample, and RSS minus it ("RSS without it": growth and slopes) is what a leak would show in. In
Redis mode those keys live in Redis: its RSS, key count and what it holds at the end are reported.

The exit status is non-zero when RSS grew by ``--max-growth-mb`` (20) or more after the warm-up,
the fds grew (end > baseline + ``--fd-slack``, 5), the bot died or did not stop cleanly on
SIGTERM, an answer was a 5xx or not the expected one, a job ended in ``error``, the jobs had not
all finished when the stream paused (the bot does not keep up with ``--rate``), or a merge request
got two check comments (or a command two replies). ``--keep`` keeps the bot's log, its config and
samples.csv (every sample, fds by kind). Develop with ``--minutes 2``: about 4 minutes in all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import csv
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forge import (  # noqa: E402
    BOT_USER,
    DEFAULT_BRANCH,
    DOCKERFILE,
    FIXTURE,
    STATUS_NAME,
    hook_headers,
    merge_request_hook,
    write_imglife_config,
)

from bot.server.dedupe import DEFAULT_MAX_ENTRIES, Deduplicator  # noqa: E402
from tests.fakes.gitlab import DEVELOPER, GUEST, FakeGitLab  # noqa: E402
from tests.helpers.images import build_image  # noqa: E402
from tests.helpers.procs import ManagedProcess, free_port  # noqa: E402
from tests.helpers.redis import RunningRedis, start_redis  # noqa: E402
from tests.helpers.registry import RunningRegistry, start_registry  # noqa: E402
from tests.helpers.skopeo import push_image  # noqa: E402

TOKEN = "glpat-bench-soak"  # noqa: S105 - a throwaway token for the fake
SECRET = "bench-soak-secret"  # noqa: S105 - a throwaway webhook secret
IMGLIFE = Path(sys.executable).with_name("imglife")
FIXTURES = ROOT / "tests" / "fixtures" / "webhooks" / "gitlab"
HOOK = "/webhooks/gitlab"
DEV, GUEST_USER = "soak-dev", "soak-guest"
BASE = "registry.example.com/bases/alpine:3.21.3-core1.0.0"  # what bench/forge.py's DOCKERFILE names
BASE_LABEL = "org.opencontainers.image.base.name"
PUSHED_TAGS = ("v1.0.0", "v1.1.0")  # in the registry: a tag push registers at once
MISSING_TAGS = ("v2.0.0", "v2.1.0", "v2.2.0")  # never pushed: the registration waits, then times out
CHECK_MARK = "<!-- imglife:check -->"  # handlers/reports.py, the one check comment of a merge request
REPLY_MARK = re.compile(r"<!-- imglife:reply:(\d+) -->")
MAX_BODY_BYTES = 1024 * 1024  # bot.max_body_bytes of the soak: oversized bodies stay cheap to send
OVERSIZED_BYTES = MAX_BODY_BYTES + 64 * 1024
IN_FLIGHT = 8  # deliveries in flight at most (the client's connection pool)
HEADS_KEPT = 4  # head commits of a merge request whose Dockerfile the fake keeps
NOTES_KEPT = 10  # chat-ops replies kept per thread (the check comment is always kept)
STATUSES_KEPT = 300  # commit statuses kept per project
REPLAYABLE = 500  # recent accepted deliveries that replays are drawn from
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0
STOP_GRACE = 30.0
DRAIN_TIMEOUT = 180.0
POLL_SECONDS = 0.5
MB = 1024 * 1024
TCP_LISTEN = "0A"  # the state column of /proc/net/tcp
JOB_LINE = re.compile(r'^imglife_jobs_total\{handler="([^"]+)",outcome="([^"]+)"\} (\S+)$', re.MULTILINE)
DEPTH_LINE = re.compile(r"^imglife_job_queue_depth (\S+)$", re.MULTILINE)
# Info events worth counting besides warnings and errors: waiting registrations woken by a pipeline.
COUNTED_EVENTS = frozenset({"retry_woken", "config_adopted", "jobs_handed_back"})
BAD_OUTCOMES = frozenset({"error", "config_error", "forge_not_configured"})

# kind: (weight, expected status, expected text or None for any). Weights are per ~100 deliveries.
KINDS: dict[str, tuple[float, int, str | None]] = {
    "mr_update": (16, 202, "accepted"),  # new head (oldrev set): a check
    "mr_open": (3, 202, "accepted"),  # opened or reopened at a new head: a check
    "mr_edited": (2, 202, "ignored"),  # labels or title: no new code
    "mr_closed": (1, 202, "ignored"),
    "note_help": (5, 202, "accepted"),
    "note_status": (3, 202, "accepted"),
    "note_check": (4, 202, "accepted"),  # edits the check comment too
    "note_eol": (1, 202, "accepted"),
    "note_register": (1, 202, "accepted"),  # done (pushed tag) or failed (not in the registry)
    "note_unknown": (3, 202, "accepted"),  # /imglife frobnicate: invalid, with the help
    "note_hostile": (1, 202, "accepted"),  # a shell metacharacter, a foreign registry, a URL
    "note_guest": (1, 202, "accepted"),  # refused: a guest
    "note_sync": (1, 202, "accepted"),  # refused: a developer, sync needs a maintainer
    "note_issue": (2, 202, "accepted"),  # /imglife status on an issue
    "note_quoted": (2, 202, "ignored"),
    "note_code": (1, 202, "ignored"),
    "note_plain": (3, 202, "ignored"),
    "note_edited": (2, 202, "ignored"),  # action update: an edited comment never runs a command
    "note_system": (1, 202, "ignored"),
    "tag_push": (3, 202, "accepted"),  # a pushed tag: registered
    "tag_push_missing": (2, 202, "accepted"),  # waiting, retried, maybe woken, timed out
    "pipeline_success": (2, 202, "accepted"),  # wakes a waiting registration when there is one
    "pipeline_other": (1, 202, "ignored"),  # running or failed
    "ignored_event": (4, 202, "ignored"),  # Issue, Job, branch push, deleted tag, commit/snippet note
    "replay": (10, 200, "duplicate"),
    "bad_token": (3, 401, None),
    "no_token": (1, 401, None),
    "not_json": (3, 400, None),
    "not_object": (1, 400, None),
    "missing_field": (1, 400, None),
    "event_mismatch": (1, 400, None),
    "form_body": (1, 415, None),
    "oversized": (1, 413, None),
    "gitea_no_secret": (1, 401, None),
}
IGNORED_FIXTURES = (
    ("issue__open", "Issue Hook"),
    ("build__created", "Job Hook"),
    ("push__branch", "Push Hook"),
    ("tag_push__delete", "Tag Push Hook"),
    ("note__commit", "Note Hook"),
    ("note__snippet", "Note Hook"),
)


# --- the GitLab fake, in a process of its own (bench/forge.py's, plus heads and trimming) ---------


def _fake_main(conn: Connection, token: str) -> None:
    with FakeGitLab() as fake:
        fake.add_token(token, BOT_USER)
        fake.add_user(BOT_USER, bot=True)
        conn.send(fake.url)
        heads: dict[tuple[int, int], deque[str]] = {}
        while True:
            command, args = conn.recv()
            if command == "stop":
                break
            try:
                if command == "setup":
                    conn.send(_setup(fake, heads, *args))
                elif command == "head":
                    _new_head(fake, heads, *args)
                    conn.send(None)
                elif command == "trim":
                    conn.send(_trim(fake))
                elif command == "tally":
                    conn.send(_tally(fake))
                else:
                    conn.send(None)
            except Exception as exc:  # noqa: BLE001 - said to the harness, which stops
                conn.send(RuntimeError(f"fake: {command}: {exc!r}"))


def _setup(
    fake: FakeGitLab, heads: dict[tuple[int, int], deque[str]], projects: list[dict[str, Any]]
) -> dict[str, Any]:
    members = {BOT_USER: DEVELOPER, DEV: DEVELOPER, GUEST_USER: GUEST}
    ids = []
    for spec in projects:
        project = fake.add_project(spec["path"], members=members, default_branch=DEFAULT_BRANCH)
        fake.add_file(project.id, DEFAULT_BRANCH, ".imglife.yml", spec["settings"])
        for iid, sha in spec["mrs"]:
            fake.add_merge_request(project.id, iid, f"feature-{iid}", sha)
            fake.add_file(project.id, sha, "Dockerfile", DOCKERFILE)
            heads[(project.id, iid)] = deque([sha])
        for iid in spec["issues"]:
            fake.add_issue(project.id, iid)
        for tag, sha in spec["tags"]:
            fake.add_tag(project.id, tag, sha)
        ids.append(project.id)
    with fake.lock:
        users = {name: fake.state.users[name].id for name in (BOT_USER, DEV, GUEST_USER)}
    return {"ids": ids, "users": users}


def _new_head(
    fake: FakeGitLab, heads: dict[tuple[int, int], deque[str]], pid: int, iid: int, sha: str
) -> None:
    fake.add_file(pid, sha, "Dockerfile", DOCKERFILE)
    with fake.lock:
        project = fake.state.projects[pid]
        project.merge_requests[iid].sha = sha
        kept = heads.setdefault((pid, iid), deque())
        kept.append(sha)
        while len(kept) > HEADS_KEPT:
            old = kept.popleft()
            project.files.pop((old, "Dockerfile"), None)
            project.file_modes.pop((old, "Dockerfile"), None)


def _trim(fake: FakeGitLab) -> dict[str, int]:
    """Forget what the bot no longer needs; the sizes of what is left."""
    sizes: Counter[str] = Counter()
    with fake.lock:
        for project in fake.state.projects.values():
            del project.statuses[:-STATUSES_KEPT]
            for thread in [*project.merge_requests.values(), *project.issues.values()]:
                replies = [n.id for n in thread.notes if CHECK_MARK not in n.body]
                if len(replies) > NOTES_KEPT:
                    gone = set(replies[:-NOTES_KEPT])
                    thread.notes = [n for n in thread.notes if n.id not in gone]
                sizes["notes"] += len(thread.notes)
            sizes["statuses"] += len(project.statuses)
            sizes["files"] += len(project.files)
    fake.reset_requests()
    return dict(sizes)


def _tally(fake: FakeGitLab) -> dict[str, int]:
    """Merge requests with a check comment, and any with two; replies posted twice for one comment."""
    tally: Counter[str] = Counter()
    with fake.lock:
        for project in fake.state.projects.values():
            for thread in [*project.merge_requests.values(), *project.issues.values()]:
                mine = [n for n in thread.notes if n.author.username == BOT_USER and not n.system]
                checks = sum(1 for n in mine if CHECK_MARK in n.body)
                tally["threads_with_check_comment"] += checks > 0
                tally["threads_with_two_check_comments"] += checks > 1
                replies = Counter(m.group(1) for n in mine if (m := REPLY_MARK.search(n.body)))
                tally["replies_kept"] += sum(replies.values())
                tally["replies_twice"] += sum(1 for n in replies.values() if n > 1)
            tally["statuses_kept"] += sum(1 for s in project.statuses if s.name == STATUS_NAME)
    return dict(tally)


class SoakFake:
    """The fake in a child process; calls are serialised (one pipe) and run off the event loop."""

    def __init__(self, token: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_fake_main, args=(child, token), name="fake-gitlab", daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT):
            self.stop()
            raise SystemExit("the GitLab fake did not start")
        self.url: str = self._conn.recv()
        self.pid = int(self._process.pid or 0)
        self._lock = asyncio.Lock()

    def call(self, command: str, args: Any = None) -> Any:
        self._conn.send((command, args))
        answer = self._conn.recv()
        if isinstance(answer, Exception):
            raise SystemExit(str(answer))
        return answer

    async def acall(self, command: str, args: Any = None) -> Any:
        async with self._lock:
            return await asyncio.to_thread(self.call, command, args)

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop", None))
            self._process.join(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(10)
        self._conn.close()


# --- the world: projects, the registry's images, the bot's configuration --------------------------


@dataclass
class Project:
    id: int
    path: str
    mrs: list[int]
    issues: list[int]

    def payload(self, fake_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.path.rsplit("/", 1)[-1],
            "path_with_namespace": self.path,
            "default_branch": DEFAULT_BRANCH,
            "web_url": f"{fake_url}/{self.path}",
        }


@dataclass
class World:
    fake_url: str
    projects: list[Project]
    users: dict[str, int]
    image_host: str  # host:port of the registry (or of a closed port without one)
    registry: RunningRegistry | None


def head_sha(project: int, iid: int, n: int) -> str:
    return f"{project:04x}{iid:04x}{n:032x}"


def tag_sha(project: int, tag: str, n: int) -> str:
    return f"{project:04x}{int(tag.replace('v', '').replace('.', '')):04x}{n:032x}"


def build_world(fake: SoakFake, registry: RunningRegistry | None, args: argparse.Namespace) -> World:
    image_host = registry.host if registry is not None else f"127.0.0.1:{free_port()}"
    specs = []
    for p in range(args.projects):
        path = f"soak/app-{p}"
        image = f"{image_host}/apps/soak-{p}"
        settings = f"images:\n  - {image}\ndockerfiles:\n  - Dockerfile\ncheck:\n  strict: false\n"
        specs.append(
            {
                "path": path,
                "settings": settings,
                "mrs": [(iid, head_sha(p + 1, iid, 0)) for iid in range(1, args.mrs + 1)],
                "issues": [1, 2, 3],
                "tags": [(tag, tag_sha(p + 1, tag, 0)) for tag in (*PUSHED_TAGS, *MISSING_TAGS)],
            }
        )
    made = fake.call("setup", (specs,))
    projects = [
        Project(pid, spec["path"], [iid for iid, _ in spec["mrs"]], spec["issues"])
        for pid, spec in zip(made["ids"], specs, strict=True)
    ]
    if registry is not None:
        image = build_image(labels={BASE_LABEL: BASE}, nonce="soak")
        for p in range(args.projects):
            for tag in PUSHED_TAGS:
                push_image(registry, f"apps/soak-{p}:{tag}", image, registry.creds)
    return World(fake.url, projects, made["users"], image_host, registry)


def write_config(workdir: Path, world: World, args: argparse.Namespace) -> Path:
    """bench/forge.py's imglife.yaml, plus the registry as insecure (plain HTTP on loopback) and
    the soak's bot settings."""
    config = write_imglife_config(workdir, world.fake_url, args.workers)
    text = config.read_text()
    store = "  path: records\n"
    if store not in text:
        raise SystemExit("bench/forge.py's imglife.yaml changed: no 'path: records' to add to")
    text = text.replace(store, f"{store}  insecure_registries: ['{world.image_host}']\n", 1)
    text += f"  register_wait: {args.register_wait:g}s\n  max_body_bytes: {MAX_BODY_BYTES}\n"
    config.write_text(text)
    return config


# --- deliveries -----------------------------------------------------------------------------------


@dataclass
class Delivery:
    kind: str
    body: bytes
    headers: dict[str, str]
    path: str = HOOK
    head: tuple[int, int, str] | None = None  # (project, iid, sha) the fake must know first
    waiting: tuple[Project, str, str] | None = None  # a tag push whose image is missing

    @property
    def expected(self) -> tuple[int, str | None]:
        _, status, text = KINDS[self.kind]
        return status, text


def load(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return payload


class Traffic:
    """Draws the next delivery: a kind by weight, then a project, a thread, a head, a tag."""

    def __init__(self, world: World, seed: int) -> None:
        self.world = world
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible stream, not a secret
        self.kinds = list(KINDS)
        self.weights = [KINDS[k][0] for k in self.kinds]
        self.heads: dict[tuple[int, int], int] = {}  # (project, iid) -> head number
        self.tag_pushes = 0
        self.note_id = 1_000_000
        self.templates = {
            "mr": json.loads(FIXTURE.read_text()),
            "note_mr": load("note__merge_request"),
            "note_issue": load("note__issue"),
            "note_system": load("note__merge_request_system"),
            "tag": load("tag_push__create"),
            "pipeline": load("pipeline__tag_success"),
            **{name: load(name) for name, _ in IGNORED_FIXTURES},
        }
        self.accepted: deque[Delivery] = deque(maxlen=REPLAYABLE)
        self.waiting: deque[tuple[Project, str, str]] = deque(maxlen=200)

    # -- helpers

    def headers(self, event: str, *, token: str | None = SECRET) -> dict[str, str]:
        headers = hook_headers(self.world.fake_url, token or "")
        headers["X-Gitlab-Event"] = event
        if token is None:
            del headers["X-Gitlab-Token"]
        event_id = str(uuid.uuid4())
        headers |= {
            "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
            "X-Gitlab-Event-UUID": event_id,
            "Idempotency-Key": event_id,
        }
        return headers

    def project(self) -> Project:
        return self.rng.choice(self.world.projects)

    def current_head(self, project: Project, iid: int) -> str:
        return head_sha(self.world.projects.index(project) + 1, iid, self.heads.get((project.id, iid), 0))

    def delivery(self, kind: str, payload: dict[str, Any], event: str, **extra: Any) -> Delivery:
        return Delivery(kind, json.dumps(payload).encode(), self.headers(event), **extra)

    # -- kinds

    def merge_request(self, kind: str) -> Delivery:
        project = self.project()
        iid = self.rng.choice(project.mrs)
        old = self.current_head(project, iid)
        new_head = kind in ("mr_update", "mr_open")
        if new_head:
            self.heads[(project.id, iid)] = self.heads.get((project.id, iid), 0) + 1
        sha = self.current_head(project, iid)
        payload = merge_request_hook(
            self.templates["mr"],
            self.world.fake_url,
            project.id,
            project.path,
            iid=iid,
            mr_id=90_000 + iid,
            sha=sha,
        )
        attrs = payload["object_attributes"]
        if kind == "mr_update":
            attrs.update(action="update", oldrev=old)
        elif kind == "mr_open":
            attrs["action"] = self.rng.choice(("open", "reopen"))
        elif kind == "mr_edited":
            attrs["action"] = "update"
            attrs.pop("oldrev", None)
        else:
            attrs["action"] = "close"
        head = (project.id, iid, sha) if new_head else None
        return self.delivery(kind, payload, "Merge Request Hook", head=head)

    def note(self, kind: str) -> Delivery:
        project = self.project()
        on_issue = kind == "note_issue"
        iid = self.rng.choice(project.issues if on_issue else project.mrs)
        author = GUEST_USER if kind == "note_guest" else DEV
        body = self.note_body(kind)
        name = "note_system" if kind == "note_system" else ("note_issue" if on_issue else "note_mr")
        payload = copy.deepcopy(self.templates[name])
        payload["project"] = project.payload(self.world.fake_url)
        payload["project_id"] = project.id
        payload["user"].update(id=self.world.users[author], username=author, name=author)
        self.note_id += 1
        attrs = payload["object_attributes"]
        attrs.update(id=self.note_id, author_id=self.world.users[author], project_id=project.id)
        if kind != "note_system":
            attrs["note"] = body
        attrs["action"] = "update" if kind == "note_edited" else "create"
        if on_issue:
            payload["issue"]["iid"] = iid
        else:
            target = payload["merge_request"]
            target.update(iid=iid, source_branch=f"feature-{iid}", target_branch=DEFAULT_BRANCH)
            target["last_commit"]["id"] = self.current_head(project, iid)
        return self.delivery(kind, payload, "Note Hook")

    def note_body(self, kind: str) -> str:
        pick = self.rng.choice
        bodies = {
            "note_help": ["/imglife help", "Could you help?\n\n/imglife help"],
            "note_status": ["/imglife status"],
            "note_check": ["/imglife check", f"/imglife check {BASE}"],
            "note_eol": ["/imglife eol"],
            "note_register": [
                f"/imglife register {pick(PUSHED_TAGS)}",
                f"/imglife register {pick(MISSING_TAGS)}",
            ],
            "note_unknown": ["/imglife frobnicate", "/imglife", "/imglife status please now"],
            "note_hostile": [
                f"/imglife check {BASE}; rm -rf /",
                "/imglife check evil.example.net/bases/alpine:3.22",
                "/imglife check http://169.254.169.254/latest/meta-data",
            ],
            "note_guest": ["/imglife help"],
            "note_sync": ["/imglife sync"],
            "note_issue": ["/imglife status"],
            "note_quoted": ["> /imglife status\n\nI ran this yesterday.", "> /imglife check"],
            "note_code": ["```\n/imglife status\n```", "see `/imglife status`", "    /imglife help"],
            "note_plain": ["LGTM", "This MR needs work.", "Thanks! :tada:"],
            "note_edited": ["/imglife status"],
            "note_system": [""],
        }
        return pick(bodies[kind])

    def tag_push(self, kind: str) -> Delivery:
        project = self.project()
        tag = self.rng.choice(PUSHED_TAGS if kind == "tag_push" else MISSING_TAGS)
        self.tag_pushes += 1
        sha = tag_sha(self.world.projects.index(project) + 1, tag, self.tag_pushes)
        payload = copy.deepcopy(self.templates["tag"])
        payload.update(ref=f"refs/tags/{tag}", after=sha, checkout_sha=sha, project_id=project.id)
        payload["project"] = project.payload(self.world.fake_url)
        waiting = (project, tag, sha) if kind == "tag_push_missing" else None
        return self.delivery(kind, payload, "Tag Push Hook", waiting=waiting)

    def pipeline(self, kind: str) -> Delivery:
        if kind == "pipeline_success" and self.waiting:
            project, tag, sha = self.waiting.popleft()  # its pipeline succeeded: wake the registration
        else:
            project = self.project()
            tag = self.rng.choice((*PUSHED_TAGS, *MISSING_TAGS))
            self.tag_pushes += 1
            sha = tag_sha(self.world.projects.index(project) + 1, tag, self.tag_pushes)
        status = "success" if kind == "pipeline_success" else self.rng.choice(("running", "failed"))
        payload = copy.deepcopy(self.templates["pipeline"])
        payload["project"] = project.payload(self.world.fake_url)
        payload["object_attributes"].update(ref=tag, tag=True, sha=sha, status=status)
        return self.delivery(kind, payload, "Pipeline Hook")

    def ignored_event(self) -> Delivery:
        name, event = self.rng.choice(IGNORED_FIXTURES)
        payload = copy.deepcopy(self.templates[name])
        payload["project"] = self.project().payload(self.world.fake_url)
        return self.delivery("ignored_event", payload, event)

    def replay(self) -> Delivery | None:
        if not self.accepted:
            return None
        original = self.rng.choice(self.accepted)
        headers = dict(original.headers)
        how = self.rng.randrange(3)
        if how == 1:  # a manual resend: a new attempt id, the same Idempotency-Key
            headers["X-Gitlab-Webhook-UUID"] = str(uuid.uuid4())
        elif how == 2:  # the same event again under new ids: its content key is the same
            fresh = str(uuid.uuid4())
            headers |= {
                "X-Gitlab-Webhook-UUID": fresh,
                "X-Gitlab-Event-UUID": fresh,
                "Idempotency-Key": fresh,
            }
        return Delivery("replay", original.body, headers)

    def bad(self, kind: str) -> Delivery:
        project = self.project()
        iid = self.rng.choice(project.mrs)
        payload = merge_request_hook(
            self.templates["mr"],
            self.world.fake_url,
            project.id,
            project.path,
            iid=iid,
            mr_id=90_000 + iid,
            sha=self.current_head(project, iid),
        )
        body = json.dumps(payload).encode()
        headers = self.headers("Merge Request Hook")
        if kind == "bad_token":
            headers["X-Gitlab-Token"] = "not-" + SECRET
        elif kind == "no_token":
            del headers["X-Gitlab-Token"]
        elif kind == "not_json":
            body = b'{"object_kind": "merge_request", "object_attributes": {"iid": 1,'
        elif kind == "not_object":
            body = b'[{"object_kind": "merge_request"}]'
        elif kind == "missing_field":
            del payload["object_attributes"]
            body = json.dumps(payload).encode()
        elif kind == "event_mismatch":
            headers["X-Gitlab-Event"] = "Push Hook"
        elif kind == "form_body":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif kind == "oversized":
            body = b'{"object_kind": "merge_request", "padding": "' + b"x" * OVERSIZED_BYTES + b'"}'
        if kind == "gitea_no_secret":
            gitea = {
                "Content-Type": "application/json",
                "X-Gitea-Event": "pull_request",
                "X-Gitea-Delivery": str(uuid.uuid4()),
                "X-Gitea-Signature": "0" * 64,
            }
            return Delivery(kind, body, gitea, path="/webhooks/gitea")
        return Delivery(kind, body, headers)

    def next(self) -> Delivery:
        while True:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            if kind.startswith("mr_"):
                return self.merge_request(kind)
            if kind.startswith("note_"):
                return self.note(kind)
            if kind.startswith("tag_push"):
                return self.tag_push(kind)
            if kind.startswith("pipeline_"):
                return self.pipeline(kind)
            if kind == "ignored_event":
                return self.ignored_event()
            if kind == "replay":
                replay = self.replay()
                if replay is not None:
                    return replay
                continue
            return self.bad(kind)

    def answered(self, delivery: Delivery, status: int, text: str) -> None:
        if (status, text) != (202, "accepted") or delivery.kind == "replay":
            return
        self.accepted.append(delivery)
        if delivery.waiting is not None:
            self.waiting.append(delivery.waiting)


# --- measuring ------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) and Threads of a process; empty once it is gone."""
    found: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "Threads"):
            found[name] = int(value.split()[0])
    return found


def proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tcp_sockets(pid: int) -> dict[str, tuple[int, int, str]]:
    """Socket inode -> (local port, remote port, state) of the process's TCP sockets."""
    found: dict[str, tuple[int, int, str]] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                local, remote = (int(addr.rsplit(":", 1)[1], 16) for addr in cols[1:3])
                found[cols[9]] = (local, remote, cols[3])
    return found


def fd_types(pid: int, ports: Mapping[int, str]) -> Counter[str]:
    """Open fds of a process by kind: file, pipe, anon_inode:[eventpoll], and TCP sockets by
    peer (``ports``: remote port -> name; ``tcp:client`` are connections to the process's own
    listening port, ``tcp:listen`` that port), else ``socket`` (Unix sockets: asyncio's self-pipe)."""
    kinds: Counter[str] = Counter()
    directory = f"/proc/{pid}/fd"
    tcp = _tcp_sockets(pid)
    listening = {local for local, _, state in tcp.values() if state == TCP_LISTEN}
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            try:
                target = os.readlink(f"{directory}/{name}")
            except OSError:
                continue
            if target.startswith("/"):
                kinds["file"] += 1
            elif target.startswith("anon_inode:"):
                kinds[target] += 1
            elif target.startswith("socket:[") and target[8:-1] in tcp:
                local, remote, state = tcp[target[8:-1]]
                if state == TCP_LISTEN:
                    kinds["tcp:listen"] += 1
                elif local in listening:
                    kinds["tcp:client"] += 1
                else:
                    kinds[f"tcp:{ports.get(remote, 'other')}"] += 1
            else:
                kinds[target.split(":", 1)[0]] += 1
    return kinds


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour; 0 with fewer than two points."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if not sxx:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 3600


def dedupe_curve(counts: list[int]) -> dict[int, int]:
    """What bot/server/dedupe.py holds after each of ``counts`` accepted deliveries of this soak
    (each its content key and its Idempotency-Key), measured with tracemalloc on one Deduplicator
    fed keys shaped like the soak's. Measured, not scaled: the table grows in steps (dict resizes)."""
    found: dict[int, int] = {}
    wanted = sorted(set(counts))
    dedupe = Deduplicator()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        n = 0
        for count in wanted:
            while n < count:
                dedupe.first_time(
                    f"gitlab:{n % 8 + 1}:mr:{n % 25 + 1}:{head_sha(n % 8, n % 25, n)}:new_commits",
                    f"gitlab:idempotency:{uuid.uuid4()}",
                )
                n += 1
            found[count] = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return found


REDIS_PREFIX = "imglife:"  # bot/server/redisqueue.py PREFIX


def redis_families(client: Any) -> dict[str, int]:
    """What the bot's Redis holds, by key family (``seen``: de-duplication keys, ``key``: ordering
    keys with jobs); for hashes, sets, lists and sorted sets their length instead."""
    families: Counter[str] = Counter()
    for raw in client.scan_iter(match=REDIS_PREFIX + "*", count=1000):
        name = raw.decode(errors="replace").removeprefix(REDIS_PREFIX)
        family = name.split(":", 1)[0]
        if family in ("seen", "key"):
            families[family] += 1
            continue
        kind = client.type(raw).decode()
        length = {"hash": client.hlen, "list": client.llen, "zset": client.zcard, "set": client.scard}.get(
            kind
        )
        families[family] += length(raw) if length else 1
    return dict(families)


@dataclass
class Sample:
    t: float  # seconds since the stream started
    phase: str
    rss_kb: int
    hwm_kb: int
    fds: int
    threads: int
    cpu: float
    sent: int
    accepted: int  # deliveries answered 202 "accepted" so far
    jobs: int
    depth: int
    p50_ms: float
    p99_ms: float
    fake_rss_kb: int
    redis_rss_kb: int = 0
    redis_keys: int = 0
    fd_kinds: dict[str, int] = field(default_factory=dict)


@dataclass
class Tallies:
    sent: Counter[str] = field(default_factory=Counter)  # by kind
    answers: Counter[str] = field(default_factory=Counter)  # "202 accepted", "401", ...
    unexpected: Counter[str] = field(default_factory=Counter)  # "kind: got 500 ..."
    errors: Counter[str] = field(default_factory=Counter)  # client errors (no answer)
    server_errors: int = 0
    accepted: int = 0
    late: int = 0  # times the sender fell more than a second behind its schedule
    window: list[float] = field(default_factory=list)  # ack latencies (ms) since the last sample
    latencies: list[float] = field(default_factory=list)  # all of them


# --- the run --------------------------------------------------------------------------------------


class Soak:
    def __init__(
        self,
        args: argparse.Namespace,
        fake: SoakFake,
        world: World,
        bot: ManagedProcess,
        base: str,
        redis_server: RunningRedis | None,
    ) -> None:
        self.args = args
        self.fake = fake
        self.world = world
        self.bot = bot
        self.base = base
        self.redis = redis_server
        self.traffic = Traffic(world, args.seed)
        self.tallies = Tallies()
        self.samples: list[Sample] = []
        self.phase = "start"
        self.started = time.monotonic()
        self.slots = asyncio.Semaphore(IN_FLIGHT)
        self.session: aiohttp.ClientSession | None = None
        self.fake_sizes: dict[str, int] = {}
        self.redis_client: Any = None
        self.ports = {int(fake.url.rsplit(":", 1)[1].split("/")[0]): "forge"}
        if world.registry is not None:
            self.ports[int(world.image_host.rsplit(":", 1)[1])] = "registry"
        if redis_server is not None:
            self.ports[redis_server.port] = "redis"
        if redis_server is not None:
            import redis

            self.redis_client = redis.Redis(
                host="127.0.0.1", port=redis_server.port, password=redis_server.password
            )

    # -- sending

    @property
    def http(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise RuntimeError("no client session: Soak.run opens it")
        return self.session

    async def send(self, delivery: Delivery) -> None:
        tallies = self.tallies
        started = time.perf_counter()
        try:
            async with self.http.post(
                self.base + delivery.path, data=delivery.body, headers=delivery.headers
            ) as r:
                status, text = r.status, (await r.text()).strip()
        except (aiohttp.ClientError, TimeoutError) as exc:
            tallies.errors[f"{delivery.kind}: {type(exc).__name__}"] += 1
            return
        finally:
            self.slots.release()
        ms = (time.perf_counter() - started) * 1000
        tallies.window.append(ms)
        tallies.latencies.append(ms)
        label = f"{status} {text}" if status < 300 else str(status)
        tallies.answers[label] += 1
        if status >= 500:
            tallies.server_errors += 1
        want_status, want_text = delivery.expected
        if status != want_status or (want_text is not None and text != want_text):
            tallies.unexpected[f"{delivery.kind}: {status} {text[:60]}"] += 1
        if (status, text) == (202, "accepted"):
            tallies.accepted += 1
        self.traffic.answered(delivery, status, text)

    async def drive(self, seconds: float) -> None:
        """Send at the fixed rate for ``seconds``; wait for the answers."""
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.args.rate
        start, n = loop.time(), 0
        tasks: set[asyncio.Task[None]] = set()
        while self.bot.alive():
            due = start + n * interval
            if due - start >= seconds:
                break
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 1.0:  # fell behind (the machine is busy): do not burst to catch up
                self.tallies.late += 1
                start = now - n * interval
            delivery = self.traffic.next()
            if delivery.head is not None:
                await self.fake.acall("head", delivery.head)
            await self.slots.acquire()
            self.tallies.sent[delivery.kind] += 1
            task = asyncio.create_task(self.send(delivery))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        if tasks:
            await asyncio.gather(*tasks)

    # -- watching

    async def metrics(self) -> tuple[Counter[str], int]:
        """Jobs finished by handler:outcome, and the queue depth (/metrics)."""
        async with self.http.get(f"{self.base}/metrics") as response:
            text = await response.text()
        jobs: Counter[str] = Counter()
        for handler, outcome, n in JOB_LINE.findall(text):
            jobs[f"{handler}:{outcome}"] += int(float(n))
        depth = DEPTH_LINE.search(text)
        return jobs, int(float(depth.group(1))) if depth else 0

    async def sample(self) -> Sample:
        pid = self.bot.pid
        status, kinds = proc_status(pid), fd_types(pid, self.ports)
        jobs, depth = Counter[str](), 0
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            jobs, depth = await self.metrics()
        self.fake_sizes = await self.fake.acall("trim")
        window, self.tallies.window = sorted(self.tallies.window), []
        sample = Sample(
            t=time.monotonic() - self.started,
            phase=self.phase,
            rss_kb=status.get("VmRSS", 0),
            hwm_kb=status.get("VmHWM", 0),
            fds=sum(kinds.values()),
            threads=status.get("Threads", 0),
            cpu=proc_cpu_seconds(pid),
            sent=sum(self.tallies.sent.values()),
            accepted=self.tallies.accepted,
            jobs=sum(jobs.values()),
            depth=depth,
            p50_ms=percentile(window, 0.5),
            p99_ms=percentile(window, 0.99),
            fake_rss_kb=proc_status(self.fake.pid).get("VmRSS", 0),
            fd_kinds=dict(kinds),
        )
        if self.redis is not None and self.redis.proc is not None:
            sample.redis_rss_kb = proc_status(self.redis.proc.pid).get("VmRSS", 0)
            with contextlib.suppress(Exception):
                sample.redis_keys = int(await asyncio.to_thread(self.redis_client.dbsize))
        self.samples.append(sample)
        return sample

    async def sampler(self) -> None:
        while True:
            await asyncio.sleep(self.args.sample_seconds)
            s = await self.sample()
            print(
                f"[{s.t / 60:5.1f} min {s.phase:<7}] sent {s.sent:>7}  RSS {s.rss_kb / 1024:6.1f} MB  "
                f"fds {s.fds:>3}  threads {s.threads:>2}  jobs {s.jobs:>7}  queue {s.depth:>4}  "
                f"ack p99 {s.p99_ms:6.1f} ms  fake {s.fake_rss_kb / 1024:5.0f} MB",
                file=sys.stderr,
                flush=True,
            )

    async def quiesce(self, register_wait: float) -> bool:
        """After the stream stops: wait until the queue is empty and no job finished for a while,
        and at least until every waiting registration has timed out; then let connections idle out."""
        loop = asyncio.get_running_loop()
        stopped = loop.time()
        deadline = stopped + DRAIN_TIMEOUT + register_wait
        last, since = -1, loop.time()
        done = False
        while loop.time() < deadline and self.bot.alive():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                jobs, depth = await self.metrics()
                total = sum(jobs.values())
                if total != last or depth:
                    last, since = total, loop.time()
                quiet = loop.time() - since
                if quiet >= 3.0 and loop.time() - stopped >= register_wait + 2.0:
                    done = True
                    break
            await asyncio.sleep(POLL_SECONDS)
        await asyncio.sleep(self.args.settle)
        return done

    async def run(self) -> dict[str, Any]:
        args = self.args
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
        result: dict[str, Any] = {}
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as self.session:
            first = await self.sample()
            result["start"] = first
            sampler = asyncio.create_task(self.sampler())
            try:
                self.phase = "warm-up"
                await self.drive(args.warmup_seconds)
                self.phase = "settle"
                result["drained_warmup"] = await self.quiesce(args.register_wait)
                self.phase = "base"
                result["baseline"] = await self.sample()
                self.phase = "soak"
                await self.drive(args.minutes * 60 - args.warmup_seconds)
                self.phase = "drain"
                result["drained_end"] = await self.quiesce(args.register_wait)
                self.phase = "end"
                result["end"] = await self.sample()
                if self.redis_client is not None:
                    result["redis"] = await asyncio.to_thread(redis_families, self.redis_client)
                result["jobs"], _ = await self.metrics()
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
        result["tally"] = await self.fake.acall("tally")
        return result


# --- the bot --------------------------------------------------------------------------------------


async def wait_ready(proc: ManagedProcess, base: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and proc.alive():
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise SystemExit(f"imglife serve did not become ready at {base}:\n{proc.log_tail()}")


def stop_bot(proc: ManagedProcess) -> tuple[int | None, float]:
    """SIGTERM, as a deployment stops it: the exit code and how long it took."""
    started = time.monotonic()
    if proc.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        with contextlib.suppress(Exception):
            proc.wait(STOP_GRACE)
    code = proc.returncode
    proc.stop()  # SIGKILL if it is still there
    return code, time.monotonic() - started


def log_events(path: Path) -> tuple[Counter[str], int]:
    """Warning and error events of the bot's JSON log, by level:event; and the lines read."""
    events: Counter[str] = Counter()
    lines = 0
    with path.open(errors="replace") as log:
        for line in log:
            lines += 1
            if not line.startswith("{"):
                if line.strip():
                    events["text:" + line.strip()[:80]] += 1
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            level, event = entry.get("level"), entry.get("event")
            if level in ("warning", "error", "critical", "exception") or event in COUNTED_EVENTS:
                events[f"{level}:{event}"] += 1
    return events, lines


# --- the report -----------------------------------------------------------------------------------


def mb(kb: int) -> float:
    return kb / 1024


def minute_rows(samples: list[Sample]) -> list[Sample]:
    """The last sample of each minute, and every phase-change sample."""
    rows: dict[tuple[int, str], Sample] = {}
    for s in samples:
        rows[(int(s.t // 60), s.phase)] = s
    return sorted(rows.values(), key=lambda s: s.t)


def print_table(samples: list[Sample], redis_mode: bool) -> None:
    extra = f" {'redis MB':>8} {'keys':>7}" if redis_mode else ""
    print(
        f"{'min':>5} {'phase':<7} {'sent':>7} {'RSS MB':>7} {'fds':>4} {'thr':>3} {'jobs':>7} "
        f"{'queue':>5} {'p50 ms':>7} {'p99 ms':>7} {'CPU s':>7} {'fake MB':>7}{extra}"
    )
    for s in minute_rows(samples):
        extra = f" {mb(s.redis_rss_kb):>8.1f} {s.redis_keys:>7}" if redis_mode else ""
        print(
            f"{s.t / 60:>5.1f} {s.phase:<7} {s.sent:>7} {mb(s.rss_kb):>7.1f} {s.fds:>4} {s.threads:>3} "
            f"{s.jobs:>7} {s.depth:>5} {s.p50_ms:>7.1f} {s.p99_ms:>7.1f} {s.cpu:>7.1f} "
            f"{mb(s.fake_rss_kb):>7.1f}{extra}"
        )


CSV_COLUMNS = (
    *("seconds", "phase", "rss_kb", "hwm_kb", "fds", "threads", "cpu_s", "sent", "accepted", "jobs", "queue"),
    *("p50_ms", "p99_ms", "fake_rss_kb", "redis_rss_kb", "redis_keys", "fd_kinds"),
)


def write_csv(path: Path, samples: list[Sample]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for s in samples:
            writer.writerow(
                [
                    *(f"{s.t:.1f}", s.phase, s.rss_kb, s.hwm_kb, s.fds, s.threads, f"{s.cpu:.2f}", s.sent),
                    *(
                        s.accepted,
                        s.jobs,
                        s.depth,
                        f"{s.p50_ms:.2f}",
                        f"{s.p99_ms:.2f}",
                        s.fake_rss_kb,
                        s.redis_rss_kb,
                    ),
                    *(s.redis_keys, json.dumps(s.fd_kinds, sort_keys=True)),
                ]
            )


def listed(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {n}" for key, n in sorted(counter.items())) or "none"


def report(
    args: argparse.Namespace,
    soak: Soak,
    result: dict[str, Any],
    alive: bool,
    stopped: tuple[int | None, float],
    events: Counter[str],
    log_lines: int,
) -> list[str]:
    """Print the report; the reasons to fail (none: pass)."""
    tallies, samples = soak.tallies, soak.samples
    start, baseline, end = result["start"], result["baseline"], result["end"]
    after = [s for s in samples if s.t >= baseline.t]
    sent = sum(tallies.sent.values())
    soak_seconds = args.minutes * 60
    print_table(samples, args.redis)
    print()
    print(
        f"deliveries sent: {sent} in {args.minutes:g} min ({sent / soak_seconds:.1f}/s); "
        f"fell behind schedule {tallies.late} times"
    )
    print(f"  by kind: {listed(tallies.sent)}")
    print(f"answers: {listed(tallies.answers)}")
    lat = sorted(tallies.latencies)
    print(
        f"  acknowledgement latency: p50 {percentile(lat, 0.5):.1f} ms, p99 {percentile(lat, 0.99):.1f} ms, "
        f"max {lat[-1] if lat else 0:.1f} ms; 5xx {tallies.server_errors}; "
        f"unexpected answers {sum(tallies.unexpected.values())}; no answer {sum(tallies.errors.values())}"
    )
    for what, n in tallies.unexpected.most_common(10):
        print(f"    unexpected: {what} (x{n})")
    for what, n in tallies.errors.most_common(10):
        print(f"    no answer: {what} (x{n})")
    jobs: Counter[str] = result.get("jobs", Counter())
    print(f"jobs (/metrics): {sum(jobs.values())} finished: {listed(jobs)}")
    depth_max = max((s.depth for s in samples), default=0)
    drained = result.get("drained_warmup") and result.get("drained_end")
    print(f"  queue depth max {depth_max}; jobs all finished at both pauses: {'yes' if drained else 'NO'}")
    tally = result.get("tally", {})
    print(
        f"fake GitLab: {listed(tally)}; kept after trimming: {listed(soak.fake_sizes)}; "
        f"fake RSS {mb(start.fake_rss_kb):.0f} -> {mb(end.fake_rss_kb):.0f} MB"
    )
    growth = mb(end.rss_kb - baseline.rss_kb)
    peak = max(after, key=lambda s: s.rss_kb)
    slope = slope_per_hour([(s.t, mb(s.rss_kb)) for s in after])
    print(
        f"RSS: start {mb(start.rss_kb):.1f} MB, end of warm-up {mb(baseline.rss_kb):.1f} MB "
        f"({baseline.t / 60:.1f} min), end {mb(end.rss_kb):.1f} MB, max {mb(peak.rss_kb):.1f} MB "
        f"({peak.t / 60:.1f} min), VmHWM {mb(end.hwm_kb):.1f} MB"
    )
    print(
        f"  growth after warm-up {growth:+.1f} MB (limit {args.max_growth_mb:g} MB); "
        f"least-squares slope {slope:+.1f} MB/hour over {len(after)} samples"
    )
    if not args.redis:
        full = DEFAULT_MAX_ENTRIES // 2
        curve = dedupe_curve([s.accepted for s in after] + [full])
        estimate = (curve[end.accepted] - curve[baseline.accepted]) / MB
        rest = [(s.t, mb(s.rss_kb) - curve[s.accepted] / MB) for s in after]
        second_half = slope_per_hour([(s.t, mb(s.rss_kb)) for s in after[len(after) // 2 :]])
        print(
            f"  of which de-duplication memory (kept 24 h by design): ~{estimate:.1f} MB for the "
            f"{end.accepted - baseline.accepted} deliveries accepted after the warm-up (two keys each); the "
            f"table is full at {DEFAULT_MAX_ENTRIES} keys, ~{curve[full] / MB:.0f} MB"
        )
        print(
            f"  RSS without it: growth {growth - estimate:+.1f} MB, slope {slope_per_hour(rest):+.1f} "
            f"MB/hour, over the second half {slope_per_hour(rest[len(rest) // 2 :]):+.1f} MB/hour "
            f"(RSS itself over the second half: {second_half:+.1f} MB/hour)"
        )
    fd_max = max(s.fds for s in after)
    print(
        f"fds: start {start.fds}, end of warm-up (settled) {baseline.fds}, end (settled) {end.fds}, "
        f"max under load {fd_max}; threads {start.threads} -> {baseline.threads} -> {end.threads}"
    )
    for label, s in (("start", start), ("end of warm-up", baseline), ("end", end)):
        print(f"  fds at the {label}: {listed(s.fd_kinds)}")
    if args.redis:
        print(
            f"redis-server: RSS {mb(baseline.redis_rss_kb):.1f} -> {mb(end.redis_rss_kb):.1f} MB, keys "
            f"{baseline.redis_keys} -> {end.redis_keys} (the de-duplication keys live here, 24 h TTL)"
        )
        print(f"  held at the end (entries): {listed(result.get('redis', {}))}")
    cpu = end.cpu - start.cpu
    print(f"bot CPU: {cpu:.0f} s over {end.t / 60:.1f} min ({cpu / max(end.t, 1) * 100:.0f}% of one core)")
    code, seconds = stopped
    print(f"bot stopped with SIGTERM: exit {code} in {seconds:.1f} s; log: {log_lines} lines")
    print(f"  events (warnings, errors, {', '.join(sorted(COUNTED_EVENTS))}): {listed(events)}")

    failures = []
    if growth >= args.max_growth_mb:
        failures.append(f"RSS grew {growth:.1f} MB after the warm-up (limit {args.max_growth_mb:g} MB)")
    if end.fds > baseline.fds + args.fd_slack:
        failures.append(f"fds grew from {baseline.fds} to {end.fds} (slack {args.fd_slack})")
    if code != 0:
        failures.append(f"the bot did not stop cleanly (exit {code})")
    if not alive or any(not s.rss_kb for s in samples):
        failures.append("the bot died during the run")
    if tallies.server_errors:
        failures.append(f"{tallies.server_errors} answers were 5xx")
    if tallies.unexpected or tallies.errors:
        failures.append(
            f"{sum(tallies.unexpected.values()) + sum(tallies.errors.values())} unexpected answers"
        )
    bad_jobs = {k: n for k, n in jobs.items() if k.split(":", 1)[1] in BAD_OUTCOMES}
    if bad_jobs:
        failures.append(f"jobs ended badly: {listed(bad_jobs)}")
    if not drained:
        failures.append("the jobs did not finish when the stream paused (the bot does not keep up)")
    if tally.get("threads_with_two_check_comments") or tally.get("replies_twice"):
        failures.append("a merge request got two check comments, or a command two replies")
    verdict = "PASS" if not failures else "FAIL: " + "; ".join(failures)
    print(f"verdict: {verdict}")
    return failures


# --- main -----------------------------------------------------------------------------------------


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bench-soak-"))  # on disk: the bot's log is large
    try:
        yield path
    finally:
        if keep:
            print(f"kept: {path} (imglife.yaml, imglife-serve.log, samples.csv)", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


async def bench(args: argparse.Namespace) -> bool:
    fake = SoakFake(TOKEN)
    try:
        with workspace(args.keep) as workdir, contextlib.ExitStack() as stack:
            registry = stack.enter_context(start_registry("anon")) if args.registry else None
            redis_server = stack.enter_context(start_redis()) if args.redis else None
            world = build_world(fake, registry, args)
            config = write_config(workdir, world, args)
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "IMGLIFE_GITLAB_WEBHOOK_SECRET": SECRET,
                "GITLAB_TOKEN": TOKEN,
                "IMGLIFE_LOG_FORMAT": "json",
            }
            if redis_server is not None:
                import redis

                with redis.Redis(
                    host="127.0.0.1", port=redis_server.port, password=redis_server.password
                ) as r:
                    r.config_set("appendfsync", "everysec")  # as deploy/ runs Redis
                env |= {
                    "IMGLIFE_REDIS_URL": redis_server.url,
                    "IMGLIFE_REDIS_PASSWORD": redis_server.password,
                }
            argv = [
                str(IMGLIFE),
                "--config",
                str(config),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            log_path = workdir / "imglife-serve.log"
            bot = ManagedProcess(argv, log_path=log_path, cwd=workdir, env=env)
            try:
                await wait_ready(bot, base)
                print_header(args, world)
                soak = Soak(args, fake, world, bot, base, redis_server)
                result = await soak.run()
            finally:
                alive = bot.alive()
                stopped = await asyncio.to_thread(stop_bot, bot)
            write_csv(workdir / "samples.csv", soak.samples)
            events, lines = log_events(log_path)
            failures = report(args, soak, result, alive, stopped, events, lines)
            if failures and not args.keep:
                print(f"bot log tail:\n{bot.log_tail(15)}", file=sys.stderr)
            return not failures
    finally:
        fake.stop()


def print_header(args: argparse.Namespace, world: World) -> None:
    mode = "Redis queue (redis-server on loopback)" if args.redis else "memory queue"
    registry = (
        f"docker-registry {world.image_host} ({len(PUSHED_TAGS)} tags pushed per project, "
        f"{len(MISSING_TAGS)} never)"
        if world.registry is not None
        else f"none (images on closed port {world.image_host}: every registration waits, then times out)"
    )
    print(
        f"soak: imglife serve, {mode}, {args.workers} workers; {args.minutes:g} min at {args.rate:g} "
        f"deliveries/s (at most {IN_FLIGHT} in flight); warm-up {args.warmup_seconds / 60:.1f} min; "
        f"samples every {args.sample_seconds:g} s; settle {args.settle:g} s at each pause"
    )
    print(
        f"  forge: GitLab fake (own process), {args.projects} projects x {args.mrs} merge requests "
        f"+ 3 issues; registry: {registry}; register_wait {args.register_wait:g} s; "
        f"max body {MAX_BODY_BYTES} B"
    )
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the stream (default 30)")
    parser.add_argument("--rate", type=float, default=25.0, help="deliveries per second (default 25)")
    parser.add_argument("--redis", action="store_true", help="run imglife serve in Redis mode")
    parser.add_argument("--workers", type=int, default=4, help="bot.workers (default 4)")
    parser.add_argument(
        "--warmup-minutes", type=float, help="default: 10%% of the run, at least 0.5 and at most 3"
    )
    parser.add_argument("--sample-seconds", type=float, default=10.0)
    parser.add_argument(
        "--settle", type=float, default=35.0, help="quiet seconds before the baseline and end"
    )
    parser.add_argument("--register-wait", type=float, default=20.0, help="bot.register_wait in seconds")
    parser.add_argument("--projects", type=int, default=8)
    parser.add_argument("--mrs", type=int, default=25, help="merge requests per project")
    parser.add_argument("--no-registry", dest="registry", action="store_false", help="no docker-registry")
    parser.add_argument("--max-growth-mb", type=float, default=20.0)
    parser.add_argument("--fd-slack", type=int, default=5)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the bot's log, config and samples.csv")
    args = parser.parse_args()
    if args.minutes <= 0 or args.rate <= 0 or args.workers < 1 or args.projects < 1 or args.mrs < 1:
        parser.error("--minutes, --rate, --workers, --projects and --mrs must be positive")
    warmup = (
        args.warmup_minutes * 60 if args.warmup_minutes is not None else min(max(args.minutes * 6, 30), 180)
    )
    if warmup >= args.minutes * 60:
        parser.error("the warm-up must be shorter than the run")
    args.warmup_seconds = warmup
    if args.redis and not shutil.which("redis-server"):
        parser.error("redis-server is not installed: scripts/bench installs it (Debian package redis-server)")
    if args.registry and not (shutil.which("docker-registry") and shutil.which("skopeo")):
        print("docker-registry or skopeo missing: running without a registry", file=sys.stderr)
        args.registry = False
    if not asyncio.run(bench(args)):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
