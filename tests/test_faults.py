"""A hostile world (issue 8): imglife behind a fault-injecting proxy, against the real servers.

Between imglife and the real registry, SeaweedFS, the GitLab/Gitea fakes or a notification
receiver sits :class:`tests.helpers.proxy.FaultProxy`, answering 5xx bursts, 429 with
``Retry-After``, resets (before and after the upstream did the work), truncated bodies (with
and without a length that gives them away), slow-loris answers and silence. What is asserted is
what a user would notice, read back from the real server without the proxy:

1. ``sync``: every tag in the target has its manifests and blobs; a copied tag has the source's
   digest; a failed tag says why (never an "internal error"), and the next run completes.
2. ``register``: after a fault at any step of replacing a record, the store holds the old or the
   new record, readable; a successful registration is the new one.
3. the bot's reports: commit statuses are eventually posted, and a merge request keeps one comment.
4. timeouts: no call to a silent or slow-loris upstream outlives a bound derived from the
   client's own timeout and retry policy.

test_copy.py, test_sync.py and test_record_stores.py cover single faults of each component
(a reset mid-blob, a 429 storm on pushes, a 5xx at each step of a fake's replace); this file
covers the faults they do not, at the level a user sees.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import secrets
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import bot.http
import bot.records.s3
from bot.config import load_config
from bot.credentials import CredentialResolver, CredentialScope, PackageRegistryCredential, ScopedCredentials
from bot.errors import ImglifeError, RecordStoreError, RegistryUnavailable
from bot.events import Forge, Repo
from bot.forges.api import CommitState, CommitStatus, ForgeError, GitLabForge
from bot.oci.client import RegistryClient
from bot.oci.copy import ImageCopier
from bot.oci.reference import parse_reference
from bot.oci.sansio import MANIFEST_ACCEPT
from bot.records import BuildRecord, decode_record, record_key
from bot.records.gitea import GiteaRecordStore
from bot.records.gitlab import GitLabRecordStore
from bot.records.layout import RECORD_FILE, object_key, package_name, package_version
from bot.records.s3 import S3RecordStore
from bot.retry import RetryPolicy
from handlers.eol import EolNotice, NotifyTargets, post_notice
from handlers.register import RegisterRequest, register_build
from handlers.status import md_text
from handlers.sync import SyncSummary, TagStatus, sync_mirrors
from tests.fakes import MAINTAINER, REPORTER, FakeGitea, FakeGitLab, GitLabToken
from tests.helpers.bot import GITLAB_SECRET, MARKER, AppWorld, RunningBot, bot_config, fixture, run_bot, sha
from tests.helpers.images import OCI_INDEX, TestImage, TestIndex, build_image, random_layer, sha256_digest
from tests.helpers.lifecycle import ALPINE_LATEST, ALPINE_OLD_CORE
from tests.helpers.proxy import FaultProxy, fault_proxy_in_thread
from tests.helpers.registry import RunningRegistry
from tests.helpers.skopeo import push_image

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=2)
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
BASE = "registry.example.com/bases/alpine:3.21.3-core1.0.0"
INTERNAL = "internal error"


def nonce() -> str:
    return secrets.token_hex(4)


# ================================================================================================
# 1. sync under faults
# ================================================================================================


@dataclass(frozen=True)
class Source:
    """Read-only source images pushed once for the module: ``1.0`` an index, ``2.0`` an image."""

    registry: RunningRegistry
    repo: str
    index: TestIndex
    image: TestImage

    @property
    def tags(self) -> dict[str, str]:
        return {"1.0": self.index.digest, "2.0": self.image.digest}

    @property
    def index_layer(self) -> str:
        return self.index.image_for("linux/arm64").layers[0].digest

    @property
    def image_layer(self) -> str:
        return self.image.layers[0].digest


def index_of(*images: TestImage) -> TestIndex:
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [img.descriptor(with_platform=True) for img in images],
    }
    raw = json.dumps(doc, indent=2).encode()
    return TestIndex(manifest=raw, media_type=OCI_INDEX, digest=sha256_digest(raw), images=list(images))


@pytest.fixture(scope="module")
def source(anon_registry: RunningRegistry) -> Source:
    amd = build_image(platform="linux/amd64", layers=[random_layer(150_000)], nonce=nonce())
    arm = build_image(platform="linux/arm64", layers=[random_layer(150_000)], nonce=nonce())
    index = index_of(amd, arm)
    image = build_image(layers=[random_layer(200_000)], nonce=nonce())
    repo = f"faults/src-{nonce()}"
    push_image(anon_registry, f"{repo}:1.0", index)
    push_image(anon_registry, f"{repo}:2.0", image)
    return Source(anon_registry, repo, index, image)


def sync_config(tmp_path: Path, source_host: str, src: str, target_host: str, dst: str) -> Any:
    path = tmp_path / "imglife.yaml"
    path.write_text(
        "registry:\n  provider: local\n  path: records\n"
        f"  insecure_registries: ['{source_host}', '{target_host}']\n"
        + textwrap.dedent(
            f"""\
            sync:
              entries:
                - source: {source_host}/{src}
                  target: {target_host}/{dst}
                  tag_regex: '^\\d'
            """
        )
    )
    return load_config(path)


def registry_client(*hosts: str, retry: RetryPolicy = FAST_RETRY, **kwargs: Any) -> RegistryClient:
    scope = CredentialScope.for_command("sync")
    credentials = ScopedCredentials(CredentialResolver({"PATH": "/usr/bin:/bin"}), scope)
    return RegistryClient(credentials, scope=scope, insecure_hosts=frozenset(hosts), retry=retry, **kwargs)


async def run_sync(config: Any, *hosts: str) -> SyncSummary:
    async with registry_client(*hosts) as client:
        return await sync_mirrors(config, client=client, copier=ImageCopier(client), hub=None, environ={})


async def target_content(registry: RunningRegistry, repo: str) -> dict[str, str]:
    """Every tag of ``repo`` -> its digest, read from the registry itself (no proxy), after checking
    that each tag's manifest, every child manifest and every blob they name exist, byte-exact."""

    async def check(http: httpx.AsyncClient, raw: bytes, where: str) -> None:
        doc = json.loads(raw)
        if "manifests" in doc:
            for child in doc["manifests"]:
                got = await http.get(f"/v2/{repo}/manifests/{child['digest']}", headers=accept)
                assert got.status_code == 200, f"{where}: child {child['digest']} is missing"
                assert sha256_digest(got.content) == child["digest"], f"{where}: child {child['digest']}"
                await check(http, got.content, f"{where} > {child['digest'][:19]}")
            return
        for blob in [doc["config"], *doc.get("layers", [])]:
            head = await http.head(f"/v2/{repo}/blobs/{blob['digest']}")
            assert head.status_code == 200, f"{where} points at a missing blob {blob['digest']}"
            assert int(head.headers["content-length"]) == blob["size"], f"{where}: {blob['digest']}"

    accept = {"Accept": MANIFEST_ACCEPT}
    found: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=registry.url, timeout=30) as http:
        listing = await http.get(f"/v2/{repo}/tags/list")
        if listing.status_code == 404:
            return found
        for tag in listing.json().get("tags") or []:
            got = await http.get(f"/v2/{repo}/manifests/{tag}", headers=accept)
            assert got.status_code == 200, f"tag {tag} is listed but its manifest is missing"
            await check(http, got.content, f"{repo}:{tag}")
            found[tag] = sha256_digest(got.content)
    return found


