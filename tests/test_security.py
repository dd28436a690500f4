"""Security properties that SECURITY.md promises and no other test file proves.

SECURITY.md maps every defence to the test that proves it; most live beside the code they test
(test_credentials.py, test_redaction.py, test_registry_client.py, test_webhook_parsing.py,
test_chatops.py, test_bot_gitlab.py, test_bot_gitea.py, ...). This file holds the rest:

* credentials never reach a host they were not configured for: registry redirects, pagination
  links and upload locations to another host, a token realm on another host, and the REST
  clients (forges, package registries, S3, ``--config-url``) that never follow a redirect;
* the running bot (``imglife serve`` against the GitLab fake) never contacts a host outside its
  configuration because of a comment or a repository's ``.imglife.yml``; judges a fork's merge
  request by the target's settings and refuses the fork's people; gives a user who imitates the
  bot (name, display name) no rights and never edits their comments, even with the bot's markers;
  runs a replayed command once; and keeps refused registry credentials out of its replies;
* the suite-wide secret scan (tests/helpers/secrets.py) is not a no-op: a secret planted in a
  process log, in captured output or in in-process CLI output is found.

"Another host" is 127.0.0.2 (Linux routes all of 127.0.0.0/8 to loopback), or another port of
127.0.0.1 where the port is what makes the origin differ. A :class:`Listener` is a bare TCP server
that counts connections, so even a TLS handshake or a refused request counts as contact.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import parse_config
from bot.credentials import (
    CredentialResolver,
    CredentialScope,
    PackageRegistryCredential,
    ScopedCredentials,
    env_prefix,
)
from bot.errors import ImglifeError, NotFoundError, RegistryError
from bot.events import Forge, Repo
from bot.forges.api import GiteaForge, GitLabForge
from bot.oci.client import RegistryClient
from bot.oci.reference import parse_reference
from bot.records.codec import BuildRecord
from bot.records.gitea import GiteaRecordStore
from bot.records.gitlab import GitLabRecordStore
from bot.records.s3 import S3RecordStore
from bot.retry import RetryPolicy
from bot.wiring import UrlFetcher
from tests.fakes import DEVELOPER, MAINTAINER, OWNER, REPORTER, FakeGitLab, GitLabToken
from tests.helpers.bot import (
    GITLAB_SECRET,
    MARKER,
    AppWorld,
    RunningBot,
    bot_config,
    fixture,
    run_bot,
    sha,
)
from tests.helpers.lifecycle import ALPINE_LATEST, ALPINE_OLD_CORE
from tests.helpers.procs import ManagedProcess, wait_until
from tests.helpers.proxy import FaultProxy
from tests.helpers.registry import RunningRegistry
from tests.helpers.secrets import SCANNER, SecretScanner, register_test_secret, tee_cli

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ELSEWHERE = "127.0.0.2"  # a host no configuration names
FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05, max_retry_after=1)
BOT_TOKEN = register_test_secret("glpat-security-bot-4f1e9a", "tests/test_security.py BOT_TOKEN")
PROJECT = "team/app"
FORK = "mallory/app"


# --------------------------------------------------------------------------- a listener


@dataclass(frozen=True)
class Heard:
    """One request as it arrived: request line, lower-case headers, body, and the raw bytes."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    raw: bytes


Answer = tuple[int, dict[str, str], bytes]


def not_found(_heard: Heard) -> Answer:
    return 404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"NOT_FOUND","message":"no"}]}'


class Listener:
    """A TCP server in a thread: counts connections, records HTTP requests, answers ``respond``.

    Anything that connects is counted, HTTP or not (a TLS ClientHello is recorded as a request
    with an empty method). Every answer closes the connection.
    """

    def __init__(self, host: str = ELSEWHERE, respond: Callable[[Heard], Answer] = not_found) -> None:
        self.respond = respond
        self.connections = 0
        self.requests: list[Heard] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.2)
        self.host = f"{host}:{self._sock.getsockname()[1]}"
        self.url = f"http://{self.host}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"listener-{self.host}", daemon=True)

    def __enter__(self) -> Listener:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            raw = b""
            try:
                while b"\r\n\r\n" not in raw and len(raw) < 65536:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    raw += chunk
                    if raw[:1] == b"\x16":  # a TLS handshake: nothing more to learn
                        break
                heard = _parse_http(raw)
                missing = int(heard.headers.get("content-length", "0") or 0) - len(heard.body)
                if missing > 0 and heard.headers.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                while missing > 0:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    raw += chunk
                    missing -= len(chunk)
                heard = _parse_http(raw)
            except OSError:
                heard = _parse_http(raw)
            with self._lock:
                self.requests.append(heard)
            if not heard.method:
                return
            status, headers, body = self.respond(heard)
            if heard.method == "HEAD":
                body = b""
            head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            with suppress(OSError):
                conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def heard_secret(self, *values: str) -> bool:
        """Whether any value (or its base64) was in any request's bytes."""
        with self._lock:
            blobs = [h.raw for h in self.requests]
        needles = [v.encode() for v in values if v] + [base64.b64encode(v.encode()) for v in values if v]
        return any(n in blob for n in needles for blob in blobs)


