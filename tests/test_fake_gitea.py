"""FakeGitea kept honest by gitea-async-sdk, the client generated from Gitea's own swagger.

The package API (``/api/v1``) is driven through the SDK's ``PackageApi``/``UserApi``/
``MiscellaneousApi``, which parse every answer into the SDK's strict pydantic models; the raw
JSON is also compared key by key with those models, so a misspelt or mistyped field fails here.
The generic registry (``/api/packages``) has no SDK call, so it is driven with httpx.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from gitea_async.api.issue_api import IssueApi
from gitea_async.api.miscellaneous_api import MiscellaneousApi
from gitea_async.api.package_api import PackageApi
from gitea_async.api.repository_api import RepositoryApi
from gitea_async.api.user_api import UserApi
from gitea_async.api_client import ApiClient
from gitea_async.configuration import Configuration
from gitea_async.exceptions import ApiException, ForbiddenException, NotFoundException, UnauthorizedException
from gitea_async.models.comment import Comment
from gitea_async.models.commit_meta import CommitMeta
from gitea_async.models.commit_status import CommitStatus
from gitea_async.models.contents_response import ContentsResponse
from gitea_async.models.create_issue_comment_option import CreateIssueCommentOption
from gitea_async.models.create_status_option import CreateStatusOption
from gitea_async.models.edit_issue_comment_option import EditIssueCommentOption
from gitea_async.models.edit_reaction_option import EditReactionOption
from gitea_async.models.package import Package
from gitea_async.models.package_file import PackageFile
from gitea_async.models.pr_branch_info import PRBranchInfo
from gitea_async.models.pull_request import PullRequest
from gitea_async.models.reaction import Reaction
from gitea_async.models.repo_collaborator_permission import RepoCollaboratorPermission
from gitea_async.models.repository import Repository
from gitea_async.models.server_version import ServerVersion
from gitea_async.models.tag import Tag
from gitea_async.models.user import User
from pydantic import BaseModel

from tests.fakes import FakeGitea, GiteaToken

TOKEN = "gt-bot"
READER_TOKEN = "gt-reader"
OUTSIDER_TOKEN = "gt-outsider"
USER_SCOPE_TOKEN = "gt-user-scope-only"
ORG = "platform"
BOT = "bot"
REGISTRY = "/api/packages"

# One TLS context for every httpx client: building one per client costs ~90 ms (CA bundle load)
# though the fakes speak plain HTTP.
TLS = ssl.create_default_context()

# Keys real Gitea sends that the 1.26 swagger models do not declare.
USER_EXTRA_KEYS = {"username"}  # structs.User.MarshalJSON's compatibility copy of "login"


def ticking_clock(step: timedelta = timedelta(seconds=1)) -> Callable[[], datetime]:
    """A clock that moves ``step`` per reading, so no two versions share a creation second."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    counter = itertools.count()
    return lambda: start + step * next(counter)


@pytest.fixture
def fake() -> Iterator[FakeGitea]:
    tokens = {
        TOKEN: GiteaToken(BOT),
        READER_TOKEN: GiteaToken("reader", scopes=frozenset({"write:package", "read:user"})),
        OUTSIDER_TOKEN: GiteaToken("outsider"),
        USER_SCOPE_TOKEN: GiteaToken(BOT, scopes=frozenset({"read:user"})),
    }
    with FakeGitea(tokens=tokens, clock=ticking_clock()) as server:
        server.add_org(ORG, members={BOT: "write", "reader": "read"})
        server.add_org("secret-org", members={BOT: "write"}, visibility="private")
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"Authorization": f"token {TOKEN}"}, verify=TLS) as client:
        yield client


def sdk_config(fake: FakeGitea, token: str | None = TOKEN) -> Configuration:
    config = Configuration(host=f"{fake.url}/api/v1")
    if token is not None:
        config.api_key = {"AuthorizationHeaderToken": token}
        config.api_key_prefix = {"AuthorizationHeaderToken": "token"}
    return config


@pytest.fixture
async def sdk(fake: FakeGitea) -> AsyncIterator[ApiClient]:
    async with ApiClient(sdk_config(fake)) as client:
        yield client


def file_url(fake: FakeGitea, owner: str, name: str, version: str, file_name: str) -> str:
    return f"{fake.url}{REGISTRY}/{owner}/generic/{name}/{version}/{file_name}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_matches_model(
    raw: dict[str, Any], model: type[BaseModel], extra: AbstractSet[str] = frozenset()
) -> None:
    """Every key the fake sent is one the SDK model declares (or a known server extra)."""
    assert set(raw) - set(model.model_fields) <= extra, f"unknown keys for {model.__name__}"


# --------------------------------------------------------------------------- registry