def arm(proxy: FaultProxy, source: Source, fault: str) -> None:
    """Faults between imglife and the source (``src-*``) or the target (``dst-*``) registry."""
    image_layer, index_layer = source.image_layer, source.index_layer
    rules: dict[str, Callable[[], object]] = {
        # transient: the run must ride them out
        "src-5xx-burst": lambda: (
            proxy.burst("GET", "/blobs/", (502, 503, 504)),
            proxy.burst("GET", "/manifests/", (500, 503)),
        ),
        "src-429-retry-after": lambda: proxy.fail(
            "GET", "/blobs/", 429, times=2, headers={"Retry-After": "1"}
        ),
        "src-reset-mid-blob-once": lambda: proxy.reset("GET", f"/blobs/{index_layer}", mid_body=True),
        "src-truncated-blob-once-full": lambda: proxy.truncate("GET", f"/blobs/{index_layer}", length="full"),
        "src-truncated-blob-once-chunked": lambda: proxy.truncate(
            "GET", f"/blobs/{index_layer}", length="chunked"
        ),
        "src-truncated-blob-once-none": lambda: proxy.truncate("GET", f"/blobs/{index_layer}", length="none"),
        "src-truncated-blob-once-short": lambda: proxy.truncate(
            "GET", f"/blobs/{image_layer}", length="short"
        ),
        "src-truncated-manifest-once-none": lambda: proxy.truncate("GET", r"/manifests/2\.0$", length="none"),
        "src-truncated-child-manifest-once": lambda: proxy.truncate(
            "GET", f"/manifests/{source.index.images[1].digest}", length="short"
        ),
        "src-slow-loris-blob": lambda: proxy.slow(
            "GET", f"/blobs/{image_layer}", chunk=16_384, interval=0.02, times=None
        ),
        "src-slow-loris-manifest-headers": lambda: proxy.slow(
            "GET", "/manifests/", part="headers", chunk=24, interval=0.01, times=2
        ),
        "src-latency": lambda: proxy.delay("*", "/v2/", 0.05, times=None),
        "dst-5xx-burst": lambda: (
            proxy.burst("HEAD", "/blobs/", (503, 502)),
            proxy.burst("PUT", "/blobs/uploads/", (500, 503)),
            proxy.burst("PUT", "/manifests/", (502, 504)),
        ),
        "dst-reset-after-manifest-stored": lambda: proxy.reset("PUT", "/manifests/", mid_body=True, times=2),
        "dst-upload-cut-mid-body": lambda: proxy.cut_upload("PUT", "/blobs/uploads/", times=2),
        # lasting: the tag must fail cleanly, and no tag may point at missing content
        "src-reset-mid-blob-always": lambda: proxy.reset(
            "GET", f"/blobs/{image_layer}", mid_body=True, times=None
        ),
        "src-truncated-blob-always": lambda: proxy.truncate(
            "GET", f"/blobs/{image_layer}", length="none", times=None
        ),
        "dst-upload-cut-always": lambda: proxy.cut_upload("PUT", "/blobs/uploads/", times=None),
        "dst-manifest-5xx-always": lambda: proxy.fail("PUT", r"/manifests/1\.0$", 503, times=None),
    }
    rules[fault]()


