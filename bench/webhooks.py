"""Benchmark: webhook acknowledgement latency of `imglife serve`, against a gidgetlab bot, same load.

    scripts/bench webhooks [--deliveries N] [--concurrency N] [--runs N] [--floor] [--redis] [--eol-cycles N]

N signed GitLab "Merge Request Hook" deliveries (default 2,000; each a different merge request
and head commit, so de-duplication drops none) are posted with C connections (default 100, one
delivery in flight on each), and the time from writing a request to reading its whole answer is
measured for each one. The load generator is wrk (C, Debian package `wrk`, installed by
scripts/bench) with bench/webhooks.lua, one thread, stopped after exactly N answers: it costs far
less CPU per request than the server under test, so the latency measured is the server's.

* **imglife**: `imglife serve` as a subprocess, `bot.workers: 4`. It verifies the token, parses,
  queues the check and answers 202; the check itself (read `.imglife.yml` and the Dockerfile,
  judge the base image, post the merge-request comment and the `imglife/check` status) runs in
  the background, and the time until the last status arrived is reported too.
* **Peer**: bench/peer_gidgetlab_bot.py, a minimal gidgetlab `GitLabBot` whose merge-request
  handler does the work inline (read `.imglife.yml` and the Dockerfile, post the `imglife/check`
  status: less than imglife's check, no comment) and answers 200 when it is done, the way
  gidgetlab bots are written.

``--floor`` adds a bare aiohttp app that answers 202 and does nothing: what this harness can
measure at best. ``--redis`` adds `imglife serve` in Redis mode (Debian's redis-server beside wrk
and the fake): each delivery is de-duplicated and queued by a script in Redis before the answer.
Both bots talk to the in-repo GitLab fake (tests/fakes/gitlab.py), which runs in a process of
its own (bench/forge.py). Each server is pinned to one CPU with taskset; wrk, the fake and this
harness get the other CPUs (on two cores, wrk shares CPU 1 with the fake, which is busy with
imglife's background checks while imglife is measured). Each side of each run has a GitLab
project of its own and gets one warm-up delivery, also sent with wrk, before the N. Goal
(SPEC): p99 under 50 ms with 100 concurrent deliveries on one core. ``--eol-cycles 30`` gives
imglife an eol-data.yaml of realistic size instead of the example's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forge import FIXTURE, FakeProcess, hook_headers, merge_request_hook, write_imglife_config  # noqa: E402

from tests.helpers.procs import free_port  # noqa: E402
from tests.helpers.redis import RunningRedis, start_redis  # noqa: E402

TOKEN = "glpat-bench-webhooks"  # noqa: S105 - a throwaway token for the fake
SECRET = "bench-webhook-secret"  # noqa: S105 - a throwaway webhook secret
EOL_PRODUCTS = ("alpine", "debian", "go", "nodejs", "python", "ubuntu")
PEER_SCRIPT = ROOT / "bench" / "peer_gidgetlab_bot.py"
WRK_SCRIPT = ROOT / "bench" / "webhooks.lua"
WRK_RESULT = "webhooks-result "  # the line bench/webhooks.lua prints in done()
WRK_MIN_SECONDS = 120  # wrk's -d (or N / 10 s if longer): a cap, the script stops wrk after N answers
WRK_TIMEOUT = "30s"  # an answer slower than this is a wrk timeout error, its latency unrecorded
# The markers of the body template that bench/webhooks.lua fills in for each delivery.
IID_MARK, ID_MARK, SHA_MARK = "@@IID@@", "@@ID@@", "@@SHA@@"
GOAL_P99_MS = 50.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL_SECONDS = 0.05

# The floor: what this harness measures against an aiohttp server that does no work at all.
FLOOR_APP = """
import sys
from aiohttp import web

async def hook(request):
    await request.read()
    return web.Response(status=202, text="accepted\\n")

async def ready(request):
    return web.Response(text="ready\\n")

app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/ready", ready)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


# --- servers under test ---------------------------------------------------------------------------


