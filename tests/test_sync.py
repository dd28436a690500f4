"""`imglife sync` against real registries: selection, copies checked with skopeo, hooks, failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import secrets
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config
from bot.credentials import CredentialResolver, CredentialScope, ScopedCredentials, env_prefix
from bot.oci.client import RegistryClient
from bot.oci.copy import CopyResult, ImageCopier
from bot.oci.hub import DockerHubTags
from bot.oci.reference import ImageReference
from bot.retry import RetryPolicy
from handlers.sync import TagStatus, list_mirrors, sync_mirrors
from tests.fakes.dockerhub import FakeDockerHub
from tests.helpers.images import OCI_INDEX, build_image, build_index
from tests.helpers.proxy import FaultProxy
from tests.helpers.registry import RunningRegistry
from tests.helpers.skopeo import (
    SkopeoError,
    push_image,
    skopeo_delete,
    skopeo_digest,
    skopeo_inspect_raw,
    skopeo_list_tags,
)

UTC = dt.UTC
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=1)
Registryish = RunningRegistry | FaultProxy


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def creds_env(*registries: RunningRegistry, hosts: Sequence[str] = ()) -> dict[str, str]:
    """IMGLIFE_<HOST>_USERNAME/PASSWORD for each registry with credentials (and for proxy ``hosts``)."""
    env: dict[str, str] = {}
    for registry in registries:
        if registry.creds is None:
            continue
        for host in (registry.host, *hosts):
            env[f"{env_prefix(host)}_USERNAME"] = registry.creds[0]
            env[f"{env_prefix(host)}_PASSWORD"] = registry.creds[1]
    return env


def host_of(registry: Registryish) -> str:
    return registry.host


def write_config(tmp_path: Path, sync: str, *registries: Registryish) -> Path:
    hosts = "".join(f"\n    - '{host_of(r)}'" for r in registries) or " []"
    path = tmp_path / "imglife.yaml"
    path.write_text(
        f"registry:\n  provider: local\n  path: records\n  insecure_registries:{hosts}\n"
        + textwrap.dedent(sync)
    )
    return path


def run(argv: list[str], env: dict[str, str], *, tty: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), (TtyStream() if tty else io.StringIO())
    environ = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env}
    code = main(argv, environ=environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def push(registry: RunningRegistry, repo: str, tags: Sequence[str], image) -> None:
    for tag in tags:
        await asyncio.to_thread(push_image, registry, f"{repo}:{tag}", image, registry.creds)


async def tags_of(registry: RunningRegistry, repo: str) -> list[str]:
    """The repository's tags; none when it was never pushed to (the registry answers 404)."""
    try:
        return sorted(await asyncio.to_thread(skopeo_list_tags, registry, repo))
    except SkopeoError as exc:
        if "404 (Not Found)" not in exc.stderr:
            raise
        return []


async def digest_of(registry: RunningRegistry, ref: str) -> str:
    return await asyncio.to_thread(skopeo_digest, registry, ref)


def client_for(env: dict[str, str], *hosts: str, retry: RetryPolicy = FAST_RETRY) -> RegistryClient:
    scope = CredentialScope.for_command("sync")
    credentials = ScopedCredentials(CredentialResolver({"PATH": "/usr/bin:/bin", **env}), scope)
    return RegistryClient(credentials, scope=scope, insecure_hosts=frozenset(hosts), retry=retry)


def nonce() -> str:
    return secrets.token_hex(4)


# --- the main path ----------------------------------------------------------------------------


