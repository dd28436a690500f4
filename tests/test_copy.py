"""The digest-preserving copy engine against real registries, checked with skopeo."""

from __future__ import annotations

import asyncio
import json
import secrets
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from bot.credentials import CredentialResolver, CredentialScope, ScopedCredentials, env_prefix
from bot.errors import AuthError, RegistryError, RegistryUnavailable
from bot.oci import client as client_module
from bot.oci.client import RegistryClient
from bot.oci.copy import CopyError, CopyResult, ImageCopier
from bot.oci.reference import ImageReference, parse_reference
from bot.retry import RetryPolicy
from tests.helpers.images import (
    OCI_INDEX,
    TestImage,
    TestIndex,
    build_image,
    build_index,
    random_layer,
    sha256_digest,
)
from tests.helpers.proxy import FaultProxy
from tests.helpers.registry import RunningRegistry
from tests.helpers.skopeo import SkopeoError, push_image, skopeo_digest, skopeo_inspect_raw, skopeo_list_tags

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=5)
ATTESTATION_PLATFORM = {"architecture": "unknown", "os": "unknown"}
MiB = 1024 * 1024

Registry = RunningRegistry | FaultProxy


def host_of(registry: Registry) -> str:
    return registry.host


def creds_env(host: str, creds: tuple[str, str] | None) -> dict[str, str]:
    if creds is None:
        return {}
    return {f"{env_prefix(host)}_USERNAME": creds[0], f"{env_prefix(host)}_PASSWORD": creds[1]}


def make_client(
    tmp_path: Path, *registries: tuple[str, tuple[str, str] | None], retry: RetryPolicy = FAST_RETRY, **kwargs
) -> RegistryClient:
    """One client for every registry a copy talks to (as ``imglife sync`` has), scope ``sync``."""
    scope = CredentialScope.for_command("sync")
    env = {"PATH": "/usr/bin:/bin"}
    for host, creds in registries:
        env.update(creds_env(host, creds))
    credentials = ScopedCredentials(CredentialResolver(env, home=tmp_path), scope)
    hosts = frozenset(host for host, _ in registries)
    return RegistryClient(credentials, scope=scope, insecure_hosts=hosts, retry=retry, **kwargs)


def ref(host: str, repo: str, tag: str = "v1") -> ImageReference:
    return parse_reference(f"{host}/{repo}:{tag}")


async def push(registry: RunningRegistry, repo_tag: str, image: TestImage | TestIndex) -> None:
    await asyncio.to_thread(push_image, registry, repo_tag, image)


async def raw_at(registry: RunningRegistry | str, ref_text: str) -> bytes:
    return await asyncio.to_thread(skopeo_inspect_raw, registry, ref_text)


async def exists_at(registry: RunningRegistry, ref_text: str) -> bool:
    try:
        await raw_at(registry, ref_text)
    except SkopeoError as exc:
        if "manifest unknown" in exc.stderr.lower() or "not found" in exc.stderr.lower():
            return False
        raise
    return True


async def tags_at(registry: RunningRegistry, repo: str) -> list[str]:
    """Tags of ``repo``; [] when the repository does not exist at all (distribution answers 404)."""
    try:
        return await asyncio.to_thread(skopeo_list_tags, registry, repo)
    except SkopeoError as exc:
        if "404" in exc.stderr:
            return []
        raise


def with_attestation(index: TestIndex) -> tuple[TestIndex, TestImage]:
    """``index`` plus a BuildKit-style attestation entry (platform unknown/unknown)."""
    attestation = build_image(platform="linux/amd64", nonce=secrets.token_hex(4))
    entries = [img.descriptor(with_platform=True) for img in index.images]
    entries.append(
        {
            **attestation.descriptor(),
            "platform": ATTESTATION_PLATFORM,
            "annotations": {
                "vnd.docker.reference.digest": index.images[0].digest,
                "vnd.docker.reference.type": "attestation-manifest",
            },
        }
    )
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries, "annotations": {"a": "b"}}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    combined = TestIndex(
        manifest=raw, media_type=OCI_INDEX, digest=sha256_digest(raw), images=[*index.images, attestation]
    )
    return combined, attestation


