"""The shared machinery of the forge fakes: a threaded aiohttp server, a router, faults, records.

A :class:`FakeServer` runs an aiohttp application on a free ``127.0.0.1`` port **in a background
thread with its own event loop**. That is what lets one fake serve, at the same time, a blocking
client (python-gitlab on ``requests``), an async client living in the test's own loop (httpx,
gidgetlab, gitea-async-sdk) and a CLI subprocess. A fake bound to the test's loop would deadlock
the first time a blocking client called it from that loop.

Subclasses (``FakeGitLab``, ``FakeGitea``) register their routes in :meth:`FakeServer.routes`
and keep their state in plain dataclasses guarded by :attr:`FakeServer.lock`: handlers run in
the server thread, tests read state from theirs, and both take the lock for every access.
Handlers never ``await`` while holding it.

Routing matches the **raw, percent-encoded** path, because forges give ``%2F`` a meaning
(GitLab's ``group%2Fproject`` project id) that a decoded path would lose. Path parameters are
percent-decoded after matching.

Request pipeline (every request, in this order)::

    read body -> fault rules (fail_next) -> route -> handler -> latency -> record

Usage::

    with FakeGitLab() as gl:            # any subclass; starts the thread, stops it on exit
        gl.fail_next("PUT", r"/packages/generic/", 503)   # next matching request gets a 503
        gl.latency = 0.2                                  # every response 200 ms late
        ...
        assert gl.requests[-1].status == 201
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import unquote, urlencode

from aiohttp import web
from multidict import MultiMapping

__all__ = [
    "Call",
    "FakeServer",
    "FaultRule",
    "HTTPFault",
    "Handler",
    "Page",
    "RecordedRequest",
    "Route",
    "Router",
    "basic_credentials",
    "bearer_token",
    "json_body",
    "page_url",
    "paginate",
]

T = TypeVar("T")

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # seconds to wait for the server thread to bind its port
STOP_TIMEOUT = 10.0  # seconds to wait for a clean shutdown before giving up on the thread
SHUTDOWN_GRACE = 0.5  # aiohttp waits this long for in-flight requests when the fake stops
# Uploads are held in memory; a limit keeps a runaway test from eating the machine while
# staying far above anything a record store sends.
CLIENT_MAX_SIZE = 256 * 1024 * 1024

JSON_CONTENT_TYPE = "application/json"
TEXT_CONTENT_TYPE = "text/plain"
OCTET_STREAM = "application/octet-stream"

# Route templates: "{name}" is one path segment, "{name:int}" digits, "{name:path}" the rest.
_PLACEHOLDER = re.compile(r"\{(?P<name>[a-z_][a-z0-9_]*)(?::(?P<kind>int|path))?\}")
_KIND_PATTERNS = {None: r"[^/]+", "int": r"[0-9]+", "path": r".+"}


def json_body(data: Any) -> bytes:
    """Serialise like the forges do: compact JSON, UTF-8, no trailing newline."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def bearer_token(value: str | None, *schemes: str) -> str | None:
    """Return the credential of an ``Authorization: <scheme> <credential>`` header.

    Scheme names compare case-insensitively (RFC 9110 section 11.1).
    """
    if not value or " " not in value:
        return None
    scheme, _, credential = value.partition(" ")
    if scheme.lower() in {s.lower() for s in schemes}:
        return credential.strip() or None
    return None


