"""`imglife status`: the report over real record stores, in Markdown, JSON and text."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import secrets
from pathlib import Path

import pytest

from bot.cli import main
from bot.records import BuildRecord
from bot.records.gitlab import GitLabRecordStore
from bot.records.local import LocalRecordStore
from handlers.status import md_code, md_text
from tests.fakes.gitlab import FakeGitLab
from tests.helpers.lifecycle import (
    ALPINE,
    ALPINE_DEV,
    ALPINE_EOL,
    ALPINE_LATEST,
    ALPINE_OLD_CORE,
    ALPINE_WARNING,
    NODE,
    write_project,
)

TODAY = dt.datetime.now(dt.UTC).date()
BUILT = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.UTC)
HOSTILE_PROJECT = "team|x @admin <script>alert(1)</script> **bold**"


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(environ or {})}
    return main(argv, environ=env, stdout=out, stderr=err), out.getvalue(), err.getvalue()


def record(image: str, base: str, project: str = "team/app") -> BuildRecord:
    return BuildRecord(
        image=image,
        base=base,
        revision="a3f8b1c",
        project=project,
        platforms=("linux/amd64",),
        built_at=BUILT,
    )


RECORDS = [
    record("registry.example.com/apps/api:2.0.0", ALPINE_LATEST, "team/api"),
    record("registry.example.com/apps/api:1.9.0", ALPINE_OLD_CORE, "team/api"),
    record("registry.example.com/apps/billing:4.1.0", ALPINE_WARNING, HOSTILE_PROJECT),
    record("registry.example.com/apps/legacy:0.9.0", ALPINE_EOL, "team/legacy"),
    record("registry.example.com/apps/web:3.0.0", f"{NODE}:22.11.0-core1.0.0", "team/web"),
    record("registry.example.com/apps/tools:1.0.0", f"{ALPINE_DEV}:3.22.1-core1.2.0", "team/tools"),
    record(
        "registry.example.com/apps/old:1.0.0", "registry.example.com/bases/centos:7-core1.0.0", "team/old"
    ),
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    config = write_project(tmp_path, TODAY)

    async def fill() -> None:
        store = LocalRecordStore(tmp_path / "records")
        await asyncio.gather(*(store.put(r) for r in RECORDS))

    asyncio.run(fill())
    return config


def test_json_report_judges_every_application(project):
    code, out, err = run(["--config", str(project), "status", "--output", "json"])
    assert code == 0, err
    report = json.loads(out)
    bases = {b["repository"]: b for b in report["bases"]}
    assert set(bases) == {ALPINE, NODE, "registry.example.com/bases/golang"}  # never spe-dev
    alpine = bases[ALPINE]
    assert alpine["latest"] == ALPINE_LATEST
    assert alpine["latest_tag"]["eol_status"] == "ok"
    on = {a["image"]: (a["base_tag"], a["up_to_date"]) for a in alpine["applications"]}
    assert on == {
        "registry.example.com/apps/api:2.0.0": ("3.22.1-core1.2.0", True),
        "registry.example.com/apps/api:1.9.0": ("3.22.1-core1.0.0", False),
        "registry.example.com/apps/billing:4.1.0": ("3.21.3-core1.2.0", False),
        "registry.example.com/apps/legacy:0.9.0": ("3.19.4-core1.2.0", False),
    }
    assert [a["image"] for a in bases[NODE]["applications"]] == ["registry.example.com/apps/web:3.0.0"]
    assert [r["image"] for r in report["orphaned_records"]] == ["registry.example.com/apps/old:1.0.0"]
    assert report["problems"] == []


def test_markdown_report_is_tables_with_untrusted_text_escaped(project):
    code, out, _ = run(["--config", str(project), "status"])
    assert code == 0
    assert out.startswith("## Base images\n")
    assert "| Base image | Latest tag | EOL | Applications on latest |" in out
    assert f"| `{ALPINE}` | `3.22.1-core1.2.0` |" in out
    assert "1 of 4 |" in out
    assert f"### `{ALPINE}`" in out
    for label in ("❌ EOL", "⚠️ < 30 days", "✅ OK"):
        assert label in out
    assert "### Orphaned records" in out
    assert "`registry.example.com/bases/centos:7-core1.0.0`" in out
    assert "alpine-dev" not in out
    # Untrusted project text: no raw table break, HTML, emphasis or mention survives.
    assert "<script>" not in out
    assert "team\\|x" in out
    assert "@admin" not in out
    assert "\\*\\*bold\\*\\*" in out


def test_text_report(project):
    code, out, _ = run(["--config", str(project), "status", "--output", "text"])
    assert code == 0
    assert f"{ALPINE_LATEST}  eol " in out
    assert "registry.example.com/apps/legacy:0.9.0  on 3.19.4-core1.2.0  OUTDATED" in out
    assert "orphaned: registry.example.com/apps/old:1.0.0" in out


def test_unreadable_records_are_listed_and_exit_1(project):
    bad = project.parent / "records" / "records" / "r.io" / "broken" / "1.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{")
    code, out, err = run(["--config", str(project), "status"])
    assert code == 1
    assert "### Unreadable records" in out
    assert "not JSON" in err


def test_status_reads_records_from_the_gitlab_package_registry(tmp_path):
    token = "glpat-status-" + secrets.token_hex(6)
    with FakeGitLab() as fake:
        fake.add_token(token, "ci")
        project_id = fake.add_project("platform/base-images", members={"ci": 40}).id
        registry = f"registry:\n  provider: gitlab\n  url: {fake.url}\n  project_id: {project_id}\n"
        config = write_project(tmp_path, TODAY, registry=registry)

        async def fill() -> None:
            store = GitLabRecordStore(fake.url, project_id, token)
            try:
                await asyncio.gather(*(store.put(r) for r in RECORDS))
            finally:
                await store.aclose()

        asyncio.run(fill())
        code, out, err = run(["--config", str(config), "status", "--output", "json"], {"GITLAB_TOKEN": token})
    assert code == 0, err
    report = json.loads(out)
    assert sum(len(b["applications"]) for b in report["bases"]) == 5
    assert len(report["orphaned_records"]) == 1


def test_markdown_helpers_neutralise_mentions_and_markup():
    assert md_text("@channel hi") == "@\u200bchannel hi"
    assert md_text("a|b\nc") == "a\\|b c"
    assert md_code("r.io/a:1") == "`r.io/a:1`"
    assert md_code("evil`code") == "evil\\`code"


@pytest.mark.parametrize("backend", ["s3", "gitea"])
def test_status_reads_records_from_s3_and_gitea(tmp_path, request, backend):
    from bot.credentials import PackageRegistryCredential
    from bot.records.gitea import GiteaRecordStore
    from bot.records.s3 import S3RecordStore
    from tests.fakes.gitea import FakeGitea

    async def fill(store) -> None:
        try:
            await asyncio.gather(*(store.put(r) for r in RECORDS))
        finally:
            await store.aclose()

    if backend == "s3":
        server, bucket = request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket")
        registry = f"registry:\n  provider: s3\n  url: {server.endpoint}\n  bucket: {bucket}\n"
        credential = PackageRegistryCredential(
            provider="s3", source="env", access_key_id=server.access_key, secret_access_key=server.secret_key
        )
        asyncio.run(fill(S3RecordStore(bucket, credential, endpoint=server.endpoint)))
        config = write_project(tmp_path, TODAY, registry=registry)
        code, out, err = run(["--config", str(config), "status", "--output", "json"], server.env())
    else:
        token = "gitea-status-" + secrets.token_hex(6)
        with FakeGitea() as fake:
            fake.add_token(token, "ci")
            fake.add_org("platform", members={"ci": "write"})
            registry = (
                f"registry:\n  provider: gitea\n  url: {fake.url}\n  owner: platform\n  repo: base-images\n"
            )
            asyncio.run(fill(GiteaRecordStore(fake.url, "platform", token)))
            config = write_project(tmp_path, TODAY, registry=registry)
            code, out, err = run(
                ["--config", str(config), "status", "--output", "json"], {"GITEA_TOKEN": token}
            )
    assert code == 0, err
    report = json.loads(out)
    assert sum(len(b["applications"]) for b in report["bases"]) == 5
    assert [r["image"] for r in report["orphaned_records"]] == ["registry.example.com/apps/old:1.0.0"]
