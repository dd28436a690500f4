"""Real OCI registries (Debian ``docker-registry``, distribution 2.8) as test subprocesses.

``start_registry(kind)`` is a context manager that yields a :class:`RunningRegistry` and always
stops the process by PID and removes its data directory. Kinds:

* ``"anon"``: no auth.
* ``"basic"``: htpasswd (bcrypt) basic auth, user ``basic-user``.
* ``"token"``: ``auth: token`` against the in-repo token server (``tests.helpers.token_server``),
  user ``token-user``; anonymous callers may pull.

:class:`RegistryAuth` is an ``httpx.Auth`` that answers both Basic and Bearer challenges, so
tests can set up or inspect registry state with plain httpx, independent of the bot's client.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import re
import secrets
import shutil
import ssl
import subprocess
import threading
from collections.abc import AsyncGenerator, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from .procs import (
    ManagedProcess,
    ProcessStartError,
    free_port,
    http_status,
    port_in_use_error,
    scratch_dir,
    wait_until,
)
from .secrets import register_basic_credentials
from .token_server import RunningTokenServer, start_token_server

__all__ = [
    "MANIFEST_ACCEPT",
    "RegistryAuth",
    "RegistryKind",
    "RunningRegistry",
    "parse_challenge",
    "ssl_context",
    "start_registry",
]

RegistryKind = Literal["anon", "basic", "token"]

DOCKER_REGISTRY = "docker-registry"
BASIC_REALM = "imglife-test-basic"
START_TIMEOUT = 10.0

MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One shared default SSL context: ``httpx.Client(verify=ssl_context())`` is created in well under
    a millisecond instead of the ~30 ms httpx spends loading CA certificates for every client."""
    return ssl.create_default_context()


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="r",service="s",scope="a:b:c"`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


class RegistryAuth(httpx.Auth):
    """httpx auth for the test registries: Basic, or the Bearer token challenge flow.

    Tokens are cached per (realm, service, scope). Works with ``httpx.Client`` and
    ``httpx.AsyncClient`` (the token request goes through the same client). When the token
    server refuses, its response is what the caller gets.
    """

    _TOKEN_REQUEST = "imglife_test_token_request"

    def __init__(self, creds: tuple[str, str] | None) -> None:
        self.creds = creds
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._basic_origins: set[tuple[str, str, int | None]] = set()  # answered Basic challenges
        self._lock = threading.Lock()

    def _basic(self) -> str:
        assert self.creds is not None
        return "Basic " + base64.b64encode(":".join(self.creds).encode()).decode()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        origin = (request.url.scheme, request.url.host, request.url.port)
        if origin in self._basic_origins and self.creds and "Authorization" not in request.headers:
            request.headers["Authorization"] = self._basic()  # only to the origin that asked
        response = yield request
        if response.status_code != 401:
            return
        scheme, params = parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if self.creds is None or "Authorization" in request.headers:
                return
            self._basic_origins.add(origin)
            request.headers["Authorization"] = self._basic()
            yield request
            return
        if scheme != "bearer" or "realm" not in params:
            return
        key = (params["realm"], params.get("service", ""), params.get("scope", ""))
        with self._lock:
            token = self._tokens.get(key)
        if token is None or "Authorization" in request.headers:
            query = {k: v for k, v in (("service", key[1]), ("scope", key[2])) if v}
            token_request = httpx.Request(
                "GET", params["realm"], params=query, extensions={self._TOKEN_REQUEST: True}
            )
            if self.creds is not None:
                token_request.headers["Authorization"] = self._basic()
            token_response = yield token_request
            if token_response.status_code != 200:
                return
            body = token_response.json()
            token = str(body.get("token") or body["access_token"])
            with self._lock:
                self._tokens[key] = token
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    # Only token responses are read here; the caller's responses stay unread so that
    # ``client.stream(...)`` still streams (``requires_response_body`` would read them all).

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self.auth_flow(request)
        req = next(flow)
        while True:
            response = yield req
            if req.extensions.get(self._TOKEN_REQUEST):
                response.read()
            try:
                req = flow.send(response)
            except StopIteration:
                return

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self.auth_flow(request)
        req = next(flow)
        while True:
            response = yield req
            if req.extensions.get(self._TOKEN_REQUEST):
                await response.aread()
            try:
                req = flow.send(response)
            except StopIteration:
                return


@dataclass(frozen=True)
class RunningRegistry:
    """A running distribution registry on loopback."""

    kind: RegistryKind
    host: str  # "127.0.0.1:PORT" (what goes in image references)
    url: str  # "http://127.0.0.1:PORT"
    username: str | None
    password: str | None
    data_dir: Path  # holds config.yml, registry.log, data/ (and htpasswd)
    token_server: RunningTokenServer | None
    pid: int
    _proc: ManagedProcess = field(repr=False, compare=False)

    @property
    def creds(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)

    @property
    def config_path(self) -> Path:
        return self.data_dir / "config.yml"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "registry.log"

    def ref(self, repo: str, tag_or_digest: str = "latest") -> str:
        """``HOST/repo:tag`` or ``HOST/repo@sha256:...``."""
        sep = "@" if ":" in tag_or_digest else ":"
        return f"{self.host}/{repo}{sep}{tag_or_digest}"

    def auth(self, creds: tuple[str, str] | Literal["default"] | None = "default") -> RegistryAuth:
        """An ``httpx.Auth`` for this registry (default: its configured user)."""
        return RegistryAuth(self.creds if creds == "default" else creds)

    def client(self, **kwargs: Any) -> httpx.Client:
        """A sync httpx client with base_url and auth set (caller closes it); ``auth=None`` for
        anonymous requests."""
        kwargs.setdefault("auth", self.auth())
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("base_url", self.url)
        kwargs.setdefault("verify", ssl_context())
        return httpx.Client(**kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        kwargs.setdefault("auth", self.auth())
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("base_url", self.url)
        kwargs.setdefault("verify", ssl_context())
        return httpx.AsyncClient(**kwargs)

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes."""
        algo, _, hexdigest = digest.partition(":")
        return self.storage_dir / "docker/registry/v2/blobs" / algo / hexdigest[:2] / hexdigest / "data"

    def log_tail(self, lines: int = 40) -> str:
        return self._proc.log_tail(lines)

    def alive(self) -> bool:
        return self._proc.alive()

    def stop(self) -> None:
        """Stop the process now (for tests of an unreachable registry; use ``fresh_registry``)."""
        self._proc.stop()

    def add_user(self, username: str, password: str) -> None:
        """Append a bcrypt htpasswd entry (basic registries re-read the file when it changes)."""
        if self.kind != "basic":
            raise ValueError("add_user only applies to basic-auth registries")
        with open(self.data_dir / "htpasswd", "a") as f:
            f.write(_htpasswd_line(username, password))

    def garbage_collect(self, *, dry_run: bool = False, delete_untagged: bool = False) -> str:
        """Run ``docker-registry garbage-collect`` on this registry's storage; returns its output.

        Note services.md: ``--delete-untagged`` wrongly collects the children of OCI indexes.
        """
        argv = [DOCKER_REGISTRY, "garbage-collect"]
        if dry_run:
            argv.append("--dry-run")
        if delete_untagged:
            argv.append("--delete-untagged")
        argv.append(str(self.config_path))
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, f"garbage-collect failed ({proc.returncode}):\n{proc.stderr}"
        return proc.stdout + proc.stderr


def _htpasswd_line(username: str, password: str) -> str:
    proc = subprocess.run(
        ["htpasswd", "-Bbn", username, password], capture_output=True, text=True, timeout=30, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"htpasswd -Bbn failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip() + "\n"


def _write_config(
    directory: Path, port: int, auth: dict[str, Any] | None, extra: dict[str, Any] | None = None
) -> Path:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if auth:
        config["auth"] = auth
    config.update(extra or {})
    path = directory / "config.yml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


def _registry_ready(port: int) -> bool:
    return http_status("127.0.0.1", port, "/v2/", timeout=0.3) in (200, 401)


@contextlib.contextmanager
def start_registry(
    kind: RegistryKind = "anon",
    *,
    token_server: RunningTokenServer | None = None,
    username: str | None = None,
    password: str | None = None,
    timeout: float = START_TIMEOUT,
    extra_config: dict[str, Any] | None = None,
) -> Iterator[RunningRegistry]:
    """Start a fresh, empty registry; stop it by PID and delete its directory on exit.

    For ``kind="token"`` a private token server is started unless ``token_server`` is given
    (then its user and password are the registry's). ``extra_config`` adds top-level sections
    to the registry's config.yml (e.g. ``validation`` to allow foreign-layer URLs).
    """
    if shutil.which(DOCKER_REGISTRY) is None:
        raise ProcessStartError(
            "docker-registry not found: apt-get install -y docker-registry skopeo apache2-utils"
        )
    with contextlib.ExitStack() as stack:
        directory = scratch_dir(f"imglife-registry-{kind}-")
        stack.callback(shutil.rmtree, directory, True)
        auth: dict[str, Any] | None = None
        if kind == "basic":
            username = username or "basic-user"
            password = password or f"basic-pw-{secrets.token_hex(8)}"
            register_basic_credentials(username, password, "tests/helpers/registry.py basic registry")
            (directory / "htpasswd").write_text(_htpasswd_line(username, password))
            auth = {"htpasswd": {"realm": BASIC_REALM, "path": str(directory / "htpasswd")}}
        elif kind == "token":
            if token_server is None:
                token_server = stack.enter_context(
                    start_token_server(
                        username=username or "token-user",
                        password=password or f"token-pw-{secrets.token_hex(8)}",
                    )
                )
            username, password = token_server.creds
            auth = {
                "token": {
                    "realm": token_server.realm,
                    "service": token_server.service,
                    "issuer": token_server.issuer,
                    "rootcertbundle": str(token_server.cert_path),
                }
            }
        elif kind == "anon":
            username = password = None
        else:
            raise ValueError(f"unknown registry kind {kind!r}")

        for attempt in range(3):  # the free port may be taken between probe and bind
            port = free_port()
            config = _write_config(directory, port, auth, extra_config)
            (directory / "registry.log").unlink(missing_ok=True)  # errors of this attempt only
            proc = ManagedProcess(
                [DOCKER_REGISTRY, "serve", str(config)], log_path=directory / "registry.log", cwd=directory
            )
            stack.callback(proc.stop)
            url = f"http://127.0.0.1:{port}"
            try:
                wait_until(
                    functools.partial(_registry_ready, port),
                    timeout=timeout,
                    what=f"{kind} registry on {url}",
                    proc=proc,
                )
                break
            except ProcessStartError:
                if attempt < 2 and not proc.alive() and port_in_use_error(proc):
                    continue
                raise
        yield RunningRegistry(
            kind=kind,
            host=f"127.0.0.1:{port}",
            url=url,
            username=username,
            password=password,
            data_dir=directory,
            token_server=token_server,
            pid=proc.pid,
            _proc=proc,
        )
