"""Single-tag removal (bot/oci/tags.py) against real registries, checked with skopeo."""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path

import pytest

from bot.credentials import CredentialResolver, CredentialScope, ScopedCredentials, env_prefix
from bot.errors import RegistryError
from bot.oci.client import RegistryClient
from bot.oci.reference import ImageReference, parse_reference
from bot.oci.sansio import sha256_digest
from bot.oci.tags import (
    EMPTY_DIGEST,
    THROWAWAY_ANNOTATION,
    Removal,
    TagMoved,
    TagSet,
    TagTarget,
    remove_tag,
    resolve_tags,
    throwaway_manifest,
)
from bot.retry import RetryPolicy
from tests.helpers.images import build_image, build_index
from tests.helpers.registry import RunningRegistry
from tests.helpers.skopeo import SkopeoError, push_image, skopeo_digest, skopeo_inspect, skopeo_list_tags

FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05)


def cleanup_client(host: str, registry: RunningRegistry | None, home: Path) -> RegistryClient:
    """A client with the cleanup command's scope (pull, push, delete) and the registry's credentials."""
    environ = {"PATH": "/usr/bin:/bin"}
    if registry is not None and registry.creds is not None:
        prefix = env_prefix(host)
        environ |= {f"{prefix}_USERNAME": registry.creds[0], f"{prefix}_PASSWORD": registry.creds[1]}
    scope = CredentialScope.for_command("cleanup")
    credentials = ScopedCredentials(CredentialResolver(environ, home=home), scope)
    return RegistryClient(credentials, scope=scope, insecure_hosts=frozenset({host}), retry=FAST_RETRY)


def repo_ref(host: str, repo: str) -> ImageReference:
    return parse_reference(f"{host}/{repo}:x").with_tag("x")


async def push(registry: RunningRegistry, repo_tag: str, image) -> str:
    return await asyncio.to_thread(push_image, registry, repo_tag, image)


async def tags_of(registry: RunningRegistry, repo: str) -> list[str]:
    return sorted(await asyncio.to_thread(skopeo_list_tags, registry, repo))


async def exists(registry: RunningRegistry, ref: str) -> bool:
    try:
        await asyncio.to_thread(skopeo_digest, registry, ref)
    except SkopeoError:
        return False
    return True


# -- pure parts --------------------------------------------------------------------------------


def test_throwaway_manifests_are_unique_minimal_oci_manifests():
    first, second = throwaway_manifest(), throwaway_manifest()
    assert sha256_digest(first) != sha256_digest(second)
    document = json.loads(first)
    assert document["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert document["config"] == {
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": EMPTY_DIGEST,
        "size": 2,
    }
    assert document["layers"] == []
    assert set(document["annotations"]) == {THROWAWAY_ANNOTATION}
    assert sha256_digest(b"{}") == EMPTY_DIGEST
    assert len(first) < 400


def test_tag_set_knows_shared_digests_and_index_children():
    tags = TagSet(
        {
            "a": TagTarget("sha256:1"),
            "b": TagTarget("sha256:1"),
            "index": TagTarget("sha256:9", ("sha256:2", "sha256:3")),
            "child": TagTarget("sha256:2"),
            "alone": TagTarget("sha256:4"),
        }
    )
    assert tags.shares("a", "sha256:1")
    assert tags.shared_with("child")("sha256:2")  # the index lists it
    assert not tags.shares("alone", "sha256:4")
    assert not tags.shares("index", "sha256:9")
    tags.discard("b")
    assert not tags.shares("a", "sha256:1")
    assert "b" not in tags
    assert len(tags) == 4


# -- against registries ------------------------------------------------------------------------


async def test_removing_one_of_two_tags_on_a_digest_keeps_the_other(any_registry, unique_repo, tmp_path):
    image = build_image(nonce=secrets.token_hex(4))
    await push(any_registry, f"{unique_repo}:old", image)
    await push(any_registry, f"{unique_repo}:stable", image)
    repo = repo_ref(any_registry.host, unique_repo)
    async with cleanup_client(any_registry.host, any_registry, tmp_path) as client:
        tags = await resolve_tags(client, repo, ["old", "stable"])
        assert tags.get("old") == TagTarget(image.digest)
        removal = await remove_tag(
            client, repo.with_tag("old"), shared=tags.shared_with("old"), expected_digest=image.digest
        )
    assert removal is Removal.UNTAGGED
    assert await tags_of(any_registry, unique_repo) == ["stable"]
    inspected = await asyncio.to_thread(skopeo_inspect, any_registry, f"{unique_repo}:stable")
    assert inspected["Digest"] == image.digest
    # the throwaway is gone too: nothing but the image's own manifest is left under a tag
    assert (
        await asyncio.to_thread(skopeo_digest, any_registry, f"{unique_repo}@{image.digest}") == image.digest
    )