LASTING = {
    "src-reset-mid-blob-always": {"2.0"},
    "src-truncated-blob-always": {"2.0"},
    "dst-upload-cut-always": {"1.0", "2.0"},
    "dst-manifest-5xx-always": {"1.0"},
}
TRANSIENT = [
    "src-5xx-burst",
    "src-429-retry-after",
    "src-reset-mid-blob-once",
    "src-truncated-blob-once-full",
    "src-truncated-blob-once-chunked",
    "src-truncated-blob-once-none",
    "src-truncated-blob-once-short",
    "src-truncated-manifest-once-none",
    "src-truncated-child-manifest-once",
    "src-slow-loris-blob",
    "src-slow-loris-manifest-headers",
    "src-latency",
    "dst-5xx-burst",
    "dst-reset-after-manifest-stored",
    "dst-upload-cut-mid-body",
]
# HTTP tells these truncations apart from a complete answer: a retry gets the whole body.
DETECTABLE = {"src-truncated-blob-once-full", "src-truncated-blob-once-chunked"}


@pytest.mark.parametrize("fault", [*TRANSIENT, *LASTING])
async def test_sync_under_faults_completes_or_fails_cleanly_and_never_tags_missing_content(
    source: Source, make_fault_proxy, repo_name, tmp_path, fault
):
    registry = source.registry
    dst = repo_name("dst")
    proxy = await make_fault_proxy(registry)
    on_source = fault.startswith("src-")
    source_host, target_host = (proxy.host, registry.host) if on_source else (registry.host, proxy.host)
    config = sync_config(tmp_path, source_host, source.repo, target_host, dst)
    arm(proxy, source, fault)

    summary = await run_sync(config, source_host, target_host)

    fired = [r for r in proxy.rules if r.hits]
    assert fired, f"the fault {fault} never fired: the test proves nothing"
    outcomes = {tag.source: tag for (entry,) in [summary.entries] for tag in entry.tags}
    assert set(outcomes) == set(source.tags)
    assert summary.entries[0].error is None
    content = await target_content(registry, dst)  # no tag on missing content, whatever happened
    for tag, outcome in outcomes.items():
        assert outcome.status in (TagStatus.COPIED, TagStatus.FAILED), (tag, outcome)
        if outcome.status is TagStatus.COPIED:
            assert content.get(tag) == source.tags[tag], f"{tag} was reported copied: {outcome}"
        else:
            assert tag not in content, f"{tag} failed but is in the target: {outcome.reason}"
            assert outcome.reason, f"{tag} failed without saying why"
            assert not outcome.reason.startswith(INTERNAL), f"{fault}: {tag}: {outcome.reason}"
            assert md_text(outcome.reason) in summary.markdown()  # what the bot's reply shows
    failed = {tag for tag, o in outcomes.items() if o.status is TagStatus.FAILED}
    if fault in LASTING:
        assert failed == LASTING[fault], {t: o.reason for t, o in outcomes.items()}
    elif fault in DETECTABLE or not fault.startswith("src-truncated"):
        assert failed == set(), {t: o.reason for t, o in outcomes.items()}  # retried to success
    assert summary.ok == (not failed)

    # Whatever a faulty run left behind, the next run (faults gone) completes the mirror.
    proxy.clear_rules()
    again = await run_sync(config, source_host, target_host)
    assert again.ok, again.markdown()
    assert await target_content(registry, dst) == source.tags


