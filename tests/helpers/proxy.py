"""An in-process aiohttp reverse proxy that injects faults, and a fake object-storage origin.

``FaultProxy(upstream)`` forwards everything to ``upstream`` (method, path, query, headers minus
hop-by-hop ones, streamed bodies both ways), like nginx with ``proxy_pass`` and the default
``proxy_redirect``: ``Host`` becomes the upstream's and ``Location`` headers pointing at the
upstream origin are rewritten to the proxy origin. ``WWW-Authenticate`` is left untouched, so
a token realm still points at the token server. Every request is recorded in
``proxy.requests``. Rules (checked in the order added; a rule with ``times`` used up is skipped)
match a method (``"GET"``, ``"PUT|PATCH"``, ``"*"``) and a path regex (``re.search`` on the
decoded path) and act:

* :meth:`FaultProxy.fail`: answer ``status`` (with headers and body) without asking upstream,
  e.g. ``fail("GET", "/manifests/", 429, times=1, headers={"Retry-After": "1"})``.
* :meth:`FaultProxy.reject_body`: answer 413 (nginx's ``client_max_body_size``) for PUT/PATCH
  requests whose body has at least ``min_bytes`` bytes.
* :meth:`FaultProxy.reset`: close the connection without answering, or (``mid_body=True``)
  after the status line, headers and part of the upstream's body.
* :meth:`FaultProxy.delay`: wait before forwarding (for client timeouts).
* :meth:`FaultProxy.redirect_blobs_to`: answer a blob GET that the upstream would serve with
  ``307 Location: <origin>/blobs/<digest>?X-Amz-...&X-Amz-Signature=...``, like a registry on S3.
* :meth:`FaultProxy.paginate_tags`: paginate ``tags/list`` (``n``, ``last``, ``Link``) the way
  newer registries do; distribution 2.8 itself ignores ``n``/``last`` and returns all tags.
* :meth:`FaultProxy.burst`: answer a sequence of statuses (``502, 503, 504``), one request
  each, then pass requests through again (a 5xx burst; ``fail(..., times=N)`` repeats one status).
* :meth:`FaultProxy.truncate`: forward, then send only part of a 2xx body and close. ``length``
  says what the headers declare: ``"full"`` (the real Content-Length: the client can tell),
  ``"chunked"`` (no final chunk: the client can tell), ``"none"`` (no length, the body ends when
  the connection closes: HTTP cannot tell) or ``"short"`` (a Content-Length matching the cut:
  HTTP cannot tell). Only the content's own digest or syntax gives the last two away.
* :meth:`FaultProxy.slow`: a slow-loris answer. ``part="body"``: the upstream's status and
  headers at once, then its body ``chunk`` bytes every ``interval`` seconds; ``part="headers"``:
  the status line and headers themselves trickle, then the body; ``endless=True`` (no upstream
  involved): a header block that never ends. A read timeout per socket read never fires on it.
* :meth:`FaultProxy.stall`: read the request and never answer (a silent upstream); the
  connection stays open until the client gives up or the proxy closes.
* :meth:`FaultProxy.cut_upload`: forward the request line, headers and only part of the request
  body to the upstream, then drop both connections (an upload broken off mid-body: the upstream
  must not keep what it got).

The faults that write raw HTTP (``truncate``, ``slow``) always send ``Connection: close`` and
close the connection when done. Long-running faults (``slow``, ``stall``) end when the proxy
closes, so they never hold up a test's teardown. :func:`fault_proxy_in_thread` runs a proxy on
its own event loop in a thread, for tests that block (a bot subprocess polled with ``time.sleep``).

:class:`BlobOrigin` is that other origin: it serves ``/blobs/<digest>`` by fetching the blob
from the registry with credentials it got out of band, rejects requests that carry an
``Authorization`` header the way S3 does (400) and records every request's headers.

Both run in the test's event loop: use ``httpx.AsyncClient`` (or ``asyncio.to_thread`` for
blocking helpers such as skopeo), never a blocking client, in the same loop (or use
:func:`fault_proxy_in_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import aiohttp
import httpx
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .registry import RegistryAuth, RunningRegistry, ssl_context

__all__ = ["BlobOrigin", "FaultProxy", "RecordedRequest", "Rule", "fault_proxy_in_thread"]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
BLOB_PATH = re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")
TAGS_PATH = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
CHUNK = 64 * 1024
ALL_ACTIONS = (
    "fail",
    "reset",
    "delay",
    "redirect",
    "paginate",
    "reject_body",
    "truncate",
    "slow",
    "stall",
    "cut_upload",
)

NGINX_413 = (
    b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@dataclass
class RecordedRequest:
    """One request as the proxy (or origin) received it. Header names are lower-case."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body_size: int = 0
    status: int | None = None  # what was answered; None when the connection was reset
    # forward | fail | reject_body | reset | delay | redirect | paginate | truncate | slow | stall
    # | cut_upload
    action: str = "forward"