def with_taskset(argv: list[str], cores: set[int] | None) -> list[str]:
    taskset = shutil.which("taskset")
    if cores and taskset:
        return [taskset, "-c", ",".join(map(str, sorted(cores))), *argv]
    return argv


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: TextIO

    @classmethod
    def start(
        cls, name: str, argv: list[str], env: dict[str, str], log_path: Path, core: int | None
    ) -> Server:
        argv = with_taskset(argv, None if core is None else {core})
        log = log_path.open("w")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        return cls(name, process, log_path, log)

    async def wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    break
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(POLL_SECONDS)
        raise SystemExit(f"{self.name} did not become ready at {url}:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def tail(self, lines: int = 40) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# --- deliveries and load (wrk) -------------------------------------------------------------------


def head_commit(prefix: str, iid: int) -> str:
    """The head commit of merge request ``iid``; bench/webhooks.lua builds the same string."""
    return f"{prefix}{iid:032x}"


def body_template(fake_url: str, project_id: int, path: str) -> str:
    """A Merge Request Hook body shaped like GitLab's documented example, with the iid, id and head
    commit left as markers: bench/webhooks.lua fills them in, which gives, byte for byte, the JSON
    ``json.dumps`` makes of the payload with those values (id and iid are JSON numbers)."""
    text = FIXTURE.read_text()
    if "@@" in text:
        raise SystemExit(f"{FIXTURE} contains '@@', which the body template uses for its markers")
    template = json.loads(text)
    payload = merge_request_hook(
        template, fake_url, project_id, path, iid=IID_MARK, mr_id=ID_MARK, sha=SHA_MARK
    )
    return json.dumps(payload).replace(f'"{ID_MARK}"', ID_MARK).replace(f'"{IID_MARK}"', IID_MARK)


@dataclass
class Load:
    """What bench/webhooks.lua reported for one wrk run."""

    deliveries: int  # asked for
    responses: int
    statuses: Counter[str]
    seconds: float  # from the first request written to the last answer read
    cpu_seconds: float | None  # wrk's, meanwhile (None when the run was cut short)
    started: float  # time.monotonic() of the first request written
    latency_ms: dict[str, float]  # p50, p90, p99 and max
    errors: dict[str, int]  # wrk's socket errors: connect, read, write, timeout

    @classmethod
    def parse(cls, deliveries: int, line: str) -> Load:
        data = json.loads(line)
        return cls(
            deliveries=deliveries,
            responses=data["responses"],
            statuses=Counter(data["statuses"]),
            seconds=data["seconds"],
            cpu_seconds=data["cpu_seconds"],
            started=data["started"],
            latency_ms={p: us / 1000 for p, us in data["latency_us"].items()},
            errors=data["errors"],
        )

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not status.startswith("2"))

    @property
    def failures(self) -> int:
        """Answers other than 2xx, deliveries never answered and socket errors."""
        return self.non_2xx + self.deliveries - self.responses + sum(self.errors.values())

    @property
    def rate(self) -> float:
        return self.responses / self.seconds if self.seconds else 0.0

    def describe(self) -> str:
        errors = ", ".join(f"{kind} {n}" for kind, n in self.errors.items() if n) or "none"
        return (
            f"{self.responses} of {self.deliveries} answered: {dict(self.statuses)}; socket errors: {errors}"
        )


