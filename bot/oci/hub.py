"""Docker Hub's tags API: every tag of a ``docker.io`` repository with its date, in one listing.

``GET {base}/v2/namespaces/{namespace}/repositories/{repository}/tags?page_size=100`` answers
``{"count", "next", "previous", "results": [...]}``; each result has ``name``, ``last_updated``
(RFC 3339, or null) and, on today's Hub, ``digest`` (the tag's manifest or index digest; absent
for some old tags). ``next`` is the absolute URL of the following page, or null on the last one
(docs.docker.com/reference/api/hub/latest: *List repository tags*, schemas ``page``, ``tag``).

The registry's own tag list (``/v2/<name>/tags/list``) has names only; sorting non-version tags
by date would then cost one manifest and one config request per tag. Hub gives the date (and
the digest, which ``os_normalize`` needs) for a hundred tags per request.

No credential is sent: Hub lists public repositories anonymously, and the registry credentials
(``IMGLIFE_DOCKER_IO_*``) belong to the registry, not to this API. ``next`` links are followed
only on the configured base URL's origin: a link to another origin (a mirror that passes Hub's
absolute links through) is re-based onto the configured origin, so this client only ever talks
to the host the operator configured.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import structlog

from bot.errors import ImglifeError
from bot.http import HttpClient, TransportError
from bot.oci.reference import DOCKER_HUB, ImageReference
from bot.records.codec import parse_timestamp

PAGE_SIZE = 100  # Hub's maximum
# 2,000 pages of 100 tags: far beyond any real repository; stops a server that loops its links.
MAX_PAGES = 2000
HUB_MAX_CONNECTIONS = 4

MSG_HTTP = "Docker Hub tags API {url} answered HTTP {status}"
MSG_UNREACHABLE = "cannot reach the Docker Hub tags API at {base}: {error}"
MSG_NOT_JSON = "Docker Hub tags API {url} answered something that is not a page of tags"
MSG_LOOP = "Docker Hub tags API {base} sent more than {pages} pages (or a link back to a page already read)"
MSG_NOT_HUB = "{repo} is not a Docker Hub repository of the form namespace/name"

log = structlog.get_logger(__name__)


class HubError(ImglifeError):
    """Docker Hub's tags API failed, refused or answered nonsense."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class HubTag:
    """One tag as Hub lists it; ``last_updated`` and ``digest`` are ``None`` when Hub has none."""

    name: str
    last_updated: dt.datetime | None
    digest: str | None


class DockerHubTags:
    """Lists tags of ``docker.io`` repositories through Hub's API at ``base_url``.

    ``hosts`` names the registries whose repositories this API describes: ``docker.io`` in
    production; a test points a stand-in Hub at a local registry by naming that registry's host.
    """

    def __init__(
        self,
        base_url: str,
        *,
        hosts: Iterable[str] = (DOCKER_HUB,),
        http: HttpClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._hosts = frozenset(hosts)
        self._http = http or HttpClient(service="dockerhub", max_connections=HUB_MAX_CONNECTIONS)

    async def aclose(self) -> None:
        await self._http.aclose()

    def serves(self, repo: ImageReference) -> bool:
        """Whether ``repo`` is a Hub repository: on a Hub host, and exactly ``namespace/name``."""
        return repo.registry in self._hosts and repo.repository.count("/") == 1

    async def list_tags(self, repo: ImageReference) -> list[HubTag]:
        """Every tag of ``repo``, following ``next`` to the last page (Hub's order: newest first)."""
        if not self.serves(repo):
            raise HubError(MSG_NOT_HUB.format(repo=repo.name))
        namespace, name = repo.repository.split("/")
        url: str | None = (
            f"{self.base_url}/v2/namespaces/{quote(namespace, safe='')}/repositories/"
            f"{quote(name, safe='')}/tags?page_size={PAGE_SIZE}"
        )
        tags: list[HubTag] = []
        seen: set[str] = set()
        while url is not None:
            if url in seen or len(seen) >= MAX_PAGES:
                raise HubError(MSG_LOOP.format(base=self.base_url, pages=MAX_PAGES))
            seen.add(url)
            page = await self._get_page(url)
            tags.extend(_parse_results(page.get("results"), url))
            url = self._next_url(page.get("next"), url)
        log.debug("hub_tags_listed", repository=repo.name, tags=len(tags), pages=len(seen))
        return tags

    async def _get_page(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.request("GET", url, headers={"Accept": "application/json"})
        except TransportError as exc:
            raise HubError(MSG_UNREACHABLE.format(base=self.base_url, error=exc)) from exc
        if response.status_code != 200:
            raise HubError(MSG_HTTP.format(url=url, status=response.status_code), status=response.status_code)
        page = response.json()
        if not isinstance(page, dict) or not isinstance(page.get("results"), list):
            raise HubError(MSG_NOT_JSON.format(url=url))
        return page

    def _next_url(self, link: object, current: str) -> str | None:
        if not isinstance(link, str) or not link:
            return None
        target = urlsplit(urljoin(current, link))
        base = urlsplit(self.base_url)
        if (target.scheme, target.netloc) != (base.scheme, base.netloc):
            # Hub writes absolute links to itself; keep the page, drop the foreign origin.
            target = target._replace(scheme=base.scheme, netloc=base.netloc)
        return urlunsplit(target)


def _parse_results(results: object, url: str) -> list[HubTag]:
    tags: list[HubTag] = []
    for item in results if isinstance(results, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise HubError(MSG_NOT_JSON.format(url=url))
        digest = item.get("digest")
        tags.append(
            HubTag(
                name=item["name"],
                last_updated=_parse_date(item.get("last_updated")),
                digest=digest if isinstance(digest, str) and digest else None,
            )
        )
    return tags


def _parse_date(value: object) -> dt.datetime | None:
    # A tag Hub has no date for sorts as undated; a malformed date is treated the same way.
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None
