"""Benchmark: mirror images between two registries with `imglife sync`, against `skopeo sync --all`.

    scripts/bench sync [--runs N] [--skip-1g] [--huge-mib N] [--parallelism N]

Two real registries (Debian ``docker-registry``, distribution 2.8) on loopback, storage in
/dev/shm. The source is filled once with:

* ``bench/big:v1``: one image of 10 random (incompressible) 20 MiB layers, about 200 MB;
* ``bench/multi:v1``: an OCI index of linux/amd64 and linux/arm64;
* ``bench/small:t01`` .. ``t20``: 20 small single-platform images, each different.

Each run gives each tool a fresh, empty target registry, so both copy everything:

* **imglife**: ``imglife --config X sync`` as a subprocess (interpreter start-up included), one
  sync entry per repository, ``tag_regex`` matching every tag, no ``keep_last``, the default
  ``IMGLIFE_SYNC_PARALLELISM`` (4) unless ``--parallelism`` is given.
* **Peer**: ``skopeo sync --all --src docker --dest docker`` (skopeo 1.9.3, Go), one invocation
  per repository, one after the other; its time is their sum. skopeo's blob-info cache
  (/var/lib/containers/cache/blob-info-cache-v1.boltdb as root) is deleted before every run, so
  it cannot turn uploads into cross-repository mounts learnt from an earlier run.

The order of the two alternates from run to run. Peak RSS is each process's own maximum
resident set, as GNU time (``%M``, installed by scripts/bench) reads it from the ``rusage`` of
that one child; without GNU time a small helper process does the same. After every run each
target tag's manifest digest must equal the source's, and every blob must be in the target, or
the bench stops: a fast wrong copy is not a result.

Then the **no-op re-sync**: ``imglife sync`` again onto a populated target (22 tags, all
present; goal under 1 s), with ``skopeo sync`` doing the same for comparison, and ``imglife
--version`` as the interpreter start-up floor.

Then the **memory goal**: a source image with one layer of 1 GiB of random data (a gzip tar of
stored blocks, made and streamed into the source registry in 8 MiB pieces, never held in
memory), copied by ``imglife sync`` into a fresh target; its peak RSS should stay under 150 MB.
skopeo copies it once too, for comparison. ``--skip-1g`` skips this part.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.images import (  # noqa: E402
    OCI_LAYER_GZ,
    OCI_MANIFEST,
    TestImage,
    TestIndex,
    build_image,
    build_index,
    make_config,
    random_layer,
    sha256_digest,
)
from tests.helpers.registry import MANIFEST_ACCEPT, RunningRegistry, start_registry  # noqa: E402

BIG_LAYERS = 10
BIG_LAYER_MIB = 20
SMALL_TAGS = 20
REPOS = ("bench/big", "bench/multi", "bench/small")
HUGE_REPO = "bench/huge"
PIECE = 8 * 1024 * 1024  # streaming piece of the big layer (memory part)
SKOPEO_CACHE = Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")
GOAL_RATIO = 1.0
GOAL_RSS_MB = 150.0
GOAL_NOOP_SECONDS = 1.0
TIMEOUT = 900.0
HEADLINE = re.compile(r"tags: (\d+) copied, (\d+) skipped, (\d+) failed")
FINISHED = re.compile(r"sync_finished .*duration_s=([\d.]+)")


@dataclass(frozen=True)
class Measure:
    seconds: float
    rss_mb: float  # peak resident set of the process, MB (10^6 bytes)
    inside: float | None = None  # imglife: the sync's own duration (its sync_finished log line)


@dataclass(frozen=True)
class Source:
    """The filled source registry: expected digest of every repo:tag and the blobs each repo holds."""

    registry: RunningRegistry
    tags: dict[str, dict[str, str]]  # repo -> tag -> manifest digest
    blobs: dict[str, dict[str, int]]  # repo -> blob digest -> size


# --- filling the source ---------------------------------------------------------------------------


def push_blob(client: httpx.Client, repo: str, digest: str, data: bytes) -> None:
    if client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    expect(started, 202, f"start upload of {digest}")
    put = client.put(
        with_digest(started.headers["location"], digest),
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    expect(put, 201, f"upload {digest}")


def push_manifest(client: httpx.Client, repo: str, ref: str, media_type: str, data: bytes) -> None:
    response = client.put(f"/v2/{repo}/manifests/{ref}", content=data, headers={"Content-Type": media_type})
    expect(response, 201, f"push manifest {repo}:{ref}")


def push(client: httpx.Client, repo: str, tag: str, image: TestImage | TestIndex) -> None:
    """Blobs, then child manifests by digest, then the top manifest under ``tag``."""
    for blob in image.blobs:
        push_blob(client, repo, blob.digest, blob.data)
    for digest, (media_type, data) in image.manifests.items():
        push_manifest(client, repo, tag if digest == image.digest else digest, media_type, data)


def with_digest(location: str, digest: str) -> str:
    """The upload URL with ``digest=`` added: distribution's ``Location`` already has a query."""
    return f"{location}{'&' if '?' in location else '?'}digest={digest}"


def expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise SystemExit(f"{what}: HTTP {response.status_code}: {response.text[:300]}")


def fill_source(registry: RunningRegistry) -> Source:
    started = time.perf_counter()
    layers = [random_layer(BIG_LAYER_MIB * 1024 * 1024) for _ in range(BIG_LAYERS)]
    images: dict[str, dict[str, TestImage | TestIndex]] = {
        "bench/big": {"v1": build_image(layers=layers, nonce="big")},
        "bench/multi": {"v1": build_index(nonce="multi")},
        "bench/small": {f"t{i:02d}": build_image(nonce=f"small-{i}") for i in range(1, SMALL_TAGS + 1)},
    }
    built = time.perf_counter() - started
    tags: dict[str, dict[str, str]] = {}
    blobs: dict[str, dict[str, int]] = {}
    with registry.client(timeout=120) as client:
        for repo, by_tag in images.items():
            for tag, image in by_tag.items():
                push(client, repo, tag, image)
                tags.setdefault(repo, {})[tag] = image.digest
                for blob in image.blobs:
                    blobs.setdefault(repo, {})[blob.digest] = blob.size
    size = sum(sum(repo.values()) for repo in blobs.values())
    print(
        f"source filled: {sum(len(t) for t in tags.values())} tags, {size / 1e6:.0f} MB of blobs "
        f"(built in {built:.1f} s, pushed in {time.perf_counter() - started - built:.1f} s)",
        file=sys.stderr,
    )
    return Source(registry, tags, blobs)


def random_tar(size: int) -> Iterator[bytes]:
    """An uncompressed tar of one file of ``size`` random bytes, piece by piece."""
    info = tarfile.TarInfo("random.bin")
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    left = size
    while left:
        piece = min(left, PIECE)
        yield os.urandom(piece)
        left -= piece
    yield b"\0" * (-size % tarfile.BLOCKSIZE + 2 * tarfile.BLOCKSIZE)


def push_huge(source: Source, mib: int) -> tuple[str, int]:
    """A one-layer image whose layer is a gzip tar of ``mib`` MiB of random data, streamed:
    (manifest digest, layer size). gzip, like real layers: skopeo would compress a plain tar layer
    on the way, and so change its digest."""
    repo = HUGE_REPO
    digest_of, diff_id_of = hashlib.sha256(), hashlib.sha256()
    total = 0

    def hashed() -> Iterator[bytes]:
        nonlocal total
        # Level 0 (stored blocks): what gzip makes of random data anyway, at memcpy speed.
        gzip = zlib.compressobj(0, zlib.DEFLATED, 31)  # wbits 31: a gzip stream, mtime 0
        for piece in random_tar(mib * 1024 * 1024):
            diff_id_of.update(piece)
            compressed = gzip.compress(piece)
            digest_of.update(compressed)
            total += len(compressed)
            yield compressed
        tail = gzip.flush()
        digest_of.update(tail)
        total += len(tail)
        yield tail

    started = time.perf_counter()
    with source.registry.client(timeout=600) as client:
        upload = client.post(f"/v2/{repo}/blobs/uploads/")
        expect(upload, 202, "start the big layer's upload")
        # No Content-Range: distribution takes a chunked-encoding PATCH as one streamed upload.
        patched = client.patch(
            upload.headers["location"], content=hashed(), headers={"Content-Type": "application/octet-stream"}
        )
        expect(patched, 202, "stream the big layer")
        layer_digest = "sha256:" + digest_of.hexdigest()
        done = client.put(with_digest(patched.headers["location"], layer_digest))
        expect(done, 201, "finish the big layer's upload")
        diff_id = "sha256:" + diff_id_of.hexdigest()
        config = make_config(diff_ids=[diff_id], labels={"org.imglife.bench": "huge"})
        push_blob(client, repo, config.digest, config.data)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [{"mediaType": OCI_LAYER_GZ, "digest": layer_digest, "size": total}],
            },
            separators=(",", ":"),
        ).encode()
        push_manifest(client, repo, "v1", OCI_MANIFEST, manifest)
    digest = sha256_digest(manifest)
    source.tags[repo] = {"v1": digest}
    source.blobs[repo] = {layer_digest: total, config.digest: config.size}
    seconds = time.perf_counter() - started
    print(f"source: {repo}:v1 pushed, one {total / 2**20:.0f} MiB layer, in {seconds:.1f} s", file=sys.stderr)
    return digest, total