def _parse_http(raw: bytes) -> Heard:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) < 3 or not parts[2].startswith("HTTP/"):
        return Heard("", "", {}, b"", raw)
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Heard(parts[0], parts[1], headers, body, raw)


# --------------------------------------------------------------------------- OCI registry client


def make_client(host: str, environ: dict[str, str], *, home: Path, insecure: set[str]) -> RegistryClient:
    scope = CredentialScope.for_command("serve")
    credentials = ScopedCredentials(
        CredentialResolver({"PATH": "/usr/bin:/bin", **environ}, home=home), scope
    )
    return RegistryClient(credentials, scope=scope, insecure_hosts=frozenset(insecure), retry=FAST_RETRY)


def registry_env(registry: RunningRegistry, host: str) -> dict[str, str]:
    """The registry's credentials, as IMGLIFE_<HOST>_* variables for ``host`` (a proxy in front)."""
    assert registry.username
    assert registry.password
    prefix = env_prefix(host)
    return {f"{prefix}_USERNAME": registry.username, f"{prefix}_PASSWORD": registry.password}


@pytest.mark.parametrize("kind", ["basic", "token"])
@pytest.mark.parametrize("lure", ["manifest redirect", "next page link", "upload location"])
async def test_registry_answers_naming_another_host_never_carry_credentials_there(
    request: pytest.FixtureRequest, kind: str, lure: str, unique_repo: str, tmp_path: Path
) -> None:
    registry: RunningRegistry = request.getfixturevalue(f"{kind}_registry")
    with Listener() as elsewhere:
        async with FaultProxy(registry) as proxy:
            ref = parse_reference(f"{proxy.host}/{unique_repo}:v1")
            client = make_client(
                proxy.host, registry_env(registry, proxy.host), home=tmp_path, insecure={proxy.host}
            )
            async with client:
                # A first request teaches the client the registry's scheme (Basic or a Bearer token):
                # from then on every request to the registry carries credentials up front.
                with pytest.raises(NotFoundError):
                    await client.get_manifest(ref)
                if lure == "manifest redirect":
                    proxy.fail("GET", "/manifests/", 307, headers={"Location": f"{elsewhere.url}/m"})
                    with pytest.raises(ImglifeError):
                        await client.get_manifest(ref)
                elif lure == "next page link":
                    link = f'<{elsewhere.url}/v2/{unique_repo}/tags/list?last=a>; rel="next"'
                    body = json.dumps({"name": unique_repo, "tags": ["a"]})
                    headers = {"Link": link, "Content-Type": "application/json"}
                    proxy.fail("GET", "/tags/list", 200, headers=headers, body=body)
                    with pytest.raises(ImglifeError):
                        await client.list_tags(ref)
                else:
                    proxy.fail("POST", "/blobs/uploads/", 202, headers={"Location": f"{elsewhere.url}/up/1"})
                    data = b"not a secret layer"
                    digest = "sha256:" + hashlib.sha256(data).hexdigest()
                    with pytest.raises(ImglifeError):
                        await client.push_blob(ref, digest, len(data), data)
    assert any("authorization" in r.headers for r in proxy.requests)  # the registry got credentials
    assert elsewhere.requests, "the lure was not followed, so this test proves nothing"
    assert [h for h in elsewhere.requests if "authorization" in h.headers] == []
    assert not elsewhere.heard_secret(registry.password or "")


