"""HTTP for REST services (package registries, S3 record reads, forges): one pooled client, retries.

This client is on aiohttp, not httpx: reading 1,000 small records with 8 to 32 requests in
flight cost httpx 3.0-6.4 s of CPU against aiohttp's 0.6-0.8 s (measured on this project's
2-core test machine against SeaweedFS; httpcore's pool re-scans every connection for every
queued request). Record listings make one request per record, so this is what decides whether
10,000 records take seconds or a minute. The OCI registry client stays on httpx: its time goes
into streaming large blobs, not into request overhead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from bot import __version__
from bot.oci.sansio import parse_retry_after
from bot.retry import RETRYABLE_STATUS, RetryPolicy

if TYPE_CHECKING:
    import aiohttp

USER_AGENT = f"imglife/{__version__}"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
# Sent again after a connection error only when repeating them cannot do a thing twice. A POST
# whose connection broke may have been acted on (a comment posted): it is sent again only when
# it never left (the connection could not be made).
REPEATABLE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

log = structlog.get_logger(__name__)


class TransportError(Exception):
    """The service could not be reached, or the connection broke (after retries)."""


@dataclass(frozen=True, slots=True)
class Response:
    """A whole response: status, headers, body (these services answer small JSON or files)."""

    status_code: int
    headers: CIMultiDictProxy[str]
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.content)
        except (ValueError, UnicodeDecodeError):
            return None


class HttpClient:
    """One connection pool per service for the life of a command; retries 429/5xx and resets.

    Callers send only requests that are safe to repeat.
    """

    def __init__(
        self,
        *,
        service: str,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 32,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._service = service
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._max_connections = max_connections
        self._retry = retry or RetryPolicy()
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use: an aiohttp session belongs to the running event loop. aiohttp is
        # imported here, not at the top: it is a third of every command's start-up otherwise.
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=self._max_connections),
                # sock_read bounds each read only: a server trickling a byte at a time would hold
                # a call forever. The whole request gets the connect and read timeouts, in all.
                timeout=aiohttp.ClientTimeout(
                    total=CONNECT_TIMEOUT + READ_TIMEOUT, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> Response:
        """Send a request; the URL is used exactly as given (already percent-encoded)."""
        import aiohttp

        session = self._open()
        target = URL(url, encoded=True)
        if params:
            target = target.update_query(params)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with session.request(
                    method, target, headers=headers, data=content, allow_redirects=False
                ) as raw:
                    response = Response(
                        raw.status, CIMultiDictProxy(CIMultiDict(raw.headers)), await raw.read(), url
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                unsent = isinstance(exc, aiohttp.ClientConnectorError)
                if self._retry.gives_up(attempt) or not (unsent or method.upper() in REPEATABLE_METHODS):
                    raise TransportError(f"{type(exc).__name__}: {exc}") from exc
                log.warning(
                    "http_retry",
                    service=self._service,
                    method=method,
                    attempt=attempt,
                    error=type(exc).__name__,
                )
                await asyncio.sleep(self._retry.delay(attempt))
                continue
            if response.status_code in RETRYABLE_STATUS:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if not self._retry.gives_up(attempt, retry_after):
                    log.warning(
                        "http_retry",
                        service=self._service,
                        method=method,
                        attempt=attempt,
                        status=response.status_code,
                    )
                    await asyncio.sleep(self._retry.delay(attempt, retry_after))
                    continue
            return response