@dataclass
class Rule:
    """A fault rule; ``hits`` counts how often it fired."""

    action: Literal[
        "fail",
        "reject_body",
        "reset",
        "delay",
        "redirect",
        "paginate",
        "truncate",
        "slow",
        "stall",
        "cut_upload",
    ]
    methods: frozenset[str] | None
    pattern: re.Pattern[str]
    times: int | None
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def matches(self, method: str, path: str) -> bool:
        if self.exhausted():
            return False
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.pattern.search(path) is not None


def _methods(method: str | None) -> frozenset[str] | None:
    if method is None or method == "*":
        return None
    return frozenset(m.strip().upper() for m in method.split("|") if m.strip())


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


async def _start_site(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = int(runner.addresses[0][1])
    return runner, port


class FaultProxy:
    """``async with FaultProxy(registry.url) as proxy:`` then talk to ``proxy.url``."""

    def __init__(self, upstream: str | RunningRegistry, *, preserve_host: bool = False) -> None:
        self.upstream = _origin(upstream if isinstance(upstream, str) else upstream.url)
        self.preserve_host = preserve_host
        self.requests: list[RecordedRequest] = []
        self.rules: list[Rule] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing: asyncio.Event | None = None  # set when the proxy closes: long faults end

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, for image references through the proxy."""
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultProxy:
        self._closing = asyncio.Event()
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
        )
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await _start_site(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ rules

    def _add(self, action: Any, method: str | None, path: str, times: int | None, **params: Any) -> Rule:
        rule = Rule(action, _methods(method), re.compile(path), times, params)
        self.rules.append(rule)
        return rule

    def fail(
        self,
        method: str | None,
        path: str,
        status: int,
        *,
        times: int | None = 1,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
    ) -> Rule:
        """Answer ``status`` without contacting upstream, ``times`` times (None: always)."""
        data = body.encode() if isinstance(body, str) else body
        return self._add("fail", method, path, times, status=status, headers=dict(headers or {}), body=data)

    def reject_body(
        self,
        method: str | None = "PUT|PATCH",
        path: str = ".*",
        *,
        status: int = 413,
        min_bytes: int = 1,
        times: int | None = None,
    ) -> Rule:
        """Answer ``status`` (nginx's 413 page) for requests whose body has >= ``min_bytes`` bytes."""
        return self._add("reject_body", method, path, times, status=status, min_bytes=min_bytes)

    def reset(
        self,
        method: str | None,
        path: str,
        *,
        times: int | None = 1,
        mid_body: bool = False,
        after_bytes: int | None = None,
    ) -> Rule:
        """Drop the connection without answering.

        Default: at once, the upstream never sees the request. With ``mid_body=True`` the request
        is forwarded and, if the upstream answers 2xx, the connection is cut after ``after_bytes``
        bytes of its body (default: half); for an empty body (a 201 to a PUT, a HEAD) it is cut
        before the status line: the upstream did the work, the client never hears of it. Non-2xx
        answers pass through and do not count as a hit.
        """
        return self._add("reset", method, path, times, mid_body=mid_body, after_bytes=after_bytes)

    def delay(self, method: str | None, path: str, seconds: float, *, times: int | None = 1) -> Rule:
        """Wait ``seconds`` before forwarding."""
        return self._add("delay", method, path, times, seconds=seconds)

    def redirect_blobs_to(self, origin: str | BlobOrigin, *, times: int | None = None) -> Rule:
        """Answer blob GETs with ``307`` to ``origin`` (after the upstream accepted the request's
        auth and has the blob, as a registry on object storage does)."""
        return self._add("redirect", "GET", BLOB_PATH.pattern, times, origin=origin)

    def paginate_tags(self, *, page_size: int | None = None, times: int | None = None) -> Rule:
        """Serve ``GET /v2/<name>/tags/list`` with OCI pagination, as distribution v3, GitLab or
        Harbor do (distribution 2.8 ignores ``n`` and ``last`` and returns every tag unsorted):
        tags sorted, ``last`` and ``n`` honoured, ``page_size`` used when the client sends no
        ``n``, and ``Link: </v2/<name>/tags/list?last=..&n=..>; rel="next"`` while more remain."""
        return self._add("paginate", "GET", TAGS_PATH.pattern, times, page_size=page_size)

    def burst(
        self,
        method: str | None,
        path: str,
        statuses: Sequence[int] = (502, 503, 504),
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | str = b"",
    ) -> list[Rule]:
        """Answer the next matching requests with ``statuses`` in turn (one each), then pass."""
        return [self.fail(method, path, status, times=1, headers=headers, body=body) for status in statuses]

    def truncate(
        self,
        method: str | None,
        path: str,
        *,
        length: Literal["full", "chunked", "none", "short"] = "none",
        keep_bytes: int | None = None,
        times: int | None = 1,
    ) -> Rule:
        """Forward; of a 2xx answer with a body, send ``keep_bytes`` (default: half) and close.

        ``length`` is what the headers declare (see the module docstring). Answers without a
        body (HEAD, 201/204 with none) and non-2xx answers pass through and do not count.
        """
        if length not in ("full", "chunked", "none", "short"):
            raise ValueError(f"length must be full, chunked, none or short, not {length!r}")
        return self._add("truncate", method, path, times, length=length, keep_bytes=keep_bytes)

    def slow(
        self,
        method: str | None,
        path: str,
        *,
        part: Literal["body", "headers"] = "body",
        chunk: int = 1,
        interval: float = 0.2,
        endless: bool = False,
        times: int | None = 1,
    ) -> Rule:
        """A slow-loris answer: ``chunk`` bytes every ``interval`` seconds of the body (``part=
        "body"``) or of the status line and headers (``part="headers"``); ``endless=True`` sends
        a 200 status line and then one header line that never ends, without asking upstream."""
        if part not in ("body", "headers"):
            raise ValueError(f"part must be body or headers, not {part!r}")
        if chunk < 1 or interval < 0:
            raise ValueError("chunk must be at least 1 and interval not negative")
        return self._add(
            "slow", method, path, times, part=part, chunk=chunk, interval=interval, endless=endless
        )

    def stall(self, method: str | None, path: str, *, times: int | None = 1) -> Rule:
        """Read the request and never answer, until the client hangs up or the proxy closes."""
        return self._add("stall", method, path, times)

    def cut_upload(
        self,
        method: str | None = "PUT|POST|PATCH",
        path: str = ".*",
        *,
        after_bytes: int | None = None,
        times: int | None = 1,
    ) -> Rule:
        """Forward the request with only ``after_bytes`` (default: half) of its body, then drop
        the upstream connection and reset the client's. Requests without a body pass through."""
        return self._add("cut_upload", method, path, times, after_bytes=after_bytes)

    def clear_rules(self) -> None:
        self.rules.clear()

    def requests_matching(self, method: str | None = None, path: str = ".*") -> list[RecordedRequest]:
        methods = _methods(method)
        rx = re.compile(path)
        return [r for r in self.requests if (methods is None or r.method in methods) and rx.search(r.path)]

    # ------------------------------------------------------------------ handler

    def _match(self, request: web.Request, *actions: str) -> Rule | None:
        for rule in self.rules:
            if rule.action in actions and rule.matches(request.method, request.path):
                return rule
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.rel_url.raw_query_string,
            headers=_lower_headers(request.headers),
        )
        self.requests.append(rec)
        rule = self._match(request, *ALL_ACTIONS)
        body: bytes | None = None  # set when a chunked body had to be buffered to learn its size
        if rule is not None and rule.action == "reject_body":
            size = request.content_length
            if size is None and request.body_exists:
                body = await request.read()
                size = len(body)
            if (size or 0) >= rule.params["min_bytes"]:
                rule.hits += 1
                rec.action = "reject_body"
                rec.body_size = await self._drain(request) if body is None else len(body)
                rec.status = rule.params["status"]
                response = web.Response(
                    status=rule.params["status"],
                    body=NGINX_413 if rule.params["status"] == 413 else b"",
                    content_type="text/html",
                )
                response.force_close()
                return response
            rule = self._match(request, *(a for a in ALL_ACTIONS if a != "reject_body"))

        if rule is None:
            return await self._forward(request, rec, body, None)
        if rule.action in ("truncate", "slow", "stall", "cut_upload"):
            return await self._new_fault(request, rec, body, rule)
        if rule.action == "fail":
            rule.hits += 1
            rec.action = "fail"
            rec.body_size = await self._drain(request)
            rec.status = rule.params["status"]
            return web.Response(
                status=rule.params["status"], body=rule.params["body"], headers=rule.params["headers"]
            )
        if rule.action == "reset" and not rule.params["mid_body"]:
            rule.hits += 1
            rec.action = "reset"
            self._abort(request)
            return web.Response(status=500)  # never sent: the transport is gone
        if rule.action == "reset":  # mid-body: counted only when it cuts a 2xx body
            return await self._forward(request, rec, body, rule)
        if rule.action == "delay":
            rule.hits += 1
            rec.action = "delay"
            await asyncio.sleep(rule.params["seconds"])
            return await self._forward(request, rec, body, None)
        if rule.action == "paginate":
            page = await self._paginate_tags(request, rec, rule.params["page_size"])
            if page is None:
                return await self._forward(request, rec, body, None)
            rule.hits += 1
            rec.action = "paginate"
            return page
        # redirect: only when the upstream would serve this blob to this caller
        redirect = await self._redirect(request, rec, rule.params["origin"])
        if redirect is None:
            return await self._forward(request, rec, body, None)
        rule.hits += 1
        rec.action = "redirect"
        return redirect

    @staticmethod
    async def _drain(request: web.Request) -> int:
        size = 0
        if request.body_exists:
            async for chunk in request.content.iter_chunked(CHUNK):
                size += len(chunk)
        return size

    @staticmethod
    def _abort(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()

    @staticmethod
    def _close(request: web.Request) -> None:
        """Close after flushing what was written (the client sees a truncated body)."""
        transport = request.transport
        if transport is not None:
            transport.close()

    def _upstream_headers(self, request: web.Request) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for k, v in request.headers.items():
            if k.lower() in HOP_BY_HOP or k.lower() in ("host", "expect"):  # aiohttp did the 100-continue
                continue
            headers.add(k, v)
        headers["Host"] = request.host if self.preserve_host else urlsplit(self.upstream).netloc
        return headers

    def _rewrite_location(self, value: str) -> str:
        if value.startswith(self.upstream):
            return self.url + value[len(self.upstream) :]
        return value

    async def _forward(
        self, request: web.Request, rec: RecordedRequest, body: bytes | None, reset_rule: Rule | None
    ) -> web.StreamResponse:
        assert self._session is not None

        async def stream_body() -> AsyncIterator[bytes]:
            async for chunk in request.content.iter_chunked(CHUNK):
                rec.body_size += len(chunk)
                yield chunk

        data: Any = None
        if body is not None:
            rec.body_size = len(body)
            data = body
        elif request.body_exists:
            data = stream_body()
        url = URL(self.upstream + request.raw_path, encoded=True)
        try:
            upstream = await self._session.request(
                request.method,
                url,
                headers=self._upstream_headers(request),
                data=data,
                allow_redirects=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            )
        except aiohttp.ClientError as exc:
            rec.status = 502
            return web.Response(status=502, text=f"proxy: upstream unreachable: {exc}\n")
        async with upstream:
            rec.status = upstream.status
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for k, v in upstream.headers.items():
                lk = k.lower()
                if lk in HOP_BY_HOP or lk == "content-length":
                    continue
                response.headers.add(k, self._rewrite_location(v) if lk == "location" else v)
            if upstream.content_length is not None:
                response.content_length = upstream.content_length
            limit: int | None = None
            if reset_rule is not None and 200 <= upstream.status < 300:
                reset_rule.hits += 1
                rec.action = "reset"
                rec.status = None
                if request.method == "HEAD" or upstream.content_length == 0:
                    # nothing to cut: the upstream did the work, the client never hears of it
                    self._abort(request)
                    return response
                limit = reset_rule.params["after_bytes"]
                if limit is None:
                    limit = (upstream.content_length or 2) // 2
            await response.prepare(request)
            sent = 0
            if request.method != "HEAD":
                async for chunk in upstream.content.iter_chunked(CHUNK):
                    if limit is not None and sent + len(chunk) >= limit:
                        await response.write(chunk[: max(limit - sent, 0)])
                        self._close(request)
                        return response
                    sent += len(chunk)
                    await response.write(chunk)
            if limit is not None:  # body shorter than the limit: still cut the connection
                self._close(request)
                return response
            await response.write_eof()
            return response

    # ------------------------------------------------------------------ truncate, slow, stall, cut_upload

    async def _new_fault(
        self, request: web.Request, rec: RecordedRequest, body: bytes | None, rule: Rule
    ) -> web.StreamResponse:
        if rule.action == "stall":
            rule.hits += 1
            rec.action = "stall"
            await self._hold(request, None)
            self._abort(request)
            return web.Response(status=500)  # never sent: the transport is gone
        if rule.action == "cut_upload":
            return await self._cut_upload(request, rec, body, rule)
        if rule.action == "slow" and rule.params["endless"]:
            rule.hits += 1
            rec.action = "slow"
            rec.status = 200
            await self._drain(request)
            await self._trickle(request, b"HTTP/1.1 200 OK\r\nX-Slow-Loris: ", rule, endless=True)
            self._abort(request)
            return web.Response(status=500)
        if rule.action == "truncate" and request.method == "HEAD":
            return await self._forward(request, rec, body, None)  # no body to cut
        fetched = await self._fetch(request, rec, body)
        if isinstance(fetched, web.Response):
            return fetched  # upstream unreachable: 502
        status, reason, headers, content = fetched
        if rule.action == "truncate":
            if not (200 <= status < 300) or not content:
                return self._plain(status, reason, headers, content)
            rule.hits += 1
            rec.action = "truncate"
            keep = rule.params["keep_bytes"]
            keep = len(content) // 2 if keep is None else min(keep, len(content))
            length = rule.params["length"]
            part = content[:keep]
            if length == "full":
                head = _raw_head(status, reason, [*headers, ("Content-Length", str(len(content)))])
                wire = head + part
            elif length == "short":
                wire = _raw_head(status, reason, [*headers, ("Content-Length", str(keep))]) + part
            elif length == "chunked":
                head = _raw_head(status, reason, [*headers, ("Transfer-Encoding", "chunked")])
                wire = head + (f"{len(part):x}\r\n".encode() + part + b"\r\n" if part else b"")
            else:  # none: the body ends where the connection does
                wire = _raw_head(status, reason, headers) + part
            self._write_raw(request, wire)
            self._close(request)
            return web.Response(status=500)  # never sent: the transport is closing
        # slow
        rule.hits += 1
        rec.action = "slow"
        body_bytes = b"" if request.method == "HEAD" else content
        length = [] if request.method == "HEAD" else [("Content-Length", str(len(content)))]
        head = _raw_head(status, reason, [*headers, *length])
        if rule.params["part"] == "headers":
            finished = await self._trickle(request, head, rule)
            if finished:
                self._write_raw(request, body_bytes)
        else:
            self._write_raw(request, head)
            await self._trickle(request, body_bytes, rule)
        self._close(request)
        return web.Response(status=500)

    async def _fetch(
        self, request: web.Request, rec: RecordedRequest, body: bytes | None
    ) -> tuple[int, str, list[tuple[str, str]], bytes] | web.Response:
        """The upstream's whole answer: status, reason, headers to pass on (hop-by-hop headers
        dropped, and the length but for a HEAD; ``Location`` rewritten) and body."""
        assert self._session is not None
        data = body if body is not None else (await request.read() if request.body_exists else None)
        rec.body_size = len(data or b"")
        try:
            upstream = await self._session.request(
                request.method,
                URL(self.upstream + request.raw_path, encoded=True),
                headers=self._upstream_headers(request),
                data=data,
                allow_redirects=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            )
        except aiohttp.ClientError as exc:
            rec.status = 502
            return web.Response(status=502, text=f"proxy: upstream unreachable: {exc}\n")
        async with upstream:
            content = await upstream.read()
            headers = [
                (k, self._rewrite_location(v) if k.lower() == "location" else v)
                for k, v in upstream.headers.items()
                if k.lower() not in HOP_BY_HOP and (k.lower() != "content-length" or request.method == "HEAD")
            ]
            rec.status = upstream.status
            return upstream.status, upstream.reason or "", headers, content

    @staticmethod
    def _plain(status: int, reason: str, headers: list[tuple[str, str]], content: bytes) -> web.Response:
        response = web.Response(status=status, reason=reason or None, body=content)
        for k, v in headers:
            if k.lower() != "content-type":
                response.headers.add(k, v)
            else:
                response.headers[k] = v
        return response

    @staticmethod
    def _write_raw(request: web.Request, data: bytes) -> bool:
        transport = request.transport
        if transport is None or transport.is_closing():
            return False
        if data:
            transport.write(data)
        return True

    async def _hold(self, request: web.Request, seconds: float | None) -> bool:
        """Wait ``seconds`` (None: until the client leaves or the proxy closes); False when either
        happened first."""
        assert self._closing is not None
        step = 0.05
        waited = 0.0
        while seconds is None or waited < seconds:
            transport = request.transport
            if self._closing.is_set() or transport is None or transport.is_closing():
                return False
            pause = step if seconds is None else min(step, seconds - waited)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), pause)
            waited += pause
        return True

    async def _trickle(self, request: web.Request, data: bytes, rule: Rule, *, endless: bool = False) -> bool:
        """Write ``data`` ``chunk`` bytes every ``interval`` (then filler forever when ``endless``);
        False when the client or the proxy went away first."""
        chunk, interval = rule.params["chunk"], rule.params["interval"]
        offset = 0
        while offset < len(data) or endless:
            piece = data[offset : offset + chunk] if offset < len(data) else b"a" * chunk
            offset += len(piece)
            if not self._write_raw(request, piece) or not await self._hold(request, interval):
                return False
        return True

    async def _cut_upload(
        self, request: web.Request, rec: RecordedRequest, body: bytes | None, rule: Rule
    ) -> web.StreamResponse:
        data = body if body is not None else (await request.read() if request.body_exists else b"")
        if not data:
            return await self._forward(request, rec, data if request.body_exists else None, None)
        rule.hits += 1
        rec.action = "cut_upload"
        rec.body_size = len(data)
        keep = rule.params["after_bytes"]
        keep = len(data) // 2 if keep is None else min(keep, len(data))
        parts = urlsplit(self.upstream)
        headers = self._upstream_headers(request)
        headers["Content-Length"] = str(len(data))  # what the client declared, not what arrives
        headers["Connection"] = "close"
        head = f"{request.method} {request.raw_path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        _reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
        try:
            writer.write(head.encode("latin-1") + b"\r\n" + data[:keep])
            await writer.drain()
            await asyncio.sleep(0.05)  # let the upstream read what arrived before the cut
        finally:
            writer.transport.abort()
        self._abort(request)
        return web.Response(status=500)  # never sent: the transport is gone

    async def _paginate_tags(
        self, request: web.Request, rec: RecordedRequest, page_size: int | None
    ) -> web.Response | None:
        """One page of the upstream's full tag list, or None to pass its (error) answer through."""
        assert self._session is not None
        m = TAGS_PATH.match(request.path)
        if m is None:
            return None
        full = await self._session.get(
            URL(self.upstream + request.rel_url.raw_path, encoded=True),
            headers=self._upstream_headers(request),
            allow_redirects=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        )
        async with full:
            if full.status != 200:
                return None
            listing = json.loads(await full.read())
        tags = sorted(listing.get("tags") or [])
        last = request.query.get("last")
        if last is not None:
            tags = [t for t in tags if t > last]
        n_param = request.query.get("n")
        n = int(n_param) if n_param is not None else page_size
        page = tags if n is None else tags[:n]
        headers = {"Docker-Distribution-Api-Version": "registry/2.0"}
        if n is not None and len(tags) > n and page:
            query = urlencode({"last": page[-1], "n": n})
            headers["Link"] = f'<{request.rel_url.raw_path}?{query}>; rel="next"'
        rec.status = 200
        return web.json_response(
            {"name": listing.get("name", m.group("name")), "tags": page}, headers=headers
        )

    async def _redirect(
        self, request: web.Request, rec: RecordedRequest, origin: str | BlobOrigin
    ) -> web.Response | None:
        """307 to the origin when the upstream would serve the blob to this caller, else None."""
        assert self._session is not None
        m = BLOB_PATH.match(request.path)
        if m is None:
            return None
        head = await self._session.head(
            URL(self.upstream + request.raw_path, encoded=True),
            headers=self._upstream_headers(request),
            allow_redirects=False,
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        )
        async with head:
            if head.status != 200:
                return None
        digest = m.group("digest")
        if isinstance(origin, BlobOrigin):
            origin.register(digest, m.group("name"))
            location = origin.presign(digest)
        else:
            location = f"{origin.rstrip('/')}/blobs/{digest}?" + urlencode(_fake_presign_query(digest, "x"))
        rec.status = 307
        return web.Response(
            status=307,
            headers={"Location": location, "Content-Type": "text/html; charset=utf-8"},
            text=f'<a href="{location}">Temporary Redirect</a>.\n\n',
        )