@pytest.mark.parametrize("source", ["IMGLIFE_ variables", "docker identitytoken"])
@pytest.mark.parametrize("realm_host", ["127.0.0.1", ELSEWHERE])
async def test_a_token_realm_on_another_host_gets_no_credentials(
    tmp_path: Path, source: str, realm_host: str
) -> None:
    token = "realm-issued-token-" + os.urandom(6).hex()
    password = register_test_secret("realm-pw-" + os.urandom(8).hex(), "test_security realm password")
    identity = register_test_secret("identity-" + os.urandom(8).hex(), "test_security identity token")
    assert password
    assert identity

    def token_service(_heard: Heard) -> Answer:
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"token": token, "expires_in": 300}).encode(),
        )

    with Listener(realm_host, token_service) as realm:

        def registry(heard: Heard) -> Answer:
            if heard.headers.get("authorization") == f"Bearer {token}":
                return not_found(heard)
            challenge = f'Bearer realm="{realm.url}/token",service="svc",scope="repository:app:pull"'
            return 401, {"WWW-Authenticate": challenge, "Content-Type": "application/json"}, b"{}"

        with Listener("127.0.0.1", registry) as reg:
            if source == "IMGLIFE_ variables":
                prefix = env_prefix(reg.host)
                environ = {f"{prefix}_USERNAME": "robot", f"{prefix}_PASSWORD": password}
            else:
                (tmp_path / "docker").mkdir()
                auths = {"auths": {reg.host: {"identitytoken": identity}}}
                (tmp_path / "docker" / "config.json").write_text(json.dumps(auths))
                environ = {"DOCKER_CONFIG": str(tmp_path / "docker")}
            # Both hosts may be spoken to over plain HTTP: only the host decides here.
            client = make_client(reg.host, environ, home=tmp_path, insecure={reg.host, realm.host})
            async with client:
                assert await client.head_manifest(parse_reference(f"{reg.host}/app:v1")) is None
    assert len(realm.requests) == 1
    assert [h.headers.get("authorization") for h in reg.requests] == [None, f"Bearer {token}"]
    same_host = realm_host == "127.0.0.1"
    asked_with = realm.requests[0]
    if source == "IMGLIFE_ variables":
        assert ("authorization" in asked_with.headers) is same_host  # control: the same host gets Basic
    else:
        assert (identity.encode() in asked_with.raw) is same_host  # ... or the OAuth2 refresh token
    if not same_host:
        assert not realm.heard_secret(password, identity)
        assert asked_with.method == "GET"  # an anonymous token request


async def test_an_https_registry_redirecting_to_plain_http_is_refused(tmp_path: Path) -> None:
    # No TLS server is needed to see where the client would go: httpx's mock transport answers.
    password = register_test_secret("downgrade-pw-" + os.urandom(8).hex(), "test_security downgrade password")
    assert password
    seen: list[httpx.Request] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.scheme != "https":
            return httpx.Response(200, json={"leaked": True})
        if "authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        return httpx.Response(307, headers={"Location": f"http://{request.url.host}{request.url.path}"})

    prefix = env_prefix("registry.example.net")
    environ = {f"{prefix}_USERNAME": "robot", f"{prefix}_PASSWORD": password}
    client = make_client("registry.example.net", environ, home=tmp_path, insecure=set())
    client._http._transport = httpx.MockTransport(registry)  # private: the one pool the client owns
    async with client:
        with pytest.raises(RegistryError, match="from HTTPS to plain HTTP"):
            await client.get_manifest(parse_reference("registry.example.net/app:v1"))
    assert [(r.url.scheme, "authorization" in r.headers) for r in seen] == [("https", False), ("https", True)]


def _redirecting(heard: Heard, to: str) -> Answer:
    return 302, {"Location": f"{to}{heard.target}"}, b""


REPO = Repo(forge=Forge.GITLAB, id="1", path=PROJECT, default_branch="main")
IMAGE = parse_reference("registry.example.com/apps/app:1.0.0")
RECORD = BuildRecord(
    image=str(IMAGE),
    base=ALPINE_LATEST,
    revision=sha(1),
    project=PROJECT,
    platforms=("linux/amd64",),
    built_at=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
)
S3_SECRET = register_test_secret("s3-secret-key-" + os.urandom(8).hex(), "test_security S3 secret key")
S3_SESSION = register_test_secret(
    "s3-session-token-" + os.urandom(8).hex(), "test_security AWS_SESSION_TOKEN"
)
S3_CREDENTIAL = PackageRegistryCredential(
    provider="s3",
    source="AWS_*",
    access_key_id="AKIDSECURITYTEST",
    secret_access_key=S3_SECRET,
    session_token=S3_SESSION,
)