async def test_basic_auth_source_to_token_target_preserves_digests_and_is_idempotent(
    basic_registry, token_registry, repo_name, tmp_path
):
    src, dst, dst_pinned = repo_name("src"), repo_name("dst"), repo_name("pinned")
    oci_index = build_index(nonce=nonce())
    docker_list = build_index(nonce=nonce(), docker=True)
    single = build_image(nonce=nonce())
    await push(basic_registry, src, ["3.21.3"], oci_index)
    await push(basic_registry, src, ["3.20.6"], docker_list)
    await push(basic_registry, src, ["3.19.7", "latest"], single)
    config = write_config(
        tmp_path,
        f"""\
        sync:
          entries:
            - source: {basic_registry.host}/{src}
              target: {token_registry.host}/{dst}
              tag_regex: '^3\\.\\d+\\.\\d+$'
              keep_last: 2
            - source: {basic_registry.host}/{src}
              target: {token_registry.host}/{dst_pinned}
              tag: latest
        """,
        basic_registry,
        token_registry,
    )
    env = {"IMGLIFE_CONFIG": str(config), **creds_env(basic_registry, token_registry)}

    code, out, err = await asyncio.to_thread(run, ["sync"], env)
    assert code == 0, out + err
    assert out.startswith("sync: 2 entries, tags: 3 copied, 0 skipped, 0 failed;")
    assert "Traceback" not in err
    assert await tags_of(token_registry, dst) == ["3.20.6", "3.21.3"]
    for tag, image in (("3.21.3", oci_index), ("3.20.6", docker_list)):
        assert await digest_of(token_registry, f"{dst}:{tag}") == image.digest
        assert await digest_of(basic_registry, f"{src}:{tag}") == image.digest
    assert await digest_of(token_registry, f"{dst_pinned}:latest") == single.digest
    raw = await asyncio.to_thread(skopeo_inspect_raw, token_registry, f"{dst}:3.20.6")
    assert raw == docker_list.manifest  # byte for byte, the Docker manifest list too

    code, out, err = await asyncio.to_thread(run, ["sync"], env)
    assert code == 0, out + err
    assert out.startswith("sync: 2 entries, tags: 0 copied, 3 skipped, 0 failed;")
    assert "  skipped    3.21.3  (already in the target;" in out


async def test_list_and_dry_run_push_nothing_and_run_no_hooks(anon_registry, repo_name, tmp_path):
    src, dst = repo_name("src"), repo_name("dst")
    image = build_image(nonce=nonce())
    await push(anon_registry, src, ["1.0.0", "1.1.0", "2.0.0-rc1", "latest"], image)
    marker = tmp_path / "hook-ran"
    config = write_config(
        tmp_path,
        f"""\
        sync:
          hooks:
            post_sync:
              - cmd: touch {marker}
          entries:
            - source: {anon_registry.host}/{src}
              target: {anon_registry.host}/{dst}
              tag_regex: '^\\d+\\.\\d+\\.\\d+'
              hooks:
                post_sync:
                  - cmd: touch {marker}
        """,
        anon_registry,
    )
    env = {"IMGLIFE_CONFIG": str(config)}

    code, out, err = await asyncio.to_thread(run, ["sync", "--list"], env)
    assert code == 0, err
    assert out == (
        f"{anon_registry.host}/{src} -> {anon_registry.host}/{dst}\n  2.0.0-rc1\n  1.1.0\n  1.0.0\n"
    )

    code, out, err = await asyncio.to_thread(run, ["sync", "--dry-run"], env, tty=True)
    assert code == 0, err
    assert out.startswith("sync (dry run): 1 entry, tags: 3 to copy, 0 skipped, 0 failed in ")
    assert f"  would copy 1.1.0  (new; {image.digest})" in out
    assert "hooks: 2 not run (dry run)" in out
    assert "imglife: copied" not in err  # progress is for copies, and a dry run copies nothing
    assert await tags_of(anon_registry, dst) == []
    assert not marker.exists()


