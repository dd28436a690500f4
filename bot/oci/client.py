"""An async OCI distribution client on httpx: manifests, tags, blobs, mounts, deletes.

One client serves every registry a command talks to and keeps one connection pool. Each
request is checked against the command's credential scope before anything goes on the wire,
authenticated by :class:`~bot.oci.auth.RegistryAuth`, retried on 429/5xx/connection errors, and
follows redirects by hand so that credentials never reach another origin (registries redirect
blob downloads to object storage).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import structlog

from bot import __version__
from bot.credentials import Access, CredentialScope
from bot.errors import AuthError, NotFoundError, RegistryError, RegistryUnavailable
from bot.oci.auth import CredentialSource, RegistryAuth
from bot.oci.reference import ImageReference, registry_api_host
from bot.oci.sansio import (
    MANIFEST_ACCEPT,
    MAX_MANIFEST_BYTES,
    Descriptor,
    media_type_of,
    next_page_url,
    parse_error_body,
    parse_retry_after,
    repository_scope,
    sha256_digest,
)
from bot.retry import RETRYABLE_STATUS, RetryPolicy

USER_AGENT = f"imglife/{__version__}"
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=60.0)
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
STREAM_PIECE = 1024 * 1024
MAX_REDIRECTS = 5
# Blob downloads may take longer than one attempt's deadline, but not longer than this rate allows.
MIN_BLOB_BYTES_PER_SECOND = 64 * 1024
MAX_CONFIG_BYTES = 16 * 1024 * 1024
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
# A proxy or registry that refuses a single-request upload answers one of these; the upload is
# then retried in chunks (nginx's client_max_body_size gives 413).
MONOLITHIC_REFUSED = frozenset({405, 411, 413})
ACCESS_BY_METHOD = {
    "GET": Access.OCI_PULL,
    "HEAD": Access.OCI_PULL,
    "POST": Access.OCI_PUSH,
    "PUT": Access.OCI_PUSH,
    "PATCH": Access.OCI_PUSH,
    "DELETE": Access.OCI_DELETE,
}
VERB_BY_ACCESS = {Access.OCI_PULL: "pull from", Access.OCI_PUSH: "push to", Access.OCI_DELETE: "delete from"}

log = structlog.get_logger(__name__)

BlobSource = bytes | Callable[[], AsyncIterator[bytes]]


class ServerBusy(RegistryUnavailable):
    """The registry kept answering 429/5xx; ``retry_after`` is its last ``Retry-After`` in seconds.

    Requests with a streamed body are not retried by ``_request`` (the body cannot be sent
    twice); ``push_blob`` restarts them itself and needs the server's delay to honour it.
    """

    def __init__(self, message: str, *, status: int, retry_after: float | None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class PushResult(StrEnum):
    EXISTS = "exists"  # the target had the blob already
    MOUNTED = "mounted"  # cross-repository mount inside the target registry
    UPLOADED = "uploaded"


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest or index as the registry served it; ``raw`` is byte-exact (digests depend on it)."""

    descriptor: Descriptor
    raw: bytes

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.raw)
        except ValueError as exc:
            raise RegistryError(f"manifest {self.digest} is not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return data


class BlobReader:
    """A blob download in progress; :meth:`chunks` verifies the digest at the end."""

    def __init__(self, response: httpx.Response, digest: str, host: str, *, deadline: float) -> None:
        self._response = response
        self._digest = digest
        self._host = host
        length = response.headers.get("content-length")
        self.size: int | None = int(length) if length and length.isdigit() else None
        self._budget = deadline + (self.size or 0) / MIN_BLOB_BYTES_PER_SECOND

    async def chunks(self, piece_size: int | None = None) -> AsyncIterator[bytes]:
        """The body as it arrives; ``piece_size`` re-chunks it (httpx copies every byte to do so)."""
        hasher = hashlib.sha256()
        ends = time.monotonic() + self._budget
        try:
            async for piece in self._response.aiter_raw(piece_size):
                if time.monotonic() > ends:  # each read is bounded by httpx; the whole body is not
                    raise RegistryUnavailable(
                        f"download of {self._digest} from {self._host} is too slow "
                        f"(not done within {self._budget:.0f}s)"
                    )
                hasher.update(piece)
                yield piece
        except httpx.TransportError as exc:
            raise RegistryUnavailable(
                f"download of {self._digest} from {self._host} broke off: {exc!r}"
            ) from exc
        actual = "sha256:" + hasher.hexdigest()
        if self._digest.startswith("sha256:") and actual != self._digest:
            raise RegistryError(
                f"blob from {self._host} does not match its digest {self._digest} (got {actual})"
            )

    async def read(self, limit: int = MAX_CONFIG_BYTES) -> bytes:
        if self.size is not None and self.size > limit:
            raise RegistryError(f"blob {self._digest} is {self.size} bytes, more than the {limit} expected")
        data = bytearray()
        async for piece in self.chunks():
            data += piece
            if len(data) > limit:
                raise RegistryError(f"blob {self._digest} is larger than the {limit} bytes expected")
        return bytes(data)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _describe_transport_error(host: str, base_url: str, exc: httpx.TransportError) -> RegistryUnavailable:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None or "SSL" in str(exc) or "CERTIFICATE" in str(exc).upper():
        return RegistryUnavailable(
            f"TLS with registry {host} failed ({cause or exc}); if {host} serves plain HTTP, list it in "
            "registry.insecure_registries; if it uses a private CA, add the CA to the system trust store"
        )
    if isinstance(exc, httpx.TimeoutException):
        return RegistryUnavailable(f"registry {host} ({base_url}) timed out ({type(exc).__name__})")
    reason = str(exc) or type(exc).__name__
    return RegistryUnavailable(f"cannot reach registry {host} ({base_url}): {reason}")


class RegistryClient:
    """Talk to OCI registries on behalf of one command (its ``scope`` bounds what it may do)."""

    def __init__(
        self,
        credentials: CredentialSource,
        *,
        scope: CredentialScope,
        insecure_hosts: frozenset[str] = frozenset(),
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_connections: int = 32,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self._scope = scope
        self._insecure = frozenset(h.lower() for h in insecure_hosts)
        self._retry = retry or RetryPolicy()
        self._chunk_size = chunk_size
        self._http = httpx.AsyncClient(
            timeout=timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,
        )
        self.auth = RegistryAuth(self._http, credentials, insecure_hosts=self._insecure)
        # httpx's timeouts bound each socket operation, so a server sending a byte now and then
        # would hold a call (and a bot worker) forever: an attempt gets their sum, in all.
        self._deadline = sum(t for t in (timeout.connect, timeout.write, timeout.read) if t)
        # Hosts that refused a single-request upload: later uploads go straight to chunks.
        self._chunked_hosts: set[str] = set()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def base_url(self, registry: str) -> str:
        api_host = registry_api_host(registry)
        insecure = registry.lower() in self._insecure or api_host.lower() in self._insecure
        return f"{'http' if insecure else 'https'}://{api_host}"

    # -- manifests -------------------------------------------------------------------------

    async def head_manifest(self, ref: ImageReference) -> Descriptor | None:
        """Digest, media type and size of a manifest, or None when it does not exist."""
        response = await self._request(
            "HEAD", ref, f"/manifests/{ref.reference}", headers={"Accept": MANIFEST_ACCEPT}
        )
        if response.status_code == 404:
            return None
        self._expect(response, ref, f"look up {ref}", 200)
        digest = response.headers.get("docker-content-digest")
        if not digest:
            manifest = await self.get_manifest(ref)
            return manifest.descriptor
        content_type = (response.headers.get("content-type") or "").split(";")[0].strip()
        return Descriptor(
            media_type=content_type, digest=digest, size=int(response.headers.get("content-length", 0))
        )

    async def get_manifest(self, ref: ImageReference) -> Manifest:
        """Fetch a manifest or index; its digest is checked against the reference when it pins
        one, else against the registry's ``Docker-Content-Digest``: a body cut short on the way
        (no length, or a wrong one, so HTTP cannot tell) is fetched again."""
        attempt = 0
        while True:
            attempt += 1
            response = await self._request(
                "GET", ref, f"/manifests/{ref.reference}", headers={"Accept": MANIFEST_ACCEPT}
            )
            self._expect(response, ref, f"fetch manifest {ref}", 200)
            raw = response.content
            if len(raw) > MAX_MANIFEST_BYTES:
                raise RegistryError(f"manifest {ref} is {len(raw)} bytes, larger than any manifest should be")
            digest = sha256_digest(raw)
            if ref.digest and ref.digest.startswith("sha256:") and digest != ref.digest:
                raise RegistryError(
                    f"registry {ref.registry} served a manifest for {ref} whose digest is {digest}"
                )
            served = response.headers.get("docker-content-digest") or ""
            # A signed schema 1 manifest's digest is its payload's, not the body's.
            signed = "prettyjws" in (response.headers.get("content-type") or "")
            if ref.digest or signed or not served.startswith("sha256:") or served == digest:
                break
            error = RegistryUnavailable(
                f"registry {ref.registry} sent a manifest for {ref} whose digest {digest} is not the "
                f"{served} it announced (cut short or altered on the way)"
            )
            if self._retry.gives_up(attempt):
                raise error
            log.warning(
                "registry_retry", registry=ref.registry, method="GET", attempt=attempt, error=str(error)
            )
            await asyncio.sleep(self._retry.delay(attempt))
        media_type = media_type_of(raw, response.headers.get("content-type"))
        return Manifest(Descriptor(media_type=media_type, digest=digest, size=len(raw)), raw)

    async def put_manifest(self, ref: ImageReference, raw: bytes, media_type: str) -> str:
        """Push a manifest under ``ref``'s tag (or digest); returns its digest."""
        response = await self._request(
            "PUT", ref, f"/manifests/{ref.reference}", headers={"Content-Type": media_type}, content=raw
        )
        self._expect(response, ref, f"push manifest {ref}", 201)
        digest = sha256_digest(raw)
        served = response.headers.get("docker-content-digest")
        if served and served != digest:
            raise RegistryError(
                f"registry {ref.registry} stored manifest {ref} as {served}, expected {digest}"
            )
        return digest

    async def delete_manifest(self, ref: ImageReference) -> None:
        """Delete a manifest by digest.

        Registries delete by digest, which removes every tag pointing at that digest; callers
        that want to drop one tag re-point it to a throwaway manifest first.
        """
        if not ref.digest:
            raise RegistryError(f"cannot delete {ref}: deletes are by digest, and the reference has none")
        response = await self._request("DELETE", ref, f"/manifests/{ref.digest}")
        if response.status_code == 405:
            raise RegistryError(f"registry {ref.registry} does not allow deletes (HTTP 405)", status=405)
        self._expect(response, ref, f"delete {ref}", 202, 200)

    async def list_tags(self, repo: ImageReference, *, page_size: int | None = None) -> list[str]:
        """Every tag of a repository, following ``Link`` pagination to the last page."""
        query = f"?n={page_size}" if page_size else ""
        url: str | None = f"{self.base_url(repo.registry)}/v2/{repo.repository}/tags/list{query}"
        tags: list[str] = []
        while url is not None:
            response = await self._request("GET", repo, url)
            self._expect(response, repo, f"list tags of {repo.name}", 200)
            try:
                page = response.json().get("tags") or []
            except (ValueError, AttributeError) as exc:
                raise RegistryError(f"registry {repo.registry} sent a tag list that is not JSON") from exc
            tags.extend(str(t) for t in page)
            url = next_page_url(response.headers.get("link"), str(response.url))
        return tags

    # -- blobs -----------------------------------------------------------------------------

    async def blob_exists(self, repo: ImageReference, digest: str) -> bool:
        response = await self._request("HEAD", repo, f"/blobs/{digest}")
        if response.status_code == 404:
            return False
        self._expect(response, repo, f"look up blob {digest} in {repo.name}", 200)
        return True

    @asynccontextmanager
    async def open_blob(self, repo: ImageReference, digest: str) -> AsyncIterator[BlobReader]:
        """Stream a blob: ``async with open_blob(repo, d) as blob: async for piece in blob.chunks()``."""
        response = await self._request("GET", repo, f"/blobs/{digest}", stream=True)
        try:
            if response.status_code != 200:
                await response.aread()
                self._expect(response, repo, f"download blob {digest} from {repo.name}", 200)
            yield BlobReader(response, digest, repo.registry, deadline=self._deadline)
        finally:
            await response.aclose()

    async def get_blob(self, repo: ImageReference, digest: str, *, limit: int = MAX_CONFIG_BYTES) -> bytes:
        """Download a small blob (an image config) whole, digest-checked."""
        async with self.open_blob(repo, digest) as blob:
            return await blob.read(limit)

    async def push_blob(
        self,
        repo: ImageReference,
        digest: str,
        size: int,
        source: BlobSource,
        *,
        mount_from: str | None = None,
        chunk_size: int | None = None,
    ) -> PushResult:
        """Make ``digest`` exist in ``repo``: skip, mount from ``mount_from`` (same registry), or upload.

        ``source`` is the blob's bytes or a callable that opens a fresh stream of them; a failed
        upload is restarted from a new session, so a callable is called once per attempt.
        Uploads are one streaming ``PUT`` with Content-Length, or ``PATCH`` chunks of
        ``chunk_size`` when asked or when the registry refused the single request.
        """
        # Refuse before the existence check: a command that may not push learns it at once.
        self._scope.require(Access.OCI_PUSH, what=f"push to OCI registry {repo.registry}")
        if await self.blob_exists(repo, digest):
            return PushResult.EXISTS
        scopes = [repository_scope(repo.repository, ("pull", "push"))]
        params: dict[str, str] = {}
        if mount_from and mount_from != repo.repository:
            scopes.append(repository_scope(mount_from, ("pull",)))
            params = {"mount": digest, "from": mount_from}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._request(
                    "POST", repo, "/blobs/uploads/", params=params, scopes=tuple(scopes)
                )
                if response.status_code == 201 and params:
                    return PushResult.MOUNTED
                self._expect(response, repo, f"start upload of {digest} to {repo.name}", 202)
                location = self._location(response, repo)
                chunked = chunk_size or (self._chunk_size if repo.registry in self._chunked_hosts else None)
                if chunked:
                    await self._upload_chunks(repo, location, digest, source, chunked)
                    return PushResult.UPLOADED
                status = await self._upload_whole(repo, location, digest, size, source)
                if status in MONOLITHIC_REFUSED:
                    log.info("upload_chunked_fallback", registry=repo.registry, status=status)
                    self._chunked_hosts.add(repo.registry)
                    continue
                return PushResult.UPLOADED
            except RegistryUnavailable as exc:
                retry_after = exc.retry_after if isinstance(exc, ServerBusy) else None
                if self._retry.gives_up(attempt, retry_after):
                    raise
                log.warning(
                    "upload_retried", registry=repo.registry, digest=digest, attempt=attempt, error=str(exc)
                )
                await asyncio.sleep(self._retry.delay(attempt, retry_after))

    async def _upload_whole(
        self, repo: ImageReference, location: str, digest: str, size: int, source: BlobSource
    ) -> int | None:
        """One streaming PUT; returns the status when the registry refused single-request uploads.

        The bytes are not hashed here: the registry checks them against ``digest`` before it
        answers, and a streamed source (:meth:`BlobReader.chunks`) checks its own download, so a
        third pass over every layer would only cost CPU (~0.9 s per GiB, bench/sync.py).
        """
        response = await self._request(
            "PUT",
            repo,
            _with_query(location, "digest", digest),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            content=source if isinstance(source, bytes) else _iterate(source),
            retry=False,
        )
        if response.status_code in MONOLITHIC_REFUSED:
            return response.status_code
        self._expect(response, repo, f"upload blob {digest} to {repo.name}", 201, 204)
        return None

    async def _upload_chunks(
        self, repo: ImageReference, location: str, digest: str, source: BlobSource, chunk_size: int
    ) -> None:
        offset = 0
        buffer = bytearray()

        async def send(part: bytes) -> None:
            nonlocal location, offset
            response = await self._request(
                "PATCH",
                repo,
                location,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(part) - 1}",
                    "Content-Length": str(len(part)),
                },
                content=part,
                retry=False,
            )
            self._expect(response, repo, f"upload a chunk of {digest} to {repo.name}", 202, 204)
            location = self._location(response, repo)
            offset += len(part)

        async for piece in _iterate(source):
            buffer += piece
            while len(buffer) >= chunk_size:
                await send(bytes(buffer[:chunk_size]))
                del buffer[:chunk_size]
        if buffer:
            await send(bytes(buffer))
        response = await self._request(
            "PUT",
            repo,
            _with_query(location, "digest", digest),
            headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
            content=b"",
            retry=False,
        )
        self._expect(response, repo, f"complete upload of {digest} to {repo.name}", 201, 204)

    # -- plumbing --------------------------------------------------------------------------

    def _location(self, response: httpx.Response, repo: ImageReference) -> str:
        location: str | None = response.headers.get("location")
        if not location:
            raise RegistryError(f"registry {repo.registry} started an upload without a Location header")
        return urljoin(str(response.url), location)

    def _url(self, repo: ImageReference, path_or_url: str) -> str:
        if "://" in path_or_url:
            return path_or_url
        return f"{self.base_url(repo.registry)}/v2/{repo.repository}{path_or_url}"

    async def _request(
        self,
        method: str,
        repo: ImageReference,
        path_or_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        scopes: tuple[str, ...] | None = None,
        stream: bool = False,
        retry: bool = True,
    ) -> httpx.Response:
        """Send one request: scope check, authentication, retries on transient failures."""
        access = ACCESS_BY_METHOD[method]
        self._scope.require(access, what=f"{VERB_BY_ACCESS[access]} OCI registry {repo.registry}")
        host = repo.registry
        url = self._url(repo, path_or_url)
        if scopes is None:
            actions = ("pull",) if access is Access.OCI_PULL else ("pull", "push")
            if access is Access.OCI_DELETE:
                actions = ("delete",)
            scopes = (repository_scope(repo.repository, actions),)
        # A streamed body cannot be sent twice: its request neither re-authenticates nor retries.
        replayable = content is None or isinstance(content, bytes)
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = await self._send_authenticated(
                    method,
                    host,
                    url,
                    headers or {},
                    params,
                    content,
                    scopes,
                    stream=stream,
                    replayable=replayable,
                )
            except httpx.TransportError as exc:
                error = _describe_transport_error(host, self.base_url(host), exc)
                if not (retry and replayable) or self._retry.gives_up(attempt) or "TLS" in str(error):
                    raise error from exc
                log.warning("registry_retry", registry=host, method=method, attempt=attempt, error=str(error))
                await asyncio.sleep(self._retry.delay(attempt))
                continue
            log.debug(
                "registry_request",
                registry=host,
                method=method,
                path=urlsplit(str(response.url)).path,
                status=response.status_code,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            if response.status_code in RETRYABLE_STATUS and retry and replayable:
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                if not self._retry.gives_up(attempt, retry_after):
                    await response.aclose()
                    log.warning(
                        "registry_retry",
                        registry=host,
                        method=method,
                        attempt=attempt,
                        status=response.status_code,
                    )
                    await asyncio.sleep(self._retry.delay(attempt, retry_after))
                    continue
            return response

    async def _send_authenticated(
        self,
        method: str,
        host: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        content: bytes | AsyncIterator[bytes] | None,
        scopes: tuple[str, ...],
        *,
        stream: bool,
        replayable: bool,
    ) -> httpx.Response:
        same_origin = _origin(url) == _origin(self.base_url(host))
        for round_ in range(2 if replayable else 1):
            # Upload locations and pagination links are absolute URLs chosen by the server;
            # credentials only go with them while they stay on the registry's own origin.
            auth = await self.auth.headers(host, scopes) if same_origin else {}
            response = await self._send_following_redirects(
                method, url, {**headers, **auth}, params, content, stream=stream
            )
            retry_with_auth = response.status_code == 401 and round_ == 0 and replayable
            if retry_with_auth and await self.auth.on_challenge(host, response, scopes, auth):
                await response.aclose()
                continue
            return response
        raise AssertionError("unreachable: the loop always returns")  # pragma: no cover

    async def _send_following_redirects(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
        content: bytes | AsyncIterator[bytes] | None,
        *,
        stream: bool,
    ) -> httpx.Response:
        for _ in range(MAX_REDIRECTS + 1):
            request = self._http.build_request(method, url, headers=headers, params=params, content=content)
            # A streamed upload takes as long as its body; everything else gets one deadline.
            limit = None if isinstance(content, AsyncIterator) else self._deadline
            ends = asyncio.get_running_loop().time() + limit if limit else None
            try:
                async with asyncio.timeout_at(ends):
                    response = await self._http.send(request, stream=True)
            except TimeoutError as exc:
                raise httpx.ReadTimeout(f"no answer within {limit:g}s", request=request) from exc
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUS and method in ("GET", "HEAD") and location:
                await response.aclose()
                target = urljoin(str(response.url), location)
                if _origin(target)[0] == "http" and _origin(url)[0] == "https":
                    raise RegistryError(
                        f"registry redirected {urlsplit(url).netloc} from HTTPS to plain HTTP"
                    )
                if _origin(target) != _origin(url):
                    # Credentials belong to the registry, not to wherever it sends us.
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url, params = target, None
                continue
            if not stream:
                try:
                    async with asyncio.timeout_at(ends):
                        await response.aread()
                except TimeoutError as exc:
                    raise httpx.ReadTimeout(f"no complete answer within {limit:g}s", request=request) from exc
                finally:
                    await response.aclose()
            return response
        raise RegistryError(f"more than {MAX_REDIRECTS} redirects from {urlsplit(url).netloc}")

    def _expect(self, response: httpx.Response, repo: ImageReference, what: str, *ok: int) -> None:
        status = response.status_code
        if status in ok:
            return
        host = repo.registry
        try:
            error = parse_error_body(response.content)
        except httpx.ResponseNotRead:
            error = parse_error_body(b"")
        detail = f"{error.code}: {error.message}" if error.code else f"HTTP {status}"
        if status == 401:
            raise AuthError(self._auth_message(host, what, status), status=status, code=error.code)
        if status == 403:
            raise AuthError(self._auth_message(host, what, status), status=status, code=error.code)
        if status == 404:
            raise NotFoundError(f"cannot {what}: not found ({detail})", status=status, code=error.code)
        if status in RETRYABLE_STATUS:
            raise ServerBusy(
                f"cannot {what}: registry {host} kept answering HTTP {status}",
                status=status,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        raise RegistryError(
            f"cannot {what}: registry {host} answered {detail}", status=status, code=error.code
        )

    def _auth_message(self, host: str, what: str, status: int) -> str:
        hint = self.auth.hint(host)
        cred = self.auth.known_credential(host)
        if cred is None or cred.is_anonymous:
            return f"cannot {what}: registry {host} requires credentials (HTTP {status}); {hint}"
        refused = "refused" if status == 401 else "denied this to"
        return (
            f"cannot {what}: registry {host} {refused} the credentials from {cred.source} "
            f"(HTTP {status}); {hint}"
        )


async def _iterate(source: BlobSource) -> AsyncIterator[bytes]:
    if isinstance(source, bytes):
        for start in range(0, len(source), STREAM_PIECE):
            yield source[start : start + STREAM_PIECE]
        return
    async for piece in source():
        yield piece


def _with_query(url: str, key: str, value: str) -> str:
    # Upload locations carry their own query (distribution's _state): append, don't replace.
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}{key}={value}"
