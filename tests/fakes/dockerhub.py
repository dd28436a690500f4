"""A stand-in for Docker Hub's tags API (``hub.docker.com``), which tests cannot reach.

What it serves follows the Docker Hub API reference (docs.docker.com/reference/api/hub/latest:
operation *List repository tags*, schemas ``paginated_tags``, ``page``, ``tag``, ``image``);
``tests/fakes/README.md`` lists what is documented and what is an assumption. In short::

    GET /v2/namespaces/{namespace}/repositories/{repository}/tags?page=1&page_size=100
    -> {"count": N, "next": URL|null, "previous": URL|null, "results": [tag, ...]}

* ``page`` counts from 1 (default 1), ``page_size`` defaults to 10 and may not exceed 100.
* ``next``/``previous`` are **absolute** URLs; ``link_origin`` makes them point at another origin
  (``https://hub.docker.com``, as a mirror passing Hub's links through would), to check that a
  client does not follow them off the configured host.
* Tags are listed newest ``last_updated`` first (undated last), then by name.
* A tag carries the documented fields plus ``digest``, ``media_type`` and ``content_type``, which
  Hub sends today although the reference's schema does not list them.

Usage::

    with FakeDockerHub() as hub:                      # sync.dockerhub_api_url: hub.url
        hub.set_tag("library/alpine", "3.21.3", last_updated=datetime(2025, 2, 14, tzinfo=UTC),
                    digest="sha256:...")
        hub.fail_next("GET", r"/tags$", 503)          # FakeServer's faults, latency, requests
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .server import JSON_CONTENT_TYPE, Call, FakeServer, HTTPFault, Router, json_body, paginate

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "FakeDockerHub", "HubTagData"]

DEFAULT_PAGE_SIZE = 10  # the reference: "Defaults to 10. Max of 100."
MAX_PAGE_SIZE = 100
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONTENT_TYPE_IMAGE = "image"
TAGS_PATH = "/v2/namespaces/{namespace}/repositories/{repository}/tags"


@dataclass
class HubTagData:
    """One tag as the fake keeps it; ``to_json`` renders the API's shape."""

    name: str
    last_updated: datetime | None
    digest: str | None
    media_type: str = OCI_INDEX
    full_size: int = 0
    platforms: tuple[str, ...] = ("linux/amd64",)
    tag_id: int = 0
    status: str = "active"

    def to_json(self, repository_id: int) -> dict[str, Any]:
        when = _rfc3339(self.last_updated)
        images = []
        for platform in self.platforms:
            os_name, arch, *variant = platform.split("/")
            images.append(
                {
                    "architecture": arch,
                    "features": None,
                    "variant": variant[0] if variant else None,
                    "digest": None,  # per-platform digests are not modelled
                    "os": os_name,
                    "os_features": None,
                    "os_version": None,
                    "size": self.full_size,
                    "status": self.status,
                    "last_pulled": None,
                    "last_pushed": when,
                }
            )
        result: dict[str, Any] = {
            "creator": 1,
            "id": self.tag_id,
            "images": images,
            "last_updated": when,
            "last_updater": 1,
            "last_updater_username": "imglife-fake",
            "name": self.name,
            "repository": repository_id,
            "full_size": self.full_size,
            "v2": True,
            "tag_status": self.status,
            "tag_last_pulled": None,
            "tag_last_pushed": when,
            "media_type": self.media_type,
            "content_type": CONTENT_TYPE_IMAGE,
        }
        if self.digest is not None:
            result["digest"] = self.digest
        return result


@dataclass
class _Repository:
    repository_id: int
    tags: dict[str, HubTagData] = field(default_factory=dict)


