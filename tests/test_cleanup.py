"""`imglife cleanup` against real registries (distribution 2.8) and record stores, checked with skopeo.

Images are built with the config ``created`` dates each test needs. Tests that call the handler
pass their own ``now``; tests through the CLI date their images from the real clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import re
import secrets
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config
from bot.credentials import CredentialResolver, CredentialScope, ScopedCredentials
from bot.errors import RegistryUnavailable
from bot.oci.client import RegistryClient
from bot.oci.copy import ImageCopier
from bot.oci.reference import parse_reference
from bot.records import BuildRecord
from bot.records.layout import local_file, object_key
from bot.retry import RetryPolicy
from bot.wiring import record_store, registry_client
from handlers.cleanup import CleanupAborted, CleanupSummary, RegistryLedger, cleanup_registry
from tests.helpers.images import TestImage, TestIndex, build_image, build_index
from tests.helpers.registry import RunningRegistry
from tests.helpers.skopeo import (
    SkopeoError,
    skopeo_digest,
    skopeo_inspect,
    skopeo_inspect_raw,
    skopeo_list_tags,
)

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
LATEST = "3.21.3-core1.0"  # tag_format default with version 3.21.3 and core_version 1.0
SUMMARY_RE = re.compile(
    r"^(?P<dry>\[dry-run\] )?Cleanup Summary · \d+\.\ds\n─{35}\nTags examined (?P<examined>\d+)\n"
    r"├─ Deleted (?P<deleted>\d+)\n├─ Archived (?P<archived>\d+)\n├─ Kept (?P<kept>\d+)\n"
    r"└─ Errors (?P<errors>\d+)\n"
)


def image(days: float | None, *, now: dt.datetime = NOW, index: bool = False) -> TestImage | TestIndex:
    """A unique image created ``days`` before ``now`` (``None``: no date in its config)."""
    created = "" if days is None else (now - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    if index:
        return build_index(created=created, nonce=secrets.token_hex(4))
    return build_image(created=created, nonce=secrets.token_hex(4))


@dataclass
class Setup:
    """One test's repositories in a registry, its imglife.yaml and its local record store."""

    registry: RunningRegistry
    host: str  # what the config names: the registry, or a fault proxy in front of it
    prefix: str
    tmp: Path

    @property
    def base(self) -> str:
        return f"{self.prefix}/bases/alpine"

    @property
    def mirror(self) -> str:
        return f"{self.prefix}/mirror/alpine"

    @property
    def archive(self) -> str:
        return f"{self.prefix}/archive"

    @property
    def config_path(self) -> Path:
        return self.tmp / "imglife.yaml"

    @property
    def records(self) -> Path:
        return self.tmp / "records"

    @property
    def environ(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "HOME": str(self.tmp), "IMGLIFE_CONFIG": str(self.config_path)}

    def ref(self, repo: str, tag: str) -> str:
        return f"{self.host}/{repo}:{tag}"

    def write_config(
        self,
        *,
        sync_keep_last: int = 1,
        keep_last: int = 2,
        max_age_days: int = 30,
        exclude: tuple[str, ...] = ("stable",),
        archive_keep_days: int | None = None,
        build: bool = True,
        registry_section: str | None = None,
    ) -> None:
        host, prefix = self.host, self.prefix
        lines = registry_section or (
            f"registry:\n  provider: local\n  path: records\n  insecure_registries: ['{host}']\n"
        )
        if build:
            lines += (
                'build:\n  core_version: "1.0"\n'
                f"  registry: {host}/{prefix}/bases\n  images:\n"
                f'    - {{name: alpine, type: core, version: "3.21.3", mirror_image: {host}/{self.mirror}, '
                'mirror_tag: "3.21.3"}\n'
            )
        lines += (
            "sync:\n  entries:\n"
            # keep_last 1: sync still wants only the newest 3.x, so the others follow retention.
            f"    - {{source: docker.io/library/alpine, target: {host}/{self.mirror}, tag_regex: '^3\\.', "
            f"keep_last: {sync_keep_last}}}\n"
            f"retention:\n  keep_last: {keep_last}\n  max_age_days: {max_age_days}\n"
            f"  exclude_tags: [{', '.join(exclude)}]\n"
        )
        if archive_keep_days is not None:
            archive = f"{{enabled: true, registry: {host}/{self.archive}, keep_days: {archive_keep_days}}}"
            lines += f"  archive: {archive}\n"
        self.config_path.write_text(lines)

    def put_record(self, app: str, base: str) -> None:
        ref = parse_reference(f"{self.host}/{self.prefix}/apps/{app}")
        record = BuildRecord(str(ref), base, "0123abc", "team/app", ("linux/amd64",), NOW)
        path = local_file(self.records, ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(record.encode())

    def put_garbage_record(self, app: str) -> None:
        path = local_file(self.records, parse_reference(f"{self.host}/{self.prefix}/apps/{app}"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{not json")


@pytest.fixture
def setup(anon_registry, unique_repo, tmp_path) -> Setup:
    return Setup(anon_registry, anon_registry.host, unique_repo, tmp_path)


def plain_client(host: str, home: Path) -> RegistryClient:
    scope = CredentialScope.for_command("cleanup")
    credentials = ScopedCredentials(CredentialResolver({"PATH": "/usr/bin:/bin"}, home=home), scope)
    return RegistryClient(credentials, scope=scope, insecure_hosts=frozenset({host}))


async def push_tags(s: Setup, repo: str, tags: Mapping[str, TestImage | TestIndex]) -> None:
    """Push every image once and tag it (the same image under two tags shares one digest)."""
    async with plain_client(s.registry.host, s.tmp) as client:
        for tag, item in tags.items():
            ref = parse_reference(f"{s.registry.host}/{repo}:{tag}")
            for blob in item.blobs:
                await client.push_blob(ref, blob.digest, blob.size, blob.data)
            for digest, (media_type, raw) in item.manifests.items():
                if digest != item.digest:
                    await client.put_manifest(ref.with_digest(digest), raw, media_type)
            await client.put_manifest(ref, item.manifest, item.media_type)


async def tags_of(s: Setup, repo: str) -> list[str]:
    try:
        return sorted(await asyncio.to_thread(skopeo_list_tags, s.registry, repo))
    except SkopeoError as exc:
        if "NAME_UNKNOWN" in exc.stderr or "name unknown" in exc.stderr:
            return []
        raise


async def digest_of(s: Setup, ref: str) -> str | None:
    try:
        return await asyncio.to_thread(skopeo_digest, s.registry, ref)
    except SkopeoError:
        return None


async def run_cleanup(
    s: Setup, *, now: dt.datetime = NOW, dry_run: bool = False, force: bool = False
) -> CleanupSummary:
    config = load_config(s.config_path)
    async with AsyncExitStack() as stack:
        store = record_store(config, s.environ, "cleanup")
        stack.push_async_callback(store.aclose)
        client = await stack.enter_async_context(registry_client(config, s.environ, "cleanup"))
        return await cleanup_registry(
            config,
            client=client,
            copier=ImageCopier(client),
            store=store,
            now=now,
            dry_run=dry_run,
            force=force,
        )


def cli(argv: list[str], environ: Mapping[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, environ=dict(environ), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def summary_of(out: str) -> dict[str, str | None]:
    match = SUMMARY_RE.search(out)
    assert match, out
    return match.groupdict()


# -- the policy against a real registry ---------------------------------------------------------


async def seed_policy_scenario(s: Setup) -> dict[str, TestImage | TestIndex]:
    base = {
        "3.22.0-core1.0": image(1),
        "3.21.9-core1.0": image(2, index=True),
        "3.21.5-core1.0": image(3),  # position 3 > keep_last 2: deleted
        "3.21.4-core1.0": image(40),  # too old, but a build record uses it
        "3.20.0-core1.0": image(50),  # deleted
        LATEST: image(100),  # too old, but the latest tag of the base image
        "stable": image(200),  # excluded
        "nodate": image(None),  # no creation date: sorted last, deleted by position
    }
    mirror = {
        "3.22.0": image(1),
        "3.18.0": image(35),  # position 2, within keep_last, but 35 days old: deleted
        "3.19.0": image(45),  # a build record was built directly on the mirror
        "3.21.3": image(60),  # the mirror_tag of the base image
        "3.20.0": image(61),  # deleted
    }
    await push_tags(s, s.base, base)
    await push_tags(s, s.mirror, mirror)
    s.write_config()
    s.put_record("api:2.0.0", s.ref(s.base, "3.21.4-core1.0"))
    s.put_record("tool:1.0.0", s.ref(s.mirror, "3.19.0"))
    return {**base, **{f"mirror:{t}": i for t, i in mirror.items()}}


async def test_retention_keeps_what_it_must_and_deletes_the_rest(setup):
    images = await seed_policy_scenario(setup)
    summary = await run_cleanup(setup)
    assert await tags_of(setup, setup.base) == sorted(
        ["3.22.0-core1.0", "3.21.9-core1.0", "3.21.4-core1.0", LATEST, "stable"]
    )
    assert await tags_of(setup, setup.mirror) == ["3.19.0", "3.21.3", "3.22.0"]
    assert (summary.examined, len(summary.deleted), len(summary.archived), summary.kept) == (13, 5, 0, 8)
    assert summary.errors == []
    assert sorted(summary.deleted) == sorted(
        [setup.ref(setup.base, t) for t in ("3.21.5-core1.0", "3.20.0-core1.0", "nodate")]
        + [setup.ref(setup.mirror, t) for t in ("3.18.0", "3.20.0")]
    )
    assert any("1 tag without a creation date, sorted as the oldest: nodate" in w for w in summary.warnings)
    # the index kept whole: each platform still resolves
    multi = images["3.21.9-core1.0"]
    assert isinstance(multi, TestIndex)
    for child in multi.images:
        assert await digest_of(setup, f"{setup.base}@{child.digest}") == child.digest
    assert not summary.failed


async def test_a_dry_run_deletes_nothing_and_says_what_it_would_do(setup):
    await seed_policy_scenario(setup)
    before = (await tags_of(setup, setup.base), await tags_of(setup, setup.mirror))
    summary = await run_cleanup(setup, dry_run=True)
    assert (await tags_of(setup, setup.base), await tags_of(setup, setup.mirror)) == before
    assert (summary.examined, len(summary.deleted), summary.kept, len(summary.errors)) == (13, 5, 8, 0)
    assert summary.text().startswith("[dry-run] Cleanup Summary · ")


def test_list_prints_every_tag_with_its_fate_and_changes_nothing(setup):
    now = dt.datetime.now(dt.UTC)
    asyncio.run(
        push_tags(setup, setup.base, {LATEST: image(90, now=now), "3.20.0-core1.0": image(40, now=now)})
    )
    asyncio.run(push_tags(setup, setup.mirror, {"3.21.3": image(5, now=now), "3.17.0": image(300, now=now)}))
    setup.write_config()
    code, out, err = cli(["cleanup", "--list"], setup.environ)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{setup.host}/{setup.base} (base image alpine): 2 tags"
    # 40 days old is over max_age_days though it is the newest: "either limit"
    assert lines[1] == (
        "  delete   3.20.0-core1.0  " + lines[1][27:37] + "  "
        "position 1 within keep_last 2; 40 days old, over max_age_days 30"
    )
    assert re.match(
        rf"^  keep +{re.escape(LATEST)} +\d{{4}}-\d\d-\d\d  latest tag of base image alpine \(otherwise: "
        r"position 2 within keep_last 2; 90 days old, over max_age_days 30\)$",
        lines[2],
    )
    assert lines[3] == f"{setup.host}/{setup.mirror} (mirror of docker.io/library/alpine): 2 tags"
    assert re.match(r"^  keep +3\.21\.3 .*position 1 within keep_last 2; 5 days old", lines[4])
    assert lines[5].startswith("  delete   3.17.0")
    assert "Cleanup Summary" not in out
    assert asyncio.run(tags_of(setup, setup.base)) == ["3.20.0-core1.0", LATEST]
    assert asyncio.run(tags_of(setup, setup.mirror)) == ["3.17.0", "3.21.3"]


def test_mirror_tags_their_sync_entry_still_selects_are_kept(setup):
    now = dt.datetime.now(dt.UTC)
    mirror = {"3.21.3": image(5, now=now), "3.20.6": image(200, now=now), "3.19.7": image(300, now=now)}
    asyncio.run(push_tags(setup, setup.mirror, {**mirror, "2.9.0": image(400, now=now)}))
    setup.write_config(sync_keep_last=2)
    code, out, err = cli(["cleanup"], setup.environ)
    assert code == 0, err
    # 3.21.3 and 3.20.6 are the two newest 3.x: sync would copy them straight back. 3.19.7 is
    # beyond the entry's keep_last and 2.9.0 outside its tag_regex: retention decides.
    assert asyncio.run(tags_of(setup, setup.mirror)) == ["3.20.6", "3.21.3"]
    code, out, err = cli(["cleanup", "--list"], setup.environ)
    assert "still selected by the sync entry of docker.io/library/alpine" in out


def test_the_cli_prints_upstreams_summary_and_exits_0(setup):
    now = dt.datetime.now(dt.UTC)
    asyncio.run(
        push_tags(setup, setup.base, {LATEST: image(1, now=now), "3.20.0-core1.0": image(40, now=now)})
    )
    setup.write_config()
    code, out, err = cli(["cleanup"], setup.environ)
    assert code == 0, err
    assert SUMMARY_RE.fullmatch(out), out
    assert summary_of(out) == {
        "dry": None,
        "examined": "2",
        "deleted": "1",
        "archived": "0",
        "kept": "1",
        "errors": "0",
    }
    assert "\033[" not in out  # not a terminal: no colours
    assert asyncio.run(tags_of(setup, setup.base)) == [LATEST]


# -- tags sharing a digest ---------------------------------------------------------------------


async def test_deleting_a_tag_keeps_the_other_tags_of_its_digest(setup):
    shared_old = image(40)
    both_doomed = image(50)
    await push_tags(
        setup,
        setup.base,
        {
            LATEST: image(1),
            "3.20.0-core1.0": shared_old,
            "stable": shared_old,  # excluded: kept, on the same digest
            "3.19.0-core1.0": both_doomed,
            "3.19-core1.0": both_doomed,
        },
    )
    setup.write_config(keep_last=1)
    summary = await run_cleanup(setup)
    assert await tags_of(setup, setup.base) == sorted([LATEST, "stable"])
    inspected = await asyncio.to_thread(skopeo_inspect, setup.registry, f"{setup.base}:stable")
    assert inspected["Digest"] == shared_old.digest
    assert await digest_of(setup, f"{setup.base}@{both_doomed.digest}") is None  # the last tag took it along
    assert len(summary.deleted) == 3


# -- archive -----------------------------------------------------------------------------------


async def test_archived_tags_are_copied_then_deleted_and_expire_after_keep_days(setup):
    old_image, old_index = image(40), image(50, index=True)
    await push_tags(
        setup, setup.base, {LATEST: image(1), "3.20.0-core1.0": old_image, "3.19.0-core1.0": old_index}
    )
    setup.write_config(keep_last=1, archive_keep_days=10)
    archived_base = f"{setup.archive}/{setup.base}"

    first = await run_cleanup(setup)
    assert (first.examined, len(first.deleted), len(first.archived), first.kept) == (3, 0, 2, 1)
    assert await tags_of(setup, setup.base) == [LATEST]
    assert await tags_of(setup, archived_base) == ["3.19.0-core1.0", "3.20.0-core1.0"]
    assert await digest_of(setup, f"{archived_base}:3.20.0-core1.0") == old_image.digest
    assert await digest_of(setup, f"{archived_base}:3.19.0-core1.0") == old_index.digest  # still an index
    async with plain_client(setup.host, setup.tmp) as client:
        ledger, _digest = await RegistryLedger(client, f"{setup.host}/{setup.archive}").read()
    assert {e.archive: (e.source, e.digest, e.archived_at) for e in ledger.entries.values()} == {
        setup.ref(archived_base, "3.20.0-core1.0"): (
            setup.ref(setup.base, "3.20.0-core1.0"),
            old_image.digest,
            NOW,
        ),
        setup.ref(archived_base, "3.19.0-core1.0"): (
            setup.ref(setup.base, "3.19.0-core1.0"),
            old_index.digest,
            NOW,
        ),
    }

    early = await run_cleanup(setup, now=NOW + dt.timedelta(days=5))
    assert (early.examined, len(early.deleted), early.kept) == (1, 0, 1)
    rehearsal = await run_cleanup(setup, now=NOW + dt.timedelta(days=11), dry_run=True)
    assert (rehearsal.examined, len(rehearsal.deleted)) == (3, 2)
    assert await tags_of(setup, archived_base) == ["3.19.0-core1.0", "3.20.0-core1.0"]

    expired = await run_cleanup(setup, now=NOW + dt.timedelta(days=11))
    assert (expired.examined, len(expired.deleted), expired.kept, expired.errors) == (3, 2, 1, [])
    assert await tags_of(setup, archived_base) == []
    async with plain_client(setup.host, setup.tmp) as client:
        ledger, _digest = await RegistryLedger(client, f"{setup.host}/{setup.archive}").read()
    assert ledger.entries == {}
    assert await tags_of(setup, f"{setup.archive}/imglife-archive-ledger") == ["ledger"]


async def test_no_source_is_deleted_before_the_ledger_records_its_copy(
    anon_registry, unique_repo, tmp_path, make_fault_proxy
):
    proxy = await make_fault_proxy(anon_registry)
    s = Setup(anon_registry, proxy.host, unique_repo, tmp_path)
    old = image(40)
    await push_tags(s, s.base, {LATEST: image(1), "3.20.0-core1.0": old})
    s.write_config(keep_last=1, archive_keep_days=10)
    proxy.fail("PUT", "/imglife-archive-ledger/manifests/", 400, times=None, body='{"errors":[]}')

    failed = await run_cleanup(s)
    assert (len(failed.archived), len(failed.errors), failed.failed) == (0, 1, True)
    assert "archive ledger could not be written" in failed.errors[0]
    assert await tags_of(s, s.base) == ["3.20.0-core1.0", LATEST]  # the source stays
    assert await tags_of(s, f"{s.archive}/{s.base}") == ["3.20.0-core1.0"]  # the copy was made

    proxy.clear_rules()
    again = await run_cleanup(s)
    assert (len(again.archived), again.errors) == (1, [])
    assert await tags_of(s, s.base) == [LATEST]
    async with plain_client(s.host, s.tmp) as client:
        ledger, _digest = await RegistryLedger(client, f"{s.host}/{s.archive}").read()
    assert [e.digest for e in ledger.entries.values()] == [old.digest]


# -- the safety guard --------------------------------------------------------------------------


def seed_guard_scenario(s: Setup, *, build: bool = True) -> None:
    now = dt.datetime.now(dt.UTC)
    asyncio.run(push_tags(s, s.base, {LATEST: image(1, now=now), "3.20.0-core1.0": image(40, now=now)}))
    asyncio.run(push_tags(s, s.mirror, {"3.21.3": image(1, now=now), "3.17.0": image(400, now=now)}))
    s.write_config(build=build)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"api:1.0": "garbage"}, "none of the 1 build record in directory .* can be read"),
        (
            {"api:1.0": "base", "web:1.0": "garbage"},
            "1 of the 2 build records in directory .* cannot be read",
        ),
        ({"api:1.0": "elsewhere"}, "none of the 1 build record in .* uses a base image declared in build"),
    ],
    ids=["none-readable", "some-unreadable", "none-on-a-base"],
)
def test_the_guard_aborts_unless_forced(setup, records, message):
    seed_guard_scenario(setup)
    for app, kind in records.items():
        if kind == "garbage":
            setup.put_garbage_record(app)
        else:
            target = setup.ref(setup.base, LATEST) if kind == "base" else "registry.example.com/other/x:1"
            setup.put_record(app, target)

    code, out, err = cli(["cleanup"], setup.environ)
    assert code == 1
    assert re.search(r"imglife: error: cleanup aborted by the safety guard: " + message, err), err
    assert "--force" in err
    assert out == ""
    assert asyncio.run(tags_of(setup, setup.base)) == ["3.20.0-core1.0", LATEST]
    assert asyncio.run(tags_of(setup, setup.mirror)) == ["3.17.0", "3.21.3"]

    code, out, err = cli(["cleanup", "--dry-run"], setup.environ)
    assert code == 0, err
    assert summary_of(out)["dry"] == "[dry-run] "
    assert "a real run aborts here unless --force" in err

    code, out, err = cli(["cleanup", "--force"], setup.environ)
    assert code == 0, err
    assert summary_of(out)["deleted"] == "2"
    assert "safety guard overridden by --force" in err
    assert asyncio.run(tags_of(setup, setup.base)) == [LATEST]


def test_without_records_the_normal_rules_apply(setup):
    seed_guard_scenario(setup)
    code, out, err = cli(["cleanup"], setup.environ)
    assert code == 0, err
    assert summary_of(out)["deleted"] == "2"
    assert asyncio.run(tags_of(setup, setup.mirror)) == ["3.21.3"]


def test_the_guard_does_not_engage_for_mirror_only_configs(setup):
    seed_guard_scenario(setup, build=False)
    setup.put_garbage_record("api:1.0")
    code, out, err = cli(["cleanup"], setup.environ)
    assert code == 0, err
    assert summary_of(out) == {
        "dry": None,
        "examined": "2",
        "deleted": "1",
        "archived": "0",
        "kept": "1",
        "errors": "0",
    }
    assert asyncio.run(tags_of(setup, setup.mirror)) == ["3.21.3"]
    assert asyncio.run(tags_of(setup, setup.base)) == ["3.20.0-core1.0", LATEST]  # not declared: untouched


async def test_the_handler_raises_cleanup_aborted_before_touching_anything(setup):
    await push_tags(setup, setup.base, {LATEST: image(1), "3.20.0-core1.0": image(40)})
    setup.write_config()
    setup.put_garbage_record("api:1.0")
    with pytest.raises(CleanupAborted):
        await run_cleanup(setup)
    assert await tags_of(setup, setup.base) == ["3.20.0-core1.0", LATEST]


# -- records on S3 -----------------------------------------------------------------------------


def test_build_records_on_s3_protect_their_base_tags(setup, s3_server, s3_bucket):
    now = dt.datetime.now(dt.UTC)
    asyncio.run(
        push_tags(
            setup,
            setup.base,
            {
                LATEST: image(1, now=now),
                "3.20.0-core1.0": image(40, now=now),
                "3.19.0-core1.0": image(50, now=now),
            },
        )
    )
    registry_section = (
        f"registry:\n  provider: s3\n  bucket: {s3_bucket}\n  url: {s3_server.endpoint}\n  prefix: imglife\n"
        f"  insecure_registries: ['{setup.host}']\n"
    )
    setup.write_config(registry_section=registry_section)
    app = parse_reference(f"{setup.host}/{setup.prefix}/apps/api:1.0.0")
    record = BuildRecord(
        str(app), setup.ref(setup.base, "3.19.0-core1.0"), "r", "t/api", ("linux/amd64",), now
    )
    s3_server.sync_client.put_object(Bucket=s3_bucket, Key=object_key("imglife", app), Body=record.encode())
    environ = {**setup.environ, **s3_server.env()}

    code, out, err = cli(["cleanup"], environ)
    assert code == 0, err
    assert asyncio.run(tags_of(setup, setup.base)) == ["3.19.0-core1.0", LATEST]

    # a store that cannot be read is an error, never "no records"
    setup.write_config(registry_section=registry_section.replace(s3_bucket, f"{s3_bucket}-missing"))
    code, out, err = cli(["cleanup"], environ)
    assert code == 1
    assert "imglife: error:" in err
    assert out == ""


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refusals", "expected_exit"), [(None, 1), (1, 0)], ids=["every-delete", "one-delete"]
)
async def test_a_registry_refusing_deletes_counts_errors(
    anon_registry, unique_repo, tmp_path, make_fault_proxy, refusals, expected_exit
):
    proxy = await make_fault_proxy(anon_registry)
    s = Setup(anon_registry, proxy.host, unique_repo, tmp_path)
    now = dt.datetime.now(dt.UTC)
    await push_tags(
        s,
        s.base,
        {
            LATEST: image(1, now=now),
            "3.20.0-core1.0": image(40, now=now),
            "3.19.0-core1.0": image(50, now=now),
        },
    )
    s.write_config(keep_last=1)
    body = '{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}'
    proxy.fail("DELETE", "/manifests/", 405, times=refusals, body=body)

    code, out, err = await asyncio.to_thread(cli, ["cleanup"], s.environ)
    assert code == expected_exit, err
    counts = summary_of(out)
    if refusals is None:
        assert (counts["deleted"], counts["errors"], counts["kept"]) == ("0", "2", "1")
        assert await tags_of(s, s.base) == ["3.19.0-core1.0", "3.20.0-core1.0", LATEST]
    else:
        assert (counts["deleted"], counts["errors"], counts["kept"]) == ("1", "1", "1")
        assert len(await tags_of(s, s.base)) == 2
    assert "does not allow deletes (HTTP 405)" in err


async def test_an_unreachable_registry_is_an_error(fresh_registry, unique_repo, tmp_path):
    registry = fresh_registry("anon")
    s = Setup(registry, registry.host, unique_repo, tmp_path)
    s.write_config()
    registry.stop()
    config = load_config(s.config_path)
    store = record_store(config, s.environ, "cleanup")
    scope = CredentialScope.for_command("cleanup")
    credentials = ScopedCredentials(CredentialResolver(s.environ, home=tmp_path), scope)
    fast = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)
    async with RegistryClient(
        credentials, scope=scope, insecure_hosts=frozenset({s.host}), retry=fast
    ) as client:
        with pytest.raises(RegistryUnavailable, match="cannot reach registry"):
            await cleanup_registry(config, client=client, copier=ImageCopier(client), store=store, now=NOW)


