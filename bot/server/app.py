"""The webhook receiver: verify, parse, de-duplicate, enqueue, answer — no forge or registry call inside.

Status codes (SPEC §6.1): 401 for a missing or wrong secret and when that forge's secret is not
configured (fail closed); 413 above the body limit; 400 for a body that is not a JSON object;
415 for a Gitea hook sending form data; 2xx for every authentic delivery, ignored ones included,
because GitLab disables hooks that keep failing; 503 while stopping, or when the work can be
neither queued nor held (Redis away and its outbox full). ``dispatch`` decides what work an event
means (jobs to queue, deferred jobs to wake) and must itself not wait on the network; the queue
then de-duplicates and queues in one step.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.events import Forge, ForgeEvent
from bot.forges.gitea_hooks import parse_gitea
from bot.forges.gitlab_hooks import parse_gitlab
from bot.forges.webhooks import WebhookRejected
from bot.server.jobs import Enqueued, JobSpec, Queue, QueueUnavailable
from bot.server.metrics import Metrics

DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024  # GitLab's own cap on webhook bodies
DEFAULT_DRAIN_SECONDS = 30.0
QUIET_SECONDS = 0.01  # no delivery for this long: the burst is over, jobs may start


@dataclass(frozen=True, slots=True)
class Work:
    """What a delivery means: jobs to queue, and wake keys of deferred jobs to run now."""

    jobs: Sequence[JobSpec] = field(default_factory=tuple)
    wakes: Sequence[str] = field(default_factory=tuple)


NO_WORK = Work()
Dispatch = Callable[[ForgeEvent], Work]
Parser = Callable[..., ForgeEvent | None]


class InFlight:
    """When deliveries were last answered; job workers wait for :meth:`idle` before starting a job.

    A delivery is answered within one event-loop step, so "none in flight" is almost always true
    even in a burst; a short quiet period is what tells a burst from a lull.
    """

    def __init__(self, quiet_seconds: float = QUIET_SECONDS) -> None:
        self._quiet = quiet_seconds
        self._last = -quiet_seconds

    def enter(self) -> None:
        self._last = time.monotonic()

    def leave(self) -> None:
        self._last = time.monotonic()

    async def idle(self) -> None:
        while (left := self._last + self._quiet - time.monotonic()) > 0:  # noqa: ASYNC110 - a deadline that moves
            await asyncio.sleep(left)


QUEUE = web.AppKey("queue", Queue)
METRICS = web.AppKey("metrics", Metrics)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ReceiverSettings:
    gitlab_secret: str | None
    gitea_secret: str | None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    drain_seconds: float = DEFAULT_DRAIN_SECONDS

    def secret(self, forge: Forge) -> str | None:
        return self.gitlab_secret if forge is Forge.GITLAB else self.gitea_secret


PARSERS: Mapping[Forge, Parser] = {Forge.GITLAB: parse_gitlab, Forge.GITEA: parse_gitea}


def _answer(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")


def _receiver(
    forge: Forge, settings: ReceiverSettings, dispatch: Dispatch, in_flight: InFlight
) -> Callable[[web.Request], Awaitable[web.Response]]:
    parse = PARSERS[forge]

    async def receive(request: web.Request) -> web.Response:
        started = time.perf_counter()
        in_flight.enter()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(forge=str(forge))
        metrics, queue = request.app[METRICS], request.app[QUEUE]
        event_name, outcome = "unknown", "accepted"
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                outcome = "too_large"
                return _answer(413, f"body larger than {settings.max_body_bytes} bytes")
            try:
                event = parse(request.headers, body, secret=settings.secret(forge))
            except WebhookRejected as exc:
                outcome = "rejected"
                log.warning("webhook_rejected", status=exc.status, reason=exc.reason)
                return _answer(exc.status, exc.reason)
            if event is None:
                outcome = "ignored"
                return _answer(202, "ignored")
            event_name = str(event.kind)
            structlog.contextvars.bind_contextvars(
                delivery_id=event.delivery_id, project=event.repo.path, webhook_event=event_name
            )
            work = dispatch(event)
            if not work.jobs and not work.wakes:
                outcome = "ignored"
                return _answer(202, "ignored")
            keys = [event.content_key]
            if event.idempotency_key:
                keys.append(f"{forge}:idempotency:{event.idempotency_key}")
            try:
                queued = await queue.enqueue(work.jobs, dedupe=keys, wakes=work.wakes)
            except QueueUnavailable as exc:
                outcome = "unavailable"
                log.error("delivery_refused", reason=str(exc))
                return _answer(503, "cannot queue the work now")
            if queued is Enqueued.DUPLICATE:
                outcome = "duplicate"
                return _answer(200, "duplicate")
            if queued is Enqueued.DRAINING:
                outcome = "draining"
                return _answer(503, "shutting down")
            metrics.queue_depth.set(queue.depth)
            return _answer(202, "accepted")
        finally:
            in_flight.leave()
            seconds = time.perf_counter() - started
            metrics.deliveries.labels(str(forge), event_name, outcome).inc()
            metrics.ack_seconds.labels(str(forge)).observe(seconds)
            log.info("webhook_received", outcome=outcome, duration_ms=round(seconds * 1000, 2))

    return receive


async def _healthz(_request: web.Request) -> web.Response:
    return _answer(200, "ok")


async def _readyz(request: web.Request) -> web.Response:
    queue = request.app[QUEUE]
    if not queue.accepting:
        return _answer(503, "draining")
    if not queue.ready:
        return _answer(503, "waiting for redis")
    return _answer(200, "ready")


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    metrics.queue_depth.set(request.app[QUEUE].depth)
    return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(
    settings: ReceiverSettings,
    *,
    dispatch: Dispatch,
    queue: Queue,
    metrics: Metrics | None = None,
    in_flight: InFlight | None = None,
) -> web.Application:
    """The aiohttp application; the job queue starts with the app and drains on shutdown.

    The ``queue`` should take ``idle=in_flight.idle`` (the same ``in_flight``).
    """
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[METRICS] = metrics or Metrics.create()
    in_flight = in_flight or InFlight()
    app[QUEUE] = queue

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        queue.start()
        yield
        await queue.drain(settings.drain_seconds)

    app.cleanup_ctx.append(lifecycle)
    for forge in Forge:
        app.router.add_post(f"/webhooks/{forge}", _receiver(forge, settings, dispatch, in_flight))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app