# ================================================================================================
# 2. register under record-store faults
# ================================================================================================

GITLAB_TOKEN = "glpat-faults-" + secrets.token_hex(6)
GITEA_TOKEN = "gitea-faults-" + secrets.token_hex(6)
STORE_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=2)


def build_record(image: str, revision: str) -> BuildRecord:
    return BuildRecord(
        image=image,
        base=BASE,
        revision=revision,
        project="team/app",
        platforms=("linux/amd64",),
        built_at=NOW,
        custom_fields={},
    )


def register_request(image: str, revision: str) -> RegisterRequest:
    return RegisterRequest(
        image=image, revision=revision, project="team/app", base=BASE, platforms=("linux/amd64",)
    )


# fault name -> how to arm it on (method, path) of one step
STORE_FAULTS: dict[str, Callable[[FaultProxy, str, str], object]] = {
    "5xx-burst": lambda p, m, path: p.burst(m, path, (502, 503)),
    "429-retry-after": lambda p, m, path: p.fail(m, path, 429, times=1, headers={"Retry-After": "1"}),
    "reset-always": lambda p, m, path: p.reset(m, path, times=None),
    "reset-after-upstream-did-it": lambda p, m, path: p.reset(m, path, mid_body=True, times=1),
    "reset-after-upstream-did-it-always": lambda p, m, path: p.reset(m, path, mid_body=True, times=None),
    "truncated-answer": lambda p, m, path: p.truncate(m, path, length="none", times=1),
    "upload-cut-always": lambda p, m, path: p.cut_upload(m, path, times=None),
}
GITLAB_STEPS = {
    "upload": ("PUT", r"/packages/generic/"),
    "list-files": ("GET", r"/package_files$"),
    "delete-old": ("DELETE", r"/package_files/\d+$"),
}
GITEA_STEPS = {
    "upload-staging": ("PUT", r"/build-record\.pending-"),
    "list-files": ("GET", r"/files$"),
    "delete-old": ("DELETE", r"/build-record\.json$"),
    "upload-record": ("PUT", r"/build-record\.json$"),
    "delete-staging": ("DELETE", r"/build-record\.pending-"),
}
S3_STEPS = {"read-previous": ("GET", r"/records/"), "upload": ("PUT", r"/records/")}


def fault_cases(
    steps: dict[str, tuple[str, str]], *, empty_answers: tuple[str, ...] = ("DELETE",)
) -> list[Any]:
    cases = []
    for step, (method, _) in steps.items():
        for fault in STORE_FAULTS:
            if fault == "upload-cut-always" and method != "PUT":
                continue  # nothing to cut
            if fault == "truncated-answer" and method in empty_answers:
                continue  # no body to cut
            if fault == "429-retry-after" and step != "upload":
                continue  # one client (bot.http) honours Retry-After for every step and store: once
            cases.append(pytest.param(step, fault, id=f"{step}-{fault}"))
    return cases


async def register_through_faults(
    store: Any, image: str, proxy: FaultProxy, method: str, path: str, fault: str
) -> tuple[str | None, bool]:
    """Register ``old`` cleanly, then ``new`` with the fault armed; (error, whether it fired)."""
    await register_build(register_request(image, "old"), store=store, images=None, now=NOW)
    STORE_FAULTS[fault](proxy, method, path)
    error: str | None = None
    try:
        await register_build(register_request(image, "new"), store=store, images=None, now=NOW)
    except ImglifeError as exc:  # anything else is an unexpected exception type: the test errors
        error = str(exc)
    fired = any(rule.hits for rule in proxy.rules)
    proxy.clear_rules()
    return error, fired


def assert_old_or_new(read_back: BuildRecord | None, error: str | None, fault: str) -> None:
    assert read_back is not None, f"{fault}: neither the old nor the new record can be read ({error})"
    assert read_back.revision in ("old", "new")
    if error is None:
        assert read_back.revision == "new", "register succeeded but the store serves the old record"


@pytest.fixture(scope="module")
def gitlab_fake() -> Iterator[FakeGitLab]:
    with FakeGitLab() as fake:
        fake.add_token(GITLAB_TOKEN, "imglife-bot")
        yield fake


@pytest.fixture(scope="module")
def gitea_fake() -> Iterator[FakeGitea]:
    with FakeGitea() as fake:
        fake.add_token(GITEA_TOKEN, "imglife-bot")
        yield fake


