"""Shared fixtures: real registries (anon, basic, token), a token server and repo names.

Import helpers as ``tests.helpers.<module>`` (pytest's ``pythonpath`` puts the project root on
sys.path; importing them as ``helpers.<module>`` would load a second copy).

Session-scoped (shared by every test, so use ``unique_repo``/``repo_name`` for repositories):
    ``anon_registry``, ``basic_registry``, ``token_registry``, ``token_server``
Function-scoped:
    ``any_registry`` (parametrized over the three kinds), ``fresh_registry`` (factory for a
    private, empty registry: ``fresh_registry("token")``), ``unique_repo``, ``repo_name``.
Async, function-scoped (run in the test's event loop):
    ``make_fault_proxy`` (``proxy = await make_fault_proxy(registry)``) and
    ``make_blob_origin`` (``origin = await make_blob_origin(registry)``), closed after the test.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack
from typing import Any

import pytest

from tests.helpers.proxy import BlobOrigin, FaultProxy
from tests.helpers.redis import RunningRedis, start_redis
from tests.helpers.registry import RegistryKind, RunningRegistry, start_registry
from tests.helpers.s3 import RunningS3, start_seaweedfs, unique_bucket_name
from tests.helpers.token_server import RunningTokenServer, start_token_server


@pytest.fixture(scope="session")
def token_server() -> Iterator[RunningTokenServer]:
    """The token server behind ``token_registry`` (user ``token-user``)."""
    with start_token_server(username="token-user") as server:
        yield server


@pytest.fixture(scope="session")
def anon_registry() -> Iterator[RunningRegistry]:
    """A registry without auth."""
    with start_registry("anon") as registry:
        yield registry


@pytest.fixture(scope="session")
def basic_registry() -> Iterator[RunningRegistry]:
    """A registry with htpasswd basic auth, user ``basic-user``."""
    with start_registry("basic") as registry:
        yield registry


@pytest.fixture(scope="session")
def token_registry(token_server: RunningTokenServer) -> Iterator[RunningRegistry]:
    """A registry with ``auth: token`` against ``token_server`` (user ``token-user``).

    Tests that change the token server's config (``configure``) must restore it
    (``reset_config``) or use ``fresh_registry("token")``.
    """
    with start_registry("token", token_server=token_server) as registry:
        yield registry


@pytest.fixture(params=["anon", "basic", "token"])
def any_registry(request: pytest.FixtureRequest) -> RunningRegistry:
    """Each of the three shared registries in turn."""
    registry: RunningRegistry = request.getfixturevalue(f"{request.param}_registry")
    return registry


@pytest.fixture
def fresh_registry() -> Iterator[Callable[..., RunningRegistry]]:
    """Factory for private, empty registries, stopped when the test ends.

    ``fresh_registry("anon" | "basic" | "token", **start_registry_kwargs)``; a token registry
    gets its own token server.
    """
    with ExitStack() as stack:

        def make(kind: RegistryKind = "anon", **kwargs: Any) -> RunningRegistry:
            return stack.enter_context(start_registry(kind, **kwargs))

        yield make


@pytest.fixture
async def make_fault_proxy() -> AsyncIterator[Callable[..., Awaitable[FaultProxy]]]:
    """Factory: ``await make_fault_proxy(upstream, **FaultProxy_kwargs)``."""
    async with AsyncExitStack() as stack:

        async def make(upstream: Any, **kwargs: Any) -> FaultProxy:
            return await stack.enter_async_context(FaultProxy(upstream, **kwargs))

        yield make


@pytest.fixture
async def make_blob_origin() -> AsyncIterator[Callable[..., Awaitable[BlobOrigin]]]:
    """Factory: ``await make_blob_origin(registry, creds="default", **BlobOrigin_kwargs)``."""
    async with AsyncExitStack() as stack:

        async def make(registry: Any, *args: Any, **kwargs: Any) -> BlobOrigin:
            return await stack.enter_async_context(BlobOrigin(registry, *args, **kwargs))

        yield make


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].strip("-") or "t"


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``repo_name("src")`` -> ``test/<test-name-slug>-src-<hex>``: unique per call."""
    base = _slug(request.node.name)

    def make(suffix: str = "") -> str:
        parts = [base, _slug(suffix, 20) if suffix else "", secrets.token_hex(3)]
        return "test/" + "-".join(p for p in parts if p)

    return make


@pytest.fixture
def unique_repo(repo_name: Callable[[str], str]) -> str:
    """A repository name no other test uses: ``test/<test-name-slug>-<hex>``."""
    return repo_name("")


# --------------------------------------------------------------------------- S3 (SeaweedFS)
# Self-contained section (tests/helpers/s3.py): a real S3 server, ``weed mini`` on loopback.
#   ``s3_server`` (session): one SeaweedFS for the whole run, credentials enforced.
#   ``s3_bucket`` (function): a fresh, empty, uniquely named bucket in it.


@pytest.fixture(scope="session")
def s3_server() -> Iterator[RunningS3]:
    """One SeaweedFS S3 server for the run: ``s3_server.client()``, ``.session()``, ``.env()``."""
    with start_seaweedfs() as server:
        yield server


@pytest.fixture
def s3_bucket(s3_server: RunningS3, request: pytest.FixtureRequest) -> str:
    """A new empty bucket ``t-<test-name-slug>-<hex>`` (left in place; the server is throwaway)."""
    return s3_server.create_bucket(unique_bucket_name(request.node.name))


# --------------------------------------------------------------------------- Redis
# tests/helpers/redis.py: Debian's redis-server on a free loopback port, a password, no persistence.


@pytest.fixture
def redis_server() -> Iterator[RunningRedis]:
    """A fresh Redis per test (it starts in milliseconds): ``.url``, ``.password``, ``.pause()``."""
    with start_redis() as server:
        yield server


# --------------------------------------------------------------------------- secret scan
# tests/helpers/secrets.py: after every test phase, its captured output, the new output of every
# subprocess (ManagedProcess logs) and of in-process CLI runs are searched for the registered test
# secrets; a find fails that phase, naming the file and a masked hint of the secret (SECURITY.md).


def pytest_configure(config: pytest.Config) -> None:
    import bot.cli
    from tests.helpers import secrets as secret_scan
    from tests.helpers.procs import add_log_watcher

    if not config.pluginmanager.is_registered(secret_scan):
        config.pluginmanager.register(secret_scan, "imglife-secret-scan")
    add_log_watcher(secret_scan.SCANNER.process_log)
    if not getattr(bot.cli.main, "__wrapped_by_secret_scan__", False):
        # Test modules import ``main`` after this runs, so they get the scanning wrapper.
        bot.cli.main = secret_scan.tee_cli(bot.cli.main)  # type: ignore[method-assign]
