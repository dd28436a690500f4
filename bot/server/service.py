"""The running bot: the receiver, the job queue, the forge clients and the stores, wired once.

``imglife serve`` calls :func:`serve`. A forge without a URL or token has its deliveries
acknowledged and logged as not configured, and a forge without a webhook secret gets 401 for every
delivery (fail closed); an invalid configuration, or a record store that cannot be written (no
token), stops the start with exit 2. Once listening, the ``bot.schedule`` scheduler starts.
SIGTERM and SIGINT stop the scheduler, stop accepting deliveries, let running jobs finish
(``DRAIN_SECONDS``) and return 0.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from pathlib import Path

import structlog
from aiohttp import web

from bot.config import Config
from bot.errors import EXIT_OK
from bot.events import Forge
from bot.lifecycle.eoldata import critical_days
from bot.redaction import register_secret
from bot.server.app import DEFAULT_DRAIN_SECONDS, InFlight, ReceiverSettings, build_app
from bot.server.jobs import JobQueue
from bot.server.metrics import Metrics
from bot.server.router import Router
from bot.server.runtime import BotRuntime
from bot.server.schedule import Scheduler
from bot.server.waits import Waits

SECRET_VARIABLES = {
    Forge.GITLAB: "IMGLIFE_GITLAB_WEBHOOK_SECRET",
    Forge.GITEA: "IMGLIFE_GITEA_WEBHOOK_SECRET",
}
TOKEN_VARIABLES = {Forge.GITLAB: "GITLAB_TOKEN", Forge.GITEA: "GITEA_TOKEN"}
DRAIN_SECONDS = DEFAULT_DRAIN_SECONDS

log = structlog.get_logger(__name__)


def _secret(environ: Mapping[str, str], forge: Forge) -> str | None:
    # A secret mounted from a file often ends with a newline no forge sends.
    value = environ.get(SECRET_VARIABLES[forge], "").strip()
    register_secret(value or None)
    return value or None


async def serve(config: Config, path: Path, environ: Mapping[str, str], *, host: str, port: int) -> int:
    """Run the bot until SIGTERM or SIGINT; the exit code."""
    settings = ReceiverSettings(
        gitlab_secret=_secret(environ, Forge.GITLAB),
        gitea_secret=_secret(environ, Forge.GITEA),
        workers=config.bot.workers,
        max_body_bytes=config.bot.max_body_bytes,
        drain_seconds=DRAIN_SECONDS,
    )
    in_flight = InFlight()
    queue = JobQueue(workers=config.bot.workers, idle=in_flight.idle)
    waits = Waits(queue)
    metrics = Metrics.create()
    runtime = BotRuntime(
        config,
        path,
        environ,
        critical_days=critical_days(environ),
        on_bytes=metrics.bytes_synced.inc,
    )
    router = Router(runtime, waits, metrics, config_dir=path.parent)
    # bot.schedule is read once: a reloaded configuration keeps the schedule the bot started with.
    scheduler = Scheduler(config.bot.schedule, queue=queue, job_for=router.scheduled_job)
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
        log.info("serve_started", host=host, port=port, config=str(path), workers=config.bot.workers)
        scheduler.start()
        await stop.wait()
        log.info("serve_stopping", queued=queue.depth, waiting_retries=len(waits))
        await scheduler.stop()
        waits.cancel_all()
        # Drain while still listening: /readyz answers 503 and new deliveries are refused with 503,
        # so a load balancer moves on while running jobs finish.
        await queue.drain(DRAIN_SECONDS)
    finally:
        await scheduler.stop()  # also when the start failed after the scheduler was started
        await runner.cleanup()
        await runtime.aclose()
    log.info("serve_stopped")
    return EXIT_OK