def _raw_head(status: int, reason: str, headers: Sequence[tuple[str, str]]) -> bytes:
    """A status line and header block, ``Connection: close`` added."""
    lines = [f"HTTP/1.1 {status} {reason or 'OK'}", *(f"{k}: {v}" for k, v in headers), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@contextlib.contextmanager
def fault_proxy_in_thread(upstream: str | RunningRegistry, **kwargs: Any) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` served from its own event loop in a daemon thread, for blocking tests.

    Rules may be added and ``requests`` read from the test's thread (plain list operations);
    the proxy is closed and the thread joined when the block ends.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
    thread.start()
    proxy = FaultProxy(upstream, **kwargs)
    try:
        asyncio.run_coroutine_threadsafe(proxy.__aenter__(), loop).result(timeout=10)
        yield proxy
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(proxy.__aexit__(None, None, None), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _fake_presign_query(digest: str, key: str) -> dict[str, str]:
    signature = hmac.new(key.encode(), digest.encode(), hashlib.sha256).hexdigest()
    return {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": "IMGLIFETESTKEY/20240101/us-east-1/s3/aws4_request",
        "X-Amz-Date": "20240101T000000Z",
        "X-Amz-Expires": "1200",
        "X-Amz-SignedHeaders": "host",
        "X-Amz-Signature": signature,
    }


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


class BlobOrigin:
    """A separate origin (own port) that serves redirected blob downloads, like S3.

    ``async with BlobOrigin(registry) as origin: proxy.redirect_blobs_to(origin)``. It fetches
    ``/v2/<repo>/blobs/<digest>`` from ``registry`` with ``creds`` (default: the registry's own),
    the repository having been registered by the proxy when it issued the redirect (or passed
    as ``default_repo``). A request with an ``Authorization`` header gets S3's 400 (only one
    auth mechanism allowed) unless ``reject_authorization=False``; a missing or wrong
    ``X-Amz-Signature`` gets 403. ``origin.requests`` records every request.
    """

    def __init__(
        self,
        registry: RunningRegistry | str,
        creds: tuple[str, str] | Literal["default"] | None = "default",
        *,
        default_repo: str | None = None,
        reject_authorization: bool = True,
    ) -> None:
        if isinstance(registry, str):
            self.registry_url = registry.rstrip("/")
            self._creds = None if creds == "default" else creds
        else:
            self.registry_url = registry.url
            self._creds = registry.creds if creds == "default" else creds
        self.default_repo = default_repo
        self.reject_authorization = reject_authorization
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._key = secrets.token_hex(16)
        self._repos: dict[str, str] = {}
        self._runner: web.AppRunner | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def register(self, digest: str, repo: str) -> None:
        self._repos[digest] = repo

    def presign(self, digest: str) -> str:
        return f"{self.url}/blobs/{digest}?" + urlencode(_fake_presign_query(digest, self._key))

    def requests_with_authorization(self) -> list[RecordedRequest]:
        return [r for r in self.requests if "authorization" in r.headers]

    async def __aenter__(self) -> BlobOrigin:
        self._client = httpx.AsyncClient(
            auth=RegistryAuth(self._creds), timeout=60, follow_redirects=False, verify=ssl_context()
        )
        app = web.Application()
        app.router.add_route("GET", "/blobs/{digest}", self._handle)  # HEAD is routed here too
        self._runner, self.port = await _start_site(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            await self._client.aclose()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._client is not None
        rec = RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.rel_url.raw_query_string,
            headers=_lower_headers(request.headers),
            action="origin",
        )
        self.requests.append(rec)
        digest = request.match_info["digest"]
        if self.reject_authorization and "Authorization" in request.headers:
            rec.status = 400
            return _s3_error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be specified",
            )
        expected = _fake_presign_query(digest, self._key)["X-Amz-Signature"]
        if not hmac.compare_digest(request.query.get("X-Amz-Signature", ""), expected):
            rec.status = 403
            return _s3_error(
                403, "SignatureDoesNotMatch", "The request signature we calculated does not match"
            )
        repo = self._repos.get(digest, self.default_repo)
        if repo is None:
            rec.status = 404
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        headers = {"Range": request.headers["Range"]} if "Range" in request.headers else {}
        url = f"{self.registry_url}/v2/{repo}/blobs/{digest}"
        async with self._client.stream(request.method, url, headers=headers) as upstream:
            rec.status = upstream.status_code
            if upstream.status_code not in (200, 206):
                await upstream.aread()
                return _s3_error(404, "NoSuchKey", f"registry answered {upstream.status_code}")
            response = web.StreamResponse(status=upstream.status_code)
            response.content_type = "application/octet-stream"
            response.headers["ETag"] = f'"{digest.partition(":")[2][:32]}"'
            response.headers["Accept-Ranges"] = "bytes"
            for name in ("Content-Range",):
                if name in upstream.headers:
                    response.headers[name] = upstream.headers[name]
            if "content-length" in upstream.headers:
                response.content_length = int(upstream.headers["content-length"])
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in upstream.aiter_raw(CHUNK):
                    await response.write(chunk)
            await response.write_eof()
            return response
