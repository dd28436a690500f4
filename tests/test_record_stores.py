"""Every record store against a real server or a documented fake: replace, concurrency, pagination, faults.

Backends: a local directory, SeaweedFS (real S3, credentials enforced), and the in-repo GitLab
and Gitea fakes (tests/fakes/, kept honest by the official clients in their own tests).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gitlab
import httpx
import pytest
import structlog
import structlog.testing

from bot.cli import main
from bot.credentials import PackageRegistryCredential
from bot.errors import RecordStoreError
from bot.oci.reference import ImageReference, parse_reference
from bot.records import BuildRecord, RecordStore
from bot.records.gitea import GiteaRecordStore
from bot.records.gitlab import GitLabRecordStore
from bot.records.layout import RECORD_FILE, is_staging_file, object_key, package_name, package_version
from bot.records.local import LocalRecordStore
from bot.records.s3 import S3RecordStore
from bot.retry import RetryPolicy
from tests.fakes.gitea import FakeGitea
from tests.fakes.gitlab import FakeGitLab
from tests.helpers.proxy import FaultProxy
from tests.helpers.s3 import RunningS3

FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
GITLAB_TOKEN = "glpat-stores-" + secrets.token_hex(6)
GITEA_TOKEN = "gitea-stores-" + secrets.token_hex(6)
BASE = "registry.example.com/bases/alpine:3.21.3-core1.0.0"
NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def record(image: str, revision: str = "r1", *, built_at: dt.datetime = NOW) -> BuildRecord:
    return BuildRecord(
        image=image,
        base=BASE,
        revision=revision,
        project="team/app",
        platforms=("linux/amd64",),
        built_at=built_at,
        custom_fields={"pipeline": revision},
    )


@dataclass
class Backend:
    """One store kind, plus what a test needs to look behind it."""

    kind: str
    make: Callable[..., RecordStore]
    record_files: Callable[[ImageReference], list[str]]  # the files/objects holding one record
    write_raw: Callable[[ImageReference, bytes], None]  # put bytes where the record would be


@pytest.fixture(scope="module")
def fake_gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as fake:
        fake.add_token(GITLAB_TOKEN, "imglife-bot")
        yield fake


@pytest.fixture(scope="module")
def fake_gitea() -> Iterator[FakeGitea]:
    with FakeGitea() as fake:
        fake.add_token(GITEA_TOKEN, "imglife-bot")
        yield fake


def local_backend(tmp_path: Path) -> Backend:
    def files(ref: ImageReference) -> list[str]:
        path = tmp_path / "records" / ref.registry / ref.repository / f"{ref.tag}.json"
        return [str(path)] if path.exists() else []

    def write_raw(ref: ImageReference, data: bytes) -> None:
        path = tmp_path / "records" / ref.registry / ref.repository / f"{ref.tag}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return Backend("local", lambda **kw: LocalRecordStore(tmp_path, **kw), files, write_raw)


def s3_credential(server: RunningS3, secret: str | None = None) -> PackageRegistryCredential:
    return PackageRegistryCredential(
        provider="s3",
        source="AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        access_key_id=server.access_key,
        secret_access_key=secret or server.secret_key,
    )


def s3_backend(server: RunningS3, bucket: str) -> Backend:
    prefix = "builds"

    def make(endpoint: str | None = None, secret: str | None = None, **kw: Any) -> RecordStore:
        kw.setdefault("retry", RetryPolicy(attempts=1))
        return S3RecordStore(
            bucket, s3_credential(server, secret), endpoint=endpoint or server.endpoint, prefix=prefix, **kw
        )

    def files(ref: ImageReference) -> list[str]:
        key = object_key(prefix, ref)
        listed = server.sync_client.list_objects_v2(Bucket=bucket, Prefix=key)
        return [item["Key"] for item in listed.get("Contents") or []]

    def write_raw(ref: ImageReference, data: bytes) -> None:
        server.sync_client.put_object(Bucket=bucket, Key=object_key(prefix, ref), Body=data)

    return Backend("s3", make, files, write_raw)


def gitlab_backend(fake: FakeGitLab) -> Backend:
    project = fake.add_project(f"platform/records-{secrets.token_hex(4)}", members={"imglife-bot": 40})

    def make(url: str | None = None, token: str | None = GITLAB_TOKEN, **kw: Any) -> RecordStore:
        kw.setdefault("retry", FAST_RETRY)
        return GitLabRecordStore(url or fake.url, project.id, token, **kw)

    def files(ref: ImageReference) -> list[str]:
        return [
            f.file_name
            for p in fake.packages(project.id)
            if p.name == package_name(ref) and p.version == package_version(ref)
            for f in p.files
        ]

    def write_raw(ref: ImageReference, data: bytes) -> None:
        path = f"{package_name(ref)}/{package_version(ref)}/{RECORD_FILE}"
        url = f"{fake.url}/api/v4/projects/{project.id}/packages/generic/{path}"
        httpx.put(url, content=data, headers={"PRIVATE-TOKEN": GITLAB_TOKEN}).raise_for_status()

    backend = Backend("gitlab", make, files, write_raw)
    backend.project = project  # type: ignore[attr-defined]
    return backend


def gitea_backend(fake: FakeGitea) -> Backend:
    owner = f"org{secrets.token_hex(4)}"
    fake.add_org(owner, members={"imglife-bot": "write"})

    def make(url: str | None = None, token: str | None = GITEA_TOKEN, **kw: Any) -> RecordStore:
        kw.setdefault("retry", FAST_RETRY)
        return GiteaRecordStore(url or fake.url, owner, token, **kw)

    def files(ref: ImageReference) -> list[str]:
        return [
            f.name
            for p in fake.packages(owner)
            if p.name == package_name(ref) and p.version == package_version(ref)
            for f in p.files
        ]

    def write_raw(ref: ImageReference, data: bytes) -> None:
        path = f"{package_name(ref)}/{package_version(ref)}/{RECORD_FILE}"
        url = f"{fake.url}/api/packages/{owner}/generic/{path}"
        httpx.put(url, content=data, headers={"Authorization": f"token {GITEA_TOKEN}"}).raise_for_status()

    return Backend("gitea", make, files, write_raw)


@pytest.fixture(params=["local", "s3", "gitlab", "gitea"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return local_backend(tmp_path)
    if request.param == "s3":
        return s3_backend(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"))
    if request.param == "gitlab":
        return gitlab_backend(request.getfixturevalue("fake_gitlab"))
    return gitea_backend(request.getfixturevalue("fake_gitea"))


async def test_put_get_and_replace_keep_exactly_one_record(backend: Backend):
    ref = parse_reference("registry.example.com/apps/myservice:1.2.0")
    store = backend.make()
    try:
        assert await store.get(ref) is None
        await store.put(record(str(ref), "first"))
        await store.put(record(str(ref), "second"))
        got = await store.get(ref)
        assert got is not None
        assert got.revision == "second"
        assert got == record(str(ref), "second")
        assert len(backend.record_files(ref)) == 1
        assert await store.delete(ref) is True
        assert await store.get(ref) is None
        assert await store.delete(ref) is False
    finally:
        await store.aclose()


async def test_tags_differing_only_in_case_are_two_records(backend: Backend):
    store = backend.make()
    try:
        await store.put(record("r.io/app:v1", "lower"))
        await store.put(record("r.io/app:V1", "upper"))
        assert (await store.get(parse_reference("r.io/app:v1"))).revision == "lower"
        assert (await store.get(parse_reference("r.io/app:V1"))).revision == "upper"
        assert len((await store.scan()).records) == 2
    finally:
        await store.aclose()


async def test_ten_concurrent_registrations_end_with_one_record_and_no_error(backend: Backend):
    ref = parse_reference("registry.example.com/apps/busy:2.0.0")
    store = backend.make()
    try:
        await asyncio.gather(*(store.put(record(str(ref), f"r{i}")) for i in range(10)))
        scan = await store.scan()
    finally:
        await store.aclose()
    assert [r.image for r in scan.records] == [str(ref)]
    assert scan.records[0].revision in {f"r{i}" for i in range(10)}
    assert scan.problems == []
    assert len(backend.record_files(ref)) == 1


async def test_scan_follows_pagination_to_the_end(backend: Backend):
    images = [f"registry.example.com/apps/svc{i % 5}:1.{i}.0" for i in range(23)]
    store = backend.make(page_size=7) if backend.kind != "local" else backend.make()
    try:
        await asyncio.gather(*(store.put(record(image)) for image in images))
        scan = await store.scan()
    finally:
        await store.aclose()
    assert sorted(r.image for r in scan.records) == sorted(images)
    assert scan.problems == []


async def test_scan_reports_unreadable_records_and_reads_the_rest(backend: Backend):
    store = backend.make()
    good, bad, wrong = (parse_reference(f"r.io/app:{t}") for t in ("good", "bad", "wrong"))
    try:
        await store.put(record(str(good)))
        await asyncio.to_thread(backend.write_raw, bad, b"{truncated")
        await asyncio.to_thread(backend.write_raw, wrong, record("r.io/other:1").encode())
        scan = await store.scan()
    finally:
        await store.aclose()
    assert [r.image for r in scan.records] == [str(good)]
    assert len(scan.problems) == 2
    assert any("not JSON" in p for p in scan.problems)
    assert any("r.io/other:1" in p for p in scan.problems)


# -- faults in the middle of a replace: the old or the new record stays readable ------------------

GITLAB_STEPS = {
    "upload": ("PUT", r"/packages/generic/"),
    "list-files": ("GET", r"/package_files"),
    "delete-old": ("DELETE", r"/package_files/"),
}
GITEA_STEPS = {
    "upload-staging": ("PUT", r"build-record\.pending-"),
    "delete-old": ("DELETE", r"/build-record\.json$"),
    "upload-record": ("PUT", r"/build-record\.json$"),
    "delete-staging": ("DELETE", r"build-record\.pending-"),
}


async def assert_replace_survives(backend: Backend, fake, method: str, path: str, **make_kw: Any) -> None:
    ref = parse_reference(f"registry.example.com/apps/fault:{secrets.token_hex(3)}")
    store = backend.make(**make_kw)
    try:
        await store.put(record(str(ref), "old"))
        fake.fail_next(method, path, 503, times=None)
        error: str | None = None
        try:
            await store.put(record(str(ref), "new"))
        except RecordStoreError as exc:
            error = str(exc)
        finally:
            fake.clear_faults()
        assert error is None or "503" in error
        survivor = await store.get(ref)
        assert survivor is not None, "neither the old nor the new record can be read"
        assert survivor.revision in ("old", "new")
        await store.put(record(str(ref), "newest"))  # and the store recovers on the next write
        assert (await store.get(ref)).revision == "newest"
    finally:
        await store.aclose()


@pytest.mark.parametrize("step", list(GITLAB_STEPS))
async def test_gitlab_replace_never_loses_the_record(fake_gitlab, step):
    await assert_replace_survives(gitlab_backend(fake_gitlab), fake_gitlab, *GITLAB_STEPS[step])


@pytest.mark.parametrize("step", list(GITEA_STEPS))
async def test_gitea_replace_never_loses_the_record(fake_gitea, step):
    await assert_replace_survives(gitea_backend(fake_gitea), fake_gitea, *GITEA_STEPS[step])


async def test_gitea_reader_finds_the_staged_record_between_delete_and_upload(fake_gitea):
    backend = gitea_backend(fake_gitea)
    ref = parse_reference("registry.example.com/apps/window:1")
    store = backend.make()
    try:
        await store.put(record(str(ref), "old"))
        fake_gitea.fail_next("PUT", GITEA_STEPS["upload-record"][1], 503, times=None)
        with pytest.raises(RecordStoreError):
            await store.put(record(str(ref), "new"))
        fake_gitea.clear_faults()
        assert [f for f in backend.record_files(ref) if f == RECORD_FILE] == []
        assert any(is_staging_file(f, RECORD_FILE) for f in backend.record_files(ref))
        assert (await store.get(ref)).revision == "new"
        assert [r.revision for r in (await store.scan()).records if r.image == str(ref)] == ["new"]
    finally:
        await store.aclose()


async def test_gitlab_developer_token_writes_records_and_leaves_old_copies(fake_gitlab):
    # Deleting package files needs Maintainer: a Developer's token still replaces the record
    # (GitLab serves the newest copy) and only the clean-up is skipped, with a warning.
    backend = gitlab_backend(fake_gitlab)
    fake_gitlab.set_member(backend.project.id, "imglife-bot", 30)  # type: ignore[attr-defined]
    ref = parse_reference("registry.example.com/apps/developer:1")
    store = backend.make()
    try:
        with structlog.testing.capture_logs() as logs:
            await store.put(record(str(ref), "old"))
            await store.put(record(str(ref), "new"))
            await store.put(record(str(ref), "newest"))
        assert (await store.get(ref)).revision == "newest"
    finally:
        await store.aclose()
    assert backend.record_files(ref) == [RECORD_FILE] * 3
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["record_prune_forbidden"]


async def test_gitlab_group_that_refuses_duplicates_is_handled_by_staging(fake_gitlab):
    backend = gitlab_backend(fake_gitlab)
    fake_gitlab.configure_project(backend.project.id, allow_duplicates=False)  # type: ignore[attr-defined]
    ref = parse_reference("registry.example.com/apps/nodup:1")
    store = backend.make()
    try:
        await store.put(record(str(ref), "old"))
        await store.put(record(str(ref), "new"))
        assert (await store.get(ref)).revision == "new"
        assert backend.record_files(ref) == [RECORD_FILE]
    finally:
        await store.aclose()


async def test_s3_failed_write_keeps_the_old_record(s3_server, s3_bucket):
    backend = s3_backend(s3_server, s3_bucket)
    ref = parse_reference("registry.example.com/apps/s3fault:1")
    async with FaultProxy(s3_server.endpoint, preserve_host=True) as proxy:
        store = backend.make(endpoint=proxy.url)
        try:
            await store.put(record(str(ref), "old"))
            proxy.fail("PUT", r"/records/", 503, times=None)
            with pytest.raises(RecordStoreError):
                await store.put(record(str(ref), "new"))
            proxy.clear_rules()
            assert (await store.get(ref)).revision == "old"
        finally:
            await store.aclose()


# -- refused credentials and unreachable stores: one clear message naming the variable ------------


async def test_refused_credentials_name_the_variable(fake_gitlab, fake_gitea, s3_server, s3_bucket):
    wrong = "wrong-" + secrets.token_hex(8)
    cases = [
        (gitlab_backend(fake_gitlab).make(token=wrong), "refused GITLAB_TOKEN"),
        (gitlab_backend(fake_gitlab).make(token=None), "set GITLAB_TOKEN"),
        (gitea_backend(fake_gitea).make(token=wrong), "refused GITEA_TOKEN"),
        (
            s3_backend(s3_server, s3_bucket).make(secret=wrong),
            "refused AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        ),
    ]
    for store, fragment in cases:
        try:
            with pytest.raises(RecordStoreError) as info:
                await store.put(record("r.io/app:1"))
        finally:
            await store.aclose()
        assert fragment in str(info.value)
        assert wrong not in str(info.value)


async def test_read_only_gitlab_token_gets_a_403_that_says_what_it_needs(fake_gitlab):
    backend = gitlab_backend(fake_gitlab)
    fake_gitlab.add_token("glpat-readonly-1234", "reader", scopes=("read_api",))
    fake_gitlab.set_member(backend.project.id, "reader", 20)  # type: ignore[attr-defined]
    store = backend.make(token="glpat-readonly-1234")
    try:
        with pytest.raises(RecordStoreError, match=r"GITLAB_TOKEN may not upload .* \(HTTP 403"):
            await store.put(record("r.io/app:1"))
    finally:
        await store.aclose()


async def test_unreachable_stores_are_reported(tmp_path, s3_server, fake_gitlab):
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    stores = [
        gitlab_backend(fake_gitlab).make(url=closed),
        gitea_backend_on(closed),
        s3_backend(s3_server, "any-bucket").make(endpoint=closed),
    ]
    for store in stores:
        try:
            with pytest.raises(RecordStoreError, match="cannot reach"):
                await store.scan()
        finally:
            await store.aclose()


def gitea_backend_on(url: str) -> RecordStore:
    return GiteaRecordStore(url, "someone", GITEA_TOKEN, retry=FAST_RETRY)


async def test_documents_are_kept_beside_the_records_and_replaced(backend: Backend):
    store = backend.make()
    try:
        assert await store.read_document("eol-data.yaml") is None
        await store.write_document("eol-data.yaml", b"alpine: []\n")
        await store.write_document("eol-data.yaml", b"alpine:\n  - cycle: '3.21'\n")
        assert await store.read_document("eol-data.yaml") == b"alpine:\n  - cycle: '3.21'\n"
        assert (await store.scan()).records == []  # a document is not a record
    finally:
        await store.aclose()


async def test_local_store_refuses_to_write_into_a_file(tmp_path):
    (tmp_path / "records").write_text("not a directory")
    store = LocalRecordStore(tmp_path)
    with pytest.raises(RecordStoreError, match=r"cannot write .*records"):
        await store.put(record("r.io/app:1"))


# -- what the forge shows: records readable by the official client -----------------------------------


async def test_gitlab_records_are_readable_with_python_gitlab(fake_gitlab):
    backend = gitlab_backend(fake_gitlab)
    store = backend.make()
    try:
        await store.put(record("registry.example.com/apps/myservice:1.2.0"))
    finally:
        await store.aclose()

    def read_with_official_client() -> tuple[list[tuple[str, str]], dict[str, Any]]:
        gl = gitlab.Gitlab(fake_gitlab.url, private_token=GITLAB_TOKEN)
        project = gl.projects.get(backend.project.id, lazy=True)  # type: ignore[attr-defined]
        packages = [(p.name, p.version) for p in project.packages.list(get_all=True, package_type="generic")]
        raw = project.generic_packages.download(
            package_name="registry.example.com___apps___myservice",
            package_version="1.2.0",
            file_name=RECORD_FILE,
        )
        return packages, json.loads(raw)

    packages, data = await asyncio.to_thread(read_with_official_client)
    assert packages == [("registry.example.com___apps___myservice", "1.2.0")]
    assert data["image"] == "registry.example.com/apps/myservice:1.2.0"
    assert data["base"] == BASE


# -- the CLI wired to each backend by imglife.yaml and the environment ------------------------------


def cli(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        argv, environ={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **environ}, stdout=out, stderr=err
    )
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(params=["local", "s3", "gitlab", "gitea"])
def configured(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An imglife.yaml for one backend, and the environment holding its credentials."""
    config = tmp_path / "imglife.yaml"
    if request.param == "local":
        config.write_text("registry:\n  provider: local\n  path: records\n")
        return config, {}
    if request.param == "s3":
        server, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
        config.write_text(
            f"registry:\n  provider: s3\n  url: {server.endpoint}\n  bucket: {bucket}\n  prefix: builds\n"
        )
        return config, server.env()
    if request.param == "gitlab":
        fake = request.getfixturevalue("fake_gitlab")
        project = fake.add_project(f"platform/cli-{secrets.token_hex(4)}", members={"imglife-bot": 40})
        config.write_text(f"registry:\n  provider: gitlab\n  url: {fake.url}\n  project_id: {project.id}\n")
        return config, {"GITLAB_TOKEN": GITLAB_TOKEN}
    fake = request.getfixturevalue("fake_gitea")
    owner = f"org{secrets.token_hex(4)}"
    fake.add_org(owner, members={"imglife-bot": "write"})
    config.write_text(
        f"registry:\n  provider: gitea\n  url: {fake.url}\n  owner: {owner}\n  repo: base-images\n"
    )
    return config, {"GITEA_TOKEN": GITEA_TOKEN}