async def test_platform_filter_writes_a_smaller_index_and_progress_shows_on_a_terminal(
    anon_registry, repo_name, tmp_path
):
    src, dst = repo_name("src"), repo_name("dst")
    index = build_index(("linux/amd64", "linux/arm64", "linux/arm/v7"), nonce=nonce())
    await push(anon_registry, src, ["1.0"], index)
    config = write_config(
        tmp_path,
        f"""\
        sync:
          platforms: [linux/amd64]
          entries:
            - source: {anon_registry.host}/{src}
              target: {anon_registry.host}/{dst}
              tag: "1.0"
              platforms: [linux/arm64, linux/arm/v7]
        """,
        anon_registry,
    )
    code, out, err = await asyncio.to_thread(run, ["sync"], {"IMGLIFE_CONFIG": str(config)}, tty=True)
    assert code == 0, out + err
    raw = await asyncio.to_thread(skopeo_inspect_raw, anon_registry, f"{dst}:1.0")
    document = json.loads(raw)
    assert document["mediaType"] == OCI_INDEX
    assert [m["digest"] for m in document["manifests"]] == [
        index.image_for("linux/arm64").digest,
        index.image_for("linux/arm/v7").digest,
    ]
    digest = await digest_of(anon_registry, f"{dst}:1.0")
    assert digest != index.digest
    assert f"; {digest})" in out  # the summary names the digest written
    (progress,) = [line for line in err.splitlines() if line.startswith("imglife: copied")]
    assert progress.startswith(
        f"imglife: copied {anon_registry.host}/{src}:1.0 -> {anon_registry.host}/{dst}:1.0 (new; "
    )
    assert progress.endswith(f" uploaded; {digest})")

    # Without a terminal: no progress lines.
    code, _out, err = await asyncio.to_thread(run, ["sync"], {"IMGLIFE_CONFIG": str(config)})
    assert code == 0
    assert "imglife: copied" not in err


async def test_check_digest_recopies_a_changed_tag_only(anon_registry, repo_name, tmp_path):
    src, dst, other = repo_name("src"), repo_name("dst"), repo_name("other")
    old, new = build_image(nonce=nonce()), build_image(nonce=nonce())
    await push(anon_registry, src, ["latest", "stable"], new)
    await push(anon_registry, dst, ["latest"], old)
    await push(anon_registry, dst, ["stable"], new)
    await push(anon_registry, other, ["latest"], old)
    config = write_config(
        tmp_path,
        f"""\
        sync:
          entries:
            - {{source: {anon_registry.host}/{src}, target: {anon_registry.host}/{dst}, tag: latest,
                check_digest: true}}
            - {{source: {anon_registry.host}/{src}, target: {anon_registry.host}/{dst}, tag: stable,
                check_digest: true}}
            - {{source: {anon_registry.host}/{src}, target: {anon_registry.host}/{other}, tag: latest}}
        """,
        anon_registry,
    )
    code, out, err = await asyncio.to_thread(run, ["sync"], {"IMGLIFE_CONFIG": str(config)})
    assert code == 0, out + err
    assert "  copied     latest  (source digest changed;" in out
    assert f"  skipped    stable  (already in the target, same digest; {new.digest})" in out
    assert f"  skipped    latest  (already in the target; {old.digest})" in out
    assert await digest_of(anon_registry, f"{dst}:latest") == new.digest
    assert await digest_of(anon_registry, f"{other}:latest") == old.digest


async def test_os_normalize_names_an_os_variant_after_its_most_specific_version(
    anon_registry, repo_name, tmp_path
):
    src, dst = repo_name("src"), repo_name("dst")
    current, older = build_image(nonce=nonce()), build_image(nonce=nonce())
    variant_only, other = build_image(nonce=nonce()), build_image(nonce=nonce())
    await push(anon_registry, src, ["1.22.3-alpine3.21", "1.22-alpine3.21", "alpine3.21"], current)
    await push(anon_registry, src, ["1.22.2-alpine3.21"], older)
    await push(anon_registry, src, ["alpine3.20"], variant_only)
    await push(anon_registry, src, ["1.21.0-alpine3.20"], other)
    config = write_config(
        tmp_path,
        f"""\
        sync:
          entries:
            - source: {anon_registry.host}/{src}
              target: {anon_registry.host}/{dst}
              tag_regex: '^alpine3\\.\\d+$'
              os_normalize: true
        """,
        anon_registry,
    )
    env = {"IMGLIFE_CONFIG": str(config)}
    code, out, _ = await asyncio.to_thread(run, ["sync", "--list"], env)
    assert code == 0
    assert "  alpine3.21 -> 1.22.3-alpine3.21\n  alpine3.20\n" in out
    warning = (
        f"  warning: os_normalize: alpine3.20 keeps its name: no version tag ending in -alpine3.20 has its "
        f"digest {variant_only.digest} (1 looked at)"
    )
    assert warning in out.splitlines()

    code, out, err = await asyncio.to_thread(run, ["sync"], env)
    assert code == 0, out + err
    assert "  copied     alpine3.21 -> 1.22.3-alpine3.21  (new;" in out
    assert warning in out.splitlines()
    assert await tags_of(anon_registry, dst) == ["1.22.3-alpine3.21", "alpine3.20"]
    assert await digest_of(anon_registry, f"{dst}:1.22.3-alpine3.21") == current.digest