def counts(result: CopyResult) -> tuple[int, int, int]:
    return result.blobs_uploaded, result.blobs_mounted, result.blobs_present


# -- byte-identical copies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda n: build_image(nonce=n), id="oci-manifest"),
        pytest.param(lambda n: build_image(nonce=n, docker=True), id="docker-manifest"),
        pytest.param(
            lambda n: build_index(("linux/amd64", "linux/arm64", "linux/arm/v7"), nonce=n), id="oci-index"
        ),
        pytest.param(lambda n: build_index(nonce=n, docker=True), id="docker-manifest-list"),
    ],
)
async def test_copy_from_basic_auth_to_token_auth_keeps_bytes_and_digest(
    basic_registry, token_registry, repo_name, tmp_path, make
):
    image = make(secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(basic_registry, f"{src_repo}:v1", image)
    progress: list[int] = []
    async with make_client(
        tmp_path, (basic_registry.host, basic_registry.creds), (token_registry.host, token_registry.creds)
    ) as client:
        copier = ImageCopier(client, on_bytes=progress.append)
        result = await copier.copy(
            ref(basic_registry.host, src_repo), ref(token_registry.host, dst_repo, "mirror")
        )

    assert result.digest == image.digest
    assert result.media_type == image.media_type
    assert await raw_at(token_registry, f"{dst_repo}:mirror") == image.manifest
    assert await asyncio.to_thread(skopeo_digest, token_registry, f"{dst_repo}:mirror") == image.digest
    for child_digest, (_, raw) in image.manifests.items():
        assert await raw_at(token_registry, f"{dst_repo}@{child_digest}") == raw
    expected_platforms = tuple(img.platform for img in getattr(image, "images", [image]))
    assert result.platforms == expected_platforms
    total = sum(b.size for b in image.blobs)
    assert counts(result) == (len(image.blobs), 0, 0)
    assert result.bytes_uploaded == total == sum(progress)
    assert copier.stats.manifests_pushed == len(image.manifests)
    assert copier.stats.bytes_uploaded == total


async def test_attestations_are_part_of_the_index_copy_but_not_platforms(
    anon_registry, token_registry, repo_name, tmp_path
):
    index, attestation = with_attestation(build_index(nonce=secrets.token_hex(4)))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", index)
    async with make_client(
        tmp_path, (anon_registry.host, None), (token_registry.host, token_registry.creds)
    ) as client:
        result = await ImageCopier(client).copy(
            ref(anon_registry.host, src_repo), ref(token_registry.host, dst_repo)
        )
    assert result.digest == index.digest
    assert result.platforms == ("linux/amd64", "linux/arm64")
    assert await raw_at(token_registry, f"{dst_repo}:v1") == index.manifest
    assert await raw_at(token_registry, f"{dst_repo}@{attestation.digest}") == attestation.manifest


async def test_copy_by_digest_source_writes_the_target_tag(
    anon_registry, token_registry, repo_name, tmp_path
):
    image = build_image(nonce=secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", image)
    source = parse_reference(f"{anon_registry.host}/{src_repo}@{image.digest}")
    async with make_client(
        tmp_path, (anon_registry.host, None), (token_registry.host, token_registry.creds)
    ) as client:
        result = await ImageCopier(client).copy(source, ref(token_registry.host, dst_repo, "pinned"))
    assert result.digest == image.digest
    assert await asyncio.to_thread(skopeo_list_tags, token_registry, dst_repo) == ["pinned"]


# -- platform filters ----------------------------------------------------------------------------


async def test_platform_filter_makes_a_new_index_equal_to_the_planned_manifest(
    anon_registry, token_registry, repo_name, tmp_path
):
    base = build_index(
        ("linux/amd64", "linux/arm64/v8", "linux/arm/v7"), nonce=secrets.token_hex(4), annotations={"k": "v"}
    )
    index, attestation = with_attestation(base)
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", index)
    source, target = ref(anon_registry.host, src_repo), ref(token_registry.host, dst_repo)
    async with make_client(
        tmp_path, (anon_registry.host, None), (token_registry.host, token_registry.creds)
    ) as client:
        copier = ImageCopier(client)
        # "linux/arm64" without variant matches the linux/arm64/v8 entry.
        planned = await copier.planned_manifest(source, platforms=["linux/arm64", "linux/arm/v7"])
        result = await copier.copy(source, target, platforms=["linux/arm64", "linux/arm/v7"])

    pushed = await raw_at(token_registry, f"{dst_repo}:v1")
    assert pushed == planned.raw
    assert result.digest == planned.digest == sha256_digest(pushed) != index.digest
    assert result.platforms == ("linux/arm64/v8", "linux/arm/v7")
    doc = json.loads(pushed)
    source_doc = index.manifest_json()
    assert doc["manifests"] == source_doc["manifests"][1:3]  # descriptors kept as they were
    assert {k: v for k, v in doc.items() if k != "manifests"} == {
        k: v for k, v in source_doc.items() if k != "manifests"
    }
    amd64 = index.image_for("linux/amd64")
    assert not await exists_at(token_registry, f"{dst_repo}@{amd64.digest}")
    assert not await exists_at(token_registry, f"{dst_repo}@{attestation.digest}")
    for platform in ("linux/arm64/v8", "linux/arm/v7"):
        child = index.image_for(platform)
        assert await raw_at(token_registry, f"{dst_repo}@{child.digest}") == child.manifest
    assert counts(result) == (4, 0, 0)  # config + layer of two children


async def test_platform_filter_matching_every_child_keeps_the_digest(anon_registry, repo_name, tmp_path):
    index = build_index(nonce=secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", index)
    async with make_client(tmp_path, (anon_registry.host, None)) as client:
        copier = ImageCopier(client)
        source = ref(anon_registry.host, src_repo)
        planned = await copier.planned_manifest(source, platforms=["linux/amd64", "linux/arm64"])
        result = await copier.copy(
            source, ref(anon_registry.host, dst_repo), platforms=["linux/arm64", "linux/amd64"]
        )
    assert planned.digest == result.digest == index.digest
    assert planned.raw == index.manifest


async def test_no_matching_platform_is_a_copy_error_and_pushes_nothing(
    anon_registry, token_registry, repo_name, tmp_path
):
    index, _ = with_attestation(build_index(nonce=secrets.token_hex(4)))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", index)
    source, target = ref(anon_registry.host, src_repo), ref(token_registry.host, dst_repo)
    async with make_client(
        tmp_path, (anon_registry.host, None), (token_registry.host, token_registry.creds)
    ) as client:
        copier = ImageCopier(client)
        with pytest.raises(CopyError) as planned:
            await copier.planned_manifest(source, platforms=["linux/s390x"])
        with pytest.raises(CopyError) as copied:
            await copier.copy(source, target, platforms=["linux/s390x", "windows/amd64"])
        assert await client.head_manifest(target) is None
    assert "it has linux/amd64, linux/arm64" in str(planned.value)
    assert "unknown" not in str(planned.value)
    assert "linux/s390x, windows/amd64" in str(copied.value)
    assert copier.stats.manifests_pushed == 0


async def test_single_image_is_copied_only_when_its_platform_matches(anon_registry, repo_name, tmp_path):
    image = build_image(platform="linux/arm64/v8", nonce=secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", image)
    source, target = ref(anon_registry.host, src_repo), ref(anon_registry.host, dst_repo)
    async with make_client(tmp_path, (anon_registry.host, None)) as client:
        copier = ImageCopier(client)
        with pytest.raises(CopyError, match="single image for linux/arm64/v8, not for platform linux/amd64"):
            await copier.copy(source, target, platforms=["linux/amd64"])
        assert await client.head_manifest(target) is None
        planned = await copier.planned_manifest(source, platforms=["linux/arm64"])
        result = await copier.copy(source, target, platforms=["linux/arm64"])
    assert planned.raw == image.manifest
    assert result.digest == image.digest
    assert result.platforms == ("linux/arm64/v8",)


async def test_malformed_platform_is_refused_before_any_request(anon_registry, repo_name, tmp_path):
    async with FaultProxy(anon_registry) as proxy, make_client(tmp_path, (proxy.host, None)) as client:
        with pytest.raises(CopyError, match="expected os/arch"):
            await ImageCopier(client).copy(
                ref(proxy.host, repo_name("src")), ref(proxy.host, repo_name("dst")), platforms=["amd64"]
            )
    assert proxy.requests == []


# -- skipping and mounting -----------------------------------------------------------------------


async def test_second_copy_finds_every_blob_present_and_uploads_nothing(
    anon_registry, token_registry, repo_name, tmp_path
):
    index = build_index(nonce=secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", index)
    progress: list[int] = []
    source, target = ref(anon_registry.host, src_repo), ref(token_registry.host, dst_repo)
    async with make_client(
        tmp_path, (anon_registry.host, None), (token_registry.host, token_registry.creds)
    ) as client:
        first = await ImageCopier(client).copy(source, target)
        copier = ImageCopier(client, on_bytes=progress.append)
        second = await copier.copy(source, target.with_tag("v2"))
    assert counts(first) == (len(index.blobs), 0, 0)
    assert counts(second) == (0, 0, len(index.blobs))
    assert second.bytes_uploaded == 0
    assert progress == []
    assert second.digest == index.digest
    assert sorted(await asyncio.to_thread(skopeo_list_tags, token_registry, dst_repo)) == ["v1", "v2"]


async def test_copy_inside_one_registry_mounts_every_blob(token_registry, repo_name, tmp_path):
    index = build_index(nonce=secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(token_registry, f"{src_repo}:v1", index)
    async with (
        FaultProxy(token_registry) as proxy,
        make_client(tmp_path, (proxy.host, token_registry.creds)) as client,
    ):
        result = await ImageCopier(client).copy(ref(proxy.host, src_repo), ref(proxy.host, dst_repo))
    assert counts(result) == (0, len(index.blobs), 0)
    assert result.bytes_uploaded == 0
    assert proxy.requests_matching("PUT|PATCH", "/blobs/uploads/") == []
    assert proxy.requests_matching("GET", "/blobs/") == []
    mounts = [r for r in proxy.requests_matching("POST", "/blobs/uploads/") if "mount=" in r.query]
    assert len(mounts) == len(index.blobs)
    assert all(r.status == 201 for r in mounts)
    assert await asyncio.to_thread(skopeo_digest, token_registry, f"{dst_repo}:v1") == index.digest


async def test_a_repository_copied_earlier_is_the_mount_source_for_the_next(
    anon_registry, token_registry, repo_name, tmp_path
):
    image = build_image(layers=[random_layer(200_000)], nonce=secrets.token_hex(4))
    src_repo, first_repo, second_repo = repo_name("src"), repo_name("first"), repo_name("second")
    await push(anon_registry, f"{src_repo}:v1", image)
    source = ref(anon_registry.host, src_repo)
    async with (
        FaultProxy(token_registry) as proxy,
        make_client(tmp_path, (anon_registry.host, None), (proxy.host, token_registry.creds)) as client,
    ):
        copier = ImageCopier(client)
        first = await copier.copy(source, ref(proxy.host, first_repo))
        second = await copier.copy(source, ref(proxy.host, second_repo))
    assert counts(first) == (2, 0, 0)
    assert counts(second) == (0, 2, 0)
    assert second.bytes_uploaded == 0
    mounts = [
        r for r in proxy.requests_matching("POST", f"/{second_repo}/blobs/uploads/") if "mount=" in r.query
    ]
    assert len(mounts) == 2
    assert all(f"from={first_repo.replace('/', '%2F')}" in r.query for r in mounts)
    assert copier.stats.blobs_uploaded == 2
    assert copier.stats.blobs_mounted == 2
    assert await asyncio.to_thread(skopeo_digest, token_registry, f"{second_repo}:v1") == image.digest


async def test_concurrent_copies_sharing_a_layer_send_it_once(
    anon_registry, token_registry, repo_name, tmp_path
):
    shared = random_layer(300_000)
    images = [build_image(layers=[shared], nonce=secrets.token_hex(4)) for _ in range(3)]
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    for n, image in enumerate(images):
        await push(anon_registry, f"{src_repo}:v{n}", image)
    async with make_client(
        tmp_path, (anon_registry.host, None), (token_registry.host, token_registry.creds)
    ) as client:
        copier = ImageCopier(client)
        results = await asyncio.gather(
            *(
                copier.copy(
                    ref(anon_registry.host, src_repo, f"v{n}"), ref(token_registry.host, dst_repo, f"v{n}")
                )
                for n in range(3)
            )
        )
    assert [r.digest for r in results] == [i.digest for i in images]
    assert copier.stats.blobs_uploaded == 4  # the shared layer once, three configs
    assert copier.stats.blobs_present == 2
    assert copier.stats.bytes_uploaded == shared.size + sum(i.config.size for i in images)


class CountingClient(RegistryClient):
    """Counts blob pushes in progress at once (what the copier's semaphore bounds)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.active = 0
        self.peak = 0

    async def push_blob(self, *args: Any, **kwargs: Any) -> Any:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            return await super().push_blob(*args, **kwargs)
        finally:
            self.active -= 1


async def test_parallelism_bounds_blob_transfers_across_concurrent_copies(anon_registry, repo_name, tmp_path):
    images = [
        build_image(layers=[random_layer(50_000) for _ in range(4)], nonce=secrets.token_hex(4))
        for _ in range(3)
    ]
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    for n, image in enumerate(images):
        await push(anon_registry, f"{src_repo}:v{n}", image)
    async with FaultProxy(anon_registry) as target_proxy:
        # Slow uploads, so that transfers overlap as much as the copier lets them.
        target_proxy.delay("PUT", "/blobs/uploads/", 0.1, times=None)
        scope = CredentialScope.for_command("sync")
        credentials = ScopedCredentials(CredentialResolver({}, home=tmp_path), scope)
        hosts = frozenset({anon_registry.host, target_proxy.host})
        async with CountingClient(credentials, scope=scope, insecure_hosts=hosts, retry=FAST_RETRY) as client:
            copier = ImageCopier(client, parallelism=3)
            results = await asyncio.gather(
                *(
                    copier.copy(
                        ref(anon_registry.host, src_repo, f"v{n}"), ref(target_proxy.host, dst_repo, f"v{n}")
                    )
                    for n in range(3)
                )
            )
    assert client.peak == 3
    assert sum(r.blobs_uploaded for r in results) == 15
    for n, image in enumerate(images):
        assert await asyncio.to_thread(skopeo_digest, anon_registry, f"{dst_repo}:v{n}") == image.digest


async def test_a_large_layer_is_streamed_with_bounded_memory(
    anon_registry, token_registry, repo_name, tmp_path
):
    layer = random_layer(64 * MiB)
    image = build_image(layers=[layer])
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    source = ref(anon_registry.host, src_repo)
    async with make_client(
        tmp_path, (anon_registry.host, None), (token_registry.host, token_registry.creds)
    ) as client:
        for blob in image.blobs:
            await client.push_blob(source, blob.digest, blob.size, blob.data)
        await client.put_manifest(source, image.manifest, image.media_type)
        copier = ImageCopier(client)
        tracemalloc.start()
        try:
            result = await copier.copy(source, ref(token_registry.host, dst_repo))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert result.bytes_uploaded == layer.size + image.config.size
    assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB while copying a {layer.size / MiB:.0f} MiB layer"
    assert await asyncio.to_thread(skopeo_digest, token_registry, f"{dst_repo}:v1") == image.digest


# -- failures and retries ------------------------------------------------------------------------


@pytest.fixture
def recorded_sleeps(monkeypatch):
    """The client's backoff sleeps, recorded and skipped."""
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args: Any, **kwargs: Any) -> None:
        sleeps.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(client_module.asyncio, "sleep", sleep)
    return sleeps


async def test_a_source_resetting_mid_blob_once_is_retried_from_a_fresh_stream(
    anon_registry, token_registry, repo_name, tmp_path
):
    layer = random_layer(2 * MiB)
    image = build_image(layers=[layer])
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", image)
    progress: list[int] = []
    async with FaultProxy(anon_registry) as source_proxy:
        rule = source_proxy.reset("GET", f"/blobs/{layer.digest}", mid_body=True, times=1)
        async with make_client(
            tmp_path, (source_proxy.host, None), (token_registry.host, token_registry.creds)
        ) as client:
            copier = ImageCopier(client, on_bytes=progress.append)
            result = await copier.copy(ref(source_proxy.host, src_repo), ref(token_registry.host, dst_repo))
    assert rule.hits == 1
    assert len(source_proxy.requests_matching("GET", f"/blobs/{layer.digest}")) == 2
    assert result.digest == image.digest
    assert counts(result) == (2, 0, 0)
    assert result.bytes_uploaded == layer.size + image.config.size  # counted once, on completion
    assert sum(progress) > result.bytes_uploaded  # progress saw the broken attempt too
    assert await asyncio.to_thread(skopeo_digest, token_registry, f"{dst_repo}:v1") == image.digest


async def test_redirected_source_blobs_are_streamed_from_the_object_store(
    basic_registry, token_registry, make_fault_proxy, make_blob_origin, repo_name, tmp_path
):
    image = build_image(layers=[random_layer(300_000)], nonce=secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(basic_registry, f"{src_repo}:v1", image)
    source_proxy = await make_fault_proxy(basic_registry)
    origin = await make_blob_origin(basic_registry)
    source_proxy.redirect_blobs_to(origin)
    async with make_client(
        tmp_path, (source_proxy.host, basic_registry.creds), (token_registry.host, token_registry.creds)
    ) as client:
        result = await ImageCopier(client).copy(
            ref(source_proxy.host, src_repo), ref(token_registry.host, dst_repo)
        )
    assert result.digest == image.digest
    assert len(origin.requests) == 2
    assert origin.requests_with_authorization() == []
    assert await asyncio.to_thread(skopeo_digest, token_registry, f"{dst_repo}:v1") == image.digest


async def test_a_source_that_keeps_failing_leaves_no_tag_and_no_index(
    anon_registry, token_registry, repo_name, tmp_path
):
    index = build_index(("linux/amd64", "linux/arm64"), nonce=secrets.token_hex(4))
    broken = index.image_for("linux/arm64").layers[0]
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", index)
    async with FaultProxy(anon_registry) as source_proxy:
        source_proxy.reset("GET", f"/blobs/{broken.digest}", mid_body=True, times=None)
        target = ref(token_registry.host, dst_repo)
        async with make_client(
            tmp_path, (source_proxy.host, None), (token_registry.host, token_registry.creds)
        ) as client:
            copier = ImageCopier(client)
            with pytest.raises(RegistryError) as info:
                await copier.copy(ref(source_proxy.host, src_repo), target)
            assert await client.head_manifest(target) is None
            for digest in index.manifests:
                assert await client.head_manifest(target.with_digest(digest)) is None
    message = str(info.value)
    assert isinstance(info.value, RegistryUnavailable)
    assert broken.digest in message
    assert f"{source_proxy.host}/{src_repo}:v1" in message
    assert f"{token_registry.host}/{dst_repo}:v1" in message
    assert len(source_proxy.requests_matching("GET", f"/blobs/{broken.digest}")) == FAST_RETRY.attempts
    assert copier.stats.manifests_pushed == 0


async def test_a_429_storm_with_retry_after_is_ridden_out(
    anon_registry, token_registry, repo_name, tmp_path, recorded_sleeps
):
    index = build_index(nonce=secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", index)
    busy = {"Retry-After": "3"}
    async with FaultProxy(token_registry) as target_proxy:
        rules = [
            target_proxy.fail("HEAD", "/blobs/", 429, times=2, headers=busy),
            target_proxy.fail("POST", "/blobs/uploads/", 429, times=2, headers=busy),
            target_proxy.fail("PUT", "/blobs/uploads/", 429, times=2, headers=busy),
            target_proxy.fail("PUT", "/manifests/", 429, times=2, headers=busy),
        ]
        async with make_client(
            tmp_path, (anon_registry.host, None), (target_proxy.host, token_registry.creds)
        ) as client:
            result = await ImageCopier(client, parallelism=1).copy(
                ref(anon_registry.host, src_repo), ref(target_proxy.host, dst_repo)
            )
    assert [r.hits for r in rules] == [2, 2, 2, 2]
    assert result.digest == index.digest
    assert recorded_sleeps.count(3.0) == 8  # every 429 waited as long as asked
    assert await asyncio.to_thread(skopeo_digest, token_registry, f"{dst_repo}:v1") == index.digest


async def test_a_target_without_push_credentials_is_a_clear_error(
    anon_registry, basic_registry, repo_name, tmp_path
):
    image = build_image(nonce=secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", image)
    async with make_client(tmp_path, (anon_registry.host, None), (basic_registry.host, None)) as client:
        with pytest.raises(AuthError) as info:
            await ImageCopier(client).copy(
                ref(anon_registry.host, src_repo), ref(basic_registry.host, dst_repo)
            )
    message = str(info.value)
    assert f"to {basic_registry.host}/{dst_repo}:v1" in message
    assert "requires credentials" in message
    assert env_prefix(basic_registry.host) in message
    assert await tags_at(basic_registry, dst_repo) == []


@pytest.mark.parametrize("refused", ["POST /blobs/uploads/", "PUT /manifests/"])
async def test_a_target_refusing_pushes_leaves_no_tag(
    anon_registry, token_registry, repo_name, tmp_path, refused
):
    index = build_index(nonce=secrets.token_hex(4))
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    await push(anon_registry, f"{src_repo}:v1", index)
    method, path = refused.split(" ")
    denied = json.dumps(
        {"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}
    )
    async with FaultProxy(token_registry) as target_proxy:
        target_proxy.fail(method, path, 403, times=None, body=denied)
        async with make_client(
            tmp_path, (anon_registry.host, None), (target_proxy.host, token_registry.creds)
        ) as client:
            with pytest.raises(AuthError, match="HTTP 403") as info:
                await ImageCopier(client).copy(
                    ref(anon_registry.host, src_repo), ref(target_proxy.host, dst_repo)
                )
    assert f"{target_proxy.host}/{dst_repo}" in str(info.value)
    assert await tags_at(token_registry, dst_repo) == []
    assert not await exists_at(token_registry, f"{dst_repo}@{index.digest}")


# -- non-distributable layers ----------------------------------------------------------------------

# distribution refuses foreign-layer URLs unless they are allowed ("invalid URL on layer").
ALLOW_FOREIGN_URLS = {"validation": {"manifests": {"urls": {"allow": ["^https?://"]}}}}


@pytest.mark.parametrize(
    ("docker", "media_type"),
    [
        (True, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
        (False, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
    ],
)
async def test_foreign_layers_stay_in_the_manifest_and_are_not_copied(
    fresh_registry, repo_name, tmp_path, docker, media_type
):
    source_registry = fresh_registry("anon", extra_config=ALLOW_FOREIGN_URLS)
    target_registry = fresh_registry("anon", extra_config=ALLOW_FOREIGN_URLS)
    image = build_image(nonce=secrets.token_hex(4), docker=docker)
    foreign = {
        "mediaType": media_type,
        "size": 1234,
        "digest": "sha256:" + secrets.token_hex(32),  # a blob no registry here has
        "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:0123"],
    }
    doc = image.manifest_json()
    doc["layers"] = [foreign, *doc["layers"]]
    raw = json.dumps(doc, indent=3).encode()
    src_repo, dst_repo = repo_name("src"), repo_name("dst")
    source = ref(source_registry.host, src_repo)
    async with (
        FaultProxy(target_registry) as target_proxy,
        make_client(tmp_path, (source_registry.host, None), (target_proxy.host, None)) as client,
    ):
        for blob in image.blobs:
            await client.push_blob(source, blob.digest, blob.size, blob.data)
        await client.put_manifest(source, raw, image.media_type)
        result = await ImageCopier(client).copy(source, ref(target_proxy.host, dst_repo))
    assert result.digest == sha256_digest(raw)
    assert counts(result) == (2, 0, 0)
    assert target_proxy.requests_matching("*", foreign["digest"]) == []
    assert await raw_at(target_registry, f"{dst_repo}:v1") == raw
