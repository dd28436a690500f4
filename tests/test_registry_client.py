"""The OCI registry client against real registries (distribution 2.8), checked with skopeo."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from pathlib import Path

import httpx
import pytest

from bot.credentials import CredentialResolver, CredentialScope, ScopedCredentials, env_prefix
from bot.errors import AuthError, NotFoundError, RegistryUnavailable, ScopeError
from bot.oci import client as client_module
from bot.oci.client import PushResult, RegistryClient
from bot.oci.reference import ImageReference, parse_reference
from bot.retry import RetryPolicy
from tests.helpers.images import TestImage, TestIndex, build_image, build_index, random_layer
from tests.helpers.proxy import BlobOrigin, FaultProxy
from tests.helpers.registry import RunningRegistry, start_registry
from tests.helpers.skopeo import push_image, skopeo_digest, skopeo_inspect_raw, skopeo_list_tags

HELPERS_DIR = Path(__file__).parent / "helpers"
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_retry_after=5)


def env_for(host: str, **values: str) -> dict[str, str]:
    """IMGLIFE_<HOST>_<KEY> variables for ``host`` (keys: USERNAME, PASSWORD, TOKEN)."""
    return {f"{env_prefix(host)}_{key}": value for key, value in values.items()}


def registry_env(registry: RunningRegistry) -> dict[str, str]:
    if registry.creds is None:
        return {}
    return env_for(registry.host, USERNAME=registry.username, PASSWORD=registry.password)


def make_client(
    host: str,
    environ: dict[str, str] | None = None,
    *,
    home: Path,
    command: str = "serve",
    insecure: bool = True,
    **kwargs,
) -> RegistryClient:
    scope = CredentialScope.for_command(command)
    env = {"PATH": "/usr/bin:/bin", **(environ or {})}
    credentials = ScopedCredentials(CredentialResolver(env, home=home), scope)
    kwargs.setdefault("retry", FAST_RETRY)
    return RegistryClient(
        credentials, scope=scope, insecure_hosts=frozenset({host}) if insecure else frozenset(), **kwargs
    )


def ref_of(host: str, repo: str, tag: str = "latest") -> ImageReference:
    return parse_reference(f"{host}/{repo}:{tag}")


async def push_with_client(client: RegistryClient, ref: ImageReference, image: TestImage | TestIndex) -> str:
    for blob in image.blobs:
        await client.push_blob(ref, blob.digest, blob.size, blob.data)
    digest = ""
    for child_digest, (media_type, raw) in image.manifests.items():
        target = ref if child_digest == image.digest else ref.with_digest(child_digest)
        digest = await client.put_manifest(target, raw, media_type)
    return digest


def basic_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def write_docker_config(directory: Path, config: dict) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(directory)}


# -- anonymous registry ------------------------------------------------------------------------


async def test_anonymous_pull_of_an_image_pushed_by_skopeo(
    anon_registry: RunningRegistry, unique_repo, tmp_path
):
    image = build_image(labels={"org.opencontainers.image.base.name": "docker.io/library/alpine:3.19"})
    await asyncio.to_thread(push_image, anon_registry, f"{unique_repo}:v1", image)
    ref = ref_of(anon_registry.host, unique_repo, "v1")
    async with make_client(anon_registry.host, home=tmp_path) as client:
        descriptor = await client.head_manifest(ref)
        manifest = await client.get_manifest(ref)
        config = await client.get_blob(ref, image.config.digest)
        tags = await client.list_tags(ref)
    assert descriptor is not None
    assert descriptor.digest == image.digest
    assert manifest.raw == image.manifest
    assert manifest.media_type == image.media_type
    assert config == image.config.data
    assert tags == ["v1"]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: build_image(nonce=secrets.token_hex(4)), id="oci-manifest"),
        pytest.param(lambda: build_image(nonce=secrets.token_hex(4), docker=True), id="docker-manifest"),
        pytest.param(lambda: build_index(nonce=secrets.token_hex(4)), id="oci-index"),
        pytest.param(lambda: build_index(nonce=secrets.token_hex(4), docker=True), id="docker-manifest-list"),
    ],
)
async def test_push_round_trip_is_byte_exact_for_skopeo(anon_registry, unique_repo, tmp_path, make):
    image = make()
    ref = ref_of(anon_registry.host, unique_repo, "v1")
    async with make_client(anon_registry.host, home=tmp_path) as client:
        digest = await push_with_client(client, ref, image)
        again = await client.get_manifest(ref)
    assert digest == image.digest
    assert again.raw == image.manifest
    raw = await asyncio.to_thread(skopeo_inspect_raw, anon_registry, f"{unique_repo}:v1")
    assert raw == image.manifest
    assert await asyncio.to_thread(skopeo_digest, anon_registry, f"{unique_repo}:v1") == image.digest


async def test_missing_manifest_is_none_on_head_and_not_found_on_get(anon_registry, unique_repo, tmp_path):
    ref = ref_of(anon_registry.host, unique_repo, "nope")
    async with make_client(anon_registry.host, home=tmp_path) as client:
        assert await client.head_manifest(ref) is None
        with pytest.raises(NotFoundError, match="not found"):
            await client.get_manifest(ref)


@pytest.mark.parametrize(("client_page", "server_page", "requests"), [(3, None, 3), (None, 2, 4)])
async def test_tag_listing_follows_every_page(
    anon_registry, unique_repo, tmp_path, client_page, server_page, requests
):
    # distribution 2.8 ignores n/last on tags/list; the proxy pages the real registry's list the way
    # distribution v3, GitLab and Harbor do (sorted, Link: rel="next").
    image = build_image(nonce=secrets.token_hex(4))
    tags = [f"1.{n}.0" for n in range(7)]
    async with FaultProxy(anon_registry) as proxy:
        proxy.paginate_tags(page_size=server_page)
        ref = ref_of(proxy.host, unique_repo, tags[0])
        async with make_client(proxy.host, home=tmp_path) as client:
            await push_with_client(client, ref, image)
            for tag in tags[1:]:
                await client.put_manifest(ref.with_tag(tag), image.manifest, image.media_type)
            listed = await client.list_tags(ref, page_size=client_page)
    assert listed == sorted(tags)
    assert len(proxy.requests_matching("GET", "/tags/list")) == requests


async def test_delete_by_digest_removes_every_tag_on_that_digest(any_registry, unique_repo, tmp_path):
    image = build_image(nonce=secrets.token_hex(4))
    ref = ref_of(any_registry.host, unique_repo, "a")
    async with make_client(any_registry.host, registry_env(any_registry), home=tmp_path) as client:
        digest = await push_with_client(client, ref, image)
        await client.put_manifest(ref.with_tag("b"), image.manifest, image.media_type)
        await client.delete_manifest(ref.with_digest(digest))
        assert await client.head_manifest(ref.with_tag("b")) is None
    assert await asyncio.to_thread(skopeo_list_tags, any_registry, unique_repo) == []


# -- blob uploads ----------------------------------------------------------------------------


async def test_cross_repository_mount_answers_201_and_falls_back_to_upload(
    token_registry, unique_repo, tmp_path
):
    image = build_image(nonce=secrets.token_hex(4))
    environ = registry_env(token_registry)
    source = ref_of(token_registry.host, f"{unique_repo}/source", "v1")
    target = ref_of(token_registry.host, f"{unique_repo}/target", "v1")
    fresh = random_layer(2048)
    async with make_client(token_registry.host, environ, home=tmp_path) as client:
        await push_with_client(client, source, image)
        layer = image.layers[0]
        mounted = await client.push_blob(
            target, layer.digest, layer.size, layer.data, mount_from=source.repository
        )
        # The source repository does not have this blob: the registry opens an upload session (202) instead.
        uploaded = await client.push_blob(
            target, fresh.digest, fresh.size, fresh.data, mount_from=source.repository
        )
        again = await client.push_blob(target, fresh.digest, fresh.size, fresh.data)
    assert (mounted, uploaded, again) == (PushResult.MOUNTED, PushResult.UPLOADED, PushResult.EXISTS)


async def test_chunked_upload_sends_patches_of_the_chunk_size(anon_registry, unique_repo, tmp_path):
    layer = random_layer(300_000)
    image = build_image(layers=[layer])
    async with FaultProxy(anon_registry) as proxy:
        ref = ref_of(proxy.host, unique_repo, "chunked")
        async with make_client(proxy.host, home=tmp_path) as client:
            result = await client.push_blob(ref, layer.digest, layer.size, layer.data, chunk_size=64 * 1024)
            await push_with_client(client, ref, image)
    assert result is PushResult.UPLOADED
    patches = proxy.requests_matching("PATCH", "/blobs/uploads/")
    assert len(patches) == -(-layer.size // (64 * 1024))
    assert await asyncio.to_thread(skopeo_digest, anon_registry, f"{unique_repo}:chunked") == image.digest


async def test_upload_falls_back_to_chunks_when_a_proxy_refuses_large_bodies(
    anon_registry, unique_repo, tmp_path
):
    layer = random_layer(200_000)

    async def stream():
        for start in range(0, layer.size, 10_000):
            yield layer.data[start : start + 10_000]

    async with FaultProxy(anon_registry) as proxy:
        proxy.reject_body("PUT|PATCH", "/blobs/uploads/", min_bytes=100_000)  # nginx client_max_body_size
        ref = ref_of(proxy.host, unique_repo, "v1")
        async with make_client(proxy.host, home=tmp_path, chunk_size=64 * 1024) as client:
            result = await client.push_blob(ref, layer.digest, layer.size, stream)
            assert await client.blob_exists(ref, layer.digest)
    assert result is PushResult.UPLOADED
    refused = [r for r in proxy.requests_matching("PUT", "/blobs/uploads/") if r.body_size >= 100_000]
    assert len(refused) == 1
    assert proxy.requests_matching("PATCH", "/blobs/uploads/")


async def test_streamed_blob_download_verifies_the_digest(anon_registry, unique_repo, tmp_path):
    layer = random_layer(500_000)
    image = build_image(layers=[layer])
    await asyncio.to_thread(push_image, anon_registry, f"{unique_repo}:v1", image)
    ref = ref_of(anon_registry.host, unique_repo, "v1")
    async with (
        make_client(anon_registry.host, home=tmp_path) as client,
        client.open_blob(ref, layer.digest) as blob,
    ):
        assert blob.size == layer.size
        received = b"".join([piece async for piece in blob.chunks(65536)])
    assert received == layer.data


# -- authentication --------------------------------------------------------------------------


async def test_basic_auth_with_environment_credentials(basic_registry, unique_repo, tmp_path):
    image = build_image(nonce=secrets.token_hex(4))
    environ = registry_env(basic_registry)
    ref = ref_of(basic_registry.host, unique_repo, "v1")
    async with make_client(basic_registry.host, environ, home=tmp_path) as client:
        await push_with_client(client, ref, image)
        assert (await client.get_manifest(ref)).raw == image.manifest
    assert await asyncio.to_thread(skopeo_digest, basic_registry, f"{unique_repo}:v1") == image.digest


async def test_refused_basic_credentials_name_the_variables_not_the_secret(
    basic_registry, unique_repo, tmp_path
):
    wrong = f"wrong-pw-{secrets.token_hex(6)}"
    environ = env_for(basic_registry.host, USERNAME=basic_registry.username, PASSWORD=wrong)
    async with make_client(basic_registry.host, environ, home=tmp_path) as client:
        with pytest.raises(AuthError) as info:
            await client.get_manifest(ref_of(basic_registry.host, unique_repo))
    message = str(info.value)
    prefix = env_prefix(basic_registry.host)
    assert f"{prefix}_USERNAME/{prefix}_PASSWORD" in message
    assert "refused" in message
    assert wrong not in message


async def test_missing_credentials_say_which_variables_to_set(basic_registry, unique_repo, tmp_path):
    async with make_client(basic_registry.host, home=tmp_path) as client:
        with pytest.raises(AuthError) as info:
            await client.list_tags(ref_of(basic_registry.host, unique_repo))
    prefix = env_prefix(basic_registry.host)
    assert "requires credentials" in str(info.value)
    assert f"set {prefix}_USERNAME and {prefix}_PASSWORD, or {prefix}_TOKEN" in str(info.value)


async def test_token_auth_caches_one_token_per_scope(token_registry, unique_repo, tmp_path):
    image = build_image(nonce=secrets.token_hex(4))
    environ = registry_env(token_registry)
    ref = ref_of(token_registry.host, unique_repo, "v1")
    token_server = token_registry.token_server
    async with make_client(token_registry.host, environ, home=tmp_path) as client:
        await push_with_client(client, ref, image)
    token_server.reset()
    async with make_client(token_registry.host, environ, home=tmp_path) as client:
        await asyncio.gather(*(client.head_manifest(ref) for _ in range(10)))
        for _ in range(5):
            await client.get_manifest(ref)
            await client.list_tags(ref)
        pulls = token_server.token_requests()
        await client.put_manifest(ref.with_tag("v2"), image.manifest, image.media_type)
        await client.put_manifest(ref.with_tag("v3"), image.manifest, image.media_type)
        pushes = token_server.token_requests() - pulls
    assert pulls == 1  # one pull-scope token for 10 concurrent and 10 sequential requests
    assert pushes == 1  # one pull,push-scope token for both pushes
    assert client.auth.token_requests == 2


async def test_tokens_are_renewed_once_expired(token_registry, token_image, unique_repo, tmp_path):
    server = token_registry.token_server
    server.configure(expires_in=1)
    try:
        ref = ref_of(token_registry.host, unique_repo, "v1")
        async with make_client(token_registry.host, registry_env(token_registry), home=tmp_path) as client:
            await client.get_manifest(ref)
            await client.get_manifest(ref)
            cached = client.auth.token_requests
            await asyncio.sleep(1.0)
            await client.get_manifest(ref)
    finally:
        server.reset_config()
    assert (cached, client.auth.token_requests) == (1, 2)


async def test_anonymous_token_cannot_push_and_the_error_says_what_to_set(
    token_registry, unique_repo, tmp_path
):
    image = build_image(nonce=secrets.token_hex(4))
    ref = ref_of(token_registry.host, unique_repo, "v1")
    async with make_client(token_registry.host, home=tmp_path) as client:
        with pytest.raises(AuthError, match="requires credentials") as info:
            await client.push_blob(ref, image.config.digest, image.config.size, image.config.data)
    assert env_prefix(token_registry.host) in str(info.value)


async def test_token_realm_refusing_the_password_is_reported_with_the_source(
    token_registry, unique_repo, tmp_path
):
    wrong = f"wrong-{secrets.token_hex(6)}"
    environ = env_for(token_registry.host, USERNAME=token_registry.username, PASSWORD=wrong)
    async with make_client(token_registry.host, environ, home=tmp_path) as client:
        with pytest.raises(AuthError, match="token service") as info:
            await client.list_tags(ref_of(token_registry.host, unique_repo))
    assert f"{env_prefix(token_registry.host)}_USERNAME" in str(info.value)
    assert wrong not in str(info.value)


@pytest.fixture
def token_image(token_registry, unique_repo):
    """An image at ``unique_repo:v1`` in the token-auth registry."""
    image = build_image(nonce=secrets.token_hex(4))
    push_image(token_registry, f"{unique_repo}:v1", image, token_registry.creds)
    return image


async def pull_token(registry: RunningRegistry, repo: str) -> str:
    """A registry JWT granting pull on ``repo``, fetched the way docker login would."""
    server = registry.token_server
    async with httpx.AsyncClient() as http:
        response = await http.get(
            server.realm,
            params={"service": server.service, "scope": f"repository:{repo}:pull"},
            auth=registry.creds,
        )
    return response.json()["token"]


async def test_token_variable_refused_by_the_realm_is_presented_as_the_bearer(
    token_registry, token_image, unique_repo, tmp_path
):
    environ = env_for(token_registry.host, TOKEN=await pull_token(token_registry, unique_repo))
    async with make_client(token_registry.host, environ, home=tmp_path) as client:
        manifest = await client.get_manifest(ref_of(token_registry.host, unique_repo, "v1"))
    assert manifest.raw == token_image.manifest


# -- credential sources against a real registry ----------------------------------------------


@pytest.fixture
def basic_image(basic_registry, unique_repo):
    image = build_image(nonce=secrets.token_hex(4))
    push_image(basic_registry, f"{unique_repo}:v1", image, basic_registry.creds)
    return image


def auths_entry_forms(registry: RunningRegistry) -> dict[str, dict]:
    user, password = registry.creds
    return {
        "auth-by-host": {"auths": {registry.host: {"auth": basic_auth(user, password)}}},
        "username-password-by-url": {
            "auths": {f"http://{registry.host}/v2/": {"username": user, "password": password}}
        },
        "https-key": {"auths": {f"https://{registry.host}": {"auth": basic_auth(user, password)}}},
    }


@pytest.mark.parametrize("form", ["auth-by-host", "username-password-by-url", "https-key"])
async def test_docker_config_auths_are_used(basic_registry, basic_image, unique_repo, tmp_path, form):
    environ = write_docker_config(tmp_path / "docker", auths_entry_forms(basic_registry)[form])
    async with make_client(basic_registry.host, environ, home=tmp_path) as client:
        manifest = await client.get_manifest(ref_of(basic_registry.host, unique_repo, "v1"))
    assert manifest.digest == basic_image.digest


@pytest.mark.parametrize("key", ["credHelpers", "credsStore"])
async def test_docker_credential_helpers_are_run(basic_registry, basic_image, unique_repo, tmp_path, key):
    store = tmp_path / "store.json"
    user, password = basic_registry.creds
    store.write_text(json.dumps({basic_registry.host: {"Username": user, "Secret": password}}))
    config = (
        {"credHelpers": {basic_registry.host: "imglife-test"}}
        if key == "credHelpers"
        else {"credsStore": "imglife-test"}
    )
    environ = write_docker_config(tmp_path / "docker", config)
    environ.update(PATH=f"{HELPERS_DIR}:/usr/bin:/bin", IMGLIFE_TEST_CREDSTORE=str(store))
    async with make_client(basic_registry.host, environ, home=tmp_path) as client:
        manifest = await client.get_manifest(ref_of(basic_registry.host, unique_repo, "v1"))
    assert manifest.digest == basic_image.digest


async def test_gitlab_job_token_is_used_for_ci_registry_only(
    basic_registry, basic_image, unique_repo, tmp_path
):
    job_token = f"job-{secrets.token_hex(8)}"
    basic_registry.add_user("gitlab-ci-token", job_token)
    environ = {"CI_JOB_TOKEN": job_token, "CI_REGISTRY": basic_registry.host}
    async with make_client(basic_registry.host, environ, home=tmp_path) as client:
        manifest = await client.get_manifest(ref_of(basic_registry.host, unique_repo, "v1"))
    assert manifest.digest == basic_image.digest
    other = {"CI_JOB_TOKEN": job_token, "CI_REGISTRY": "registry.example.com:5050"}
    async with make_client(basic_registry.host, other, home=tmp_path) as client:
        with pytest.raises(AuthError, match="requires credentials"):
            await client.get_manifest(ref_of(basic_registry.host, unique_repo, "v1"))


@pytest.mark.parametrize(
    ("sources", "winner"),
    [
        (("env:good", "job:bad", "docker:bad"), "env"),
        (("env:bad", "job:good", "docker:good"), "env"),
        (("job:good", "docker:bad"), "job"),
        (("job:bad", "docker:good"), "job"),
        (("docker:good",), "docker"),
    ],
)
async def test_credential_precedence_env_then_job_token_then_docker_config(
    basic_registry, basic_image, unique_repo, tmp_path, sources, winner
):
    user, password = basic_registry.creds
    job_token = f"job-{secrets.token_hex(8)}"
    basic_registry.add_user("gitlab-ci-token", job_token)
    environ: dict[str, str] = {}
    for source in sources:
        kind, quality = source.split(":")
        secret = (
            {"env": password, "job": job_token, "docker": password}[kind]
            if quality == "good"
            else "nope-nope"
        )
        if kind == "env":
            environ.update(env_for(basic_registry.host, USERNAME=user, PASSWORD=secret))
        elif kind == "job":
            environ.update(CI_JOB_TOKEN=secret, CI_REGISTRY=basic_registry.host)
        else:
            environ.update(
                write_docker_config(
                    tmp_path / "docker", {"auths": {basic_registry.host: {"auth": basic_auth(user, secret)}}}
                )
            )
    expected_source = {
        "env": env_prefix(basic_registry.host),
        "job": "CI_JOB_TOKEN",
        "docker": "docker config",
    }[winner]
    winner_good = f"{winner}:good" in sources
    async with make_client(basic_registry.host, environ, home=tmp_path) as client:
        ref = ref_of(basic_registry.host, unique_repo, "v1")
        if winner_good:
            assert (await client.get_manifest(ref)).digest == basic_image.digest
        else:
            with pytest.raises(AuthError, match="refused") as info:
                await client.get_manifest(ref)
            assert expected_source in str(info.value)
        assert expected_source in client.auth.known_credential(basic_registry.host).source


async def test_docker_identity_token_is_exchanged_at_the_realm(
    token_registry, token_image, unique_repo, tmp_path
):
    server = token_registry.token_server
    user, password = token_registry.creds
    async with httpx.AsyncClient() as http:
        response = await http.post(
            server.realm,
            data={
                "grant_type": "password",
                "username": user,
                "password": password,
                "service": server.service,
                "client_id": "test",
                "access_type": "offline",
            },
        )
    refresh_token = response.json()["refresh_token"]
    environ = write_docker_config(
        tmp_path / "docker", {"auths": {token_registry.host: {"identitytoken": refresh_token}}}
    )
    server.reset()
    async with make_client(token_registry.host, environ, home=tmp_path) as client:
        manifest = await client.get_manifest(ref_of(token_registry.host, unique_repo, "v1"))
    assert manifest.digest == token_image.digest
    grants = [r.get("grant_type") for r in server.stats()["requests"]]
    assert grants == ["refresh_token"]


async def test_docker_registry_token_is_presented_directly(
    token_registry, token_image, unique_repo, tmp_path
):
    server = token_registry.token_server
    registry_token = await pull_token(token_registry, unique_repo)
    environ = write_docker_config(
        tmp_path / "docker", {"auths": {token_registry.host: {"registrytoken": registry_token}}}
    )
    server.reset()
    async with make_client(token_registry.host, environ, home=tmp_path) as client:
        manifest = await client.get_manifest(ref_of(token_registry.host, unique_repo, "v1"))
    assert manifest.digest == token_image.digest
    assert server.token_requests() == 0


# -- transport: insecure hosts, retries, redirects, scope ----------------------------------------


async def test_plain_http_registry_not_listed_as_insecure_fails_tls_with_a_hint(
    anon_registry, unique_repo, tmp_path
):
    async with make_client(anon_registry.host, home=tmp_path, insecure=False) as client:
        with pytest.raises(RegistryUnavailable) as info:
            await client.head_manifest(ref_of(anon_registry.host, unique_repo))
    assert "TLS" in str(info.value)
    assert "registry.insecure_registries" in str(info.value)


async def test_unreachable_registry_is_a_clear_error(tmp_path):
    with start_registry("anon") as registry:
        host = registry.host
    async with make_client(host, home=tmp_path, retry=RetryPolicy(attempts=2, base_delay=0.01)) as client:
        with pytest.raises(RegistryUnavailable, match=f"cannot reach registry {host}"):
            await client.head_manifest(ref_of(host, "some/repo"))


@pytest.fixture
def recorded_sleeps(monkeypatch):
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay, *args, **kwargs):
        sleeps.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(client_module.asyncio, "sleep", sleep)
    return sleeps


async def test_429_with_retry_after_is_retried_after_the_asked_delay(
    anon_registry, unique_repo, tmp_path, recorded_sleeps
):
    image = build_image(nonce=secrets.token_hex(4))
    await asyncio.to_thread(push_image, anon_registry, f"{unique_repo}:v1", image)
    async with FaultProxy(anon_registry) as proxy:
        proxy.fail("GET", "/manifests/", 429, times=1, headers={"Retry-After": "2"})
        async with make_client(proxy.host, home=tmp_path) as client:
            manifest = await client.get_manifest(ref_of(proxy.host, unique_repo, "v1"))
    assert manifest.raw == image.manifest
    assert [r.status for r in proxy.requests_matching("GET", "/manifests/")] == [429, 200]
    assert [delay for delay in recorded_sleeps if delay > 0] == [2.0]


async def test_5xx_and_resets_are_retried_then_reported(
    anon_registry, unique_repo, tmp_path, recorded_sleeps
):
    image = build_image(nonce=secrets.token_hex(4))
    await asyncio.to_thread(push_image, anon_registry, f"{unique_repo}:v1", image)
    async with FaultProxy(anon_registry) as proxy:
        proxy.fail("GET", "/manifests/", 503, times=2)
        proxy.reset("HEAD", "/manifests/", times=1)
        async with make_client(proxy.host, home=tmp_path) as client:
            ref = ref_of(proxy.host, unique_repo, "v1")
            assert (await client.get_manifest(ref)).raw == image.manifest
            assert (await client.head_manifest(ref)).digest == image.digest
            proxy.fail("GET", "/tags/list", 502, times=None)
            with pytest.raises(RegistryUnavailable, match="kept answering HTTP 502"):
                await client.list_tags(ref)
    assert len(proxy.requests_matching("GET", "/tags/list")) == FAST_RETRY.attempts


async def test_redirected_blob_download_carries_no_credentials(
    basic_registry, basic_image, unique_repo, tmp_path
):
    environ_creds = {"USERNAME": basic_registry.username, "PASSWORD": basic_registry.password}
    async with FaultProxy(basic_registry) as proxy, BlobOrigin(basic_registry) as origin:
        proxy.redirect_blobs_to(origin)
        environ = env_for(proxy.host, **environ_creds)
        ref = ref_of(proxy.host, unique_repo, "v1")
        async with make_client(proxy.host, environ, home=tmp_path) as client:
            config = await client.get_blob(ref, basic_image.config.digest)
    assert config == basic_image.config.data
    redirected = [r for r in proxy.requests_matching("GET", "/blobs/") if r.status == 307]
    assert redirected
    assert all("authorization" in r.headers for r in redirected)  # the registry itself got the credentials
    assert origin.requests
    assert origin.requests_with_authorization() == []


async def test_commands_cannot_reach_what_their_scope_does_not_name(anon_registry, unique_repo, tmp_path):
    image = build_image(nonce=secrets.token_hex(4))
    async with FaultProxy(anon_registry) as proxy:
        ref = ref_of(proxy.host, unique_repo, "v1")
        async with make_client(proxy.host, home=tmp_path, command="check") as client:
            with pytest.raises(ScopeError, match="imglife check may not"):
                await client.head_manifest(ref)
        async with make_client(proxy.host, home=tmp_path, command="register") as client:
            with pytest.raises(ScopeError, match="push to OCI"):
                await client.push_blob(ref, image.config.digest, image.config.size, image.config.data)
        async with make_client(proxy.host, home=tmp_path, command="sync") as client:
            with pytest.raises(ScopeError, match="delete"):
                await client.delete_manifest(ref.with_digest(image.digest))
    assert proxy.requests == []  # refused before anything went on the wire


async def test_upload_restarts_from_a_fresh_source_stream_when_the_source_breaks(
    anon_registry, unique_repo, tmp_path
):
    # The source is a download from another registry that resets half-way: the broken read
    # surfaces as RegistryUnavailable inside the upload, and push_blob starts over.
    layer = random_layer(1_000_000)
    image = build_image(layers=[layer])
    await asyncio.to_thread(push_image, anon_registry, f"{unique_repo}/src:v1", image)
    async with FaultProxy(anon_registry) as source_proxy:
        source_proxy.reset("GET", f"/blobs/{layer.digest}", mid_body=True, times=1)
        source = ref_of(source_proxy.host, f"{unique_repo}/src")
        target = ref_of(anon_registry.host, f"{unique_repo}/dst")
        scope = CredentialScope.for_command("sync")
        credentials = ScopedCredentials(CredentialResolver({}, home=tmp_path), scope)
        hosts = frozenset({source_proxy.host, anon_registry.host})  # one client for both, as sync has
        async with RegistryClient(credentials, scope=scope, insecure_hosts=hosts, retry=FAST_RETRY) as client:
            opened = 0

            async def stream():
                nonlocal opened
                opened += 1
                async with client.open_blob(source, layer.digest) as blob:
                    async for piece in blob.chunks():
                        yield piece

            result = await client.push_blob(target, layer.digest, layer.size, stream)
            assert await client.blob_exists(target, layer.digest)
    assert result is PushResult.UPLOADED
    assert opened == 2
    assert len(source_proxy.requests_matching("GET", f"/blobs/{layer.digest}")) == 2


async def test_streamed_upload_answered_429_waits_for_retry_after(
    anon_registry, unique_repo, tmp_path, recorded_sleeps
):
    layer = random_layer(100_000)

    async def stream():
        yield layer.data

    async with FaultProxy(anon_registry) as proxy:
        rule = proxy.fail("PUT", "/blobs/uploads/", 429, times=2, headers={"Retry-After": "4"})
        ref = ref_of(proxy.host, unique_repo, "v1")
        async with make_client(proxy.host, home=tmp_path) as client:
            result = await client.push_blob(ref, layer.digest, layer.size, stream)
            assert await client.blob_exists(ref, layer.digest)
    assert result is PushResult.UPLOADED
    assert rule.hits == 2
    assert [delay for delay in recorded_sleeps if delay > 0] == [4.0, 4.0]