@pytest.mark.parametrize(("step", "fault"), fault_cases(GITLAB_STEPS))
async def test_gitlab_store_keeps_the_old_or_the_new_record_through_network_faults(
    gitlab_fake: FakeGitLab, make_fault_proxy, step, fault
):
    project = gitlab_fake.add_project(f"platform/records-{nonce()}", members={"imglife-bot": MAINTAINER})
    proxy = await make_fault_proxy(gitlab_fake.url)
    ref = parse_reference(f"registry.example.com/apps/faulty:{nonce()}")
    store = GitLabRecordStore(proxy.url, project.id, GITLAB_TOKEN, retry=STORE_RETRY)
    direct = GitLabRecordStore(gitlab_fake.url, project.id, GITLAB_TOKEN, retry=STORE_RETRY)
    try:
        error, fired = await register_through_faults(store, str(ref), proxy, *GITLAB_STEPS[step], fault)
        assert fired, f"the fault {fault} at {step} never fired"
        served = gitlab_fake.file_content(project.id, package_name(ref), package_version(ref), RECORD_FILE)
        assert served is not None, f"GitLab serves no {RECORD_FILE} after {fault} at {step} ({error})"
        assert_old_or_new(decode_record(served, where="gitlab"), error, fault)
        assert_old_or_new(await direct.get(ref), error, fault)
        await store.put(build_record(str(ref), "newest"))  # the next write recovers
        assert (await direct.get(ref)).revision == "newest"
    finally:
        await store.aclose()
        await direct.aclose()


@pytest.mark.parametrize(("step", "fault"), fault_cases(GITEA_STEPS, empty_answers=("DELETE", "PUT")))
async def test_gitea_store_keeps_the_old_or_the_new_record_through_network_faults(
    gitea_fake: FakeGitea, make_fault_proxy, step, fault
):
    owner = f"org{nonce()}"
    gitea_fake.add_org(owner, members={"imglife-bot": "write"})
    proxy = await make_fault_proxy(gitea_fake.url)
    ref = parse_reference(f"registry.example.com/apps/faulty:{nonce()}")
    store = GiteaRecordStore(proxy.url, owner, GITEA_TOKEN, retry=STORE_RETRY)
    direct = GiteaRecordStore(gitea_fake.url, owner, GITEA_TOKEN, retry=STORE_RETRY)
    try:
        error, fired = await register_through_faults(store, str(ref), proxy, *GITEA_STEPS[step], fault)
        assert fired, f"the fault {fault} at {step} never fired"
        assert_old_or_new(await direct.get(ref), error, fault)
        await store.put(build_record(str(ref), "newest"))
        assert (await direct.get(ref)).revision == "newest"
    finally:
        await store.aclose()
        await direct.aclose()


def s3_store(server: Any, bucket: str, endpoint: str, retry: RetryPolicy = STORE_RETRY) -> S3RecordStore:
    credential = PackageRegistryCredential(
        provider="s3",
        source="AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
    )
    return S3RecordStore(bucket, credential, endpoint=endpoint, prefix="builds", retry=retry)


S3_FAULTS = {
    # (a 503 on every PUT is test_record_stores.py's; botocore's backoff makes lasting faults slow)
    "upload": ["5xx-burst", "reset-after-upstream-did-it", "upload-cut-always"],
    "read-previous": ["5xx-burst", "truncated-answer", "reset-always"],
}


@pytest.mark.parametrize(
    ("step", "fault"),
    [
        pytest.param(step, fault, id=f"{step}-{fault}")
        for step, faults in S3_FAULTS.items()
        for fault in faults
    ],
)
async def test_s3_store_keeps_the_old_or_the_new_record_through_network_faults(
    s3_server, s3_bucket, make_fault_proxy, step, fault
):
    proxy = await make_fault_proxy(s3_server.endpoint, preserve_host=True)  # SigV4 signs the Host
    ref = parse_reference(f"registry.example.com/apps/faulty:{nonce()}")
    store = s3_store(s3_server, s3_bucket, proxy.url)
    try:
        error, fired = await register_through_faults(store, str(ref), proxy, *S3_STEPS[step], fault)
    finally:
        await store.aclose()
    assert fired, f"the fault {fault} at {step} never fired"
    key = object_key("builds", record_key(ref))
    listed = s3_server.sync_client.list_objects_v2(Bucket=s3_bucket, Prefix=key)
    assert [item["Key"] for item in listed.get("Contents") or []] == [key]
    data = s3_server.sync_client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()
    assert_old_or_new(decode_record(data, where="s3"), error, fault)
    if fault in ("5xx-burst", "reset-after-upstream-did-it") and step == "upload":
        assert error is None, error  # transient: ridden out by the retries


# ================================================================================================
# 3. the bot's statuses and comments through a faulty GitLab API
# ================================================================================================