# --- checking a target ----------------------------------------------------------------------------


def verify(source: Source, target: RunningRegistry, repos: Sequence[str], who: str) -> None:
    """Every tag at the target has the source's digest, and every blob is there with its size."""
    problems: list[str] = []
    with target.client(timeout=60) as client:
        for repo in repos:
            listed = client.get(f"/v2/{repo}/tags/list")
            tags = set((listed.json().get("tags") or []) if listed.status_code == 200 else [])
            if tags != set(source.tags[repo]):
                problems.append(f"{repo}: tags {sorted(tags)}, expected {sorted(source.tags[repo])}")
            for tag, digest in source.tags[repo].items():
                head = client.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT})
                got = head.headers.get("docker-content-digest") if head.status_code == 200 else None
                if got != digest:
                    problems.append(f"{repo}:{tag}: digest {got or head.status_code}, expected {digest}")
            for blob, size in source.blobs[repo].items():
                head = client.head(f"/v2/{repo}/blobs/{blob}")
                length = int(head.headers.get("content-length", -1)) if head.status_code == 200 else None
                if length != size:
                    problems.append(f"{repo}: blob {blob[:19]}: {length or head.status_code}, not {size}")
    if problems:
        raise SystemExit(f"{who} left a wrong copy:\n  " + "\n  ".join(problems[:20]))


# --- running the tools ----------------------------------------------------------------------------


# The fallback when GNU time is missing: a dedicated small child that forks the command, waits for
# it with wait4() and writes that child's peak RSS (KiB). Not the bench process itself: on Linux a
# process's ru_maxrss includes the memory of the process it was forked from, up to its exec, so a
# command forked from this bench (which holds the 200 MB of test layers) would count them too.
RUSAGE_HELPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss}\\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""
GNU_TIME = Path("/usr/bin/time")


def measured(argv: Sequence[str], env: dict[str, str], log: Path, what: str) -> Measure:
    """Run ``argv``; its wall time and its own peak RSS, measured by GNU time (``%M``: the rusage
    wait4() gives for exactly that process) run from a small process, or else by RUSAGE_HELPER."""
    stats = log.with_suffix(".rss")
    if GNU_TIME.exists():
        wrapped = [str(GNU_TIME), "--format", "%M", "--output", str(stats), *argv]
    else:
        wrapped = [sys.executable, "-I", "-S", "-c", RUSAGE_HELPER, str(stats), *argv]
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        started = time.perf_counter()
        result = subprocess.run(wrapped, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                                timeout=TIMEOUT, check=False)  # fmt: skip
        elapsed = time.perf_counter() - started
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"{what} failed (exit status {result.returncode}):\n{tail}")
    kib = int(stats.read_text().split()[-1])  # ru_maxrss is in KiB on Linux
    stats.unlink()
    return Measure(elapsed, kib * 1024 / 1e6)