async def test_a_tag_alone_on_its_digest_is_deleted_with_its_manifest(anon_registry, unique_repo, tmp_path):
    image = build_image(nonce=secrets.token_hex(4))
    other = build_image(nonce=secrets.token_hex(4))
    await push(anon_registry, f"{unique_repo}:old", image)
    await push(anon_registry, f"{unique_repo}:new", other)
    repo = repo_ref(anon_registry.host, unique_repo)
    async with cleanup_client(anon_registry.host, None, tmp_path) as client:
        tags = await resolve_tags(client, repo, ["old", "new", "never-existed"])
        assert len(tags) == 2
        removal = await remove_tag(client, repo.with_tag("old"), shared=tags.shared_with("old"))
        again = await remove_tag(client, repo.with_tag("old"), shared=tags.shared_with("old"))
    assert (removal, again) == (Removal.DELETED, Removal.ABSENT)
    assert await tags_of(anon_registry, unique_repo) == ["new"]
    assert not await exists(anon_registry, f"{unique_repo}@{image.digest}")


async def test_a_tag_on_a_child_of_another_tags_index_is_untagged_not_deleted(
    anon_registry, unique_repo, tmp_path
):
    index = build_index(nonce=secrets.token_hex(4))
    child = index.images[0]
    await push(anon_registry, f"{unique_repo}:multi", index)
    repo = repo_ref(anon_registry.host, unique_repo)
    async with cleanup_client(anon_registry.host, None, tmp_path) as client:
        source = await client.get_manifest(repo.with_digest(child.digest))
        await client.put_manifest(repo.with_tag("amd64-only"), source.raw, source.media_type)
        tags = await resolve_tags(client, repo, ["multi", "amd64-only"])
        assert tags.get("multi") == TagTarget(index.digest, tuple(i.digest for i in index.images))
        removal = await remove_tag(client, repo.with_tag("amd64-only"), shared=tags.shared_with("amd64-only"))
    assert removal is Removal.UNTAGGED
    assert await tags_of(anon_registry, unique_repo) == ["multi"]
    for image in index.images:  # the index is whole: both platforms still resolve
        assert await exists(anon_registry, f"{unique_repo}@{image.digest}")


async def test_a_tag_pushed_again_since_it_was_examined_is_left_in_place(
    anon_registry, unique_repo, tmp_path
):
    examined = build_image(nonce=secrets.token_hex(4))
    repushed = build_image(nonce=secrets.token_hex(4))
    await push(anon_registry, f"{unique_repo}:v1", repushed)
    repo = repo_ref(anon_registry.host, unique_repo)
    async with cleanup_client(anon_registry.host, None, tmp_path) as client:
        with pytest.raises(TagMoved, match="left in place"):
            await remove_tag(
                client, repo.with_tag("v1"), shared=lambda _d: False, expected_digest=examined.digest
            )
    assert await tags_of(anon_registry, unique_repo) == ["v1"]


@pytest.mark.parametrize("shared", [False, True], ids=["alone", "shared"])
async def test_a_registry_refusing_deletes_leaves_every_tag_as_it_was(
    anon_registry, unique_repo, tmp_path, make_fault_proxy, shared
):
    image = build_image(nonce=secrets.token_hex(4))
    await push(anon_registry, f"{unique_repo}:old", image)
    if shared:
        await push(anon_registry, f"{unique_repo}:stable", image)
    proxy = await make_fault_proxy(anon_registry)
    proxy.fail("DELETE", "/manifests/", 405, times=None, body='{"errors":[{"code":"UNSUPPORTED"}]}')
    repo = repo_ref(proxy.host, unique_repo)
    async with cleanup_client(proxy.host, None, tmp_path) as client:
        with pytest.raises(RegistryError, match="405") as caught:
            await remove_tag(client, repo.with_tag("old"), shared=lambda _d: shared)
    assert not isinstance(caught.value, TagMoved)
    if shared:
        assert "put back" in str(caught.value)
    assert await asyncio.to_thread(skopeo_digest, anon_registry, f"{unique_repo}:old") == image.digest
    assert await tags_of(anon_registry, unique_repo) == (["old", "stable"] if shared else ["old"])


async def test_remove_tag_wants_a_reference_by_tag(anon_registry, tmp_path):
    ref = parse_reference(f"{anon_registry.host}/x/y@{EMPTY_DIGEST}")
    async with cleanup_client(anon_registry.host, None, tmp_path) as client:
        with pytest.raises(ValueError, match="by tag"):
            await remove_tag(client, ref, shared=lambda _d: False)