async def test_non_version_tags_are_ordered_by_image_creation_dates(anon_registry, repo_name, tmp_path):
    src = repo_name("src")
    created = {"nightly-a": "2024-03-01T00:00:00Z", "nightly-b": "2024-01-01T00:00:00Z"}
    created["nightly-c"] = "2024-02-01T00:00:00.123456789Z"  # nanoseconds, as Go writes them
    for tag, when in created.items():
        await push(anon_registry, src, [tag], build_image(nonce=nonce(), created=when))
    await push(anon_registry, src, ["2.0.0"], build_image(nonce=nonce()))
    config = write_config(
        tmp_path,
        f"""\
        sync:
          entries:
            - source: {anon_registry.host}/{src}
              target: {anon_registry.host}/{repo_name("dst")}
              tag_regex: '^(nightly-.|2\\.0\\.0)$'
              keep_last: 3
        """,
        anon_registry,
    )
    code, out, err = await asyncio.to_thread(run, ["sync", "--list"], {"IMGLIFE_CONFIG": str(config)})
    assert code == 0, err
    assert out.splitlines()[1:] == ["  2.0.0", "  nightly-a", "  nightly-c"]


async def test_every_page_of_the_tag_list_is_read_and_sources_pick_entries(
    anon_registry, repo_name, tmp_path
):
    src, other = repo_name("src"), repo_name("other")
    await push(anon_registry, src, ["1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5"], build_image(nonce=nonce()))
    async with FaultProxy(anon_registry) as proxy:
        proxy.paginate_tags(page_size=2)
        config = write_config(
            tmp_path,
            f"""\
            sync:
              entries:
                - {{source: {proxy.host}/{src}, target: {anon_registry.host}/{src}-copy, tag_regex: '^1'}}
                - {{source: {proxy.host}/{other}, target: {anon_registry.host}/{other}-copy, tag: "1"}}
            """,
            proxy,
            anon_registry,
        )
        argv = ["sync", "--list", f"{proxy.host}/{src}"]
        code, out, err = await asyncio.to_thread(run, argv, {"IMGLIFE_CONFIG": str(config)})
        pages = proxy.requests_matching("GET", "/tags/list")
    assert code == 0, err
    assert out.splitlines()[1:] == ["  1.0.5", "  1.0.4", "  1.0.3", "  1.0.2", "  1.0.1"]
    assert other not in out  # the other entry was not asked for
    assert len(pages) == 3


# --- Docker Hub sources -----------------------------------------------------------------------


