"""Docker Hub's tags API: the stand-in server (tests/fakes/dockerhub.py) and bot.oci.hub against it."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from bot.http import HttpClient
from bot.oci.hub import PAGE_SIZE, DockerHubTags, HubError
from bot.oci.reference import parse_repository
from bot.retry import RetryPolicy
from tests.fakes.dockerhub import FakeDockerHub

UTC = dt.UTC
FAST_RETRY = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
ALPINE = parse_repository("docker.io/library/alpine")


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def fill(hub: FakeDockerHub, repository: str, count: int) -> None:
    start = dt.datetime(2024, 1, 1, tzinfo=UTC)
    for n in range(count):
        hub.set_tag(repository, f"1.{n}.0", last_updated=start + dt.timedelta(hours=n), digest=digest(n))


def fast_client(hub: FakeDockerHub, **kwargs: object) -> DockerHubTags:
    return DockerHubTags(hub.url, http=HttpClient(service="dockerhub", retry=FAST_RETRY), **kwargs)  # type: ignore[arg-type]


# --- the stand-in server ----------------------------------------------------------------------


def test_fake_paginates_with_absolute_links_and_documented_defaults():
    with FakeDockerHub() as hub:
        fill(hub, "library/alpine", 25)
        base = f"{hub.url}/v2/namespaces/library/repositories/alpine/tags"
        first = httpx.get(base).json()
        assert first["count"] == 25
        assert len(first["results"]) == 10  # page_size defaults to 10
        assert first["previous"] is None
        assert first["next"] == f"{base}?page=2&page_size=10"
        last = httpx.get(f"{base}?page=3&page_size=10").json()
        assert len(last["results"]) == 5
        assert last["next"] is None
        assert last["previous"] == f"{base}?page=2&page_size=10"
        # Newest first.
        assert [r["name"] for r in first["results"][:2]] == ["1.24.0", "1.23.0"]


def test_fake_tag_fields():
    with FakeDockerHub() as hub:
        when = dt.datetime(2025, 2, 14, 10, 30, 5, 123456, tzinfo=UTC)
        hub.set_tag(
            "library/alpine", "3.21.3", last_updated=when, digest=digest(1), platforms=("linux/arm/v7",)
        )
        hub.set_tag("library/alpine", "old", last_updated=None, digest=None)
        results = httpx.get(f"{hub.url}/v2/namespaces/library/repositories/alpine/tags").json()["results"]
        tag = results[0]
        for key in ("creator", "id", "images", "last_updated", "last_updater", "last_updater_username"):
            assert key in tag
        for key in (
            "name",
            "repository",
            "full_size",
            "v2",
            "tag_status",
            "tag_last_pulled",
            "tag_last_pushed",
        ):
            assert key in tag
        assert (tag["name"], tag["last_updated"], tag["digest"]) == (
            "3.21.3",
            "2025-02-14T10:30:05.123456Z",
            digest(1),
        )
        assert tag["images"][0]["architecture"] == "arm"
        assert tag["images"][0]["variant"] == "v7"
        assert results[1]["name"] == "old"  # undated last
        assert results[1]["last_updated"] is None
        assert "digest" not in results[1]
        single = httpx.get(f"{hub.url}/v2/namespaces/library/repositories/alpine/tags/3.21.3").json()
        assert single["name"] == "3.21.3"


@pytest.mark.parametrize(
    ("query", "status"),
    [("page_size=101", 400), ("page_size=0", 400), ("page=x", 400), ("page=9", 404)],
)
def test_fake_refuses_bad_pages(query, status):
    with FakeDockerHub() as hub:
        fill(hub, "library/alpine", 3)
        response = httpx.get(f"{hub.url}/v2/namespaces/library/repositories/alpine/tags?{query}")
        assert response.status_code == status
        assert "message" in response.json()


def test_fake_unknown_repository_is_404_and_an_empty_one_has_no_results():
    with FakeDockerHub() as hub:
        response = httpx.get(f"{hub.url}/v2/namespaces/library/repositories/nosuch/tags")
        assert response.status_code == 404
        assert response.json()["errinfo"] == {"namespace": "library", "repository": "nosuch"}
        hub.add_repository("library/empty")
        empty = httpx.get(f"{hub.url}/v2/namespaces/library/repositories/empty/tags").json()
        assert (empty["count"], empty["results"], empty["next"]) == (0, [], None)


# --- the client -------------------------------------------------------------------------------


async def test_client_lists_every_page_with_dates_and_digests():
    with FakeDockerHub() as hub:
        fill(hub, "library/alpine", 250)
        hub.set_tag("library/alpine", "edge", last_updated=None, digest=None)
        client = DockerHubTags(hub.url)
        try:
            tags = await client.list_tags(ALPINE)
        finally:
            await client.aclose()
        assert len(tags) == 251
        assert tags[0].name == "1.249.0"
        assert tags[0].last_updated == dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(hours=249)
        assert tags[0].digest == digest(249)
        assert tags[-1].name == "edge"
        assert (tags[-1].last_updated, tags[-1].digest) == (None, None)
        listed = hub.requests
        assert len(listed) == 3
        assert all(f"page_size={PAGE_SIZE}" in r.query for r in listed)
        assert all("authorization" not in r.headers for r in listed)


async def test_links_to_another_origin_are_followed_on_the_configured_one():
    # A mirror passing Hub's absolute links through: the client stays on the configured host.
    with FakeDockerHub(link_origin="https://hub.docker.com") as hub:
        fill(hub, "library/alpine", 150)
        client = DockerHubTags(hub.url)
        try:
            tags = await client.list_tags(ALPINE)
        finally:
            await client.aclose()
        assert len(tags) == 150
        assert [r.query for r in hub.requests] == ["page_size=100", "page=2&page_size=100"]


async def test_transient_errors_are_retried():
    with FakeDockerHub() as hub:
        fill(hub, "library/alpine", 3)
        hub.fail_next("GET", r"/tags$", 503)
        hub.fail_next("GET", r"/tags$", 429, headers={"Retry-After": "0"})
        client = fast_client(hub)
        try:
            assert len(await client.list_tags(ALPINE)) == 3
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda hub: hub.fail_next("GET", r"/tags$", 500, times=None), "answered HTTP 500"),
        (lambda hub: None, "answered HTTP 404"),  # no such repository
        (lambda hub: hub.fail_next("GET", r"/tags$", 200, body="<html>login</html>"), "not a page of tags"),
        (lambda hub: hub.fail_next("GET", r"/tags$", 200, body={"results": [{"nom": "x"}]}), "not a page"),
    ],
)
async def test_failures_are_hub_errors(setup, message):
    with FakeDockerHub() as hub:
        setup(hub)
        client = fast_client(hub)
        try:
            with pytest.raises(HubError, match=message):
                await client.list_tags(parse_repository("docker.io/library/nosuch"))
        finally:
            await client.aclose()


async def test_a_link_back_to_a_read_page_stops_the_listing():
    with FakeDockerHub() as hub:
        page = {"count": 1, "next": "?page_size=100", "previous": None, "results": [{"name": "a"}]}
        hub.fail_next("GET", r"/tags$", 200, body=page, times=None)
        client = fast_client(hub)
        try:
            with pytest.raises(HubError, match="link back to a page already read"):
                await client.list_tags(ALPINE)
        finally:
            await client.aclose()


async def test_unreachable_hub_is_a_hub_error():
    with FakeDockerHub() as hub:
        url = hub.url
    client = DockerHubTags(url, http=HttpClient(service="dockerhub", retry=FAST_RETRY))
    try:
        with pytest.raises(HubError, match="cannot reach the Docker Hub tags API"):
            await client.list_tags(ALPINE)
    finally:
        await client.aclose()


def test_which_repositories_hub_describes():
    hub = DockerHubTags("https://hub.docker.com")
    assert hub.serves(parse_repository("alpine"))
    assert hub.serves(parse_repository("index.docker.io/bitnami/redis"))
    assert not hub.serves(parse_repository("docker.io/a/b/c"))  # Hub repositories are namespace/name
    assert not hub.serves(parse_repository("registry.example.com/library/alpine"))
    assert DockerHubTags("http://hub.test", hosts=["127.0.0.1:5000"]).serves(
        parse_repository("127.0.0.1:5000/library/alpine")
    )