BOT_TOKEN = "glpat-imglife-faults"
PROJECT = "team/faulty"


@dataclass
class BotWorld(AppWorld):
    fake: FakeGitLab
    proxy: FaultProxy
    bot: RunningBot
    project_id: int
    bot_user_id: int

    def statuses(self, commit: str, name: str) -> list[Any]:
        return [s for s in self.fake.statuses(self.project_id, commit) if s.name == name and not s.retried]

    def bot_notes(self, iid: int) -> list[Any]:
        notes = self.fake.notes(self.project_id, "merge_requests", iid)
        return [n for n in notes if n.author.id == self.bot_user_id]

    def project_payload(self) -> dict[str, Any]:
        return {
            "id": self.project_id,
            "name": "faulty",
            "path_with_namespace": PROJECT,
            "default_branch": "main",
            "web_url": f"{self.fake.url}/{PROJECT}",
        }

    def finished(self, handler: str) -> int:
        """Jobs of ``handler`` done for good (a run that will be retried does not count)."""
        return sum(n for (h, o), n in self.bot.jobs().items() if h == handler and o != "retrying")

    def outcomes(self, handler: str) -> dict[str, int]:
        return {o: n for (h, o), n in self.bot.jobs().items() if h == handler}

    def tag_push(self, tag: str, commit: str) -> dict[str, Any]:
        payload = fixture("gitlab", "tag_push__create")
        payload.update(ref=f"refs/tags/{tag}", after=commit, checkout_sha=commit, project_id=self.project_id)
        payload["project"] = self.project_payload()
        return payload

    def merge_request(self, name: str, iid: int, head: str, *, oldrev: str | None = None) -> dict[str, Any]:
        payload = fixture("gitlab", name)
        payload["project"] = self.project_payload()
        attrs = payload["object_attributes"]
        attrs.update(
            iid=iid, source_branch="feature", target_branch="main", target_project_id=self.project_id
        )
        attrs["last_commit"]["id"] = head
        if oldrev is not None:
            attrs["oldrev"] = oldrev
        return payload

    def dockerfile(self, ref: str, base: str) -> None:
        self.fake.add_file(PROJECT, ref, "Dockerfile", f"FROM {base}\n")


@pytest.fixture(scope="module")
def bot_world(tmp_path_factory: pytest.TempPathFactory, anon_registry: RunningRegistry) -> Iterator[BotWorld]:
    """One ``imglife serve`` for the section, its GitLab API behind a proxy (own thread and loop)."""
    tmp_path = tmp_path_factory.mktemp("bot-faults")
    fake = FakeGitLab(tokens={BOT_TOKEN: GitLabToken("imglife-bot")})
    with fake, fault_proxy_in_thread(fake.url) as proxy:
        project = fake.add_project(PROJECT, members={"imglife-bot": 30, "rita": REPORTER})
        bot_user = fake.add_user("imglife-bot", bot=True)
        names = AppWorld.names(anon_registry)
        fake.add_file(PROJECT, "main", ".imglife.yml", f"images:\n  - {names['image_repo']}\n")
        config = bot_config(
            tmp_path,
            anon_registry,
            names,
            f"  gitlab: {{url: '{proxy.url}'}}\n  register_wait: 20s\n  workers: 4\n"
            "  job_attempts: 5\n  retry_delay: 200ms\n",
        )
        environ = {"IMGLIFE_GITLAB_WEBHOOK_SECRET": GITLAB_SECRET, "GITLAB_TOKEN": BOT_TOKEN}
        with run_bot(config, environ, log_dir=tmp_path) as running:
            yield BotWorld(
                registry=anon_registry,
                records=tmp_path / "records",
                image_repo=names["image_repo"],
                upstream=names["upstream"],
                mirrors=names["mirrors"],
                fake=fake,
                proxy=proxy,
                bot=running,
                project_id=project.id,
                bot_user_id=bot_user.id,
            )


@pytest.fixture
def world(bot_world: BotWorld) -> Iterator[BotWorld]:
    bot_world.proxy.clear_rules()
    yield bot_world
    bot_world.proxy.clear_rules()