async def _call_service(kind: str, url: str, token: str) -> None:
    if kind == "GitLab API":
        forge: Any = GitLabForge(url, token, retry=FAST_RETRY)
        try:
            await forge.read_file(REPO, ".imglife.yml", ref="main")
        finally:
            await forge.aclose()
    elif kind == "Gitea API":
        forge = GiteaForge(url, token, retry=FAST_RETRY)
        try:
            await forge.comments(REPO, 1, change_request=True)
        finally:
            await forge.aclose()
    elif kind == "GitLab packages":
        gitlab = GitLabRecordStore(f"{url}/api/v4", 1, token, retry=FAST_RETRY)
        try:
            await gitlab.get(IMAGE)
        finally:
            await gitlab.aclose()
    elif kind == "Gitea packages":
        gitea = GiteaRecordStore(url, "team", token, retry=FAST_RETRY)
        try:
            await gitea.get(IMAGE)
        finally:
            await gitea.aclose()
    elif kind in ("S3 read", "S3 write"):
        s3 = S3RecordStore("records", S3_CREDENTIAL, endpoint=url, retry=FAST_RETRY)
        try:
            await (s3.get(IMAGE) if kind == "S3 read" else s3.put(RECORD))
        finally:
            await s3.aclose()
    else:  # check --config-url: the forge token goes to the forge's own origin only
        config = parse_config(
            f"registry:\n  provider: gitlab\n  url: {url}\n  project_id: 1\n", "imglife.yaml", Path(".")
        )
        fetch = UrlFetcher(config, {"GITLAB_TOKEN": token})
        try:
            await fetch(f"{url}/team/base-images/-/raw/main/imglife.yaml")
        finally:
            await fetch.aclose()


@pytest.mark.parametrize(
    "kind",
    ["GitLab API", "Gitea API", "GitLab packages", "Gitea packages", "S3 read", "S3 write", "config URL"],
)
async def test_rest_clients_never_follow_a_redirect_to_another_host(kind: str) -> None:
    token = register_test_secret("rest-token-" + os.urandom(8).hex(), "test_security REST token")
    assert token
    with (
        Listener() as elsewhere,
        Listener("127.0.0.1", lambda h: _redirecting(h, elsewhere.url)) as service,
        suppress(Exception),  # which error a 302 makes is not the point; where the request went is
    ):
        await _call_service(kind, service.url, token)
    assert service.requests, "the service was never asked"
    secrets = (S3_SECRET, S3_SESSION) if kind.startswith("S3") else (token,)
    assert service.heard_secret(S3_SESSION if kind.startswith("S3") else token)  # control
    assert not elsewhere.heard_secret(*secrets), f"{kind} sent a credential to the host it was redirected to"
    assert elsewhere.connections == 0, f"{kind} followed a redirect to {elsewhere.host}"


# --------------------------------------------------------------------------- the bot, end to end


@dataclass
class World:
    fake: FakeGitLab
    bot: RunningBot
    project_id: int
    bot_user_id: int
    image_repo: str

    def project_payload(self, project_id: int | None = None, path: str = PROJECT) -> dict[str, Any]:
        pid = self.project_id if project_id is None else project_id
        return {
            "id": pid,
            "name": path.rsplit("/", 1)[-1],
            "path_with_namespace": path,
            "default_branch": "main",
            "web_url": f"{self.fake.url}/{path}",
        }

    def notes(self, kind: str, iid: int) -> list[Any]:
        return self.fake.notes(self.project_id, kind, iid)  # type: ignore[arg-type]

    def bot_notes(self, kind: str, iid: int) -> list[Any]:
        return [n for n in self.notes(kind, iid) if n.author.id == self.bot_user_id]

    def note(
        self,
        body: str,
        *,
        author: str,
        iid: int,
        on_mr: bool,
        head: str = sha(1),
        claimed_username: str | None = None,
    ) -> dict[str, Any]:
        """A note made in the fake as ``author``, and its Note Hook (``user.username`` may lie)."""
        kind = "merge_requests" if on_mr else "issues"
        created = self.fake.add_note(self.project_id, kind, iid, body, author=author)
        payload = fixture("gitlab", "note__merge_request" if on_mr else "note__issue")
        payload["project"] = self.project_payload()
        payload["project_id"] = self.project_id
        username = claimed_username or author
        payload["user"].update(id=created.author.id, username=username, name=username)
        attrs = payload["object_attributes"]
        attrs.update(id=created.id, note=body, author_id=created.author.id, project_id=self.project_id)
        target = payload["merge_request" if on_mr else "issue"]
        target["iid"] = iid
        if on_mr:
            target["last_commit"]["id"] = head
            target["source_branch"] = "feature"
        return payload