def test_register_list_and_purge_through_the_cli(configured):
    config, environ = configured
    environ = {**environ, "IMGLIFE_CONFIG": str(config)}
    for tag in ("1.0.0", "1.1.0"):
        code, _, err = cli(
            ["register", "--image", f"registry.example.com/apps/cli:{tag}", "--base", BASE,
             "--platform", "linux/amd64", "--revision", tag, "--project", "team/cli"],
            environ,
        )  # fmt: skip
        assert code == 0, err
    code, out, err = cli(["app", "list", "--output", "json"], environ)
    assert code == 0, err
    assert sorted(r["image"] for r in json.loads(out)) == [
        "registry.example.com/apps/cli:1.0.0",
        "registry.example.com/apps/cli:1.1.0",
    ]
    code, out, err = cli(["app", "purge", "--keep-last", "1"], environ)
    assert code == 0, err
    assert "1 purged, 1 kept, 0 errors" in out
    assert [r["image"] for r in json.loads(cli(["app", "list", "--output", "json"], environ)[1])] == [
        "registry.example.com/apps/cli:1.1.0"
    ]


def test_missing_store_credentials_for_a_write_say_which_variable(fake_gitlab, tmp_path):
    config = tmp_path / "imglife.yaml"
    config.write_text(f"registry:\n  provider: gitlab\n  url: {fake_gitlab.url}\n  project_id: 1\n")
    code, _, err = cli(
        ["--config", str(config), "register", "--image", "r.io/a:1", "--base", BASE,
         "--platform", "linux/amd64", "--revision", "r", "--project", "t/a"],
        {},
    )  # fmt: skip
    assert code == 2
    assert "GITLAB_TOKEN" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("kind", ["gitlab", "gitea"])
async def test_a_full_store_refuses_the_write_clearly_and_keeps_the_old_record(fake_gitlab, fake_gitea, kind):
    backend, fake = (
        (gitlab_backend(fake_gitlab), fake_gitlab)
        if kind == "gitlab"
        else (gitea_backend(fake_gitea), fake_gitea)
    )
    ref = parse_reference("registry.example.com/apps/full:1")
    store = backend.make()
    try:
        await store.put(record(str(ref), "old"))
        # GitLab answers 400 "File is too large" over the size/quota limit; Gitea 413 over its quota.
        status, body = (
            (400, {"message": "400 Bad request - File is too large"})
            if kind == "gitlab"
            else (413, "quota exceeded")
        )
        fake.fail_next("PUT", r"/generic/", status, times=None, body=body)
        with pytest.raises(RecordStoreError) as info:
            await store.put(record(str(ref), "new"))
        fake.clear_faults()
        assert str(status) in str(info.value)
        assert (await store.get(ref)).revision == "old"
    finally:
        await store.aclose()
