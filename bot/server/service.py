"""The running bot: the receiver, the job queue, the forge clients and the stores, wired once.

``imglife serve`` calls :func:`serve`. A forge without a URL or token has its deliveries
acknowledged and logged as not configured, and a forge without a webhook secret gets 401 for every
delivery (fail closed); an invalid configuration, or a record store that cannot be written (no
token), stops the start with exit 2. With ``bot.redis_url`` (or ``IMGLIFE_REDIS_URL``) the queue is
the shared one on Redis; Redis unreachable at start is logged (``redis_unreachable``) and
``/readyz`` answers 503 until it is reached. Once listening, the ``bot.schedule`` scheduler starts.
SIGTERM and SIGINT stop the scheduler, stop accepting deliveries, let running jobs finish
(``bot.drain_timeout``) and return 0; in Redis mode jobs not finished by then go back to Redis.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from bot.config import Config
from bot.config.schema import RedisUrl
from bot.errors import EXIT_OK, UsageError
from bot.events import Forge
from bot.lifecycle.eoldata import critical_days
from bot.redaction import register_secret
from bot.server.app import InFlight, ReceiverSettings, build_app
from bot.server.jobs import MemoryQueue, Queue
from bot.server.metrics import Metrics
from bot.server.router import Router
from bot.server.runtime import BotRuntime, ConfigShare
from bot.server.schedule import Scheduler

if TYPE_CHECKING:
    from redis import asyncio as aioredis

SECRET_VARIABLES = {
    Forge.GITLAB: "IMGLIFE_GITLAB_WEBHOOK_SECRET",
    Forge.GITEA: "IMGLIFE_GITEA_WEBHOOK_SECRET",
}
TOKEN_VARIABLES = {Forge.GITLAB: "GITLAB_TOKEN", Forge.GITEA: "GITEA_TOKEN"}
REDIS_URL_VARIABLE = "IMGLIFE_REDIS_URL"
REDIS_USERNAME_VARIABLE = "IMGLIFE_REDIS_USERNAME"
REDIS_PASSWORD_VARIABLE = "IMGLIFE_REDIS_PASSWORD"  # noqa: S105 - a variable's name
MSG_BAD_REDIS_URL = "{variable}: {problem}"

log = structlog.get_logger(__name__)


def _secret(environ: Mapping[str, str], forge: Forge) -> str | None:
    # A secret mounted from a file often ends with a newline no forge sends.
    value = environ.get(SECRET_VARIABLES[forge], "").strip()
    register_secret(value or None)
    return value or None


def redis_url(config: Config, environ: Mapping[str, str]) -> str | None:
    """``IMGLIFE_REDIS_URL``, else ``bot.redis_url``; :class:`UsageError` for a bad one (exit 2)."""
    raw = environ.get(REDIS_URL_VARIABLE, "").strip()
    if not raw:
        return config.bot.redis_url
    try:
        return str(TypeAdapter(RedisUrl).validate_python(raw))
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise UsageError(MSG_BAD_REDIS_URL.format(variable=REDIS_URL_VARIABLE, problem=problem)) from None


async def serve(config: Config, path: Path, environ: Mapping[str, str], *, host: str, port: int) -> int:
    """Run the bot until SIGTERM or SIGINT; the exit code."""
    drain = config.bot.drain_timeout
    settings = ReceiverSettings(
        gitlab_secret=_secret(environ, Forge.GITLAB),
        gitea_secret=_secret(environ, Forge.GITEA),
        max_body_bytes=config.bot.max_body_bytes,
        drain_seconds=drain,
    )
    in_flight = InFlight()
    metrics = Metrics.create()
    shared_url = redis_url(config, environ)
    redis: aioredis.Redis | None = None
    share: ConfigShare | None = None
    if shared_url is not None:
        # Imported here: without Redis the bot never loads the client.
        from bot.server.redisqueue import RedisConfigShare, connect

        password = environ.get(REDIS_PASSWORD_VARIABLE, "").strip() or None
        register_secret(password)
        username = environ.get(REDIS_USERNAME_VARIABLE, "").strip() or None
        redis = connect(shared_url, username=username, password=password)
        share = RedisConfigShare(redis)
    runtime = BotRuntime(
        config,
        path,
        environ,
        critical_days=critical_days(environ),
        on_bytes=metrics.bytes_synced.inc,
        share=share,
    )
    router = Router(runtime, metrics, config_dir=path.parent)
    queue: Queue
    if redis is None or shared_url is None:
        queue = MemoryQueue(router.run, workers=config.bot.workers, idle=in_flight.idle)
    else:
        from bot.server.redisqueue import RedisQueue

        queue = RedisQueue(
            router.run,
            client=redis,
            workers=config.bot.workers,
            visibility_timeout=config.bot.visibility_timeout,
            idle=in_flight.idle,
            where=shared_url,
        )
    # bot.schedule is read once: a reloaded configuration keeps the schedule the bot started with.
    scheduler = Scheduler(config.bot.schedule, queue=queue)
    app = build_app(settings, dispatch=router.dispatch, queue=queue, metrics=metrics, in_flight=in_flight)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        for forge in Forge:
            if settings.secret(forge) is None:
                log.warning("webhook_secret_missing", forge=str(forge), variable=SECRET_VARIABLES[forge])
            if forge not in runtime.forges:
                log.warning("forge_not_configured", forge=str(forge), variable=TOKEN_VARIABLES[forge])
        log.info(
            "serve_started",
            host=host,
            port=port,
            config=str(path),
            workers=config.bot.workers,
            queue="redis" if redis is not None else "memory",
        )
        scheduler.start()
        await stop.wait()
        log.info("serve_stopping", queued=queue.depth)
        await scheduler.stop()
        # Drain while still listening: /readyz answers 503 and new deliveries are refused with 503,
        # so a load balancer moves on while running jobs finish.
        await queue.drain(drain)
    finally:
        await scheduler.stop()  # also when the start failed after the scheduler was started
        await runner.cleanup()
        await runtime.aclose()
        if redis is not None:
            await redis.aclose()
    log.info("serve_stopped")
    return EXIT_OK