def test_the_register_status_is_posted_through_5xx_429_resets_and_a_failed_job(world: BotWorld) -> None:
    proxy = world.proxy
    settings = r"/repository/files/\.imglife\.yml/raw"
    proxy.reset("GET", settings, times=1)  # the connection drops before GitLab sees the request
    proxy.burst("GET", settings, (502, 503))
    proxy.fail("GET", r"/repository/tags/", 429, times=1, headers={"Retry-After": "1"})
    # More 503s than the client retries: the first run of the job fails, the job is run again.
    proxy.fail("POST", r"/statuses/", 503, times=5)
    world.push_app_image("v1.0.0")
    world.fake.add_tag(PROJECT, "v1.0.0", sha(100))
    before = world.finished("register")
    assert world.bot.deliver_gitlab(world.tag_push("v1.0.0", sha(100))).status_code == 202
    world.bot.wait_for(
        lambda: [s.status for s in world.statuses(sha(100), "imglife/register")] == ["success"],
        "imglife/register success through the faults",
        timeout=40,
    )
    world.bot.wait_for(lambda: world.finished("register") > before, "the retried job to finish")
    assert [rule.hits for rule in proxy.rules] == [1, 1, 1, 1, 5], "every fault fired"
    assert world.outcomes("register").get("retrying", 0) >= 1
    assert world.outcomes("register").get("registered", 0) >= 1
    records = [r for r in world.stored_records() if r["image"] == f"{world.image_repo}:v1.0.0"]
    assert [r["revision"] for r in records] == [sha(100)]


def test_a_comment_posted_when_the_connection_broke_is_not_posted_twice(world: BotWorld) -> None:
    world.fake.add_merge_request(PROJECT, 21, "feature", sha(21))
    world.dockerfile(sha(21), ALPINE_OLD_CORE)
    proxy = world.proxy
    proxy.burst("GET", r"/merge_requests/21/notes$", (502, 503))
    proxy.fail("POST", r"/statuses/", 429, times=1, headers={"Retry-After": "1"})
    proxy.reset("POST", r"/statuses/", mid_body=True, times=1)  # GitLab stored it, the bot never heard
    created = proxy.reset("POST", r"/merge_requests/21/notes$", mid_body=True, times=1)  # likewise
    before = world.finished("check")
    world.bot.deliver_gitlab(world.merge_request("merge_request__open", 21, sha(21)))
    world.bot.wait_for(
        lambda: world.finished("check") > before, "the check job (retries included)", timeout=40
    )
    assert [rule.hits for rule in proxy.rules] == [1, 1, 1, 1, 1], "every fault fired"
    assert created.hits == 1
    (status,) = world.statuses(sha(21), "imglife/check")
    assert status.status == "success"
    bodies = [n.body for n in world.bot_notes(21)]
    assert len(bodies) == 1, f"the merge request got {len(bodies)} check comments instead of one"
    assert bodies[0].startswith(MARKER)


def test_a_garbled_comment_listing_does_not_make_a_second_comment(world: BotWorld) -> None:
    world.fake.add_merge_request(PROJECT, 22, "feature", sha(22))
    world.dockerfile(sha(22), ALPINE_OLD_CORE)
    before = world.finished("check")
    world.bot.deliver_gitlab(world.merge_request("merge_request__open", 22, sha(22)))
    world.bot.wait_for(lambda: world.finished("check") > before, "the first check")
    (first,) = world.bot_notes(22)

    # The listing arrives cut short, without a length that would give it away: not JSON.
    cut = world.proxy.truncate("GET", r"/merge_requests/22/notes$", length="none", times=1)
    world.dockerfile(sha(23), ALPINE_LATEST)
    world.bot.deliver_gitlab(world.merge_request("merge_request__update_oldrev", 22, sha(23), oldrev=sha(22)))
    world.bot.wait_for(lambda: world.finished("check") > before + 1, "the second check", timeout=40)
    assert cut.hits == 1
    notes = world.bot_notes(22)
    assert [n.id for n in notes] == [first.id], f"{len(notes)} check comments on the merge request"
    assert "✅ yes" in notes[0].body  # the one comment was edited with the new result


# ================================================================================================
# 4. bounded timeouts: silent and slow-loris upstreams
# ================================================================================================

# Every timeout a client has (connect, read, write), lowered from its default (10 s / 60 s) for the
# test. They are all per socket operation today; the bound below reads each as a budget for a whole
# attempt: connect, then send, then read the answer. A slow-loris byte comes well inside one read.
TIMEOUT = 0.15
TRICKLE = 0.05
QUICK = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.01, max_retry_after=1)
REST_ATTEMPT = 2 * TIMEOUT  # aiohttp (bot.http) and botocore: connect + read
REGISTRY_ATTEMPT = 3 * TIMEOUT  # httpx (bot.oci.client): connect + write + read
BACKOFF = QUICK.max_delay * (QUICK.attempts - 1)
BOTOCORE_BACKOFF = 1.0  # botocore's standard mode waits up to 2**0 s before its second attempt
SILENT_UPSTREAM = "http://127.0.0.1:9"  # stall and endless slow-loris never ask the upstream


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """What each client reads its timeout from: bot.http's constants (REST, S3 reads, notify),
    the botocore Config of the S3 store (writes), and the notifier's default retry policy."""
    monkeypatch.setattr(bot.http, "READ_TIMEOUT", TIMEOUT)
    monkeypatch.setattr(bot.http, "CONNECT_TIMEOUT", TIMEOUT)
    monkeypatch.setattr(bot.http, "RetryPolicy", lambda: QUICK)
    real_config = bot.records.s3.BotocoreConfig

    def config(**options: Any) -> Any:
        return real_config(**{**options, "connect_timeout": TIMEOUT, "read_timeout": TIMEOUT})

    monkeypatch.setattr(bot.records.s3, "BotocoreConfig", config)


