"""Redis mode: a configuration reloaded on one replica reaches the others; a bad Redis URL stops the start.

The replicas here are two :class:`BotRuntime` objects sharing one real Redis (Debian's
redis-server); tests/test_replicas.py does the same with ``imglife serve`` processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot.config import load_config
from bot.config.loader import parse_config
from bot.errors import UsageError
from bot.server.redisqueue import RedisConfigShare, connect
from bot.server.runtime import BotRuntime
from bot.server.service import redis_url
from tests.helpers.lifecycle import write_project
from tests.helpers.redis import RunningRedis

RELOADED = "\n".join(["bot:", "  permissions:", "    sync: developer", "  job_attempts: 5", ""])


def runtime(path: Path, share: RedisConfigShare) -> BotRuntime:
    return BotRuntime(load_config(path), path, {}, critical_days=30, share=share)


async def test_a_reload_on_one_replica_is_adopted_by_the_others(
    tmp_path: Path, redis_server: RunningRedis
) -> None:
    path = write_project(tmp_path / "site")
    edited = write_project(tmp_path / "edited")
    edited.write_text(edited.read_text() + "# edited by hand\n")
    client = connect(redis_server.url, username=None, password=redis_server.password)
    share = RedisConfigShare(client)
    first, second, other = runtime(path, share), runtime(path, share), runtime(edited, share)
    try:
        await second.refresh()
        assert second.config.bot.permission_for("sync") == "maintainer"
        source = (path.read_text() + RELOADED).encode()
        reloaded = parse_config(source.decode(), "platform/base-images@abc", path.parent)
        await first.replace_config(reloaded, source, label="platform/base-images@abc")
        assert first.config.bot.permission_for("sync") == "developer"

        with capture_logs() as logs:
            await second.refresh()
            await other.refresh()
            await second.refresh()  # nothing newer: nothing happens
        assert second.config.bot.permission_for("sync") == "developer"
        assert second.config.bot.job_attempts == 5
        # A replica started from another imglife.yaml keeps its own, and says so.
        assert other.config.bot.permission_for("sync") == "maintainer"
        assert [(entry["event"], entry["source"]) for entry in logs] == [
            ("config_adopted", "platform/base-images@abc"),
            ("shared_config_ignored", "platform/base-images@abc"),
        ]
        # A replica started later from the same file takes the reloaded configuration too.
        late = runtime(path, share)
        await late.refresh()
        assert late.config.bot.permission_for("sync") == "developer"
        await late.aclose()
    finally:
        for each in (first, second, other):
            await each.aclose()
        await client.aclose()


async def test_a_reload_that_cannot_be_shared_fails_the_job(
    tmp_path: Path, redis_server: RunningRedis
) -> None:
    path = write_project(tmp_path)
    client = connect(redis_server.url, username=None, password=redis_server.password)
    bot = runtime(path, RedisConfigShare(client))
    redis_server.stop()
    try:
        source = (path.read_text() + RELOADED).encode()
        with pytest.raises(Exception, match="could not share the configuration with the other replicas"):
            await bot.replace_config(load_config(path), source, label="x@1")
        await bot.refresh()  # Redis away: the configuration in force stays, no exception
    finally:
        await bot.aclose()
        await client.aclose()


def test_a_redis_url_with_credentials_in_the_environment_stops_the_start(tmp_path: Path) -> None:
    config = load_config(write_project(tmp_path))
    assert redis_url(config, {}) is None
    assert redis_url(config, {"IMGLIFE_REDIS_URL": " redis://redis:6379/0 "}) == "redis://redis:6379/0"
    with pytest.raises(UsageError, match="IMGLIFE_REDIS_URL: URLs must not carry credentials") as caught:
        redis_url(config, {"IMGLIFE_REDIS_URL": "redis://:hunter2@redis:6379/0"})
    assert "hunter2" not in str(caught.value)
    with pytest.raises(UsageError, match="IMGLIFE_REDIS_URL: must be a redis:// or rediss:// or unix://"):
        redis_url(config, {"IMGLIFE_REDIS_URL": "http://redis:6379"})