@contextmanager
def make_world(
    tmp_path: Path,
    registry: Any,
    *,
    settings: str | None = None,
    members: dict[str, int] | None = None,
    environ: dict[str, str] | None = None,
) -> Iterator[World]:
    fake = FakeGitLab(tokens={BOT_TOKEN: GitLabToken("imglife-bot")})
    with fake:
        people = {"imglife-bot": DEVELOPER, "rita": REPORTER, "dev": DEVELOPER, "max": MAINTAINER}
        project = fake.add_project(PROJECT, members={**people, **(members or {})})
        bot_user = fake.add_user("imglife-bot", bot=True)
        names = AppWorld.names(registry)
        image_repo = names["image_repo"]
        fake.add_file(PROJECT, "main", ".imglife.yml", settings or f"images:\n  - {image_repo}\n")
        config = bot_config(
            tmp_path, registry, names, f"  gitlab: {{url: '{fake.url}'}}\n  register_wait: 3s\n"
        )
        env = {"IMGLIFE_GITLAB_WEBHOOK_SECRET": GITLAB_SECRET, "GITLAB_TOKEN": BOT_TOKEN, **(environ or {})}
        with run_bot(config, env, log_dir=tmp_path) as bot:
            yield World(fake, bot, project.id, bot_user.id, image_repo)


def all_jobs(world: World, handler: str) -> dict[str, int]:
    return {o: n for (h, o), n in world.bot.jobs().items() if h == handler}


def test_no_comment_argument_makes_the_bot_contact_a_host_outside_its_configuration(
    tmp_path: Path, anon_registry: RunningRegistry
) -> None:
    # Two lures: a host no configuration names, and another port of the configured registry's IP.
    with (
        Listener() as elsewhere,
        Listener("127.0.0.1") as next_door,
        make_world(tmp_path, anon_registry) as world,
    ):
        world.fake.add_issue(PROJECT, 7)
        world.fake.add_merge_request(PROJECT, 8, "feature", sha(8))
        world.fake.add_tag(PROJECT, "v1.0.0", sha(10))
        comments = []
        for host in (elsewhere.host, next_door.host):
            comments += [
                f"/imglife check {host}/bases/alpine:3.22.1-core1.2.0",
                f"/imglife check http://{host}/v2/",
                f"/imglife check //{host}/bases/alpine:1",
                f"/imglife check registry.example.com@{host}/bases/alpine:1",
                f"/imglife check registry.example.com/bases/alpine:1 --config-url http://{host}/x",
                f"/imglife sync {host}/library/alpine",
                f"/imglife sync --dry-run http://{host}/library/alpine",
                f"/imglife register {host}/apps/app:v1.0.0",
                f"/imglife register http://{host}/",
                f"/imglife status {host}",
                f"/imglife eol --eol-data-url=http://{host}/",
                f"/imglife cleanup --dry-run {host}",
            ]
        comments.append(f"/imglife check $(curl http://{elsewhere.host})")
        for body in comments:  # by a maintainer: every command is within their role
            world.bot.deliver_gitlab(world.note(body, author="max", iid=7, on_mr=False))
        world.bot.deliver_gitlab(
            world.note(f"/imglife check http://{elsewhere.host}/", author="max", iid=8, on_mr=True)
        )
        outcomes = world.bot.wait_for_jobs("chatops", len(comments) + 1, timeout=60)
        replies = world.bot_notes("issues", 7)
    assert outcomes == {"invalid": len(comments) + 1}
    assert len(replies) == len(comments)
    assert elsewhere.connections == 0
    assert next_door.connections == 0


def test_imglife_yml_images_cannot_send_the_bot_to_a_host_outside_its_configuration(
    tmp_path: Path, anon_registry: RunningRegistry
) -> None:
    # `.imglife.yml` is written by whoever may push to a project's default branch, not by the
    # bot's operator: the images it lists must be on registries the operator configured.
    with Listener() as elsewhere:
        settings = f"images:\n  - {elsewhere.host}/apps/app\n"
        with make_world(tmp_path, anon_registry, settings=settings) as world:
            world.fake.add_issue(PROJECT, 3)
            world.fake.add_tag(PROJECT, "v2.0.0", sha(20))
            world.bot.deliver_gitlab(world.note("/imglife register v2.0.0", author="dev", iid=3, on_mr=False))
            world.bot.wait_for_jobs("chatops", 1, timeout=60)
            payload = fixture("gitlab", "tag_push__create")
            payload.update(ref="refs/tags/v2.0.0", after=sha(20), checkout_sha=sha(20))
            payload.update(project_id=world.project_id, project=world.project_payload())
            world.bot.deliver_gitlab(payload)
            world.bot.wait_for_jobs("register", 1, timeout=60)
            (reply,) = world.bot_notes("issues", 3)
    assert elsewhere.connections == 0, (
        f"the bot connected {elsewhere.connections} time(s) to {elsewhere.host}, named only in "
        f".imglife.yml; its reply: {reply.body[:300]!r}"
    )