def basic_credentials(value: str | None) -> tuple[str, str] | None:
    """Decode ``Authorization: Basic base64(user:password)``; ``None`` when absent or malformed."""
    encoded = bearer_token(value, "basic")
    if encoded is None:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of an offset-paginated listing (1-based ``page``)."""

    items: list[T]
    page: int
    per_page: int
    total: int

    @property
    def total_pages(self) -> int:
        return -(-self.total // self.per_page)  # ceil; 0 for an empty listing

    @property
    def next_page(self) -> int | None:
        return self.page + 1 if self.page < self.total_pages else None

    @property
    def prev_page(self) -> int | None:
        # Past the end, "prev" still points one back, as both forges' paginators do.
        return self.page - 1 if self.page > 1 else None


def paginate(items: list[T], page: int, per_page: int) -> Page[T]:
    """Slice ``items`` for ``page`` (>= 1) of ``per_page`` (>= 1) items."""
    start = (page - 1) * per_page
    return Page(items[start : start + per_page], page, per_page, len(items))


def page_url(base_url: str, raw_path: str, query: Mapping[str, str], **overrides: int | str) -> str:
    """The same listing URL with some query parameters replaced.

    Keys come out sorted, as Rails' ``Hash#to_query`` (GitLab) and Go's ``url.Values.Encode``
    (Gitea) both sort them; clients must not care, but links then compare equal to the real ones.
    """
    params = {**query, **{k: str(v) for k, v in overrides.items()}}
    return f"{base_url}{raw_path}?{urlencode(sorted(params.items()))}"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it. ``path`` is raw (percent-encoded); header names lower-case."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body_size: int
    status: int
    faulted: bool = False  # answered by a fail_next rule, not by the handler


@dataclass
class FaultRule:
    """An injected answer for matching requests; ``hits`` counts how often it fired."""

    methods: frozenset[str] | None
    pattern: re.Pattern[str]
    status: int
    remaining: int | None  # None: fire forever
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return self.pattern.search(path) is not None


class HTTPFault(Exception):
    """Raised by handlers to answer with an error; the router turns it into the response."""

    def __init__(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = JSON_CONTENT_TYPE,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            body=self.body,
            headers={"Content-Type": self.content_type, **self.headers},
        )


@dataclass(frozen=True)
class Call:
    """What a handler gets: the request, decoded path parameters and the already-read body."""

    request: web.Request
    params: dict[str, str]
    body: bytes

    @property
    def query(self) -> MultiMapping[str]:
        return self.request.query

    @property
    def method(self) -> str:
        return self.request.method

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)


Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    regex: re.Pattern[str]
    handler: Handler


class Router:
    """Method + path-template routing on the raw path, first match wins."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        pattern = ""
        pos = 0
        for m in _PLACEHOLDER.finditer(template):
            pattern += re.escape(template[pos : m.start()])
            pattern += f"(?P<{m['name']}>{_KIND_PATTERNS[m['kind']]})"
            pos = m.end()
        pattern += re.escape(template[pos:])
        self.routes.append(Route(method.upper(), template, re.compile(f"^{pattern}$"), handler))

    def get(self, template: str, handler: Handler) -> None:
        self.add("GET", template, handler)
        # HEAD is answered by the GET handler without a body, as Rails and Go's mux do.
        self.add("HEAD", template, handler)

    def put(self, template: str, handler: Handler) -> None:
        self.add("PUT", template, handler)

    def post(self, template: str, handler: Handler) -> None:
        self.add("POST", template, handler)

    def patch(self, template: str, handler: Handler) -> None:
        self.add("PATCH", template, handler)

    def delete(self, template: str, handler: Handler) -> None:
        self.add("DELETE", template, handler)

    def resolve(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | bool | None:
        """The route and decoded params; ``False`` when the path exists for another method."""
        path_known = False
        for route in self.routes:
            m = route.regex.match(raw_path)
            if m is None:
                continue
            if route.method != method.upper():
                path_known = True
                continue
            return route, {k: unquote(v) for k, v in m.groupdict().items()}
        return False if path_known else None


class FakeServer:
    """Base class: lifecycle, router, request log, faults and latency. Subclass and add routes."""

    #: Name used for the server thread (shows up in thread dumps of hung tests).
    thread_name = "fake-server"

    def __init__(self, *, latency: float = 0.0, clock: Callable[[], datetime] | None = None) -> None:
        self.lock = threading.RLock()
        self._latency = latency
        self._clock = clock or (lambda: datetime.now(UTC))
        self._requests: list[RecordedRequest] = []
        self._faults: list[FaultRule] = []
        self._router = Router()
        self.routes(self._router)
        self._port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------ subclass hooks

    def routes(self, router: Router) -> None:
        """Register the fake's routes (subclasses call the per-area helpers from here)."""

    def route_not_found(self, method: str, path: str) -> HTTPFault:
        """The answer for a path no route knows."""
        return HTTPFault(404, b"404 page not found\n", content_type=TEXT_CONTENT_TYPE)

    def method_not_allowed(self, method: str, path: str) -> HTTPFault:
        """The answer for a known path with a method no route takes."""
        return HTTPFault(405, b"405 method not allowed\n", content_type=TEXT_CONTENT_TYPE)

    def default_fault_body(self, status: int) -> tuple[bytes, str]:
        """Body and content type for a ``fail_next`` rule given no body."""
        return f"{status} {_reason(status)}".encode(), TEXT_CONTENT_TYPE

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash). Only valid while running."""
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not running; use it as a context manager")
        return f"http://{HOST}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def latency(self) -> float:
        """Seconds added before every response is sent (after the handler changed state)."""
        with self.lock:
            return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        with self.lock:
            self._latency = seconds

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request answered so far, in completion order."""
        with self.lock:
            return list(self._requests)

    def request_count(self, method: str | None = None, path_regex: str | None = None) -> int:
        """How many recorded requests match ``method`` (``"PUT|DELETE"`` works) and ``path_regex``."""
        methods = _methods(method)
        pattern = re.compile(path_regex) if path_regex else None
        with self.lock:
            return sum(
                1
                for r in self._requests
                if (methods is None or r.method in methods) and (pattern is None or pattern.search(r.path))
            )

    def reset_requests(self) -> None:
        with self.lock:
            self._requests.clear()

    def fail_next(
        self,
        method: str | None,
        path_regex: str,
        status: int,
        *,
        times: int | None = 1,
        body: bytes | str | Mapping[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FaultRule:
        """Answer the next ``times`` matching requests with ``status`` before any handler runs.

        ``method`` is ``"PUT"``, ``"PUT|DELETE"`` or ``None``/``"*"`` for any; ``path_regex`` is
        searched in the raw path. ``times=None`` fires forever. A mapping or list body is sent
        as JSON, a ``str`` as text; ``None`` uses the fake's usual error body for that status.
        The faulted request changes no state, as when a proxy in front of the forge fails.
        """
        if body is None:
            data, content_type = self.default_fault_body(status)
        elif isinstance(body, bytes):
            data, content_type = body, OCTET_STREAM
        elif isinstance(body, str):
            data, content_type = body.encode(), TEXT_CONTENT_TYPE
        else:
            data, content_type = json_body(body), JSON_CONTENT_TYPE
        rule = FaultRule(
            methods=_methods(method),
            pattern=re.compile(path_regex),
            status=status,
            remaining=times,
            body=data,
            content_type=content_type,
            headers=dict(headers or {}),
        )
        with self.lock:
            self._faults.append(rule)
        return rule

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def now(self) -> datetime:
        """The fake's clock (UTC); pass ``clock=`` to control timestamps."""
        return self._clock()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._ready.clear()
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError(f"{type(self).__name__} did not start within {START_TIMEOUT}s")
        if self._start_error is not None:
            self._thread.join(STOP_TIMEOUT)
            self._thread = None
            raise RuntimeError(f"{type(self).__name__} failed to start") from self._start_error
        return self

    def stop(self) -> None:
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(STOP_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT)
        self._thread = self._loop = self._runner = None
        self._port = 0

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._bind())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._start_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _bind(self) -> None:
        app = web.Application(client_max_size=CLIENT_MAX_SIZE)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    # ------------------------------------------------------------------ request pipeline

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        raw_path = request.rel_url.raw_path
        faulted = False
        rule = self._take_fault(request.method, raw_path)
        if rule is not None:
            faulted = True
            response: web.StreamResponse = web.Response(
                status=rule.status,
                body=rule.body,
                headers={"Content-Type": rule.content_type, **rule.headers},
            )
        else:
            response = await self._route(request, raw_path, body)
        delay = self.latency
        if delay:
            await asyncio.sleep(delay)
        self._record(request, raw_path, len(body), response.status, faulted)
        return response  # aiohttp itself drops the body of a HEAD answer

    async def _route(self, request: web.Request, raw_path: str, body: bytes) -> web.StreamResponse:
        resolved = self._router.resolve(request.method, raw_path)
        try:
            if resolved is None:
                raise self.route_not_found(request.method, raw_path)
            if resolved is False:
                raise self.method_not_allowed(request.method, raw_path)
            assert not isinstance(resolved, bool)
            route, params = resolved
            return await route.handler(Call(request, params, body))
        except HTTPFault as fault:
            return fault.response()

    def _take_fault(self, method: str, raw_path: str) -> FaultRule | None:
        with self.lock:
            for rule in self._faults:
                if rule.matches(method, raw_path):
                    rule.hits += 1
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule
        return None

    def _record(self, request: web.Request, raw_path: str, size: int, status: int, faulted: bool) -> None:
        entry = RecordedRequest(
            method=request.method,
            path=raw_path,
            query=request.rel_url.raw_query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body_size=size,
            status=status,
            faulted=faulted,
        )
        with self.lock:
            self._requests.append(entry)


def _methods(method: str | None) -> frozenset[str] | None:
    if method is None or method == "*":
        return None
    return frozenset(m.strip().upper() for m in method.split("|") if m.strip())


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