def test_docker_io_sources_are_listed_through_the_configured_hub_api(tmp_path):
    """No registry is contacted: Hub gives names, dates and the digests os_normalize compares."""
    with FakeDockerHub() as hub:
        when = dt.datetime(2025, 1, 1, tzinfo=UTC)
        for tag, digest in [
            ("1.22.3-alpine3.21", "sha256:" + "1" * 64),
            ("1.22-alpine3.21", "sha256:" + "1" * 64),
            ("alpine3.21", "sha256:" + "1" * 64),
            ("alpine3.20", "sha256:" + "2" * 64),
            ("1.21.0-alpine3.20", "sha256:" + "3" * 64),
            ("1.23.0", "sha256:" + "4" * 64),
        ]:
            hub.set_tag("library/golang", tag, last_updated=when, digest=digest)
        config = write_config(
            tmp_path,
            f"""\
            sync:
              dockerhub_api_url: {hub.url}/
              entries:
                - source: golang
                  target: registry.example.com/mirrors/golang
                  tag_regex: '^alpine3\\.\\d+$'
                  os_normalize: true
            """,
        )
        code, out, err = run(["sync", "--list"], {"IMGLIFE_CONFIG": str(config)})
        assert code == 0, err
        assert out.splitlines()[:3] == [
            "golang -> registry.example.com/mirrors/golang",
            "  alpine3.21 -> 1.22.3-alpine3.21",
            "  alpine3.20",
        ]
        assert "no version tag ending in -alpine3.20 has its digest sha256:2222" in out
        paths = {(r.method, r.path, r.query) for r in hub.requests}
        assert paths == {("GET", "/v2/namespaces/library/repositories/golang/tags", "page_size=100")}


async def test_hub_dates_decide_and_a_failing_hub_falls_back_to_the_registry(
    anon_registry, repo_name, tmp_path
):
    src = repo_name("src")  # namespace/name, as on Hub
    edge = build_image(nonce=nonce(), created="2024-01-01T00:00:00Z")
    nightly = build_image(nonce=nonce(), created="2024-06-01T00:00:00Z")
    await push(anon_registry, src, ["edge"], edge)
    await push(anon_registry, src, ["nightly"], nightly)
    with FakeDockerHub() as fake:
        # Hub's dates say edge is newer; the image configs say nightly is.
        fake.set_tag(src, "edge", last_updated=dt.datetime(2025, 6, 1, tzinfo=UTC), digest=edge.digest)
        fake.set_tag(src, "nightly", last_updated=dt.datetime(2025, 1, 1, tzinfo=UTC), digest=nightly.digest)
        async with FaultProxy(anon_registry) as proxy:
            # The stand-in Hub describes the proxy's host, so that registry traffic can be counted.
            hub = DockerHubTags(fake.url, hosts=[proxy.host])
            config = load_config(
                write_config(
                    tmp_path,
                    f"""\
                    sync:
                      entries:
                        - source: {proxy.host}/{src}
                          target: {proxy.host}/{repo_name("dst")}
                          tag_regex: '^(edge|nightly)$'
                          keep_last: 1
                    """,
                    proxy,
                )
            )
            try:
                async with client_for({}, proxy.host) as client:
                    (listed,) = await list_mirrors(config, client=client, hub=hub)
                    assert [pair.source for pair in listed.tags] == ["edge"]
                    assert listed.warnings == ()
                    assert proxy.requests == []  # names and dates came from Hub alone

                    fake.fail_next("GET", "/tags$", 500, times=None)
                    (listed,) = await list_mirrors(config, client=client, hub=hub)
            finally:
                await hub.aclose()
            assert [pair.source for pair in listed.tags] == ["nightly"]
            assert len(proxy.requests_matching("GET", "/tags/list")) == 1
    (warning,) = listed.warnings
    assert warning.startswith("Docker Hub's tags API failed (Docker Hub tags API ")
    assert warning.endswith("answered HTTP 500); used the registry's tag list instead")


# --- hooks ------------------------------------------------------------------------------------