def test_a_fork_merge_request_is_judged_by_the_target_settings_and_fork_people_are_refused(
    tmp_path: Path, anon_registry: RunningRegistry
) -> None:
    with make_world(
        tmp_path,
        anon_registry,
        settings="check:\n  strict: true\n",
    ) as world:
        fork = world.fake.add_project(FORK, members={"mallory": OWNER, "imglife-bot": REPORTER})
        relaxed = "check:\n  strict: false\ndockerfiles:\n  - docs/not-a-dockerfile\n"
        for project, ref in ((FORK, "main"), (FORK, "feature"), (FORK, sha(30)), (PROJECT, sha(30))):
            world.fake.add_file(project, ref, ".imglife.yml", relaxed)  # what the fork would like
        world.fake.add_file(PROJECT, sha(30), "Dockerfile", f"FROM {ALPINE_OLD_CORE}\n")
        world.fake.add_merge_request(PROJECT, 30, "feature", sha(30), author="mallory")
        payload = fixture("gitlab", "merge_request__open")
        payload["project"] = world.project_payload()
        payload["user"].update(id=world.fake.add_user("mallory").id, username="mallory", name="mallory")
        attrs = payload["object_attributes"]
        attrs.update(iid=30, source_branch="feature", target_branch="main")
        attrs.update(source_project_id=fork.id, target_project_id=world.project_id)
        attrs["source"] = world.project_payload(fork.id, FORK)
        attrs["target"] = world.project_payload()
        attrs["last_commit"]["id"] = sha(30)
        assert world.bot.deliver_gitlab(payload).status_code == 202
        assert world.bot.wait_for_jobs("check", 1) == {"failure": 1}  # strict, from the target's main
        # mallory owns the fork, not the target: no command runs for them there.
        world.bot.deliver_gitlab(
            world.note("/imglife sync", author="mallory", iid=30, on_mr=True, head=sha(30))
        )
        world.bot.deliver_gitlab(
            world.note("/imglife help", author="mallory", iid=30, on_mr=True, head=sha(30))
        )
        assert world.bot.wait_for_jobs("chatops", 2) == {"refused": 2}
        settings_reads = [
            r
            for r in world.fake.requests
            if r.method == "GET" and "imglife.yml" in r.path.replace("%2E", ".")
        ]
        fork_calls = [
            r for r in world.fake.requests if f"/projects/{fork.id}/" in r.path or "mallory%2Fapp" in r.path
        ]
        (status,) = [
            s
            for s in world.fake.statuses(world.project_id, sha(30))
            if s.name == "imglife/check" and not s.retried
        ]
        replies = [n.body for n in world.bot_notes("merge_requests", 30)]
    assert status.status == "failed"
    assert status.description == "1 base image: 1 outdated"
    assert fork_calls == []
    assert settings_reads
    assert {(r.path.split("/repository/")[0], r.query) for r in settings_reads} == {
        (f"/api/v4/projects/{world.project_id}", "ref=main")
    }
    assert sum("needs the maintainer role" in body for body in replies) == 1
    assert sum("needs the reporter role" in body for body in replies) == 1


