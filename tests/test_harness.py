"""The test harness itself works against the real servers: registries, token server, skopeo, proxy."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
from contextlib import ExitStack

import httpx
import jwt
import pytest

from tests.helpers.images import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    REF_NAME_ANNOTATION,
    build_image,
    build_index,
    random_layer,
    write_oci_layout,
)
from tests.helpers.procs import ProcessStartError, free_port
from tests.helpers.proxy import BlobOrigin, FaultProxy
from tests.helpers.registry import MANIFEST_ACCEPT, RunningRegistry, parse_challenge, ssl_context
from tests.helpers.skopeo import (
    SkopeoError,
    push_image,
    skopeo_copy,
    skopeo_delete,
    skopeo_digest,
    skopeo_inspect,
    skopeo_inspect_raw,
    skopeo_list_tags,
    skopeo_push_layout,
)
from tests.helpers.token_server import libtrust_kid


@pytest.fixture(scope="module")
def http():
    with httpx.Client(verify=ssl_context(), timeout=10) as client:
        yield client


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); the fixture reaps its children, so this means running
    return True


# --------------------------------------------------------------------------- registries


def test_anon_registry_answers_v2(http, anon_registry: RunningRegistry) -> None:
    r = http.get(f"{anon_registry.url}/v2/")
    assert r.status_code == 200
    assert r.json() == {}
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    assert anon_registry.creds is None
    assert anon_registry.host == anon_registry.url.removeprefix("http://")


def test_basic_registry_challenges_and_accepts_its_user(http, basic_registry: RunningRegistry) -> None:
    r = http.get(f"{basic_registry.url}/v2/")
    assert r.status_code == 401
    scheme, params = parse_challenge(r.headers["www-authenticate"])
    assert (scheme, params) == ("basic", {"realm": "imglife-test-basic"})
    assert basic_registry.username == "basic-user"
    assert basic_registry.password
    assert basic_registry.password.startswith("basic-pw-")
    assert http.get(f"{basic_registry.url}/v2/", auth=basic_registry.creds).status_code == 200
    wrong = http.get(f"{basic_registry.url}/v2/", auth=("basic-user", "nope"))
    assert wrong.status_code == 401


def test_token_registry_challenges_with_bearer_realm(http, token_registry: RunningRegistry) -> None:
    ts = token_registry.token_server
    assert ts is not None
    r = http.get(f"{token_registry.url}/v2/")
    assert r.status_code == 401
    scheme, params = parse_challenge(r.headers["www-authenticate"])
    assert scheme == "bearer"
    assert params == {"realm": ts.realm, "service": ts.service}
    # repository endpoints add the scope
    r = http.head(f"{token_registry.url}/v2/some/repo/manifests/latest")
    assert parse_challenge(r.headers["www-authenticate"])[1]["scope"] == "repository:some/repo:pull"
    with token_registry.client() as c:
        assert c.get("/v2/").status_code == 200


def test_fresh_registry_is_empty_and_stopped_by_pid(http, fresh_registry) -> None:
    reg = fresh_registry("anon")
    assert http.get(f"{reg.url}/v2/_catalog").json() == {"repositories": []}
    assert reg.data_dir.is_dir()
    reg.stop()
    assert not reg.alive()
    assert not _pid_alive(reg.pid)
    with pytest.raises(httpx.ConnectError):
        http.get(f"{reg.url}/v2/")


def test_start_registry_context_cleans_up() -> None:
    from tests.helpers.registry import start_registry

    with start_registry("token") as reg:
        ts = reg.token_server
        assert ts is not None
        pids, dirs = (reg.pid, ts.pid), (reg.data_dir, ts.data_dir)
        assert all(_pid_alive(p) for p in pids)
        assert (reg.data_dir / "registry.log").exists()
        assert ts.cert_path.exists()
    assert not any(_pid_alive(p) for p in pids)
    assert not any(d.exists() for d in dirs)


# --------------------------------------------------------------------------- images + skopeo


def test_images_are_deterministic_and_well_formed(tmp_path) -> None:
    a = build_image(labels={"k": "v"}, annotations={"a": "b"})
    b = build_image(labels={"k": "v"}, annotations={"a": "b"})
    assert a == b
    assert a.digest == b.digest
    assert build_image(nonce="x").digest != build_image(nonce="y").digest
    m = a.manifest_json()
    assert m["mediaType"] == OCI_MANIFEST
    assert m["annotations"] == {"a": "b"}
    cfg = a.config_json()
    assert (cfg["architecture"], cfg["os"], cfg["config"]["Labels"]) == ("amd64", "linux", {"k": "v"})
    assert cfg["rootfs"]["diff_ids"] == [a.layers[0].diff_id]
    assert a.digest == "sha256:" + hashlib.sha256(a.manifest).hexdigest()

    idx = build_index(["linux/amd64", "linux/arm64/v8", "linux/arm/v7"], annotations={"x": "y"})
    plats = [d["platform"] for d in idx.manifest_json()["manifests"]]
    assert plats[1] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert idx.image_for("linux/arm/v7").config_json()["variant"] == "v7"
    assert idx.manifest_json()["annotations"] == {"x": "y"}

    docker = build_index(docker=True)
    assert docker.media_type == DOCKER_MANIFEST_LIST
    assert {i.media_type for i in docker.images} == {DOCKER_MANIFEST}
    assert docker.manifest.startswith(b'{\n   "schemaVersion"')  # Docker's 3-space indent

    big = random_layer(1_000_000, seed=7)
    assert big.size > 1_000_000  # random data does not compress
    assert random_layer(1000, seed=7).digest == random_layer(1000, seed=7).digest
    assert random_layer(1000).digest != random_layer(1000).digest

    layout = write_oci_layout(tmp_path / "layout", "v1", idx)
    write_oci_layout(layout, "v2", a)
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"][REF_NAME_ANNOTATION] for m in index["manifests"]] == ["v1", "v2"]
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    for blob in layout.glob("blobs/sha256/*"):
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    with pytest.raises(ValueError, match="dir"):
        write_oci_layout(tmp_path / "d", "v1", docker)


def test_skopeo_push_single_image_round_trips(
    any_registry: RunningRegistry, unique_repo: str, tmp_path
) -> None:
    img = build_image(nonce=unique_repo, labels={"org.opencontainers.image.revision": "abc"})
    layout = write_oci_layout(tmp_path / "layout", "v1", img)
    digest = skopeo_push_layout(layout, "v1", any_registry, f"{unique_repo}:v1")
    assert digest == img.digest  # --preserve-digests keeps the bytes
    assert skopeo_inspect_raw(any_registry, f"{unique_repo}:v1") == img.manifest
    assert skopeo_inspect_raw(any_registry, f"{unique_repo}:v1", config=True) == img.config.data
    assert skopeo_digest(any_registry, f"{unique_repo}@{img.digest}") == img.digest
    assert skopeo_list_tags(any_registry, unique_repo) == ["v1"]
    info = skopeo_inspect(any_registry, f"{unique_repo}:v1")
    assert info["Labels"]["org.opencontainers.image.revision"] == "abc"
    # and the registry itself agrees, through plain httpx
    with any_registry.client() as c:
        r = c.get(f"/v2/{unique_repo}/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
        assert r.status_code == 200
        assert r.content == img.manifest
        assert r.headers["docker-content-digest"] == img.digest
        assert r.headers["content-type"] == OCI_MANIFEST


def test_skopeo_push_index_round_trips(any_registry: RunningRegistry, unique_repo: str) -> None:
    idx = build_index(nonce=unique_repo, annotations={"org.opencontainers.image.ref.name": "v1"})
    assert push_image(any_registry, f"{unique_repo}:v1", idx) == idx.digest
    assert skopeo_inspect_raw(any_registry, f"{unique_repo}:v1") == idx.manifest
    for img in idx.images:
        assert skopeo_inspect_raw(any_registry, f"{unique_repo}@{img.digest}") == img.manifest
    arm = skopeo_inspect(any_registry, f"{unique_repo}:v1", override_arch="arm64")
    assert arm["Architecture"] == "arm64"
    assert arm["Layers"] == [b.digest for b in idx.image_for("linux/arm64").layers]
    assert arm["Digest"] == idx.digest  # skopeo reports the index digest, not the child's


def test_docker_format_round_trips_via_dir_transport(
    http, anon_registry: RunningRegistry, unique_repo: str
) -> None:
    lst = build_index(docker=True, nonce=unique_repo)
    push_image(anon_registry, f"{unique_repo}:list", lst)
    assert skopeo_inspect_raw(anon_registry, f"{unique_repo}:list") == lst.manifest
    r = http.get(f"{anon_registry.url}/v2/{unique_repo}/manifests/list", headers={"Accept": MANIFEST_ACCEPT})
    assert r.headers["content-type"] == DOCKER_MANIFEST_LIST
    assert r.headers["docker-content-digest"] == lst.digest


def test_skopeo_errors_carry_stderr_and_hide_creds(basic_registry: RunningRegistry, unique_repo: str) -> None:
    with pytest.raises(SkopeoError) as exc:
        skopeo_inspect_raw(basic_registry, f"{unique_repo}:missing", creds=("basic-user", "wrong-pw"))
    assert "wrong-pw" not in str(exc.value)
    assert "unauthorized" in str(exc.value).lower() or "401" in str(exc.value)
    with pytest.raises(SkopeoError, match="manifest unknown"):
        skopeo_inspect_raw(basic_registry, f"{unique_repo}:missing")


def test_skopeo_delete_removes_every_tag_of_a_digest(
    anon_registry: RunningRegistry, unique_repo: str
) -> None:
    img = build_image(nonce=unique_repo)
    push_image(anon_registry, f"{unique_repo}:a", img)
    push_image(anon_registry, f"{unique_repo}:b", img)
    assert sorted(skopeo_list_tags(anon_registry, unique_repo)) == ["a", "b"]
    skopeo_delete(anon_registry, f"{unique_repo}:a")
    assert skopeo_list_tags(anon_registry, unique_repo) == []


# --------------------------------------------------------------------------- token server


def test_token_server_counts_requests_and_scopes(token_registry: RunningRegistry, unique_repo: str) -> None:
    ts = token_registry.token_server
    assert ts is not None
    push_image(token_registry, f"{unique_repo}:v1", build_image(nonce=unique_repo))
    ts.reset()
    assert ts.stats() == {"token_requests": 0, "requests": []}
    skopeo_inspect_raw(token_registry, f"{unique_repo}:v1")
    stats = ts.stats()
    assert stats["token_requests"] >= 1
    assert stats["token_requests"] == len(stats["requests"])
    req = stats["requests"][-1]
    assert req["method"] == "GET"
    assert req["authorized"] is True
    assert req["grant_type"] is None
    assert req["scope"] == [f"repository:{unique_repo}:pull"]
    # anonymous pull is allowed, anonymous push is not
    assert skopeo_inspect_raw(token_registry, f"{unique_repo}:v1", anonymous=True)
    assert ts.stats()["requests"][-1]["authorized"] is False
    with pytest.raises(SkopeoError):
        push_image(token_registry, f"{unique_repo}:v2", build_image(nonce="anon"), anonymous=True)


def test_token_server_get_flow(token_server) -> None:
    ts = token_server
    scopes = {"scope": ["repository:a/b:pull,push repository:c/d:pull", "registry:catalog:*"]}
    with httpx.Client(verify=ssl_context()) as c:
        r = c.get(ts.realm, params={"service": ts.service, **scopes}, auth=ts.creds)
        assert r.status_code == 200
        body = r.json()
        assert body["token"] == body["access_token"]
        assert body["expires_in"] == 300
        header = jwt.get_unverified_header(body["token"])
        assert header["alg"] == "RS256"
        assert header["kid"] == libtrust_kid(ts.public_key())
        claims = ts.decode(body["token"])
        assert {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"} <= set(claims)
        assert claims["sub"] == ts.username
        assert claims["exp"] - claims["iat"] == 300
        assert claims["access"] == [
            {"type": "repository", "name": "a/b", "actions": ["pull", "push"]},
            {"type": "repository", "name": "c/d", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ]
        anon = c.get(ts.realm, params={"service": ts.service, **scopes})
        assert anon.status_code == 200
        assert [a["actions"] for a in ts.decode(anon.json()["token"])["access"]] == [["pull"], ["pull"], []]
        assert c.get(ts.realm, params=scopes, auth=(ts.username, "wrong")).status_code == 401
        assert c.get(ts.realm, headers={"Authorization": "Bearer abc"}).status_code == 401
        assert c.get(ts.realm, params={"service": "other"}).status_code == 400
        assert c.get(ts.realm, params={"scope": "nonsense"}).status_code == 400
        offline = c.get(
            ts.realm, params={"offline_token": "true", "client_id": "t", "service": ts.service}, auth=ts.creds
        )
        assert offline.json()["refresh_token"].startswith("rt-")


def test_token_server_oauth_post_flow(token_server) -> None:
    ts = token_server
    form = {
        "grant_type": "password",
        "username": ts.username,
        "password": ts.password,
        "service": ts.service,
        "client_id": "imglife-tests",
        "scope": "repository:a/b:pull,push repository:c/d:pull",
        "access_type": "offline",
    }
    ts.reset()
    with httpx.Client(verify=ssl_context()) as c:
        r = c.post(ts.realm, data=form)
        assert r.status_code == 200, r.text
        body = r.json()
        assert "token" not in body
        assert body["token_type"] == "Bearer"
        assert len(ts.decode(body["access_token"])["access"]) == 2
        refresh = {
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "service": ts.service,
            "client_id": "imglife-tests",
            "scope": "repository:x/y:push",
        }
        r2 = c.post(ts.realm, data=refresh)
        assert r2.status_code == 200
        assert "refresh_token" not in r2.json()
        assert ts.decode(r2.json()["access_token"])["access"][0]["actions"] == ["push"]
        assert c.post(ts.realm, data={**form, "password": "wrong"}).status_code == 401
        assert c.post(ts.realm, data={**form, "client_id": ""}).status_code == 400
        assert c.post(ts.realm, data={**form, "grant_type": "implicit"}).status_code == 400
        assert c.post(ts.realm, data={**refresh, "refresh_token": "rt-nope"}).status_code == 401
    stats = ts.stats()
    assert stats["token_requests"] == 6
    assert [r["grant_type"] for r in stats["requests"][:2]] == ["password", "refresh_token"]
    assert [r["status"] for r in stats["requests"]] == [200, 200, 401, 400, 400, 401]


def test_token_server_runtime_config(http, token_registry: RunningRegistry, unique_repo: str) -> None:
    ts = token_registry.token_server
    assert ts is not None
    with pytest.raises(ValueError, match="unknown config keys"):
        ts.configure(bogus=1)
    try:
        ts.configure(expires_in=5, deny=[f"repository:{unique_repo}:push"], fail_next=1)
        with httpx.Client(verify=ssl_context()) as c:
            assert c.get(ts.realm, auth=ts.creds).status_code == 503
            scope = {"scope": f"repository:{unique_repo}:pull,push"}
            tok = c.get(ts.realm, params=scope, auth=ts.creds).json()
            assert tok["expires_in"] == 5
            assert ts.decode(tok["token"])["access"][0]["actions"] == ["pull"]
        with token_registry.client() as c:  # the registry refuses the push grant it did not get
            assert c.post(f"/v2/{unique_repo}/blobs/uploads/").status_code == 401
        ts.configure(oauth_post=False)
        assert http.post(ts.realm, data={"grant_type": "password"}).status_code == 404
    finally:
        ts.reset_config()
    with token_registry.client() as c:
        assert c.post(f"/v2/{unique_repo}/blobs/uploads/").status_code == 202


# --------------------------------------------------------------------------- proxy


async def test_proxy_forwards_and_rewrites_location(
    basic_registry: RunningRegistry, unique_repo: str
) -> None:
    blob = random_layer(200_000, seed=1)
    async with FaultProxy(basic_registry) as proxy, basic_registry.async_client(base_url=proxy.url) as c:
        r = await c.post(f"/v2/{unique_repo}/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["location"]
        assert location.startswith(f"{proxy.url}/v2/{unique_repo}/blobs/uploads/")
        r = await c.put(f"{location}&digest={blob.digest}", content=blob.data)
        assert r.status_code == 201, r.text
        assert r.headers["location"].startswith(proxy.url)
        # chunked request body (no Content-Length) streams through as well
        r = await c.post(f"/v2/{unique_repo}/blobs/uploads/")

        async def chunks():
            yield blob.data[:1000]
            yield blob.data[1000:]

        r = await c.patch(r.headers["location"], content=chunks())
        assert r.status_code == 202
        assert r.headers["range"] == f"0-{blob.size - 1}"
        r = await c.get(f"/v2/{unique_repo}/blobs/{blob.digest}")
        assert r.content == blob.data
    puts = proxy.requests_matching("PUT", "/blobs/uploads/")
    assert puts[-1].body_size == blob.size
    assert puts[-1].status == 201
    assert "authorization" in puts[-1].headers
    assert "digest=" in puts[-1].query
    assert proxy.requests_matching("PATCH")[-1].body_size == blob.size


async def test_proxy_keeps_token_realm(token_registry: RunningRegistry) -> None:
    async with FaultProxy(token_registry) as proxy, httpx.AsyncClient(verify=ssl_context()) as c:
        r = await c.get(f"{proxy.url}/v2/")
        assert r.status_code == 401
        assert parse_challenge(r.headers["www-authenticate"])[1]["realm"] == token_registry.token_server.realm


async def test_proxy_fail_rule(anon_registry: RunningRegistry) -> None:
    async with (
        FaultProxy(anon_registry) as proxy,
        httpx.AsyncClient(base_url=proxy.url, verify=ssl_context()) as c,
    ):
        rule = proxy.fail("GET", r"^/v2/$", 429, times=2, headers={"Retry-After": "1"}, body='{"errors":[]}')
        for _ in range(2):
            r = await c.get("/v2/")
            assert (r.status_code, r.headers["retry-after"], r.text) == (429, "1", '{"errors":[]}')
        assert (await c.get("/v2/")).status_code == 200
        assert (await c.head("/v2/")).status_code == 200  # HEAD never matched
        assert rule.hits == 2
        assert [q.action for q in proxy.requests] == ["fail", "fail", "forward", "forward"]
        assert [q.status for q in proxy.requests] == [429, 429, 200, 200]


async def test_proxy_reject_body_rule(anon_registry: RunningRegistry, unique_repo: str) -> None:
    blob = random_layer(5000, seed=2)
    async with (
        FaultProxy(anon_registry) as proxy,
        httpx.AsyncClient(base_url=proxy.url, verify=ssl_context()) as c,
    ):
        rule = proxy.reject_body(min_bytes=1024)
        loc = (await c.post(f"/v2/{unique_repo}/blobs/uploads/")).headers["location"]
        r = await c.put(f"{loc}&digest={blob.digest}", content=blob.data)
        assert r.status_code == 413
        assert b"nginx" in r.content

        async def chunks():
            yield blob.data

        r = await c.patch(loc, content=chunks())  # chunked: size learned by reading the body
        assert r.status_code == 413
        r = await c.patch(loc, content=blob.data[:1000])  # below the limit passes
        assert r.status_code == 202
        assert rule.hits == 2
        assert [q.body_size for q in proxy.requests_matching("PUT|PATCH")] == [blob.size, blob.size, 1000]


async def test_proxy_reset_rules(anon_registry: RunningRegistry, unique_repo: str) -> None:
    img = build_image(layers=[random_layer(300_000, seed=3)], nonce=unique_repo)
    await asyncio.to_thread(push_image, anon_registry, f"{unique_repo}:v1", img)
    blob = img.layers[0]
    async with (
        FaultProxy(anon_registry) as proxy,
        httpx.AsyncClient(base_url=proxy.url, verify=ssl_context()) as c,
    ):
        proxy.reset("GET", "/blobs/", times=1)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
            await c.get(f"/v2/{unique_repo}/blobs/{blob.digest}")
        proxy.reset("GET", "/blobs/", times=1, mid_body=True, after_bytes=1000)
        with pytest.raises(httpx.RemoteProtocolError, match="received 1000 bytes"):
            await c.get(f"/v2/{unique_repo}/blobs/{blob.digest}")
        r = await c.get(f"/v2/{unique_repo}/blobs/{blob.digest}")
        assert r.content == blob.data
        # a manifest PUT that the registry stores but whose 201 the client never sees
        rule = proxy.reset("PUT", "/manifests/", mid_body=True)
        headers = {"Content-Type": img.media_type}
        with pytest.raises(httpx.RemoteProtocolError):
            await c.put(f"/v2/{unique_repo}/manifests/v2", content=img.manifest, headers=headers)
        assert rule.hits == 1
        r = await c.get(f"/v2/{unique_repo}/manifests/v2", headers={"Accept": MANIFEST_ACCEPT})
        assert r.status_code == 200
        assert [q.status for q in proxy.requests] == [None, None, 200, None, 200]


async def test_proxy_redirects_blobs_to_origin_without_credentials(
    token_registry: RunningRegistry, unique_repo: str
) -> None:
    img = build_image(nonce=unique_repo)
    await asyncio.to_thread(push_image, token_registry, f"{unique_repo}:v1", img)
    blob = img.layers[0]
    async with (
        FaultProxy(token_registry) as proxy,
        BlobOrigin(token_registry) as origin,
        token_registry.async_client(base_url=proxy.url) as c,
    ):
        rule = proxy.redirect_blobs_to(origin)
        r = await c.get(f"/v2/{unique_repo}/blobs/{blob.digest}")
        assert r.status_code == 307
        location = r.headers["location"]
        assert location.startswith(f"{origin.url}/blobs/{blob.digest}?")
        assert "X-Amz-Signature=" in location
        # following by hand, without credentials, works; with an Authorization header S3 says 400
        async with httpx.AsyncClient(verify=ssl_context()) as plain:
            assert (await plain.get(location)).content == blob.data
            leaked = await plain.get(location, headers={"Authorization": "Bearer secret"})
            assert leaked.status_code == 400
            assert b"Only one auth mechanism" in leaked.content
            tampered = await plain.get(location.replace("X-Amz-Signature=", "X-Amz-Signature=0"))
            assert tampered.status_code == 403
        # httpx itself drops Authorization on a cross-origin redirect
        r = await c.get(f"/v2/{unique_repo}/blobs/{blob.digest}", follow_redirects=True)
        assert r.status_code == 200
        assert r.content == blob.data
        # an unauthorized caller gets the registry's 401, not a redirect
        async with httpx.AsyncClient(verify=ssl_context()) as anon:
            r = await anon.get(f"{proxy.url}/v2/{unique_repo}/blobs/{blob.digest}")
            assert r.status_code == 401
        # HEAD is answered by the registry itself
        assert (await c.head(f"/v2/{unique_repo}/blobs/{blob.digest}")).status_code == 200
    assert rule.hits == 2
    assert len(origin.requests) == 4
    assert [bool(q.headers.get("authorization")) for q in origin.requests] == [False, True, False, False]
    assert [q.status for q in origin.requests] == [200, 400, 403, 200]


async def test_blob_origin_with_basic_creds_and_default_repo(
    basic_registry: RunningRegistry, unique_repo: str
) -> None:
    img = build_image(nonce=unique_repo)
    await asyncio.to_thread(push_image, basic_registry, f"{unique_repo}:v1", img)
    blob = img.layers[0]
    async with (
        BlobOrigin(basic_registry, default_repo=unique_repo) as origin,
        httpx.AsyncClient(verify=ssl_context()) as c,
    ):
        r = await c.get(origin.presign(blob.digest))
        assert r.status_code == 200
        assert r.content == blob.data
        r = await c.get(origin.presign(blob.digest), headers={"Range": "bytes=0-9"})
        assert r.status_code == 206
        assert r.content == blob.data[:10]
        assert (await c.get(f"{origin.url}/blobs/{blob.digest}")).status_code == 403


def test_basic_auth_header_goes_only_to_the_origin_that_asked(basic_registry: RunningRegistry) -> None:
    auth = basic_registry.auth()
    with httpx.Client(auth=auth, verify=ssl_context()) as c:
        assert c.get(f"{basic_registry.url}/v2/").status_code == 200
        req = c.build_request("GET", "http://127.0.0.1:9/elsewhere")
        flow = auth.sync_auth_flow(req)
        assert "authorization" not in next(flow).headers
        req2 = c.build_request("GET", f"{basic_registry.url}/v2/")
        token = next(auth.sync_auth_flow(req2)).headers["authorization"]
        assert base64.b64decode(token.split()[1]).decode() == ":".join(basic_registry.creds)


async def test_skopeo_pushes_and_pulls_through_the_proxy(
    token_registry: RunningRegistry,
    anon_registry: RunningRegistry,
    unique_repo: str,
    make_fault_proxy,
    make_blob_origin,
) -> None:
    idx = build_index(nonce=unique_repo)
    proxy = await make_fault_proxy(token_registry)
    # blocking helpers must run in a thread: the proxy lives in this event loop
    await asyncio.to_thread(push_image, proxy.host, f"{unique_repo}:v1", idx, token_registry.creds)
    assert sum(q.body_size for q in proxy.requests_matching("PUT|PATCH", "/blobs/uploads/")) == sum(
        b.size for b in idx.blobs
    )
    assert await asyncio.to_thread(skopeo_inspect_raw, token_registry, f"{unique_repo}:v1") == idx.manifest

    origin = await make_blob_origin(token_registry)
    proxy.redirect_blobs_to(origin)
    digest = await asyncio.to_thread(
        skopeo_copy,
        proxy.host,
        f"{unique_repo}:v1",
        anon_registry,
        f"{unique_repo}:v1",
        src_creds=token_registry.creds,
    )
    assert digest == idx.digest
    assert {q.path.rpartition("/")[2] for q in origin.requests} == {b.digest for b in idx.blobs}
    assert origin.requests_with_authorization() == []  # Go drops Authorization across origins


# --------------------------------------------------------------------------- failure paths


def test_start_failure_reports_the_log_tail(monkeypatch) -> None:
    import tests.helpers.registry as registry_mod

    real_write_config = registry_mod._write_config

    def broken(directory, port, auth, extra_config=None):
        path = real_write_config(directory, port, auth)
        path.write_text(path.read_text().replace('"filesystem"', '"nosuchdriver"'))
        return path

    monkeypatch.setattr(registry_mod, "_write_config", broken)
    with ExitStack() as stack, pytest.raises(ProcessStartError) as exc:
        stack.enter_context(registry_mod.start_registry("anon"))
    assert "exited with code" in str(exc.value)
    assert "StorageDriver not registered: nosuchdriver" in str(exc.value)


def test_start_retries_when_the_port_was_taken(monkeypatch) -> None:
    import tests.helpers.registry as registry_mod

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = iter([busy.getsockname()[1], free_port()])
        monkeypatch.setattr(registry_mod, "free_port", lambda: next(ports))
        with registry_mod.start_registry("anon") as reg:
            assert reg.host != f"127.0.0.1:{busy.getsockname()[1]}"
            assert reg.alive()


def test_registry_accepts_tokens_up_to_60s_past_exp(http, token_registry: RunningRegistry) -> None:
    """distribution 2.8 applies a 60 s leeway to ``exp``: to see ``invalid_token`` a test needs a
    token that expired more than a minute ago."""
    ts = token_registry.token_server
    params = {"service": ts.service, "scope": "repository:leeway/probe:pull"}
    statuses = []
    try:
        for expires_in in (-30, -90):
            ts.configure(expires_in=expires_in)
            token = http.get(ts.realm, params=params, auth=ts.creds).json()["token"]
            r = http.get(
                f"{token_registry.url}/v2/leeway/probe/tags/list",
                headers={"Authorization": f"Bearer {token}"},
            )
            statuses.append((r.status_code, parse_challenge(r.headers.get("www-authenticate", "x"))[1]))
    finally:
        ts.reset_config()
    assert statuses[0][0] == 404  # accepted (the repository just does not exist)
    assert statuses[1][0] == 401
    assert statuses[1][1]["error"] == "invalid_token"


def test_scratch_dirs_of_dead_processes_are_swept(tmp_path) -> None:
    from tests.helpers import procs

    stale = tmp_path / "imglife-registry-anon-stale"
    stale.mkdir()
    (stale / procs.OWNER_FILE).write_text("999999999")  # no such PID
    live = tmp_path / "imglife-registry-anon-live"
    live.mkdir()
    (live / procs.OWNER_FILE).write_text(str(os.getpid()))
    foreign = tmp_path / "imglife-something-else"
    foreign.mkdir()
    procs._sweep_stale(tmp_path, "imglife-")
    assert not stale.exists()
    assert live.exists()
    assert foreign.exists()


async def test_registry_ignores_tag_paging_and_the_proxy_adds_it(
    anon_registry: RunningRegistry, unique_repo: str
) -> None:
    img = build_image(nonce=unique_repo)
    await asyncio.to_thread(push_image, anon_registry, f"{unique_repo}:t0", img)
    tags = ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]
    async with anon_registry.async_client(auth=None) as c:
        for tag in tags[1:]:
            r = await c.put(
                f"/v2/{unique_repo}/manifests/{tag}",
                content=img.manifest,
                headers={"Content-Type": img.media_type},
            )
            assert r.status_code == 201
        direct = await c.get(f"/v2/{unique_repo}/tags/list", params={"n": 3})
        assert "link" not in direct.headers  # distribution 2.8: no paging for tags
        assert sorted(direct.json()["tags"]) == tags
        async with FaultProxy(anon_registry) as proxy:
            rule = proxy.paginate_tags()
            pages, url = [], f"{proxy.url}/v2/{unique_repo}/tags/list?n=3"
            while url:
                r = await c.get(url)
                pages.append(r.json()["tags"])
                link = r.headers.get("link")
                url = proxy.url + link[1 : link.index(">")] if link else None
            assert pages == [["t0", "t1", "t2"], ["t3", "t4", "t5"], ["t6"]]
            assert rule.hits == 3
            proxy.clear_rules()
            proxy.paginate_tags(page_size=5)
            r = await c.get(f"{proxy.url}/v2/{unique_repo}/tags/list")
            assert r.json()["tags"] == tags[:5]
            assert r.headers["link"] == f'</v2/{unique_repo}/tags/list?last=t4&n=5>; rel="next"'
            assert (await c.get(f"{proxy.url}/v2/nope/tags/list")).status_code == 404  # errors pass through


def test_registry_conveniences(http, fresh_registry) -> None:
    reg = fresh_registry("basic")
    reg.add_user("second-user", "second-pw")  # htpasswd is re-read on change
    assert http.get(f"{reg.url}/v2/", auth=("second-user", "second-pw")).status_code == 200
    img = build_image(nonce="conveniences")
    push_image(reg, "conv/app:v1", img)
    assert reg.ref("conv/app", "v1") == f"{reg.host}/conv/app:v1"
    assert reg.ref("conv/app", img.digest) == f"{reg.host}/conv/app@{img.digest}"
    assert reg.blob_path(img.layers[0].digest).read_bytes() == img.layers[0].data
    skopeo_delete(reg, "conv/app:v1")
    out = reg.garbage_collect(dry_run=True)
    assert "0 blobs marked, 3 blobs and 0 manifests eligible for deletion" in out