async def test_hooks_run_after_their_entry_then_after_all_with_sync_variables(
    anon_registry, repo_name, tmp_path
):
    src, dst = repo_name("src"), repo_name("dst")
    await push(anon_registry, src, ["1.0"], build_image(nonce=nonce()))
    order = tmp_path / "order.log"
    config = write_config(
        tmp_path,
        f"""\
        sync:
          hooks:
            post_sync:
              - cmd: echo "all $IMGLIFE_SYNC_SCOPE $IMGLIFE_SYNC_ENTRIES $IMGLIFE_SYNC_COPIED" >> {order}
              - cmd: exit 5
                continue_on_error: true
              - cmd: env | grep ^IMGLIFE_SYNC_ | sort > {tmp_path}/all.env
          entries:
            - source: {anon_registry.host}/{src}
              target: {anon_registry.host}/{dst}
              tag_regex: '^1'
              hooks:
                post_sync:
                  - cmd: echo "entry $IMGLIFE_SYNC_SCOPE $IMGLIFE_SYNC_IMAGES $KEPT" >> {order}
                  - cmd: env | grep ^IMGLIFE_SYNC_ | sort > {tmp_path}/entry.env
        """,
        anon_registry,
    )
    env = {"IMGLIFE_CONFIG": str(config), "KEPT": "yes"}
    code, out, err = await asyncio.to_thread(run, ["sync"], env)
    assert code == 0, out + err
    target_image = f"{anon_registry.host}/{dst}:1.0"
    assert order.read_text().splitlines() == [f"entry entry {target_image} yes", "all all 1 1"]
    entry_env = (tmp_path / "entry.env").read_text().splitlines()
    assert entry_env == [
        "IMGLIFE_SYNC_BYTES=" + entry_env[0].split("=", 1)[1],
        "IMGLIFE_SYNC_COPIED=1",
        "IMGLIFE_SYNC_ENTRIES=1",
        "IMGLIFE_SYNC_FAILED=0",
        "IMGLIFE_SYNC_GONE=0",
        f"IMGLIFE_SYNC_IMAGES={target_image}",
        "IMGLIFE_SYNC_SCOPE=entry",
        "IMGLIFE_SYNC_SKIPPED=0",
        f"IMGLIFE_SYNC_SOURCE={anon_registry.host}/{src}",
        f"IMGLIFE_SYNC_TARGET={anon_registry.host}/{dst}",
    ]
    assert entry_env[0].split("=", 1)[1].isdigit()  # 0 here: same registry, the blobs were mounted
    all_env = (tmp_path / "all.env").read_text()
    assert "IMGLIFE_SYNC_SCOPE=all\n" in all_env
    assert "IMGLIFE_SYNC_SOURCE" not in all_env
    assert "hook sync.hooks.post_sync[1] `exit 5`: exited with code 5 (continue_on_error)" in out

    # A failing hook without continue_on_error fails the run; nothing was left to copy.
    config.write_text(config.read_text().replace("exit 5\n        continue_on_error: true", "exit 7"))
    code, out, err = await asyncio.to_thread(run, ["sync"], env)
    assert code == 1, out + err
    assert "0 copied, 1 skipped, 0 failed" in out
    assert "hook sync.hooks.post_sync[1] `exit 7`: exited with code 7" in out
    assert "post_sync[2]" not in out  # the list stopped at the failing hook


# --- failures ---------------------------------------------------------------------------------