@pytest.mark.parametrize(
    ("username", "display_name"),
    [
        ("imglife_bot", "imglife-bot"),
        ("imglife-bot-", "imglife-bot"),
        ("imglife\u2010bot", "imglife\u2011bot"),
    ],
)
def test_a_user_imitating_the_bot_gets_no_rights_and_the_bot_never_edits_their_markers(
    tmp_path: Path, anon_registry: RunningRegistry, username: str, display_name: str
) -> None:
    with make_world(tmp_path, anon_registry, members={username: REPORTER}) as world:
        impostor = world.fake.add_user(username, name=display_name)
        assert impostor.id != world.bot_user_id
        # 1. A command signed with the bot's name (the payload's username claims "imglife-bot").
        world.fake.add_issue(PROJECT, 4)
        sync = world.note(
            "/imglife sync", author=username, iid=4, on_mr=False, claimed_username="imglife-bot"
        )
        world.bot.deliver_gitlab(sync)
        assert world.bot.wait_for_jobs("chatops", 1) == {"refused": 1}  # not "own_comment", not run
        (refusal,) = world.bot_notes("issues", 4)
        assert "needs the maintainer role" in refusal.body
        assert "you have reporter" in refusal.body
        # 2. The check marker, planted before the bot's first check comment.
        world.fake.add_merge_request(PROJECT, 5, "feature", sha(5))
        world.fake.add_file(PROJECT, sha(5), "Dockerfile", f"FROM {ALPINE_LATEST}\n")
        planted_check = world.fake.add_note(
            world.project_id, "merge_requests", 5, f"{MARKER}\nmine", author=username
        )
        mr = fixture("gitlab", "merge_request__open")
        mr["project"] = world.project_payload()
        mr["object_attributes"].update(iid=5, source_branch="feature", target_branch="main")
        mr["object_attributes"].update(target_project_id=world.project_id, source_project_id=world.project_id)
        mr["object_attributes"]["last_commit"]["id"] = sha(5)
        world.bot.deliver_gitlab(mr)
        world.bot.wait_for_jobs("check", 1)
        # 3. The reply marker of the next comment, planted before that comment is written.
        world.fake.add_issue(PROJECT, 6)
        planted_reply = world.fake.add_note(world.project_id, "issues", 6, "…", author=username)
        reply_mark = f"<!-- imglife:reply:{planted_reply.id + 1} -->"  # note ids count up by one
        with world.fake.lock:
            planted_reply.body = f"{reply_mark}\nmine"
        command = world.note("/imglife help", author="rita", iid=6, on_mr=False)
        assert command["object_attributes"]["id"] == planted_reply.id + 1
        world.bot.deliver_gitlab(command)
        assert world.bot.wait_for_jobs("chatops", 2) == {"refused": 1, "done": 1}
        mr_notes = world.notes("merge_requests", 5)
        issue_notes = world.notes("issues", 6)
    assert next(n for n in mr_notes if n.id == planted_check.id).body == f"{MARKER}\nmine"
    assert [n.body.startswith(MARKER) for n in mr_notes if n.author.id == world.bot_user_id] == [True]
    assert next(n for n in issue_notes if n.id == planted_reply.id).body == f"{reply_mark}\nmine"
    (reply,) = [n for n in issue_notes if n.author.id == world.bot_user_id]
    assert reply_mark in reply.body
    assert "**imglife commands**" in reply.body


def test_a_replayed_command_comment_runs_once(tmp_path: Path, anon_registry: RunningRegistry) -> None:
    with make_world(tmp_path, anon_registry) as world:
        world.fake.add_issue(PROJECT, 9)
        payload = world.note("/imglife status", author="rita", iid=9, on_mr=False)
        answers = [world.bot.deliver_gitlab(payload) for _ in range(3)]  # "Resend": a new delivery id each
        answers.append(world.bot.deliver_gitlab(payload, idempotency_key="resend-1"))
        world.bot.wait_for_jobs("chatops", 1)
        time.sleep(0.5)  # a second job, were there one, would have finished by now
        jobs = all_jobs(world, "chatops")
        replies = world.bot_notes("issues", 9)
        awards = next(
            n for n in world.notes("issues", 9) if n.id == payload["object_attributes"]["id"]
        ).awards
    assert [(a.status_code, a.text.strip()) for a in answers] == [(202, "accepted")] + [
        (200, "duplicate")
    ] * 3
    assert jobs == {"done": 1}
    assert len(replies) == 1
    assert [a.name for a in awards] == ["eyes"]


def test_refused_registry_credentials_never_reach_a_reply_or_the_log(
    tmp_path: Path, basic_registry: RunningRegistry
) -> None:
    wrong = register_test_secret("wrong-pw-" + os.urandom(8).hex(), "test_security wrong registry password")
    assert wrong
    assert basic_registry.username
    assert basic_registry.password
    prefix = env_prefix(basic_registry.host)
    environ = {f"{prefix}_USERNAME": basic_registry.username, f"{prefix}_PASSWORD": wrong}
    with make_world(tmp_path, basic_registry, environ=environ) as world:
        world.fake.add_issue(PROJECT, 11)
        world.bot.deliver_gitlab(world.note("/imglife sync", author="max", iid=11, on_mr=False))
        assert world.bot.wait_for_jobs("chatops", 1, timeout=60) == {"failed": 1}
        (reply,) = world.bot_notes("issues", 11)
        log = world.bot.proc.log_path.read_text()
    basic = base64.b64encode(f"{basic_registry.username}:{wrong}".encode()).decode()
    assert f"{prefix}_PASSWORD" in reply.body.replace("\\_", "_")  # the variable to fix is named ...
    for text in (reply.body, log):
        assert wrong not in text  # ... never its value
        assert basic not in text
        assert basic_registry.password not in text