def imglife_config(workdir: Path, source: Source, target: RunningRegistry, repos: Sequence[str]) -> Path:
    entries = "".join(
        f"    - source: {source.registry.host}/{repo}\n"
        f"      target: {target.host}/{repo}\n"
        f"      tag_regex: '.*'\n"
        for repo in repos
    )
    config = workdir / f"imglife-{target.host.replace(':', '-')}.yaml"
    config.write_text(
        "registry:\n"
        "  provider: local\n"
        f"  path: {workdir / 'records'}\n"
        f"  insecure_registries: [{source.registry.host}, {target.host}]\n"
        f"sync:\n  entries:\n{entries}"
    )
    return config


class Tools:
    """The two command lines, their environments and logs."""

    def __init__(self, workdir: Path, parallelism: int | None) -> None:
        self.workdir = workdir
        self.imglife = str(Path(sys.executable).with_name("imglife"))
        skopeo = shutil.which("skopeo")
        if skopeo is None:
            raise SystemExit("skopeo not found: scripts/test installs it (apt-get install -y skopeo)")
        self.skopeo = skopeo
        # As installed from a wheel: byte-compiled. The first run below writes the .pyc files
        # (unless they are there already), whatever the caller's PYTHONDONTWRITEBYTECODE says.
        self.imglife_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        if parallelism is not None:
            self.imglife_env["IMGLIFE_SYNC_PARALLELISM"] = str(parallelism)
        # skopeo gets a private HOME and auth file: nothing of the user's is read.
        home = workdir / "skopeo-home"
        home.mkdir()
        (home / "auth.json").write_text('{"auths": {}}')
        self.skopeo_home = home
        self.skopeo_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_DATA_HOME": str(home / "data"),
            "REGISTRY_AUTH_FILE": str(home / "auth.json"),
            "DOCKER_CONFIG": str(home / "docker"),
            "TMPDIR": str(home),
        }

    def clear_skopeo_cache(self) -> None:
        """The blob-info cache: system-wide as root, under the (private) XDG data dir otherwise."""
        for path in (SKOPEO_CACHE, self.skopeo_home / "data" / "containers" / "cache" / SKOPEO_CACHE.name):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def run_imglife(self, config: Path, log: str, *extra: str) -> tuple[Measure, str]:
        """``imglife --config X sync``: the measure and the summary headline's counts."""
        path = self.workdir / log
        measure = measured([self.imglife, "--config", str(config), *extra, "sync"],
                           self.imglife_env, path, "imglife sync")  # fmt: skip
        output = path.read_text(errors="replace")
        found = HEADLINE.findall(output)
        if not found:
            raise SystemExit(f"imglife sync printed no summary; see {path}")
        copied, skipped, failed = found[-1]
        inside = FINISHED.findall(output)
        measure = Measure(measure.seconds, measure.rss_mb, float(inside[-1]) if inside else None)
        return measure, f"{copied} copied, {skipped} skipped, {failed} failed"

    def run_skopeo(self, source: Source, target: RunningRegistry, repos: Sequence[str], log: str) -> Measure:
        """``skopeo sync --all`` of each repository in turn: total time, highest peak RSS."""
        total, peak = 0.0, 0.0
        for repo in repos:
            prefix = f"{target.host}/{repo.rpartition('/')[0]}"  # skopeo appends the last path element
            argv = [self.skopeo, "--insecure-policy", "sync", "--all", "--src", "docker", "--dest", "docker",
                    "--src-tls-verify=false", "--dest-tls-verify=false",
                    f"{source.registry.host}/{repo}", prefix]  # fmt: skip
            one = measured(argv, self.skopeo_env, self.workdir / log, "skopeo sync")
            total += one.seconds
            peak = max(peak, one.rss_mb)
        return Measure(total, peak)

    def imglife_version(self) -> Measure:
        argv = [self.imglife, "--version"]
        return measured(argv, self.imglife_env, self.workdir / "version.log", "imglife --version")


# --- the three parts ------------------------------------------------------------------------------


@dataclass
class CopyRun:
    run: int
    imglife: Measure
    skopeo: Measure
    summary: str
    first: str  # which tool ran first