@dataclass
class Wrk:
    """wrk with bench/webhooks.lua, for one side of one run."""

    url: str  # the webhook route
    template: Path  # the body template, see body_template()
    fake_url: str
    prefix: str  # of the head commits, see head_commit()
    cores: set[int] | None  # where wrk runs

    async def send(self, first_iid: int, deliveries: int, concurrency: int, log: Path) -> Load:
        """Merge requests first_iid .. first_iid + deliveries - 1, over ``concurrency`` connections."""
        duration = max(WRK_MIN_SECONDS, deliveries // 10)
        # The headers every delivery has; bench/webhooks.lua adds the three ids of each delivery.
        headers = [
            arg
            for item in hook_headers(self.fake_url, SECRET).items()
            for arg in ("--header", ": ".join(item))
        ]
        script_args = [str(self.template), str(first_iid), str(deliveries), self.prefix]
        argv = [
            str(shutil.which("wrk")),
            *("--threads", "1", "--connections", str(concurrency), "--duration", f"{duration}s"),
            *("--timeout", WRK_TIMEOUT, "--latency", "--script", str(WRK_SCRIPT), *headers),
            *(self.url, "--", *script_args),
        ]
        process = await asyncio.create_subprocess_exec(
            *with_taskset(argv, self.cores), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), duration + STOP_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SystemExit(f"wrk did not exit within {duration + STOP_TIMEOUT:g} s") from None
        text = output.decode(errors="replace")
        await asyncio.to_thread(log.write_text, text)
        line = next((line for line in text.splitlines() if line.startswith(WRK_RESULT)), None)
        if process.returncode or line is None:
            raise SystemExit(f"wrk failed (exit status {process.returncode}):\n{text}")
        return Load.parse(deliveries, line.removeprefix(WRK_RESULT))


async def wait_for_statuses(fake: FakeProcess, project_id: int, expected: int, within: float) -> int:
    deadline = time.monotonic() + within
    seen = fake.statuses(project_id)
    while seen < expected and time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        seen = fake.statuses(project_id)
    return seen


# --- one side of one run --------------------------------------------------------------------------


@dataclass
class Side:
    key: str  # imglife, peer or floor
    label: str
    hook_path: str  # the webhook route
    ready_path: str
    argv: Callable[[Path, str, int], list[str]]  # (workdir, fake url, port) -> command line
    env: dict[str, str]
    works: bool = True  # posts an imglife/check status per delivery


@dataclass
class Result:
    key: str
    side: str
    run: int
    load: Load
    work_seconds: float | None  # from the first delivery until the last status was posted
    statuses_posted: int
    notes: list[str] = field(default_factory=list)

    def ms(self, statistic: str) -> float:
        """p50, p90, p99 or max of the acknowledgement latency, in milliseconds."""
        return self.load.latency_ms[statistic]


def eol_data(cycles: int) -> str:
    """An eol-data.yaml with ``cycles`` cycles for each of six products; alpine 3.21 (the base used) first."""
    lines = []
    for product in EOL_PRODUCTS:
        lines.append(f"{product}:")
        for i in range(cycles):
            name = "3.21" if product == "alpine" and i == 0 else f"{cycles - i}.{i}"
            lines += [
                f'  - cycle: "{name}"',
                f'    releaseDate: "20{10 + i % 15}-01-15"',
                f'    eol: "20{20 + i % 15}-11-01"',
                f'    latest: "{name}.{i % 7}"',
                f'    latestReleaseDate: "20{10 + i % 15}-06-01"',
                "    lts: false",
            ]
    return "\n".join(lines) + "\n"


def imglife_side(workers: int, eol_cycles: int | None, redis: RunningRedis | None = None) -> Side:
    def argv(workdir: Path, fake_url: str, port: int) -> list[str]:
        eol = None if eol_cycles is None else eol_data(eol_cycles)
        config = write_imglife_config(workdir, fake_url, workers, eol)
        imglife = str(Path(sys.executable).with_name("imglife"))
        return [imglife, "--config", str(config), "serve", "--host", "127.0.0.1", "--port", str(port)]

    env = {"IMGLIFE_GITLAB_WEBHOOK_SECRET": SECRET, "GITLAB_TOKEN": TOKEN}
    key, label = "imglife", f"imglife serve ({workers} workers)"
    if redis is not None:
        env |= {"IMGLIFE_REDIS_URL": redis.url, "IMGLIFE_REDIS_PASSWORD": redis.password}
        key, label = "imglife-redis", f"imglife serve on Redis ({workers} workers)"
    return Side(key, label, "/webhooks/gitlab", "/readyz", argv, env)


def peer_side() -> Side:
    def argv(_workdir: Path, fake_url: str, port: int) -> list[str]:
        return [
            sys.executable,
            str(PEER_SCRIPT),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--gitlab-url",
            fake_url,
        ]

    env = {"GL_SECRET": SECRET, "GL_ACCESS_TOKEN": TOKEN}
    return Side("peer", "gidgetlab GitLabBot (inline)", "/", "/health", argv, env)


def floor_side() -> Side:
    def argv(_workdir: Path, _fake_url: str, port: int) -> list[str]:
        return [sys.executable, "-c", FLOOR_APP, str(port)]

    return Side("floor", "bare aiohttp, 202 (floor)", "/hook", "/ready", argv, {}, works=False)


async def imglife_metrics(base: str) -> str:
    """From /metrics: jobs by handler and outcome, and the mean time spent inside the receiver."""
    async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics") as response:
        text = await response.text()
    jobs: Counter[str] = Counter()
    for labels, value in re.findall(r"^imglife_jobs_total\{([^}]*)\} (\S+)$", text, re.MULTILINE):
        named = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        jobs[f"{named.get('handler')}:{named.get('outcome')}"] += int(float(value))
    sums = dict(re.findall(r'^imglife_webhook_ack_seconds_(sum|count)\{forge="gitlab"\} (\S+)$', text, re.M))
    inside = float(sums.get("sum", 0)) / max(float(sums.get("count", 0)), 1) * 1000
    listed = ", ".join(f"{key}={n}" for key, n in sorted(jobs.items())) or "none"
    return f"jobs {listed}; mean time inside the receiver {inside:.2f} ms"


async def run_side(
    side: Side,
    index: int,
    run: int,
    fake: FakeProcess,
    args: argparse.Namespace,
    core: int | None,
    harness: set[int] | None,
    workdir: Path,
) -> Result:
    slug = side.key
    path = f"group/app-{slug}-{run}"
    # Distinct commits per side and run; iid 1 is the smoke delivery that warms the server up.
    prefix = f"{run:04x}{index:04x}"
    changes = [(iid, head_commit(prefix, iid)) for iid in range(1, args.deliveries + 2)]
    project_id = fake.add_project(path, changes)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    side_dir = workdir / f"{slug}-{run}"
    side_dir.mkdir()
    template = side_dir / "body.json"
    template.write_text(body_template(fake.url, project_id, path))
    wrk = Wrk(base + side.hook_path, template, fake.url, prefix, harness)
    server = Server.start(
        side.label, side.argv(side_dir, fake.url, port), side.env, side_dir / "server.log", core
    )
    try:
        await server.wait_ready(base + side.ready_path)
        smoke = await wrk.send(1, 1, 1, side_dir / "wrk-smoke.log")
        handled = not side.works or await wait_for_statuses(fake, project_id, 1, START_TIMEOUT) >= 1
        if smoke.failures or not handled:
            raise SystemExit(f"{side.label}: the smoke delivery was not handled ({smoke.describe()}):\n"
                             f"{server.tail()}")  # fmt: skip
        server_cpu, fake_cpu = server.cpu_seconds(), fake.cpu_seconds()
        load = await wrk.send(2, args.deliveries, args.concurrency, side_dir / "wrk.log")
        load_cpu, load_fake_cpu = server.cpu_seconds() - server_cpu, fake.cpu_seconds() - fake_cpu
        expected = args.deliveries + 1 if side.works else 0
        posted = await wait_for_statuses(fake, project_id, expected, args.jobs_timeout)
        # wrk's clock for the first request is CLOCK_MONOTONIC, the clock of time.monotonic().
        work = time.monotonic() - load.started if side.works and posted >= expected else None
        result = Result(side.key, side.label, run, load, work, posted - 1)
        wrk_cpu = f"{load.cpu_seconds:.2f} s" if load.cpu_seconds is not None else "?"
        result.notes.append(
            f"CPU during the deliveries: server {load_cpu:.1f} s, GitLab fake {load_fake_cpu:.1f} s, "
            f"wrk {wrk_cpu}; until the work was done: server "
            f"{server.cpu_seconds() - server_cpu:.1f} s, fake {fake.cpu_seconds() - fake_cpu:.1f} s"
        )
        if side.key.startswith("imglife"):
            result.notes.append(await imglife_metrics(base))
        if server.process.poll() is not None:
            result.notes.append(f"server exited with {server.process.returncode}")
        if load.failures:
            result.notes.append(f"{load.describe()}; log tail:\n{server.tail(20)}")
        return result
    finally:
        server.stop()


def print_report(results: list[Result], args: argparse.Namespace, pinned: str) -> bool:
    print(
        f"\nwebhook acknowledgement latency: {args.deliveries} Merge Request Hook deliveries, "
        f"concurrency {args.concurrency}, {pinned}"
    )
    print(
        f"{'run':>3} {'server':<36} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'deliv/s':>8} {'non-2xx':>7} {'work done':>10}"
    )
    for r in results:
        work = f"{r.work_seconds:.1f}s" if r.work_seconds is not None else f"{r.statuses_posted} only"
        if r.key == "floor":
            work = "none"
        latencies = " ".join(f"{r.ms(statistic):>8.1f}" for statistic in ("p50", "p90", "p99", "max"))
        print(f"{r.run:>3} {r.side:<36} {latencies} {r.load.rate:>8.0f} {r.load.non_2xx:>7} {work:>10}")
        for note in r.notes:
            print(f"    {note}")
    ok = all(not r.load.failures for r in results)
    for run in sorted({r.run for r in results}):
        mine, peer = (
            next(r for r in results if r.run == run and r.key == key) for key in ("imglife", "peer")
        )
        goal = "met" if mine.ms("p99") < GOAL_P99_MS else "NOT met"
        print(
            f"run {run}: imglife/gidgetlab p50 {mine.ms('p50') / peer.ms('p50'):.2f}, "
            f"p99 {mine.ms('p99') / peer.ms('p99'):.2f}; "
            f"p99 goal (< {GOAL_P99_MS:g} ms): {goal} ({mine.ms('p99'):.1f} ms)"
        )
        ok = ok and all(r.work_seconds is not None for r in (mine, peer))
        shared = next((r for r in results if r.run == run and r.key == "imglife-redis"), None)
        if shared is not None:
            print(
                f"run {run}: imglife on Redis / in memory p50 {shared.ms('p50') / mine.ms('p50'):.2f}, "
                f"p99 {shared.ms('p99') / mine.ms('p99'):.2f}"
            )
            ok = ok and shared.work_seconds is not None
    print(
        "ratio = imglife latency / peer latency (below 1.0: imglife answers sooner); "
        "latency = wrk's, from writing a request to reading its whole answer; "
        "work done = first delivery to the last imglife/check status posted"
    )
    return ok


async def bench(args: argparse.Namespace) -> bool:
    allowed = sorted(os.sched_getaffinity(0))
    server_core: int | None = allowed[0] if len(allowed) >= 2 and shutil.which("taskset") else None
    harness = set(allowed[1:]) if server_core is not None else None
    pinned = "no pinning (one CPU or no taskset): wrk, the GitLab fake and the servers share the CPUs"
    if harness:
        others = ",".join(map(str, sorted(harness)))
        pinned = f"servers on CPU {server_core}, wrk (load) and the GitLab fake on CPU {others}"
    fake = FakeProcess(TOKEN, harness)
    if harness:
        os.sched_setaffinity(0, harness)
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp, contextlib.ExitStack() as stack:
            # Started after the affinity above: Redis runs beside wrk and the fake, not the servers.
            redis = stack.enter_context(start_redis()) if args.redis else None
            for run in range(1, args.runs + 1):
                sides = [
                    imglife_side(args.workers, args.eol_cycles),
                    *([imglife_side(args.workers, args.eol_cycles, redis)] if redis else []),
                    peer_side(),
                    *([floor_side()] if args.floor else []),
                ]
                for index, side in enumerate(sides):
                    result = await run_side(side, index, run, fake, args, server_core, harness, Path(tmp))
                    print(f"run {run}: {side.label}: p99 {result.ms('p99'):.1f} ms", file=sys.stderr)
                    results.append(result)
    finally:
        fake.stop()
    return print_report(results, args, pinned)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deliveries", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1, help="each side is measured once per run")
    parser.add_argument("--workers", type=int, default=4, help="bot.workers of imglife serve")
    parser.add_argument(
        "--eol-cycles",
        type=int,
        help="give imglife an eol-data.yaml of this many cycles for each of six products "
        "(default: a copy of examples/eol-data.yaml, two cycles)",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure a bare aiohttp app that answers 202 and does nothing",
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="also measure imglife serve in Redis mode (a local redis-server): the shared queue's cost",
    )
    parser.add_argument(
        "--jobs-timeout", type=float, default=300.0, help="seconds to wait for imglife's background checks"
    )
    args = parser.parse_args()
    if args.deliveries < 1 or args.concurrency < 1 or args.runs < 1:
        parser.error("--deliveries, --concurrency and --runs must be at least 1")
    if not shutil.which("wrk"):
        parser.error("wrk is not installed: scripts/bench installs it (Debian package wrk)")
    if not asyncio.run(bench(args)):
        raise SystemExit("some deliveries were not acknowledged with 2xx or some checks never finished")


if __name__ == "__main__":
    main()