async def test_put_then_get_roundtrip(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    put = await http.put(file_url(fake, ORG, "rec", "1.0.0", "r.json"), content=b'{"a":1}')
    get = await http.get(file_url(fake, ORG, "rec", "1.0.0", "r.json"))

    assert (put.status_code, put.content) == (201, b"")
    assert (get.status_code, get.content) == (200, b'{"a":1}')
    assert get.headers["content-type"] == "application/octet-stream"


async def test_put_of_existing_file_is_409_even_in_another_case(
    fake: FakeGitea, http: httpx.AsyncClient
) -> None:
    await http.put(file_url(fake, ORG, "rec", "1.0.0", "r.json"), content=b"first")

    again = await http.put(file_url(fake, ORG, "rec", "1.0.0", "r.json"), content=b"second")
    shouting = await http.put(file_url(fake, ORG, "REC", "1.0.0", "R.JSON"), content=b"third")

    for response in (again, shouting):
        assert response.status_code == 409
        assert response.text == "package file already exists"
        assert response.headers["content-type"].startswith("text/plain")
    assert fake.file_content(ORG, "rec", "1.0.0", "r.json") == b"first"
    assert (await http.get(file_url(fake, ORG, "Rec", "1.0.0", "R.json"))).content == b"first"


async def test_delete_then_put_replaces_a_file(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    url = file_url(fake, ORG, "rec", "1.0.0", "r.json")
    await http.put(url, content=b"old")
    await http.put(file_url(fake, ORG, "rec", "1.0.0", "other.json"), content=b"keep")

    deleted = await http.delete(url)
    gone = await http.get(url)
    put = await http.put(url, content=b"new")

    assert (deleted.status_code, gone.status_code, put.status_code) == (204, 404, 201)
    assert gone.text == "package file does not exist"
    assert (await http.get(url)).content == b"new"
    assert fake.file_count(ORG, "rec", "1.0.0", "r.json") == 1


async def test_deleting_the_last_file_deletes_the_version(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    url = file_url(fake, ORG, "rec", "1.0.0", "r.json")
    await http.put(url, content=b"only")

    assert (await http.delete(url)).status_code == 204

    missing = await http.get(url)
    assert (missing.status_code, missing.text) == (404, "package does not exist")
    assert fake.packages(ORG) == []


async def test_delete_version_removes_every_file(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    for name in ("a.json", "b.json"):
        await http.put(file_url(fake, ORG, "rec", "1.0.0", name), content=b"x")

    deleted = await http.delete(f"{fake.url}{REGISTRY}/{ORG}/generic/rec/1.0.0")
    again = await http.delete(f"{fake.url}{REGISTRY}/{ORG}/generic/rec/1.0.0")

    assert deleted.status_code == 204
    assert (again.status_code, again.text) == (404, "package does not exist")
    assert fake.packages(ORG) == []


async def test_fault_between_delete_and_put_leaves_the_file_missing(
    fake: FakeGitea, http: httpx.AsyncClient
) -> None:
    url = file_url(fake, ORG, "rec", "1.0.0", "r.json")
    await http.put(url, content=b"old")
    fake.fail_next("PUT", r"/generic/rec/", 500)

    await http.delete(url)
    failed = await http.put(url, content=b"new")

    assert failed.status_code == 500
    assert fake.file_count(ORG, "rec", "1.0.0", "r.json") == 0  # the window a replace must survive
    assert (await http.put(url, content=b"new")).status_code == 201


@pytest.mark.parametrize(
    ("name", "version", "file_name", "message"),
    [
        ("bad%20name", "1.0", "r.json", "invalid package name"),
        ("_", "1.0", "r.json", "invalid package name"),  # one character must be a letter or digit
        ("%2E%2E", "1.0", "r.json", "invalid package name"),  # encoded, or the client collapses it
        ("rec", "1.0", "%20r.json", "invalid filename"),
        ("rec", "1.0", "%2E%2E", "invalid filename"),
        ("rec", "1.0", "r%3Cx%3E.json", "invalid filename"),
        ("rec", "%201.0", "r.json", "invalid package version"),
    ],
)
async def test_invalid_upload_parameters_answer_400(
    fake: FakeGitea, http: httpx.AsyncClient, name: str, version: str, file_name: str, message: str
) -> None:
    response = await http.put(file_url(fake, ORG, name, version, file_name), content=b"x")

    assert (response.status_code, response.text) == (400, message)
    assert fake.packages(ORG) == []


async def test_gitea_accepts_more_than_gitlab_in_names(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    # Gitea allows "+" in names and spaces/brackets inside file names; a store must stay within
    # the GitLab/Gitea intersection itself.
    response = await http.put(file_url(fake, ORG, "a+b", "1.0+build", "x%20(1).json"), content=b"x")

    assert response.status_code == 201


async def test_same_name_under_two_owners_is_two_packages(
    fake: FakeGitea, http: httpx.AsyncClient, sdk: ApiClient
) -> None:
    await http.put(file_url(fake, ORG, "rec", "1.0.0", "r.json"), content=b"org")
    await http.put(file_url(fake, BOT, "rec", "1.0.0", "r.json"), content=b"user")

    api = PackageApi(sdk)
    org_packages = await api.list_packages(ORG, type="generic")
    user_packages = await api.list_packages(BOT, type="generic")

    assert [(p.owner.login, p.name) for p in org_packages if p.owner] == [(ORG, "rec")]
    assert [(p.owner.login, p.name) for p in user_packages if p.owner] == [(BOT, "rec")]
    assert org_packages[0].id != user_packages[0].id
    assert fake.file_content(ORG, "rec", "1.0.0", "r.json") == b"org"
    assert fake.file_content(BOT, "rec", "1.0.0", "r.json") == b"user"


# --------------------------------------------------------------------------- API v1 through the SDK


async def upload_versions(http: httpx.AsyncClient, fake: FakeGitea, count: int, name: str = "rec") -> None:
    for i in range(count):
        response = await http.put(file_url(fake, ORG, name, f"1.0.{i}", "r.json"), content=str(i).encode())
        assert response.status_code == 201


async def test_list_packages_pages_with_total_count_newest_first(
    fake: FakeGitea, http: httpx.AsyncClient, sdk: ApiClient
) -> None:
    await upload_versions(http, fake, 7)
    api = PackageApi(sdk)

    pages = [
        await api.list_packages_with_http_info(ORG, type="generic", page=page, limit=3)
        for page in (1, 2, 3, 4)
    ]

    assert [(r.headers or {}).get("X-Total-Count") for r in pages] == ["7"] * 4
    versions = [p.version for r in pages for p in r.data]
    assert versions == [f"1.0.{i}" for i in reversed(range(7))]
    assert pages[3].data == []
    assert all(isinstance(p, Package) for r in pages for p in r.data)


async def test_link_header_walks_every_page(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    await upload_versions(http, fake, 8)
    url: str | None = f"{fake.url}/api/v1/packages/{ORG}?type=generic&limit=3"
    seen: list[str] = []
    rels: list[set[str]] = []

    while url is not None:
        response = await http.get(url)
        seen += [p["version"] for p in response.json()]
        rels.append({str(rel) for rel in response.links})
        url = response.links.get("next", {}).get("url")

    assert sorted(seen) == sorted(f"1.0.{i}" for i in range(8))
    assert rels == [{"next", "last"}, {"next", "last", "first", "prev"}, {"first", "prev"}]


async def test_page_size_defaults_to_30_and_caps_at_50(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    await upload_versions(http, fake, 55)
    url = f"{fake.url}/api/v1/packages/{ORG}"

    default = await http.get(url)
    capped = await http.get(url, params={"limit": 100})
    rest = await http.get(url, params={"limit": 100, "page": 2})

    assert (len(default.json()), len(capped.json()), len(rest.json())) == (30, 50, 5)
    assert capped.headers["x-total-count"] == "55"


async def test_same_second_versions_list_oldest_first(http: httpx.AsyncClient) -> None:
    frozen = datetime(2026, 1, 1, tzinfo=UTC)
    with FakeGitea(tokens={TOKEN: GiteaToken(BOT)}, clock=lambda: frozen) as fake:
        await upload_versions_for(http, fake, BOT, 3)

        listed = (await http.get(f"{fake.url}/api/v1/packages/{BOT}")).json()

    # created_unix has second resolution; ties fall back to id ASC, so "newest first" is not
    # a promise a client can lean on.
    assert [p["version"] for p in listed] == ["1.0.0", "1.0.1", "1.0.2"]


async def upload_versions_for(http: httpx.AsyncClient, fake: FakeGitea, owner: str, count: int) -> None:
    for i in range(count):
        await http.put(file_url(fake, owner, "rec", f"1.0.{i}", "r.json"), content=b"x")


async def test_list_filters_by_name_substring(
    fake: FakeGitea, http: httpx.AsyncClient, sdk: ApiClient
) -> None:
    for name in ("app-records", "APP-other", "unrelated"):
        await http.put(file_url(fake, ORG, name, "1.0", "r.json"), content=b"x")

    found = await PackageApi(sdk).list_packages(ORG, type="generic", q="app")

    assert sorted(p.name or "" for p in found) == ["APP-other", "app-records"]


async def test_get_package_files_and_delete_through_the_sdk(
    fake: FakeGitea, http: httpx.AsyncClient, sdk: ApiClient
) -> None:
    await http.put(file_url(fake, ORG, "rec", "1.0.0", "r.json"), content=b"hello")
    api = PackageApi(sdk)

    package = await api.get_package(ORG, "generic", "rec", "1.0.0")
    files = await api.list_package_files(ORG, "generic", "rec", "1.0.0")
    await api.delete_package_version(ORG, "generic", "rec", "1.0.0")
    with pytest.raises(NotFoundException) as missing:
        await api.get_package(ORG, "generic", "rec", "1.0.0")

    assert (package.type, package.name, package.version) == ("generic", "rec", "1.0.0")
    assert package.creator is not None
    assert package.creator.login == BOT
    assert package.repository is None
    assert [(f.name, f.sha256) for f in files] == [("r.json", hashlib.sha256(b"hello").hexdigest())]
    assert missing.value.status == 404
    assert missing.value.body is not None
    assert '"message":"package does not exist"' in missing.value.body
    assert fake.packages(ORG) == []


async def test_whole_package_endpoints_of_newer_gitea_are_absent(
    fake: FakeGitea, http: httpx.AsyncClient, sdk: ApiClient
) -> None:
    # The SDK (1.26 swagger) offers DELETE /packages/{owner}/{type}/{name}; Gitea 1.22 has no
    # such route, so a store must delete version by version.
    await http.put(file_url(fake, ORG, "rec", "1.0.0", "r.json"), content=b"x")

    with pytest.raises(NotFoundException):
        await PackageApi(sdk).delete_package(ORG, "generic", "rec")

    assert fake.file_count(ORG, "rec", "1.0.0", "r.json") == 1


async def test_every_json_answer_parses_with_the_sdk_models(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    await http.put(file_url(fake, ORG, "rec", "1.0.0", "r.json"), content=b"hello")
    base = f"{fake.url}/api/v1"

    [listed] = (await http.get(f"{base}/packages/{ORG}")).json()
    single = (await http.get(f"{base}/packages/{ORG}/generic/rec/1.0.0")).json()
    [file_json] = (await http.get(f"{base}/packages/{ORG}/generic/rec/1.0.0/files")).json()
    user = (await http.get(f"{base}/user")).json()
    version = (await http.get(f"{base}/version")).json()

    for raw in (listed, single):
        assert_matches_model(raw, Package)
        assert_matches_model(raw["owner"], User, USER_EXTRA_KEYS)
        assert_matches_model(raw["creator"], User, USER_EXTRA_KEYS)
        parsed = Package.from_dict(raw)
        assert parsed is not None
        assert parsed.id == raw["id"]
        assert raw["created_at"].endswith("Z")
        assert parsed.created_at == datetime.fromisoformat(raw["created_at"])
        assert parsed.html_url == f"{fake.url}/{ORG}/-/packages/generic/rec/1.0.0"
    # Gitea 1.22 spells the size "Size" (an untagged Go field); the 1.26 model says "size".
    assert_matches_model(file_json, PackageFile, {"Size"})
    parsed_file = PackageFile.from_dict(file_json)
    assert parsed_file is not None
    assert (parsed_file.name, parsed_file.size, file_json["Size"]) == ("r.json", None, 5)
    assert len(parsed_file.sha512 or "") == 128
    assert_matches_model(user, User, USER_EXTRA_KEYS)
    parsed_user = User.from_dict(user)
    assert parsed_user is not None
    assert (parsed_user.login, parsed_user.email) == (BOT, "bot@example.com")
    assert_matches_model(version, ServerVersion)
    assert ServerVersion.from_dict(version) == ServerVersion(version="1.22.0")


async def test_package_file_size_key_follows_the_server_version(http: httpx.AsyncClient) -> None:
    with FakeGitea(tokens={TOKEN: GiteaToken(BOT)}, version="1.26.2") as fake:
        await http.put(file_url(fake, BOT, "rec", "1", "r.json"), content=b"abc")
        async with ApiClient(sdk_config(fake)) as client:
            files = await PackageApi(client).list_package_files(BOT, "generic", "rec", "1")

    assert [f.size for f in files] == [3]


async def test_user_and_version_through_the_sdk(fake: FakeGitea, sdk: ApiClient) -> None:
    user = await UserApi(sdk).user_get_current()
    version = await MiscellaneousApi(sdk).get_version()

    assert user.login == BOT
    assert user.id == fake.add_user(BOT).id
    assert version.version == "1.22.0"


async def test_forgejo_flavour_reports_its_version_twice(http: httpx.AsyncClient) -> None:
    with FakeGitea(flavor="forgejo") as fake:
        gitea_api = (await http.get(f"{fake.url}/api/v1/version")).json()
        forgejo_api = (await http.get(f"{fake.url}/api/forgejo/v1/version")).json()

    assert gitea_api == forgejo_api
    assert "+gitea-1.22" in gitea_api["version"]


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"token {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}"},
        {"Authorization": basic(BOT, TOKEN)},
        {"Authorization": basic("any-name", TOKEN)},
        {"Authorization": basic(TOKEN, "")},
    ],
    ids=["token", "bearer", "basic-user-token", "basic-any-user", "basic-token-as-user"],
)
async def test_registry_accepts_token_bearer_and_basic(fake: FakeGitea, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(headers=headers, verify=TLS) as client:
        put = await client.put(file_url(fake, ORG, "rec", "1", "r.json"), content=b"x")

    assert put.status_code == 201


async def test_registry_accepts_a_password_login(fake: FakeGitea) -> None:
    fake.add_user("human", password="hunter2")
    fake.set_org_member(ORG, "human", "write")

    async with httpx.AsyncClient(headers={"Authorization": basic("human", "hunter2")}, verify=TLS) as client:
        put = await client.put(file_url(fake, ORG, "rec", "1", "r.json"), content=b"x")

    assert put.status_code == 201


async def test_registry_auth_failures_are_plain_text_401(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    url = file_url(fake, ORG, "rec", "1", "r.json")
    await http.put(url, content=b"x")
    async with httpx.AsyncClient(verify=TLS) as anon:
        cases = {
            "anonymous write": await anon.put(url, content=b"y"),
            "unknown token": await anon.get(url, headers={"Authorization": "token nope"}),
            "wrong password": await anon.get(url, headers={"Authorization": basic(BOT, "nope")}),
            "read-only member writes": await anon.put(
                url, content=b"y", headers={"Authorization": f"token {READER_TOKEN}"}
            ),
            "token without package scope": await anon.get(
                url, headers={"Authorization": f"token {USER_SCOPE_TOKEN}"}
            ),
            "outsider reads private org": await anon.get(
                file_url(fake, "secret-org", "rec", "1", "r.json"),
                headers={"Authorization": f"token {OUTSIDER_TOKEN}"},
            ),
        }
        anonymous_read = await anon.get(url)

    challenge = 'Basic realm="Gitea Package API"'
    got = {name: (r.status_code, r.text, r.headers.get("www-authenticate")) for name, r in cases.items()}
    assert got == {
        "anonymous write": (401, "reqPackageAccess\n", challenge),
        "unknown token": (401, "authGroup.Verify\n", None),
        "wrong password": (401, "authGroup.Verify\n", None),
        # A signed-in user without write access still gets 401, not 403.
        "read-only member writes": (401, "reqPackageAccess\n", challenge),
        "token without package scope": (401, "reqPackageAccess\n", challenge),
        "outsider reads private org": (401, "reqPackageAccess\n", challenge),
    }
    assert (anonymous_read.status_code, anonymous_read.content) == (200, b"x")  # public org
    assert fake.file_content(ORG, "rec", "1", "r.json") == b"x"


async def test_api_auth_failures_surface_as_sdk_exceptions(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    await http.put(file_url(fake, ORG, "rec", "1", "r.json"), content=b"x")
    swagger = f"{fake.url}/api/swagger"

    async def call(token: str | None, action: Callable[[PackageApi], Any]) -> ApiException:
        async with ApiClient(sdk_config(fake, token)) as client:
            with pytest.raises(ApiException) as err:
                await action(PackageApi(client))
        return err.value

    unknown = await call("nope", lambda api: api.list_packages(ORG))
    anonymous = await call(None, lambda api: api.list_packages(ORG))
    reader_delete = await call(
        READER_TOKEN, lambda api: api.delete_package_version(ORG, "generic", "rec", "1")
    )
    no_scope = await call(USER_SCOPE_TOKEN, lambda api: api.list_packages(ORG))
    outsider = await call(OUTSIDER_TOKEN, lambda api: api.list_packages("secret-org"))
    no_owner = await call(TOKEN, lambda api: api.list_packages("ghost"))

    assert isinstance(unknown, UnauthorizedException)
    assert isinstance(anonymous, UnauthorizedException)
    assert isinstance(reader_delete, ForbiddenException)
    assert isinstance(no_scope, ForbiddenException)
    assert isinstance(outsider, ForbiddenException)
    assert isinstance(no_owner, NotFoundException)
    scope_message = "token does not have at least one of required scope(s): [read:package]"
    bodies = [e.body for e in (unknown, anonymous, reader_delete, no_scope, outsider, no_owner)]
    assert bodies == [
        f'{{"message":"user does not exist [uid: 0, name: ]","url":"{swagger}"}}\n',
        f'{{"message":"token is required","url":"{swagger}"}}\n',
        f'{{"message":"user should have specific permission or be a site admin","url":"{swagger}"}}\n',
        f'{{"message":"{scope_message}","url":"{swagger}"}}\n',
        f'{{"message":"user should have specific permission or be a site admin","url":"{swagger}"}}\n',
        f'{{"message":"user redirect does not exist [name: ghost]","url":"{swagger}"}}\n',
    ]
    assert fake.file_count(ORG, "rec", "1", "r.json") == 1


async def test_org_write_member_and_owner_user_may_write(fake: FakeGitea, http: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(
        headers={"Authorization": f"token {OUTSIDER_TOKEN}"}, verify=TLS
    ) as outsider:
        own = await outsider.put(file_url(fake, "outsider", "rec", "1", "r.json"), content=b"x")
        foreign = await outsider.put(file_url(fake, BOT, "rec", "1", "r.json"), content=b"x")

    assert own.status_code == 201
    assert foreign.status_code == 401
    assert (
        await http.put(file_url(fake, "secret-org", "rec", "1", "r.json"), content=b"x")
    ).status_code == 201


# --------------------------------------------------------------------------- webhook-bot API areas

REPO = "app"
SHA = "b" * 40


@pytest.fixture
def bot_fake(fake: FakeGitea) -> FakeGitea:
    """An org repository the bot writes to, an issue #1 and a pull request #2 (one number space)."""
    fake.add_repo(ORG, REPO, default_branch="trunk", collaborators={"alice": "read"})
    assert fake.add_issue(ORG, REPO).index == 1
    assert fake.add_pull(ORG, REPO, poster="alice").index == 2
    fake.add_file(ORG, REPO, "trunk", ".imglife.yml", "images: []\n")
    fake.add_file(ORG, REPO, SHA, "docker/Dockerfile", b"FROM alpine:3.20\n")
    fake.set_branch(ORG, REPO, "feature", SHA)
    return fake


async def test_statuses_through_the_sdk_add_rows_without_transitions(
    bot_fake: FakeGitea, sdk: ApiClient
) -> None:
    api = RepositoryApi(sdk)
    first = await api.repo_create_status(
        ORG, REPO, SHA, CreateStatusOption(state="pending", context="imglife")
    )
    again = await api.repo_create_status(
        ORG, REPO, SHA, CreateStatusOption(state="pending", context="imglife")
    )
    done = await api.repo_create_status(
        ORG, REPO, SHA, CreateStatusOption(state="success", context="imglife", target_url="https://ci/1")
    )
    assert (first.status, again.status, done.status) == ("pending", "pending", "success")
    assert len({first.id, again.id, done.id}) == 3
    assert done.creator is not None
    assert done.creator.login == BOT
    by_branch = await api.repo_list_statuses_by_ref(ORG, REPO, "feature")
    assert [s.id for s in by_branch] == [done.id, again.id, first.id]  # newest first
    by_sha = await api.repo_list_statuses(ORG, REPO, SHA, sort="oldest", state="success")
    assert [s.target_url for s in by_sha] == ["https://ci/1"]


async def test_status_needs_write_and_a_known_state(bot_fake: FakeGitea, http: httpx.AsyncClient) -> None:
    url = f"{bot_fake.url}/api/v1/repos/{ORG}/{REPO}/statuses/{SHA}"
    bad = await http.post(url, json={"state": "running"})
    assert bad.status_code == 400
    reader = await http.post(
        url, json={"state": "pending"}, headers={"Authorization": f"token {READER_TOKEN}"}
    )
    assert reader.status_code == 403  # `reader` has read on the org, no write
    anonymous = await http.post(url, json={"state": "pending"}, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    missing = await http.get(f"{bot_fake.url}/api/v1/repos/{ORG}/nope")
    assert missing.status_code == 404
    assert missing.json()["message"] == "The target couldn't be found."


async def test_comments_edit_and_reactions_through_the_sdk(bot_fake: FakeGitea, sdk: ApiClient) -> None:
    api = IssueApi(sdk)
    theirs = bot_fake.add_comment(ORG, REPO, 2, "/imglife check", author="alice")
    mine = await api.issue_create_comment(
        ORG, REPO, 2, CreateIssueCommentOption(body="<!-- imglife -->\nfirst")
    )
    assert mine.user is not None
    assert mine.user.login == BOT
    assert mine.pull_request_url is not None
    assert mine.pull_request_url.endswith("/pulls/2")
    listed = await api.issue_get_comments(ORG, REPO, 2)
    assert [c.id for c in listed] == [theirs.id, mine.id]
    edited = await api.issue_edit_comment(ORG, REPO, mine.id or 0, EditIssueCommentOption(body="second"))
    assert edited.body == "second"
    reaction = await api.issue_post_comment_reaction_with_http_info(
        ORG, REPO, theirs.id, EditReactionOption(content="eyes")
    )
    assert reaction.status_code == 201
    assert reaction.data.content == "eyes"
    repeat = await api.issue_post_comment_reaction_with_http_info(
        ORG, REPO, theirs.id, EditReactionOption(content="eyes")
    )
    assert repeat.status_code == 200
    with pytest.raises(ForbiddenException):
        await api.issue_post_comment_reaction(ORG, REPO, theirs.id, EditReactionOption(content="party"))
    await api.issue_create_comment(ORG, REPO, 1, CreateIssueCommentOption(body="on the issue"))
    assert [c.body for c in bot_fake.comments(ORG, REPO, 1)] == ["on the issue"]
    with pytest.raises(NotFoundException):
        await api.issue_create_comment(ORG, REPO, 3, CreateIssueCommentOption(body="x"))


async def test_only_the_poster_or_a_writer_may_edit_a_comment(bot_fake: FakeGitea) -> None:
    bot_fake.add_token("gt-alice", "alice")
    mine = bot_fake.add_comment(ORG, REPO, 1, "bot says", author=BOT)
    async with ApiClient(sdk_config(bot_fake, "gt-alice")) as alice:
        with pytest.raises(ForbiddenException):
            await IssueApi(alice).issue_edit_comment(
                ORG, REPO, mine.id, EditIssueCommentOption(body="mine now")
            )
    assert bot_fake.comments(ORG, REPO, 1)[0].body == "bot says"


async def test_permission_raw_file_and_repo_through_the_sdk(bot_fake: FakeGitea, sdk: ApiClient) -> None:
    api = RepositoryApi(sdk)
    bot_fake.add_repo(BOT, "own", collaborators={"alice": "write"})
    perm = await api.repo_get_repo_permissions(BOT, "own", "alice")
    assert (perm.permission, perm.role_name) == ("write", "write")
    assert perm.user is not None
    assert perm.user.login == "alice"
    own = await api.repo_get_repo_permissions(BOT, "own", BOT)
    assert own.permission == "owner"
    # Gitea answers only admins, repository admins and the user themself: a writer gets 403.
    with pytest.raises(ForbiddenException):
        await api.repo_get_repo_permissions(ORG, REPO, "alice")
    assert (await api.repo_get_repo_permissions(ORG, REPO, BOT)).permission == "write"
    assert bytes(await api.repo_get_raw_file(ORG, REPO, ".imglife.yml")) == b"images: []\n"
    assert (
        bytes(await api.repo_get_raw_file(ORG, REPO, "docker/Dockerfile", ref=SHA)) == b"FROM alpine:3.20\n"
    )
    with pytest.raises(NotFoundException):
        await api.repo_get_raw_file(ORG, REPO, "docker/Dockerfile")
    repo = await api.repo_get(ORG, REPO)
    assert (repo.default_branch, repo.full_name) == ("trunk", f"{ORG}/{REPO}")
    assert repo.permissions is not None
    assert repo.permissions.push is True


async def test_repo_answers_parse_with_the_sdk_models(bot_fake: FakeGitea, http: httpx.AsyncClient) -> None:
    base = f"{bot_fake.url}/api/v1/repos/{ORG}/{REPO}"
    bot_fake.add_comment(ORG, REPO, 1, "hi", author="alice")
    status = (await http.post(f"{base}/statuses/{SHA}", json={"state": "warning", "context": "c"})).json()
    assert_matches_model(status, CommitStatus)
    comment = (await http.get(f"{base}/issues/1/comments")).json()[0]
    assert_matches_model(comment, Comment)
    reaction = (
        await http.post(f"{base}/issues/comments/{comment['id']}/reactions", json={"content": "+1"})
    ).json()
    assert_matches_model(reaction, Reaction)
    permission = (await http.get(f"{base}/collaborators/{BOT}/permission")).json()
    assert_matches_model(permission, RepoCollaboratorPermission)
    assert_matches_model((await http.get(base)).json(), Repository)


# --------------------------------------------------------------------------- contents, tags, pull requests

# What `git ls-tree` reports for the bot_fake files plus those added below (computed with git).
DOCKER_TREE_ID = "1dad956d972356742a4dcfc0bd84bdd7282219f2"
CONTENTS_LINKS = {"_links"}  # ContentsResponse declares it as the alias of its `links` field


def add_docker_directory(fake: FakeGitea) -> None:
    """docker/{Dockerfile (from bot_fake), base/Dockerfile, run.sh (executable), link (symlink)}."""
    fake.add_file(ORG, REPO, SHA, "docker/base/Dockerfile", b"FROM debian:12\n")
    fake.add_file(ORG, REPO, SHA, "docker/run.sh", b"x\n", mode="100755")
    fake.add_file(ORG, REPO, SHA, "docker/link", b"Dockerfile", mode="120000")


async def test_contents_list_directories_and_return_files_through_the_sdk(
    bot_fake: FakeGitea, sdk: ApiClient, http: httpx.AsyncClient
) -> None:
    add_docker_directory(bot_fake)
    api = RepositoryApi(sdk)
    root = await api.repo_get_contents_list(ORG, REPO, ref=SHA)
    assert [(c.name, c.type, c.sha, c.size) for c in root] == [("docker", "dir", DOCKER_TREE_ID, 0)]
    assert [c.path for c in await api.repo_get_contents_list(ORG, REPO)] == [".imglife.yml"]  # trunk
    single = await api.repo_get_contents(ORG, REPO, "docker/Dockerfile", ref=SHA)
    assert (single.type, single.sha, single.size, single.encoding) == (
        "file",
        "abf8b7c7b8728eafe93fe4fe366bf7faacbe275c",
        17,
        "base64",
    )
    assert base64.b64decode(single.content or "") == b"FROM alpine:3.20\n"
    # A directory answers a JSON list, which the SDK's repo_get_contents (typed as one object)
    # cannot return: read it raw and parse every entry with the SDK's strict model.
    raw = (
        await http.get(f"{bot_fake.url}/api/v1/repos/{ORG}/{REPO}/contents/docker", params={"ref": SHA})
    ).json()
    for item in raw:
        assert_matches_model(item, ContentsResponse, CONTENTS_LINKS)
    entries = [ContentsResponse.from_dict(item) for item in raw]
    assert [(e.path, e.type, e.sha, e.content) for e in entries if e is not None] == [
        ("docker/Dockerfile", "file", "abf8b7c7b8728eafe93fe4fe366bf7faacbe275c", None),
        ("docker/base", "dir", "50ed187f85545617211b009eafafbfe34b71a86f", None),
        ("docker/link", "symlink", "1d1fe94df492104ae6b144c08727a0fa8f15ab86", None),
        ("docker/run.sh", "file", "587be6b4c3f93f93c489c0111bba5596147a26cb", None),
    ]
    assert raw[2]["target"] == "Dockerfile"
    assert raw[0]["download_url"].endswith(f"/{ORG}/{REPO}/raw/commit/{SHA}/docker/Dockerfile")
    assert raw[1]["download_url"] is None


async def test_contents_of_a_missing_path_or_ref_is_404(
    bot_fake: FakeGitea, sdk: ApiClient, http: httpx.AsyncClient
) -> None:
    with pytest.raises(NotFoundException):
        await RepositoryApi(sdk).repo_get_contents(ORG, REPO, "docker/nope", ref=SHA)
    base = f"{bot_fake.url}/api/v1/repos/{ORG}/{REPO}/contents"
    # ctx.NotFound("GetContentsOrList", err): the string replaces the message.
    for url, error in (
        (f"{base}/docker/nope?ref={SHA}", "object does not exist [id: , rel_path: docker/nope]"),
        (f"{base}/docker?ref=no-such-branch", "object does not exist [id: no-such-branch, rel_path: ]"),
    ):
        answer = await http.get(url)
        assert answer.status_code == 404
        assert (answer.json()["message"], answer.json()["errors"]) == ("GetContentsOrList", [error])


async def test_tags_through_the_sdk(bot_fake: FakeGitea, sdk: ApiClient, http: httpx.AsyncClient) -> None:
    bot_fake.add_tag(ORG, REPO, "v1.0", SHA)
    annotated = bot_fake.add_tag(ORG, REPO, "release/2.0", "c" * 40, message="Release 2.0\n")
    api = RepositoryApi(sdk)
    light = await api.repo_get_tag(ORG, REPO, "v1.0")
    assert light.commit is not None
    assert (light.id, light.commit.sha, light.message) == (SHA, SHA, "")
    release = await api.repo_get_tag(ORG, REPO, "release/2.0")
    assert release.commit is not None
    assert release.commit.sha == "c" * 40
    assert release.id == annotated.id != "c" * 40  # the tag object, not the commit
    assert release.message == "Release 2.0"
    with pytest.raises(NotFoundException):
        await api.repo_get_tag(ORG, REPO, "v9")
    missing = await http.get(f"{bot_fake.url}/api/v1/repos/{ORG}/{REPO}/tags/v9")
    assert missing.json()["message"] == "v9"  # ctx.NotFound(tagName)
    raw = (await http.get(f"{bot_fake.url}/api/v1/repos/{ORG}/{REPO}/tags/release/2.0")).json()
    assert_matches_model(raw, Tag)
    assert_matches_model(raw["commit"], CommitMeta)
    # A tag reads the files of its commit.
    assert (
        bytes(await api.repo_get_raw_file(ORG, REPO, "docker/Dockerfile", ref="v1.0"))
        == b"FROM alpine:3.20\n"
    )
    names = [c.name for c in await api.repo_get_contents_list(ORG, REPO, ref="v1.0")]
    assert names == ["docker"]


async def test_pull_request_head_through_the_sdk(
    bot_fake: FakeGitea, sdk: ApiClient, http: httpx.AsyncClient
) -> None:
    pull = bot_fake.add_pull(ORG, REPO, head="bump-base", head_sha="e" * 40)
    api = RepositoryApi(sdk)
    pr = await api.repo_get_pull_request(ORG, REPO, pull.index)
    assert pr.head is not None
    assert pr.base is not None
    assert (pr.number, pr.state, pr.head.sha, pr.head.ref, pr.base.ref) == (
        pull.index,
        "open",
        "e" * 40,
        "bump-base",
        "trunk",
    )
    with pytest.raises(NotFoundException):
        await api.repo_get_pull_request(ORG, REPO, 1)  # issue #1 shares the numbers, is no pull
    with bot_fake.lock:  # a push to the head branch
        pull.head_sha = "f" * 40
    again = await api.repo_get_pull_request(ORG, REPO, pull.index)
    assert again.head is not None
    assert again.head.sha == "f" * 40
    raw = (await http.get(f"{bot_fake.url}/api/v1/repos/{ORG}/{REPO}/pulls/{pull.index}")).json()
    assert_matches_model(raw, PullRequest)
    assert_matches_model(raw["head"], PRBranchInfo)