class FakeDockerHub(FakeServer):
    """Docker Hub's ``/v2/namespaces/.../tags`` listing over real HTTP (see the module docstring)."""

    thread_name = "fake-dockerhub"

    def __init__(self, *, link_origin: str | None = None, **kwargs: Any) -> None:
        self._repositories: dict[str, _Repository] = {}
        self._ids = itertools.count(1)
        self.link_origin = link_origin
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ test API

    def add_repository(self, repository: str) -> None:
        """Create ``namespace/name`` with no tags (an unknown repository answers 404)."""
        with self.lock:
            self._repositories.setdefault(repository, _Repository(next(self._ids)))

    def set_tag(
        self,
        repository: str,
        name: str,
        *,
        last_updated: datetime | None,
        digest: str | None,
        **details: Any,
    ) -> None:
        """Add or replace a tag of ``repository`` (created when new); ``details`` are HubTagData fields."""
        with self.lock:
            repo = self._repositories.setdefault(repository, _Repository(next(self._ids)))
            repo.tags[name] = HubTagData(name, last_updated, digest, tag_id=next(self._ids), **details)

    def remove_tag(self, repository: str, name: str) -> None:
        with self.lock:
            self._repositories[repository].tags.pop(name, None)

    def tag_names(self, repository: str) -> list[str]:
        """The tags in the order the API lists them."""
        with self.lock:
            return [t.name for t in _ordered(self._repositories[repository].tags.values())]

    # ------------------------------------------------------------------ routes

    def routes(self, router: Router) -> None:
        router.get(TAGS_PATH, self._list_tags)
        router.get(TAGS_PATH + "/{tag}", self._get_tag)

    def route_not_found(self, method: str, path: str) -> HTTPFault:
        return HTTPFault(404, json_body({"message": "404 page not found"}))

    def _repository(self, call: Call) -> _Repository:
        key = f"{call.params['namespace']}/{call.params['repository']}"
        repo = self._repositories.get(key)
        if repo is None:
            raise HTTPFault(
                404,
                json_body(
                    {
                        "message": "httperror 404: object not found",
                        "errinfo": {
                            "namespace": call.params["namespace"],
                            "repository": call.params["repository"],
                        },
                    }
                ),
            )
        return repo

    async def _list_tags(self, call: Call) -> web.StreamResponse:
        page = _positive_int(call.query.get("page"), 1, "page")
        page_size = _positive_int(call.query.get("page_size"), DEFAULT_PAGE_SIZE, "page_size")
        if page_size > MAX_PAGE_SIZE:
            raise HTTPFault(400, json_body({"message": f"page_size must be at most {MAX_PAGE_SIZE}"}))
        with self.lock:
            repo = self._repository(call)
            listing = paginate(_ordered(repo.tags.values()), page, page_size)
            if page > 1 and not listing.items:
                raise HTTPFault(404, json_body({"message": "page not found"}))
            raw_path = call.request.rel_url.raw_path
            return _json_response(
                {
                    "count": listing.total,
                    "next": self._link(raw_path, listing.next_page, page_size),
                    "previous": self._link(raw_path, listing.prev_page, page_size),
                    "results": [tag.to_json(repo.repository_id) for tag in listing.items],
                }
            )

    async def _get_tag(self, call: Call) -> web.StreamResponse:
        with self.lock:
            repo = self._repository(call)
            tag = repo.tags.get(call.params["tag"])
            if tag is None:
                raise HTTPFault(404, json_body({"message": "httperror 404: tag not found"}))
            return _json_response(tag.to_json(repo.repository_id))

    def _link(self, raw_path: str, page: int | None, page_size: int) -> str | None:
        if page is None:
            return None
        origin = self.link_origin or self.url
        return f"{origin}{raw_path}?page={page}&page_size={page_size}"


def _ordered(tags: Any) -> list[HubTagData]:
    newest = datetime.max.replace(tzinfo=UTC)
    # Newest first; undated tags after every dated one; the name breaks ties.
    return sorted(
        tags,
        key=lambda t: (t.last_updated is None, newest - (t.last_updated or newest), t.name),
    )


def _positive_int(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise HTTPFault(400, json_body({"message": f"{name} must be a positive integer"}))
    return int(value)


def _rfc3339(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_response(data: Any) -> web.Response:
    return web.Response(status=200, body=json_body(data), headers={"Content-Type": JSON_CONTENT_TYPE})