async def test_a_source_that_keeps_failing_fails_its_tag_and_the_others_are_copied(
    basic_registry, repo_name, tmp_path
):
    src, dst = repo_name("src"), repo_name("dst")
    image = build_image(nonce=nonce())
    await push(basic_registry, src, ["1.0.0", "2.0.0", "3.0.0"], image)
    async with FaultProxy(basic_registry) as proxy:
        proxy.fail("GET", r"/manifests/1\.0\.0$", 503, times=2)  # transient: retried
        proxy.fail("GET", r"/manifests/2\.0\.0$", 500, times=None)  # never recovers
        unlisted = repo_name("unlisted")
        proxy.fail("GET", f"/v2/{unlisted}/tags/list", 502, times=None)
        config = load_config(
            write_config(
                tmp_path,
                f"""\
                sync:
                  entries:
                    - source: {proxy.host}/{src}
                      target: {basic_registry.host}/{dst}
                      tag_regex: '^\\d'
                    - source: {proxy.host}/{unlisted}
                      target: {basic_registry.host}/{dst}-2
                      tag_regex: '^\\d'
                """,
                proxy,
                basic_registry,
            )
        )
        env = creds_env(basic_registry, hosts=[proxy.host])
        async with client_for(env, proxy.host, basic_registry.host) as client:
            summary = await sync_mirrors(
                config, client=client, copier=ImageCopier(client), hub=None, environ=env
            )
    entry, unlisted_entry = summary.entries
    assert unlisted_entry.tags == []
    assert unlisted_entry.error == (
        f"cannot list the tags of {proxy.host}/{unlisted}: cannot list tags of {proxy.host}/{unlisted}: "
        f"registry {proxy.host} kept answering HTTP 502"
    )
    assert summary.failed_entries == 1
    statuses = {tag.source: (tag.status, tag.reason) for tag in entry.tags}
    assert statuses["1.0.0"][0] is TagStatus.COPIED
    assert statuses["3.0.0"][0] is TagStatus.COPIED
    assert statuses["2.0.0"] == (
        TagStatus.FAILED,
        f"cannot fetch manifest {proxy.host}/{src}:2.0.0: registry {proxy.host} kept answering HTTP 500",
    )
    assert not summary.ok
    assert await tags_of(basic_registry, dst) == ["1.0.0", "3.0.0"]
    assert "| `2.0.0` | ❌ failed | cannot fetch manifest" in summary.markdown()


class DeletingCopier(ImageCopier):
    """Deletes ``victim`` from the source registry right before copying it (an upstream race)."""

    def __init__(self, client: RegistryClient, registry: RunningRegistry, victim: str) -> None:
        super().__init__(client)
        self.registry = registry
        self.victim = victim

    async def copy(self, source: ImageReference, target: ImageReference, **kwargs) -> CopyResult:
        if source.tag == self.victim:
            await asyncio.to_thread(skopeo_delete, self.registry, f"{source.repository}:{source.tag}")
        return await super().copy(source, target, **kwargs)


async def test_a_tag_deleted_upstream_after_listing_is_gone_a_missing_fixed_tag_fails(
    anon_registry, repo_name, tmp_path
):
    src, dst, pinned = repo_name("src"), repo_name("dst"), repo_name("pinned")
    await push(anon_registry, src, ["1.0"], build_image(nonce=nonce()))
    await push(anon_registry, src, ["2.0"], build_image(nonce=nonce()))
    config = load_config(
        write_config(
            tmp_path,
            f"""\
            sync:
              entries:
                - {{source: {anon_registry.host}/{src}, target: {anon_registry.host}/{dst}, tag_regex: .}}
                - {{source: {anon_registry.host}/{src}, target: {anon_registry.host}/{pinned}, tag: "9.9"}}
            """,
            anon_registry,
        )
    )
    async with client_for({}, anon_registry.host) as client:
        copier = DeletingCopier(client, anon_registry, victim="2.0")
        summary = await sync_mirrors(config, client=client, copier=copier, hub=None, environ={})
    listed, pinned_entry = summary.entries
    assert [(t.source, t.status) for t in listed.tags] == [("2.0", TagStatus.GONE), ("1.0", TagStatus.COPIED)]
    assert listed.tags[0].reason == "deleted from the source after it was listed"
    ((tag, status, reason),) = [(t.source, t.status, t.reason) for t in pinned_entry.tags]
    assert (tag, status) == ("9.9", TagStatus.FAILED)
    assert reason.startswith("not in the source (cannot fetch manifest")
    assert not summary.ok  # the fixed tag fails the run; the gone one alone would not
    assert summary.count(TagStatus.GONE) == 1
    assert await tags_of(anon_registry, dst) == ["1.0"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/blobs/uploads/"),  # no blob gets in
        ("PUT", r"/manifests/\d\.0$"),  # blobs and child manifests get in, the tag does not
    ],
)
async def test_a_target_refusing_pushes_fails_every_tag_and_leaves_no_tag(
    anon_registry, repo_name, tmp_path, method, path
):
    src, dst = repo_name("src"), repo_name("dst")
    await push(anon_registry, src, ["1.0"], build_index(nonce=nonce()))
    await push(anon_registry, src, ["2.0"], build_image(nonce=nonce()))
    async with FaultProxy(anon_registry) as proxy:
        proxy.fail(method, path, 403, times=None)
        config = write_config(
            tmp_path,
            f"""\
            sync:
              entries:
                - source: {anon_registry.host}/{src}
                  target: {proxy.host}/{dst}
                  tag_regex: '^\\d'
            """,
            anon_registry,
            proxy,
        )
        code, out, err = await asyncio.to_thread(run, ["sync"], {"IMGLIFE_CONFIG": str(config)})
    assert code == 1, out + err
    assert "0 copied, 0 skipped, 2 failed" in out
    assert out.count("(HTTP 403)") == 2
    assert await tags_of(anon_registry, dst) == []