async def call_registry(proxy: FaultProxy, _s3: Any) -> object:
    async with registry_client(proxy.host, retry=QUICK, timeout=httpx.Timeout(TIMEOUT)) as client:
        return await client.get_manifest(parse_reference(f"{proxy.host}/faults/any:1"))


async def call_forge(proxy: FaultProxy, _s3: Any) -> object:
    forge = GitLabForge(proxy.url, "glpat-x", retry=QUICK)
    try:
        status = CommitStatus("imglife/check", CommitState.SUCCESS, "ok")
        return await forge.set_status(Repo(Forge.GITLAB, id="1", path="team/app"), sha(1), status, ref="main")
    finally:
        await forge.aclose()


async def call_s3_write(proxy: FaultProxy, s3: tuple[Any, str]) -> object:
    store = s3_store(*s3, proxy.url, retry=QUICK)
    try:
        return await store.put(build_record("registry.example.com/apps/slow:1", "r"))
    finally:
        await store.aclose()


async def call_s3_read(proxy: FaultProxy, s3: tuple[Any, str]) -> object:
    store = s3_store(*s3, proxy.url, retry=QUICK)
    try:
        return await store.get(parse_reference("registry.example.com/apps/slow:1"))
    finally:
        await store.aclose()


async def call_notify(proxy: FaultProxy, _s3: Any) -> object:
    notice = EolNotice(alerts=[], slack={"text": "eol"}, payload={"event": "eol"})
    failures = await post_notice(
        notice, NotifyTargets(slack_urls=[f"{proxy.url}/services/T/B/x"], hook_urls=[])
    )
    if failures:
        raise ImglifeError("; ".join(failures))  # post_notice reports, it does not raise
    return failures


# client -> (call, the documented error, worst case: every attempt used up, plus every backoff)
CLIENTS: dict[str, tuple[Callable[..., Any], type[Exception], str, float]] = {
    "registry": (
        call_registry,
        RegistryUnavailable,
        "timed out",
        QUICK.attempts * REGISTRY_ATTEMPT + BACKOFF,
    ),
    "forge": (call_forge, ForgeError, "cannot reach GitLab", QUICK.attempts * REST_ATTEMPT + BACKOFF),
    "s3-write": (
        call_s3_write,
        RecordStoreError,
        "cannot write",
        QUICK.attempts * REST_ATTEMPT + BOTOCORE_BACKOFF,
    ),
    "s3-read": (call_s3_read, RecordStoreError, "cannot reach", QUICK.attempts * REST_ATTEMPT + BACKOFF),
    "notify": (call_notify, ImglifeError, "cannot reach", QUICK.attempts * REST_ATTEMPT + BACKOFF),
}


@pytest.mark.usefixtures("short_timeouts")
@pytest.mark.parametrize("upstream", ["silent", "slow-loris"])
@pytest.mark.parametrize("client", list(CLIENTS))
async def test_no_call_outlives_its_timeout_against_a_silent_or_slow_loris_upstream(
    s3_server, s3_bucket, make_fault_proxy, client, upstream
):
    call, error_type, fragment, worst_case = CLIENTS[client]
    bound = 3 * worst_case
    proxy = await make_fault_proxy(SILENT_UPSTREAM)
    if upstream == "silent":
        proxy.stall("*", ".*", times=None)
    else:  # a status line, then one header line that grows by a byte every TRICKLE seconds
        proxy.slow("*", ".*", endless=True, chunk=1, interval=TRICKLE, times=None)
    started = time.monotonic()
    try:
        async with asyncio.timeout(bound):
            with pytest.raises(error_type) as info:
                await call(proxy, (s3_server, s3_bucket))
    except TimeoutError:
        pytest.fail(
            f"{client}: a call to a {upstream} upstream was still running after {bound:.1f} s "
            f"({TIMEOUT} s timeouts, {QUICK.attempts} attempts): it can hang a worker forever"
        )
    elapsed = time.monotonic() - started
    assert fragment in str(info.value), str(info.value)
    assert elapsed < bound
    assert proxy.requests, "the call never reached the proxy"