def bench_copies(source: Source, tools: Tools, runs: int) -> list[CopyRun]:
    results: list[CopyRun] = []
    for run in range(1, runs + 1):
        order = ("imglife", "skopeo") if run % 2 else ("skopeo", "imglife")
        measures: dict[str, Measure] = {}
        summary = ""
        for tool in order:
            with start_registry("anon") as target:
                if tool == "imglife":
                    config = imglife_config(tools.workdir, source, target, REPOS)
                    measures[tool], summary = tools.run_imglife(config, f"imglife-run{run}.log")
                else:
                    tools.clear_skopeo_cache()
                    measures[tool] = tools.run_skopeo(source, target, REPOS, f"skopeo-run{run}.log")
                verify(source, target, REPOS, f"{tool} (run {run})")
            print(f"run {run}: {tool}: {measures[tool].seconds:.2f} s, {measures[tool].rss_mb:.0f} MB",
                  file=sys.stderr)  # fmt: skip
        results.append(CopyRun(run, measures["imglife"], measures["skopeo"], summary, order[0]))
    return results


@dataclass
class NoopRuns:
    imglife: list[Measure]
    skopeo: list[Measure]
    startup: list[Measure]
    summary: str


def bench_noop(source: Source, tools: Tools, runs: int) -> NoopRuns:
    with start_registry("anon") as target:
        config = imglife_config(tools.workdir, source, target, REPOS)
        tools.run_imglife(config, "imglife-populate.log")
        verify(source, target, REPOS, "imglife (populating the no-op target)")
        imglife: list[Measure] = []
        summary = ""
        for run in range(1, runs + 1):
            measure, summary = tools.run_imglife(config, f"imglife-noop{run}.log")
            if not summary.startswith("0 copied") or not summary.endswith(" 0 failed"):
                raise SystemExit(f"the no-op re-sync was not one: {summary}")
            imglife.append(measure)
        skopeo: list[Measure] = []
        for run in range(1, runs + 1):
            tools.clear_skopeo_cache()
            skopeo.append(tools.run_skopeo(source, target, REPOS, f"skopeo-noop{run}.log"))
        verify(source, target, REPOS, "the no-op re-syncs")
    startup = [tools.imglife_version() for _ in range(runs)]
    return NoopRuns(imglife, skopeo, startup, summary)


@dataclass
class HugeRun:
    layer_bytes: int
    imglife: Measure
    skopeo: Measure
    summary: str


def bench_huge(source: Source, tools: Tools, mib: int) -> HugeRun:
    _, size = push_huge(source, mib)
    with start_registry("anon") as target:
        config = imglife_config(tools.workdir, source, target, (HUGE_REPO,))
        imglife, summary = tools.run_imglife(config, "imglife-huge.log")
        verify(source, target, (HUGE_REPO,), "imglife (big layer)")
    print(f"big layer: imglife {imglife.seconds:.2f} s, {imglife.rss_mb:.0f} MB", file=sys.stderr)
    with start_registry("anon") as target:
        tools.clear_skopeo_cache()
        skopeo = tools.run_skopeo(source, target, (HUGE_REPO,), "skopeo-huge.log")
        verify(source, target, (HUGE_REPO,), "skopeo (big layer)")
    print(f"big layer: skopeo {skopeo.seconds:.2f} s, {skopeo.rss_mb:.0f} MB", file=sys.stderr)
    return HugeRun(size, imglife, skopeo, summary)


# --- report ---------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def inside(measure: Measure) -> str:
    return f"{measure.inside:.2f}s" if measure.inside is not None else "?"