# --------------------------------------------------------------------------- the secret scan itself


def test_the_scan_finds_a_secret_a_process_wrote_to_its_log(tmp_path: Path) -> None:
    planted = register_test_secret("planted-" + os.urandom(8).hex(), "test_security planted secret")
    assert planted
    assert SCANNER.drain() == []
    log = tmp_path / "leaky.log"
    proc = ManagedProcess(
        ["/bin/sh", "-c", 'echo "starting"; echo "token is $LEAK"; sleep 30'],
        log_path=log,
        env={"LEAK": planted, "PATH": "/usr/bin:/bin"},
    )
    try:
        wait_until(lambda: "token is" in log.read_text(), timeout=10, what="the leaky process")
        running = SCANNER.scan_logs()  # what the suite's hook does after every test phase
    finally:
        proc.stop(grace=1)
    leaks = SCANNER.drain()  # consumed here, so that this test itself passes
    assert [str(leak.where) for leak in running] == [str(log)]
    assert leaks == running  # reported once, not again when the process stopped
    (leak,) = leaks
    assert leak.line == 2
    assert planted not in str(leak)
    assert planted[:3] in leak.hint
    assert "test_security planted secret" in leak.hint
    assert "token is «SECRET»" in str(leak)


def test_the_scan_reads_each_log_once_even_when_a_secret_is_split_between_two_reads(tmp_path: Path) -> None:
    scanner = SecretScanner()
    long = scanner.register("split-secret-" + os.urandom(12).hex(), "long")
    short = scanner.register("short-" + os.urandom(3).hex(), "short")
    assert long
    assert short
    log = tmp_path / "split.log"
    log.write_text(f"ok {short}\n{long[:9]}")  # the short one whole, the long one cut
    scanner.watch(log)
    first = scanner.scan_logs()
    with log.open("a") as f:
        f.write(long[9:] + "\n")
    second = scanner.scan_logs()
    assert [leak.hint.split("(")[1] for leak in first] == [f"{len(short)} chars, short)"]
    assert [leak.hint.split("(")[1] for leak in second] == [f"{len(long)} chars, long)"]
    assert scanner.scan_logs() == []  # nothing new, nothing found twice
    assert scanner.bytes_scanned == len(log.read_bytes())  # every byte counted once


def test_the_scan_sees_in_process_cli_output_and_registers_the_cli_environment() -> None:
    scanner = SecretScanner()
    token = "cli-token-" + os.urandom(8).hex()

    def leaky_main(
        argv: list[str], *, environ: dict[str, str], stdout: io.StringIO, stderr: io.StringIO
    ) -> int:
        stderr.write(f"debug: using {environ['GITLAB_TOKEN']}\n")
        return 0

    wrapped = tee_cli(leaky_main, scanner)
    assert wrapped([], environ={"GITLAB_TOKEN": token}, stdout=io.StringIO(), stderr=io.StringIO()) == 0
    (leak,) = scanner.drain()
    assert leak.where == "in-process imglife CLI stderr"
    assert token not in str(leak)
    import bot.cli

    assert getattr(bot.cli.main, "__wrapped_by_secret_scan__", False)  # the suite's CLI runs are scanned


def test_the_scan_fails_a_test_whose_output_holds_a_registered_secret(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        "import logging\n"
        "from tests.helpers.secrets import register_test_secret\n"
        "SECRET = register_test_secret('inner-secret-' + 'x9' * 6, 'inner test secret')\n"
        "def test_prints_it():\n"
        "    print('the token:', SECRET)\n"
        "def test_logs_it():\n"
        "    logging.getLogger('inner').warning('token %s', SECRET)\n"
        "def test_clean():\n"
        "    print('nothing to see')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "IMGLIFE_SECRET_SCAN_QUIET": ""}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.helpers.secrets", "-p", "no:cacheprovider",
         "--show-capture=no", "-q", "-rf", "test_inner.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 1, out
    assert "2 failed, 1 passed" in out, out
    assert "captured stdout call" in out, out
    assert "captured log call" in out, out
    assert "inn…(25 chars, inner test secret)" in out, out
    assert "inner-secret-x9x9" not in out + result.stderr