def test_a_config_declaring_nothing_is_a_usage_error(tmp_path):
    config = tmp_path / "imglife.yaml"
    config.write_text("registry: {provider: local, path: records}\n")
    code, _out, err = cli(["--config", str(config), "cleanup"], {"PATH": "/usr/bin:/bin"})
    assert code == 2
    assert "cleanup has nothing to clean" in err
    code, _out, err = cli(["--config", str(config), "cleanup", "--all"], {"PATH": "/usr/bin:/bin"})
    assert code == 2
    assert "unrecognized arguments: --all" in err


async def test_a_missing_repository_is_nothing_to_clean(setup):
    setup.write_config()
    summary = await run_cleanup(setup)
    assert (summary.examined, summary.errors) == (0, [])


def test_the_ledger_is_an_oci_artifact_any_client_reads(setup):
    asyncio.run(push_tags(setup, setup.base, {LATEST: image(1), "3.20.0-core1.0": image(40)}))
    setup.write_config(keep_last=1, archive_keep_days=10)
    asyncio.run(run_cleanup(setup))
    ledger_ref = f"{setup.archive}/imglife-archive-ledger:ledger"
    manifest = json.loads(skopeo_inspect_raw(setup.registry, ledger_ref))
    assert manifest["artifactType"] == "application/vnd.imglife.archive-ledger.v1+json"
    (layer,) = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.imglife.archive-ledger.v1+json"