def print_report(
    source: Source, copies: list[CopyRun], noop: NoopRuns, huge: HugeRun | None, parallelism: str, load: float
) -> bool:
    size = sum(sum(source.blobs[repo].values()) for repo in REPOS)
    tags = sum(len(source.tags[repo]) for repo in REPOS)
    print(
        f"\nsync of {tags} tags ({size / 1e6:.0f} MB of blobs) into a fresh target registry, "
        f"imglife IMGLIFE_SYNC_PARALLELISM={parallelism}, 2 registries on loopback (/dev/shm), "
        f"{os.cpu_count()} CPUs, 1-minute load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} now"
    )
    print(f"{'run':>3} {'first':<8} {'imglife':>9} {'(sync)':>8} {'RSS':>7} {'skopeo':>9} {'RSS':>7} "
          f"{'ratio':>6}  imglife's summary")  # fmt: skip
    for r in copies:
        print(
            f"{r.run:>3} {r.first:<8} {r.imglife.seconds:>8.2f}s {inside(r.imglife):>8} "
            f"{r.imglife.rss_mb:>5.0f}MB {r.skopeo.seconds:>8.2f}s {r.skopeo.rss_mb:>5.0f}MB "
            f"{r.imglife.seconds / r.skopeo.seconds:>6.2f}  {r.summary}"
        )
    mine = median([r.imglife.seconds for r in copies])
    peer = median([r.skopeo.seconds for r in copies])
    ratio = mine / peer
    print(
        f"median: imglife {mine:.2f} s (peak RSS {max(r.imglife.rss_mb for r in copies):.0f} MB), "
        f"skopeo {peer:.2f} s (peak RSS {max(r.skopeo.rss_mb for r in copies):.0f} MB), "
        f"ratio {ratio:.2f}: goal (<= {GOAL_RATIO:g}) {'met' if ratio <= GOAL_RATIO else 'NOT met'}"
    )

    def runs(measures: Sequence[Measure]) -> str:
        return " / ".join(f"{m.seconds:.2f}" for m in measures)

    noop_median = median([m.seconds for m in noop.imglife])
    print(f"\nno-op re-sync onto the populated target ({noop.summary})")
    noop_met = "met" if noop_median < GOAL_NOOP_SECONDS else "NOT met"
    itself = " / ".join(map(inside, noop.imglife))
    print(f"  imglife sync       {runs(noop.imglife)} s (sync itself {itself}), "
          f"median {noop_median:.2f} s, peak RSS {max(m.rss_mb for m in noop.imglife):.0f} MB: "
          f"goal (< {GOAL_NOOP_SECONDS:g} s) {noop_met}")  # fmt: skip
    peer_noop = median([m.seconds for m in noop.skopeo])
    print(f"  skopeo sync --all  {runs(noop.skopeo)} s, median {peer_noop:.2f} s")
    print(f"  imglife --version  {runs(noop.startup)} s (interpreter start-up and imports)")
    ok = ratio <= GOAL_RATIO and noop_median < GOAL_NOOP_SECONDS
    if huge is not None:
        met = huge.imglife.rss_mb < GOAL_RSS_MB
        print(f"\none {huge.layer_bytes / 2**20:.0f} MiB layer into a fresh target ({huge.summary})")
        print(f"  imglife sync       {huge.imglife.seconds:.2f} s (sync itself {inside(huge.imglife)}), "
              f"peak RSS {huge.imglife.rss_mb:.0f} MB: goal (< {GOAL_RSS_MB:g} MB) "
              f"{'met' if met else 'NOT met'}")  # fmt: skip
        print(f"  skopeo sync --all  {huge.skopeo.seconds:.2f} s, peak RSS {huge.skopeo.rss_mb:.0f} MB")
        ok = ok and met
    print(
        "ratio = imglife time / skopeo time (below 1.0: imglife is faster); imglife's time includes "
        "interpreter start-up, (sync) is its own sync_finished duration; RSS = each process's own peak "
        "resident set (GNU time %M), MB = 10^6 bytes"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool; the median is reported")
    parser.add_argument("--skip-1g", action="store_true", help="skip the 1 GiB layer (memory goal)")
    parser.add_argument("--huge-mib", type=int, default=1024, help="size of the big layer of the memory part")
    parser.add_argument(
        "--parallelism", type=int, help="IMGLIFE_SYNC_PARALLELISM for imglife (default: imglife's, 4)"
    )
    args = parser.parse_args()
    if args.runs < 1 or args.huge_mib < 1:
        parser.error("--runs and --huge-mib must be at least 1")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp, start_registry("anon") as registry:
        tools = Tools(Path(tmp), args.parallelism)
        tools.imglife_version()  # warm-up: byte-compiles imglife if needed
        source = fill_source(registry)
        copies = bench_copies(source, tools, args.runs)
        noop = bench_noop(source, tools, args.runs)
        huge = None if args.skip_1g else bench_huge(source, tools, args.huge_mib)
        parallelism = str(args.parallelism) if args.parallelism else "4 (default)"
        ok = print_report(source, copies, noop, huge, parallelism, load)
    if not ok:
        print("some goals were not met (see above)", file=sys.stderr)


if __name__ == "__main__":
    main()