async def test_tags_are_copied_concurrently_up_to_the_parallelism(anon_registry, repo_name, tmp_path):
    src, dst = repo_name("src"), repo_name("dst")
    await push(anon_registry, src, ["1", "2", "3", "4", "5"], build_image(nonce=nonce()))
    config = load_config(
        write_config(
            tmp_path,
            f"""\
            sync:
              entries:
                - {{source: {anon_registry.host}/{src}, target: {anon_registry.host}/{dst}, tag_regex: .}}
            """,
            anon_registry,
        )
    )
    in_flight, peak = 0, 0
    both_running = asyncio.Event()

    class CountingCopier(ImageCopier):
        async def copy(self, source, target, **kwargs):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight >= 2:
                both_running.set()
            try:
                # Wait until a second copy runs beside this one: proves concurrency, not speed.
                await asyncio.wait_for(both_running.wait(), timeout=30)
                return await super().copy(source, target, **kwargs)
            finally:
                in_flight -= 1

    async with client_for({}, anon_registry.host) as client:
        summary = await sync_mirrors(
            config, client=client, copier=CountingCopier(client, parallelism=2), hub=None, parallelism=2
        )
    assert summary.count(TagStatus.COPIED) == 5
    assert peak == 2


# --- usage and configuration errors -----------------------------------------------------------


def test_bad_parallelism_and_unknown_entries_are_usage_errors(tmp_path):
    config = write_config(
        tmp_path,
        """\
        sync:
          entries:
            - {source: alpine, target: registry.example.com/m/alpine, tag: "3"}
        """,
    )
    env = {"IMGLIFE_CONFIG": str(config)}
    code, out, err = run(["sync"], {**env, "IMGLIFE_SYNC_PARALLELISM": "0"})
    assert (code, out) == (2, "")
    assert err == "imglife: error: IMGLIFE_SYNC_PARALLELISM must be a whole number of at least 1, got '0'\n"

    code, _, err = run(["sync", "--list", "docker.io/library/nginx"], env)
    assert code == 2
    assert "docker.io/library/nginx: not the source or target of a sync entry" in err


def test_an_invalid_regex_is_caught_by_check_and_sync_refuses_the_config(tmp_path):
    config = write_config(
        tmp_path,
        """\
        sync:
          entries:
            - source: golang
              target: registry.example.com/m/golang
              tag_regex: '^1\\.(\\d+'
        """,
    )
    code, out, _ = run(["--config", str(config), "--check"], {})
    assert code == 1
    assert "sync.entries[0].tag_regex: invalid regular expression: missing ), unterminated subpattern" in out

    code, out, err = run(["--config", str(config), "sync", "--list"], {})
    assert (code, out) == (2, "")
    assert "sync.entries[0].tag_regex: invalid regular expression" in err


def test_no_entries_is_nothing_to_do(tmp_path):
    config = write_config(tmp_path, "sync:\n  entries: []\n")
    code, out, _ = run(["--config", str(config), "sync"], {})
    assert (code, out) == (0, "sync: nothing to sync: sync.entries is empty\n")
