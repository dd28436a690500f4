"""HTTP plumbing for JSON/REST services (package registries, forges): one pooled client, retries.

Registries have their own client (:mod:`bot.oci.client`) because their auth is interleaved with
every request; REST services authenticate with a fixed header and need only this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import structlog

from bot import __version__
from bot.oci.sansio import parse_retry_after
from bot.retry import RETRYABLE_STATUS, RetryPolicy

USER_AGENT = f"imglife/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)

log = structlog.get_logger(__name__)


def new_client(
    *,
    headers: Mapping[str, str] | None = None,
    max_connections: int = 32,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
) -> httpx.AsyncClient:
    """One client per service for the life of a command: connections are reused across requests."""
    return httpx.AsyncClient(
        headers={"User-Agent": USER_AGENT, **(headers or {})},
        timeout=timeout,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        follow_redirects=False,
        trust_env=False,
    )


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    service: str,
    policy: RetryPolicy,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request, retrying 429/5xx (honouring ``Retry-After``) and connection errors.

    Callers only send requests that are safe to repeat. The last response is returned whatever
    its status; a connection error that outlasts the retries is re-raised.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            if policy.gives_up(attempt):
                raise
            log.warning(
                "http_retry", service=service, method=method, attempt=attempt, error=type(exc).__name__
            )
            await asyncio.sleep(policy.delay(attempt))
            continue
        if response.status_code in RETRYABLE_STATUS:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if not policy.gives_up(attempt, retry_after):
                log.warning(
                    "http_retry", service=service, method=method, attempt=attempt, status=response.status_code
                )
                await asyncio.sleep(policy.delay(attempt, retry_after))
                continue
        return response
