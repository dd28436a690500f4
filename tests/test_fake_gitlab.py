"""FakeGitLab kept honest by GitLab's own clients (python-gitlab, gidgetlab).

Every behaviour a record store relies on is driven through python-gitlab where it has a call
for it, so a fake that drifted from GitLab's wire format (headers, bodies, status codes) breaks
here first. Raw httpx is used only where a client hides the detail under test (exact headers,
auth carriers, error bodies).
"""

from __future__ import annotations

import base64
import itertools
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import gidgetlab.httpx
import gitlab
import httpx
import pytest
from gitlab.v4.objects import Project

from tests.fakes import DEVELOPER, GUEST, MAINTAINER, REPORTER, FakeGitLab, GitLabToken

TOKEN = "glpat-maintainer"
DEV_TOKEN = "glpat-developer"
REPORTER_TOKEN = "glpat-reporter"
READ_API_TOKEN = "glpat-read-api"
OUTSIDER_TOKEN = "glpat-outsider"
JOB_TOKEN = "glcbt-job"
PROJECT = "group/app"
API = "/api/v4"
# One TLS context for every httpx client: building one per client costs ~90 ms (CA bundle load)
# though the fakes speak plain HTTP.
TLS = ssl.create_default_context()


def ticking_clock(step: timedelta = timedelta(seconds=1)) -> Callable[[], datetime]:
    """A clock that moves ``step`` per reading, so creation order is never a tie."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    counter = itertools.count()
    return lambda: start + step * next(counter)


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    tokens = {
        TOKEN: GitLabToken("bot", role=MAINTAINER),
        DEV_TOKEN: GitLabToken("dev", role=DEVELOPER),
        REPORTER_TOKEN: GitLabToken("reporter", role=REPORTER),
        READ_API_TOKEN: GitLabToken("reader", scopes=frozenset({"read_api"}), role=MAINTAINER),
        OUTSIDER_TOKEN: GitLabToken("outsider"),
        JOB_TOKEN: GitLabToken("ci-user", role=DEVELOPER, kind="job"),
    }
    with FakeGitLab(tokens=tokens, clock=ticking_clock()) as server:
        server.add_user("bot", bot=True)
        server.add_project(PROJECT)
        yield server


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    """One client for the module (module-level httpx.get builds a client per call)."""
    with httpx.Client(verify=TLS) as client:
        yield client


@pytest.fixture
def gl(fake: FakeGitLab) -> Iterator[gitlab.Gitlab]:
    with gitlab.Gitlab(fake.url, private_token=TOKEN) as client:
        yield client


@pytest.fixture
def project(gl: gitlab.Gitlab) -> Project:
    return gl.projects.get(PROJECT, lazy=True)


def generic_url(
    fake: FakeGitLab, name: str, version: str, file_name: str, project: str = "group%2Fapp"
) -> str:
    return f"{fake.url}{API}/projects/{project}/packages/generic/{name}/{version}/{file_name}"


# --------------------------------------------------------------------------- /user


def test_auth_sets_current_user_from_token(fake: FakeGitLab, gl: gitlab.Gitlab) -> None:
    gl.auth()

    assert gl.user is not None
    assert gl.user.username == "bot"
    assert gl.user.id == fake.add_user("bot").id
    assert gl.user.bot is True


def test_auth_with_unknown_token_is_authentication_error(fake: FakeGitLab) -> None:
    with (
        gitlab.Gitlab(fake.url, private_token="glpat-nobody") as client,
        pytest.raises(gitlab.GitlabAuthenticationError) as err,
    ):
        client.auth()

    assert err.value.response_code == 401
    assert err.value.error_message == "401 Unauthorized"


# --------------------------------------------------------------------------- generic packages


def test_upload_then_download_roundtrip(fake: FakeGitLab, project: Project) -> None:
    uploaded = project.generic_packages.upload("rec", "1.0.0", "r.json", data=b'{"a":1}')

    assert uploaded.message == "201 Created"
    assert fake.requests[-1].status == 201
    assert project.generic_packages.download("rec", "1.0.0", "r.json") == b'{"a":1}'


def test_duplicate_upload_keeps_both_files_and_serves_newest(fake: FakeGitLab, project: Project) -> None:
    project.generic_packages.upload("rec", "1.0.0", "r.json", data=b"old")
    project.generic_packages.upload("rec", "1.0.0", "r.json", data=b"new")

    assert fake.file_count(PROJECT, "rec", "1.0.0", "r.json") == 2
    assert project.generic_packages.download("rec", "1.0.0", "r.json") == b"new"
    [package] = project.packages.list(get_all=True, package_type="generic")
    files = package.package_files.list(get_all=True)
    assert [f.file_name for f in files] == ["r.json", "r.json"]
    assert files[0].id != files[1].id
    assert [f.size for f in files] == [3, 3]


def test_duplicate_upload_rejected_when_project_disallows_duplicates(
    fake: FakeGitLab, project: Project
) -> None:
    fake.configure_project(PROJECT, allow_duplicates=False)
    project.generic_packages.upload("rec", "1.0.0", "r.json", data=b"first")

    with pytest.raises(gitlab.GitlabUploadError) as err:
        project.generic_packages.upload("rec", "1.0.0", "r.json", data=b"second")

    assert err.value.response_code == 400
    assert err.value.error_message == "400 Bad request - Duplicate package is not allowed"
    # Another file name in the same package is no duplicate.
    project.generic_packages.upload("rec", "1.0.0", "other.json", data=b"x")
    assert fake.file_count(PROJECT, "rec", "1.0.0", "r.json") == 1
    assert project.generic_packages.download("rec", "1.0.0", "r.json") == b"first"


@pytest.mark.parametrize(
    ("allow", "regex", "expected_status"),
    [
        (False, r".*ec", 201),  # the exception regex allows duplicates of matching names
        (False, r"zzz", 400),
        (True, r"1\.0\..*", 400),  # when allowed, the regex lists what may NOT be duplicated
        (True, r"zzz", 201),
    ],
)
def test_duplicate_exception_regex_flips_the_setting(
    http: httpx.Client, fake: FakeGitLab, allow: bool, regex: str, expected_status: int
) -> None:
    fake.configure_project(PROJECT, allow_duplicates=allow, duplicate_exception_regex=regex)
    headers = {"PRIVATE-TOKEN": TOKEN}
    assert (
        http.put(generic_url(fake, "rec", "1.0.0", "r.json"), content=b"1", headers=headers).status_code
        == 201
    )

    response = http.put(generic_url(fake, "rec", "1.0.0", "r.json"), content=b"2", headers=headers)

    assert response.status_code == expected_status


def test_select_package_file_returns_the_new_file_record(fake: FakeGitLab, project: Project) -> None:
    uploaded = project.generic_packages.upload("rec", "2.0", "r.json", data=b"hello", select="package_file")

    assert fake.requests[-1].status == 200  # `present` on a PUT answers 200, not 201
    [package] = fake.packages(PROJECT)
    assert uploaded.id == package.files[0].id
    assert uploaded.package_id == package.id
    assert uploaded.file_name == "r.json"
    assert uploaded.size == 5
    assert uploaded.file_sha256 == package.files[0].sha256
    assert uploaded.created_at.endswith("Z")


def test_download_sends_octet_stream_and_checksum(
    http: httpx.Client, fake: FakeGitLab, project: Project
) -> None:
    project.generic_packages.upload("rec", "1", "r.json", data=b"abc")

    response = http.get(generic_url(fake, "rec", "1", "r.json"), headers={"PRIVATE-TOKEN": TOKEN})

    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-checksum-sha256"] == fake.packages(PROJECT)[0].files[0].sha256


def test_download_of_missing_file_is_get_error_404(project: Project) -> None:
    project.generic_packages.upload("rec", "1", "r.json", data=b"abc")

    for version, file_name in (("2", "r.json"), ("1", "other.json")):
        with pytest.raises(gitlab.GitlabGetError) as err:
            project.generic_packages.download("rec", version, file_name)
        assert err.value.response_code == 404


@pytest.mark.parametrize(
    ("name", "version", "file_name", "error"),
    [
        ("my%20pkg", "1.0", "r.json", "package_name is invalid"),
        ("rec", "1..0", "r.json", "package_version is invalid"),
        ("rec", "..1", "r.json", "package_version is invalid"),
        ("rec", "1.0", "r%20x.json", "file_name is invalid"),
        ("%2E%2E", "1.0", "r.json", "package_name should be a valid file path"),
        ("rec", "1.0", "%2E", "file_name should be a valid file path"),
        ("a%24", "1%2F0", "r.json", "package_name is invalid, package_version is invalid"),
    ],
)
def test_invalid_generic_parameters_answer_400(
    http: httpx.Client, fake: FakeGitLab, name: str, version: str, file_name: str, error: str
) -> None:
    response = http.put(
        generic_url(fake, name, version, file_name), content=b"x", headers={"PRIVATE-TOKEN": TOKEN}
    )

    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert fake.packages(PROJECT) == []


def test_invalid_name_is_upload_error_in_python_gitlab(project: Project) -> None:
    with pytest.raises(gitlab.GitlabUploadError) as err:
        project.generic_packages.upload("rec", "1..0", "r.json", data=b"x")

    assert err.value.response_code == 400
    assert err.value.error_message == "package_version is invalid"


def test_hidden_packages_are_listed_only_on_request(
    http: httpx.Client, fake: FakeGitLab, project: Project
) -> None:
    put = http.put(
        generic_url(fake, "secret", "1", "r.json"),
        params={"status": "hidden"},
        content=b"x",
        headers={"PRIVATE-TOKEN": TOKEN},
    )
    assert put.status_code == 201
    project.generic_packages.upload("visible", "1", "r.json", data=b"y")

    assert [p.name for p in project.packages.list(get_all=True)] == ["visible"]
    assert [p.name for p in project.packages.list(get_all=True, status="hidden")] == ["secret"]
    assert project.generic_packages.download("secret", "1", "r.json") == b"x"


# --------------------------------------------------------------------------- Packages API


def upload_many(http: httpx.Client, fake: FakeGitLab, count: int, name: str = "rec") -> None:
    for i in range(count):
        url = generic_url(fake, name, f"1.0.{i}", "r.json")
        response = http.put(url, content=str(i).encode(), headers={"PRIVATE-TOKEN": TOKEN})
        assert response.status_code == 201


def test_get_all_walks_every_page(http: httpx.Client, fake: FakeGitLab, project: Project) -> None:
    upload_many(http, fake, 23)
    fake.reset_requests()

    packages = project.packages.list(get_all=True, package_type="generic", per_page=7)

    assert sorted(p.version for p in packages) == sorted(f"1.0.{i}" for i in range(23))
    assert len({p.id for p in packages}) == 23
    assert fake.request_count("GET", r"/packages$") == 4  # 7 + 7 + 7 + 2, then stop


def test_iterator_reports_gitlab_totals(http: httpx.Client, fake: FakeGitLab, project: Project) -> None:
    upload_many(http, fake, 12)

    listing = project.packages.list(iterator=True, per_page=5, order_by="version", sort="desc")

    assert (listing.total, listing.total_pages, listing.per_page) == (12, 3, 5)
    assert listing.current_page == 1
    assert listing.next_page == 2
    versions = [p.version for p in listing]
    assert versions == sorted((f"1.0.{i}" for i in range(12)), reverse=True)


def test_pagination_headers_match_gitlab(http: httpx.Client, fake: FakeGitLab) -> None:
    upload_many(http, fake, 5)
    url = f"{fake.url}{API}/projects/1/packages"

    response = http.get(
        url, params={"per_page": 2, "page": 2, "package_type": "generic"}, headers={"PRIVATE-TOKEN": TOKEN}
    )

    h = response.headers
    assert (h["x-page"], h["x-per-page"], h["x-prev-page"], h["x-next-page"]) == ("2", "2", "1", "3")
    assert (h["x-total"], h["x-total-pages"]) == ("5", "3")
    links = {
        link["rel"]: link["url"] for link in httpx.Response(200, headers={"link": h["link"]}).links.values()
    }
    assert set(links) == {"prev", "next", "first", "last"}
    assert links["next"] == f"{url}?package_type=generic&page=3&per_page=2"
    assert links["last"].endswith("page=3&per_page=2")
    assert h["link"].index('rel="prev"') < h["link"].index('rel="next"') < h["link"].index('rel="first"')

    last = http.get(url, params={"per_page": 2, "page": 3}, headers={"PRIVATE-TOKEN": TOKEN}).headers
    assert last["x-next-page"] == ""
    assert 'rel="next"' not in last["link"]


def test_pagination_clamps_per_page_and_reports_one_page_when_empty(
    http: httpx.Client, fake: FakeGitLab
) -> None:
    url = f"{fake.url}{API}/projects/1/packages"

    empty = http.get(url, headers={"PRIVATE-TOKEN": TOKEN})
    big = http.get(url, params={"per_page": 1000}, headers={"PRIVATE-TOKEN": TOKEN})
    bad = http.get(url, params={"page": "x"}, headers={"PRIVATE-TOKEN": TOKEN})

    assert empty.json() == []
    assert (empty.headers["x-per-page"], empty.headers["x-total"], empty.headers["x-total-pages"]) == (
        "20",
        "0",
        "1",
    )
    assert big.headers["x-per-page"] == "100"
    assert bad.status_code == 400
    assert bad.json() == {"error": "page is invalid"}


def test_list_filters_by_fuzzy_name_and_exact_version(fake: FakeGitLab, project: Project) -> None:
    for name in ("app-records", "APP-other", "unrelated"):
        project.generic_packages.upload(name, "1.0", "r.json", data=b"x")
    project.generic_packages.upload("app-records", "2.0", "r.json", data=b"x")

    fuzzy = project.packages.list(get_all=True, package_name="app", order_by="name")
    exact = project.packages.list(get_all=True, package_name="app-records", package_version="2.0")

    assert [(p.name, p.version) for p in fuzzy] == [
        ("APP-other", "1.0"),
        ("app-records", "1.0"),
        ("app-records", "2.0"),
    ]
    assert [(p.name, p.version) for p in exact] == [("app-records", "2.0")]


def test_list_rejects_unknown_filter_values(http: httpx.Client, fake: FakeGitLab) -> None:
    response = http.get(
        f"{fake.url}{API}/projects/1/packages",
        params={"package_type": "rpmx", "order_by": "size", "sort": "up"},
        headers={"PRIVATE-TOKEN": TOKEN},
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "package_type does not have a valid value, order_by does not have a valid value, "
        "sort does not have a valid value"
    }


def test_package_json_has_documented_fields(http: httpx.Client, fake: FakeGitLab, project: Project) -> None:
    project.generic_packages.upload("rec", "1.0", "r.json", data=b"x")

    [listed] = http.get(f"{fake.url}{API}/projects/1/packages", headers={"PRIVATE-TOKEN": TOKEN}).json()
    [as_dev] = http.get(f"{fake.url}{API}/projects/1/packages", headers={"PRIVATE-TOKEN": DEV_TOKEN}).json()

    assert {"id", "name", "version", "package_type", "status", "_links", "created_at"} <= set(listed)
    assert listed["package_type"] == "generic"
    assert listed["status"] == "default"
    assert listed["_links"]["web_path"] == f"/{PROJECT}/-/packages/{listed['id']}"
    assert listed["_links"]["delete_api_path"] == f"{fake.url}{API}/projects/1/packages/{listed['id']}"
    # "Only available if the request user has permission to do so."
    assert "delete_api_path" not in as_dev["_links"]


def test_package_files_delete_and_package_delete(fake: FakeGitLab, project: Project) -> None:
    project.generic_packages.upload("rec", "1.0", "a.json", data=b"a")
    project.generic_packages.upload("rec", "1.0", "b.json", data=b"b")
    project.generic_packages.upload("other", "1.0", "c.json", data=b"c")
    rec, other = sorted(project.packages.list(get_all=True), key=lambda p: p.name, reverse=True)
    package = project.packages.get(rec.id)

    files = package.package_files.list(get_all=True)
    package.package_files.delete(files[0].id)

    assert [f.file_name for f in package.package_files.list(get_all=True)] == ["b.json"]
    # The last file takes its package with it.
    files[1].delete()
    with pytest.raises(gitlab.GitlabGetError) as err:
        project.packages.get(rec.id)
    assert err.value.response_code == 404
    assert err.value.error_message == "404 Not found"
    # Deleting the package deletes every file.
    other.delete()
    assert project.packages.list(get_all=True) == []
    assert fake.packages(PROJECT) == []


def test_get_package_lists_sibling_versions(project: Project) -> None:
    project.generic_packages.upload("rec", "1.0", "r.json", data=b"a")
    project.generic_packages.upload("rec", "2.0", "r.json", data=b"b")
    first = project.packages.list(get_all=True, package_version="1.0")[0]

    package = project.packages.get(first.id)

    assert [v["version"] for v in package.versions] == ["2.0"]


# --------------------------------------------------------------------------- permissions and auth


def test_errors_surface_as_python_gitlab_exceptions(fake: FakeGitLab, project: Project) -> None:
    project.generic_packages.upload("rec", "1.0", "r.json", data=b"x")
    package_id = fake.packages(PROJECT)[0].id

    with gitlab.Gitlab(fake.url, private_token=OUTSIDER_TOKEN) as outsider:
        with pytest.raises(gitlab.GitlabGetError) as hidden:
            outsider.projects.get(PROJECT)
        with pytest.raises(gitlab.GitlabListError) as hidden_list:
            outsider.projects.get(PROJECT, lazy=True).packages.list(get_all=True)
    with (
        gitlab.Gitlab(fake.url, private_token=REPORTER_TOKEN) as reporter,
        pytest.raises(gitlab.GitlabUploadError) as forbidden,
    ):
        reporter.projects.get(1, lazy=True).generic_packages.upload("rec", "1.0", "r.json", data=b"y")
    with gitlab.Gitlab(fake.url, private_token=READ_API_TOKEN) as reader:
        assert reader.projects.get(1, lazy=True).generic_packages.download("rec", "1.0", "r.json") == b"x"
        with pytest.raises(gitlab.GitlabUploadError) as scope:
            reader.projects.get(1, lazy=True).generic_packages.upload("rec", "1.0", "r.json", data=b"y")
    with (
        gitlab.Gitlab(fake.url, private_token=DEV_TOKEN) as developer,
        pytest.raises(gitlab.GitlabDeleteError) as cannot_delete,
    ):
        developer.projects.get(1, lazy=True).packages.delete(package_id)

    assert (hidden.value.response_code, hidden.value.error_message) == (404, "404 Project Not Found")
    assert (hidden_list.value.response_code, hidden_list.value.error_message) == (
        404,
        "404 Project Not Found",
    )
    assert (forbidden.value.response_code, forbidden.value.error_message) == (403, "403 Forbidden")
    # A read_api token writing: GitLab's OAuth-style answer, surfaced through its "error" key.
    assert (scope.value.response_code, scope.value.error_message) == (403, "insufficient_scope")
    assert cannot_delete.value.response_code == 403
    assert fake.file_count(PROJECT, "rec", "1.0", "r.json") == 1


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "headers",
    [
        {"PRIVATE-TOKEN": TOKEN},
        {"Authorization": f"Bearer {TOKEN}"},
        {"JOB-TOKEN": JOB_TOKEN},
        {"Authorization": basic("anything-goes", TOKEN)},
        {"Authorization": basic("gitlab-ci-token", JOB_TOKEN)},
    ],
    ids=["private-token", "bearer", "job-token", "basic-pat", "basic-job-token"],
)
def test_generic_endpoints_accept_every_documented_carrier(
    http: httpx.Client, fake: FakeGitLab, headers: dict[str, str]
) -> None:
    put = http.put(generic_url(fake, "rec", "1", "r.json"), content=b"x", headers=headers)
    get = http.get(generic_url(fake, "rec", "1", "r.json"), headers=headers)

    assert (put.status_code, get.status_code) == (201, 200)


def test_auth_failures_follow_gitlab(http: httpx.Client, fake: FakeGitLab) -> None:
    url = generic_url(fake, "rec", "1", "r.json")
    http.put(url, content=b"x", headers={"PRIVATE-TOKEN": TOKEN}).raise_for_status()
    user = f"{fake.url}{API}/user"
    packages = f"{fake.url}{API}/projects/1/packages"

    cases = {
        "anonymous write": http.put(url, content=b"x"),
        "anonymous generic read of private project": http.get(url),
        "anonymous package list of private project": http.get(packages),
        "unknown token": http.get(url, headers={"PRIVATE-TOKEN": "nope"}),
        "job token as private token": http.get(url, headers={"PRIVATE-TOKEN": JOB_TOKEN}),
        "unknown basic password is ignored": http.get(url, headers={"Authorization": basic("u", "nope")}),
        "basic on /user": http.get(user, headers={"Authorization": basic("u", TOKEN)}),
        "job token on /user": http.get(user, headers={"JOB-TOKEN": JOB_TOKEN}),
    }

    statuses = {name: (r.status_code, r.json()) for name, r in cases.items()}
    assert statuses == {
        "anonymous write": (401, {"message": "401 Unauthorized"}),
        "anonymous generic read of private project": (401, {"message": "401 Unauthorized"}),
        "anonymous package list of private project": (404, {"message": "404 Project Not Found"}),
        "unknown token": (401, {"message": "401 Unauthorized"}),
        "job token as private token": (401, {"message": "401 Unauthorized"}),
        "unknown basic password is ignored": (401, {"message": "401 Unauthorized"}),
        "basic on /user": (401, {"message": "401 Unauthorized"}),
        "job token on /user": (401, {"message": "401 Unauthorized"}),
    }


def test_public_projects_are_readable_but_not_writable_by_non_members(
    http: httpx.Client, fake: FakeGitLab
) -> None:
    fake.add_project("group/public", visibility="public")
    fake.add_project("group/private-member", members={"outsider": GUEST})
    url = generic_url(fake, "rec", "1", "r.json", project="group%2Fpublic")
    http.put(url, content=b"x", headers={"PRIVATE-TOKEN": TOKEN}).raise_for_status()

    anonymous_read = http.get(url)
    bad_basic_read = http.get(url, headers={"Authorization": basic("u", "wrong")})
    outsider_write = http.put(url, content=b"y", headers={"PRIVATE-TOKEN": OUTSIDER_TOKEN})
    guest_write = http.put(
        generic_url(fake, "rec", "1", "r.json", project="group%2Fprivate-member"),
        content=b"y",
        headers={"PRIVATE-TOKEN": OUTSIDER_TOKEN},
    )

    assert (anonymous_read.status_code, anonymous_read.content) == (200, b"x")
    assert bad_basic_read.status_code == 200
    assert outsider_write.status_code == 403
    assert guest_write.status_code == 403


def test_project_addressable_by_id_and_encoded_path(fake: FakeGitLab, gl: gitlab.Gitlab) -> None:
    by_path = gl.projects.get(PROJECT)
    by_id = gl.projects.get(by_path.id)
    by_path.generic_packages.upload("rec", "1", "r.json", data=b"x")

    assert by_id.path_with_namespace == PROJECT
    assert [p.id for p in by_id.packages.list(get_all=True)] == [
        p.id for p in by_path.packages.list(get_all=True)
    ]
    assert fake.requests[0].path == f"{API}/projects/group%2Fapp"  # python-gitlab encodes the slash


def test_unknown_route_answers_grape_404(http: httpx.Client, fake: FakeGitLab) -> None:
    response = http.get(f"{fake.url}{API}/projects/1/nothing-here", headers={"PRIVATE-TOKEN": TOKEN})

    assert (response.status_code, response.json()) == (404, {"error": "404 Not Found"})


# --------------------------------------------------------------------------- a second client


async def test_gidgetlab_getiter_follows_gitlab_pagination(http: httpx.Client, fake: FakeGitLab) -> None:
    upload_many(http, fake, 11)
    async with httpx.AsyncClient(verify=TLS) as client:
        api = gidgetlab.httpx.GitLabAPI(client, "imglife-tests", access_token=TOKEN, url=fake.url)

        user = await api.getitem("/user")
        versions = [
            p["version"] async for p in api.getiter("/projects/group%2Fapp/packages", {"per_page": "4"})
        ]

    assert user["username"] == "bot"
    assert sorted(versions) == sorted(f"1.0.{i}" for i in range(11))
    assert fake.request_count("GET", r"/packages$") == 3


# --------------------------------------------------------------------------- server mechanics


def test_fail_next_answers_before_the_handler_then_recovers(fake: FakeGitLab, project: Project) -> None:
    rule = fake.fail_next("PUT", r"/packages/generic/", 503)

    with pytest.raises(gitlab.GitlabUploadError) as err:
        project.generic_packages.upload("rec", "1", "r.json", data=b"x")
    project.generic_packages.upload("rec", "1", "r.json", data=b"x")

    assert err.value.response_code == 503
    assert err.value.error_message == "503 Service Unavailable"
    assert rule.hits == 1
    assert fake.file_count(PROJECT, "rec", "1", "r.json") == 1  # the faulted PUT stored nothing
    assert [(r.status, r.faulted) for r in fake.requests] == [(503, True), (201, False)]


def test_fail_next_with_custom_body_and_repeat_count(http: httpx.Client, fake: FakeGitLab) -> None:
    fake.fail_next("GET|HEAD", r"/packages$", 500, times=2, body={"message": "boom"})
    url = f"{fake.url}{API}/projects/1/packages"

    statuses = [http.get(url, headers={"PRIVATE-TOKEN": TOKEN}) for _ in range(3)]

    assert [r.status_code for r in statuses] == [500, 500, 200]
    assert statuses[0].json() == {"message": "boom"}


def test_latency_delays_every_response(http: httpx.Client, fake: FakeGitLab) -> None:
    fake.latency = 0.2
    started = time.monotonic()
    http.get(f"{fake.url}{API}/user", headers={"PRIVATE-TOKEN": TOKEN})
    assert time.monotonic() - started >= 0.2


def test_requests_are_recorded_with_lowercase_headers(fake: FakeGitLab, project: Project) -> None:
    project.generic_packages.upload("rec", "1", "r.json", data=b"12345")

    [recorded] = fake.requests
    assert recorded.method == "PUT"
    assert recorded.path == f"{API}/projects/group%2Fapp/packages/generic/rec/1/r.json"
    assert recorded.headers["private-token"] == TOKEN
    assert recorded.body_size == 5


def test_concurrent_uploads_from_threads_all_land(http: httpx.Client, fake: FakeGitLab) -> None:
    def upload(i: int) -> int:
        url = generic_url(fake, "rec", "1", "r.json")
        return http.put(url, content=str(i).encode(), headers={"PRIVATE-TOKEN": TOKEN}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(upload, range(40)))

    assert statuses == [201] * 40
    [package] = fake.packages(PROJECT)  # one package, never two racing ones
    assert len({f.id for f in package.files}) == 40


def test_stop_closes_the_port(http: httpx.Client) -> None:
    with FakeGitLab() as server:
        port = server.port
        assert http.get(f"{server.url}{API}/user").status_code == 401

    with pytest.raises(RuntimeError):
        _ = server.url
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


# --------------------------------------------------------------------------- webhook-bot API areas

SHA = "a" * 40
MR_IID = 7
ISSUE_IID = 3


@pytest.fixture
def bot_fake(fake: FakeGitLab) -> FakeGitLab:
    """The shared fake plus an MR, an issue and repository files, as the bot would find them."""
    fake.add_merge_request(PROJECT, MR_IID, "feature", SHA)
    fake.add_issue(PROJECT, ISSUE_IID)
    fake.add_file(PROJECT, "main", ".imglife.yml", "images: []\n")
    fake.add_file(PROJECT, SHA, "docker/Dockerfile", b"FROM alpine:3.20\n")
    return fake


def test_status_state_machine_through_python_gitlab(bot_fake: FakeGitLab, project: Project) -> None:
    commit = project.commits.get(SHA, lazy=True)
    created = commit.statuses.create({"state": "pending", "name": "imglife", "ref": "feature"})
    assert (created.status, created.name, created.ref, created.sha) == ("pending", "imglife", "feature", SHA)
    with pytest.raises(gitlab.GitlabCreateError) as err:
        commit.statuses.create({"state": "pending", "name": "imglife", "ref": "feature"})
    assert err.value.response_code == 400
    assert "Cannot transition status via :enqueue from :pending" in str(err.value.error_message)
    running = commit.statuses.create({"state": "running", "name": "imglife", "ref": "feature"})
    assert (running.id, running.status) == (created.id, "running")
    with pytest.raises(gitlab.GitlabCreateError, match="via :run from :running"):
        commit.statuses.create({"state": "running", "name": "imglife", "ref": "feature"})
    done = commit.statuses.create(
        {"state": "success", "name": "imglife", "ref": "feature", "target_url": "https://ci/1"}
    )
    assert (done.id, done.status, done.target_url) == (created.id, "success", "https://ci/1")
    # A finished status is not reused: pending again starts a new row and retries the old one.
    again = commit.statuses.create({"state": "pending", "name": "imglife", "ref": "feature"})
    assert again.id != created.id
    assert [s.status for s in commit.statuses.list()] == ["pending"]
    # python-gitlab reads `all=` as "every page"; the API flag goes through query_parameters.
    every = commit.statuses.list(query_parameters={"all": "true"})
    assert [s.status for s in every] == ["success", "pending"]


def test_status_defaults_filters_and_permissions(
    bot_fake: FakeGitLab, project: Project, http: httpx.Client
) -> None:
    commit = project.commits.get(SHA, lazy=True)
    plain = commit.statuses.create({"state": "failed"})
    assert (plain.name, plain.ref) == ("default", "main")
    commit.statuses.create({"state": "canceled", "context": "other", "ref": "feature"})
    assert [s.name for s in commit.statuses.list(ref="feature")] == ["other"]
    assert [s.name for s in commit.statuses.list(name="default")] == ["default"]
    url = f"{bot_fake.url}{API}/projects/1/statuses/{SHA}"
    reporter = http.post(url, headers={"PRIVATE-TOKEN": REPORTER_TOKEN}, data={"state": "pending"})
    assert (reporter.status_code, reporter.json()) == (403, {"message": "403 Forbidden"})
    bad = http.post(url, headers={"PRIVATE-TOKEN": DEV_TOKEN}, data={"state": "skipped"})
    assert (bad.status_code, bad.json()) == (400, {"error": "state does not have a valid value"})
    unknown = http.post(
        url.replace(SHA, "nope"), headers={"PRIVATE-TOKEN": DEV_TOKEN}, data={"state": "pending"}
    )
    assert (unknown.status_code, unknown.json()) == (404, {"message": "404 Commit Not Found"})
    ok = http.post(url, headers={"PRIVATE-TOKEN": DEV_TOKEN}, params={"state": "running", "name": "q"})
    assert ok.status_code == 201
    assert ok.json()["started_at"] is not None


def test_mr_notes_create_list_update_and_award(bot_fake: FakeGitLab, project: Project) -> None:
    bot_id = bot_fake.add_user("bot").id
    user_note = bot_fake.add_note(PROJECT, "merge_requests", MR_IID, "/imglife check", author="alice")
    mr = project.mergerequests.get(MR_IID, lazy=True)
    mine = mr.notes.create({"body": "<!-- imglife -->\nfirst"})
    assert (mine.author["id"], mine.noteable_type, mine.noteable_iid) == (bot_id, "MergeRequest", MR_IID)
    assert mine.system is False
    listed = mr.notes.list(sort="asc", order_by="created_at")
    assert [n.id for n in listed] == [user_note.id, mine.id]
    assert [n.id for n in mr.notes.list()] == [mine.id, user_note.id]  # default: newest first
    mine.body = "<!-- imglife -->\nsecond"
    mine.save()
    assert bot_fake.notes(PROJECT, "merge_requests", MR_IID)[1].body.endswith("second")
    theirs = mr.notes.get(user_note.id)
    theirs.body = "hijacked"
    with pytest.raises(gitlab.GitlabUpdateError) as err:
        theirs.save()
    assert err.value.response_code == 403
    assert bot_fake.notes(PROJECT, "merge_requests", MR_IID)[0].body == "/imglife check"
    award = theirs.awardemojis.create({"name": "eyes"})
    assert (award.name, award.awardable_type, award.awardable_id) == ("eyes", "Note", user_note.id)
    with pytest.raises(gitlab.GitlabCreateError) as dup:
        theirs.awardemojis.create({"name": "eyes"})
    assert dup.value.response_code == 404
    assert [a.name for a in theirs.awardemojis.list()] == ["eyes"]


def test_issue_notes_paginate_and_unknown_noteables_404(
    bot_fake: FakeGitLab, project: Project, http: httpx.Client
) -> None:
    issue = project.issues.get(ISSUE_IID, lazy=True)
    for i in range(3):
        issue.notes.create({"body": f"n{i}"})
    page = http.get(
        f"{bot_fake.url}{API}/projects/1/issues/{ISSUE_IID}/notes",
        headers={"PRIVATE-TOKEN": TOKEN},
        params={"per_page": 2, "sort": "asc"},
    )
    assert [n["body"] for n in page.json()] == ["n0", "n1"]
    assert (page.headers["X-Total"], page.headers["X-Next-Page"]) == ("3", "2")
    assert [n.body for n in issue.notes.list(get_all=True, sort="asc")] == ["n0", "n1", "n2"]
    assert page.json()[0]["noteable_type"] == "Issue"
    with pytest.raises(gitlab.GitlabCreateError, match="404 Merge Request Not Found"):
        project.mergerequests.get(99, lazy=True).notes.create({"body": "x"})
    with pytest.raises(gitlab.GitlabGetError, match="404 Not found"):
        issue.notes.get(12345)


def test_members_all_and_raw_files(bot_fake: FakeGitLab, project: Project, gl: gitlab.Gitlab) -> None:
    bot_fake.set_member(PROJECT, "alice", DEVELOPER)
    alice = bot_fake.add_user("alice")
    member = project.members_all.get(alice.id)
    assert (member.username, member.access_level) == ("alice", DEVELOPER)
    dev = project.members_all.get(bot_fake.add_user("dev").id)  # role through its token
    assert dev.access_level == DEVELOPER
    stranger = bot_fake.add_user("stranger")
    with pytest.raises(gitlab.GitlabGetError, match="404 Member Not Found"):
        project.members_all.get(stranger.id)
    assert project.files.raw(".imglife.yml", ref="main") == b"images: []\n"
    assert project.files.raw("docker/Dockerfile", ref=SHA) == b"FROM alpine:3.20\n"
    with pytest.raises(gitlab.GitlabGetError, match="404 File Not Found"):
        project.files.raw("docker/Dockerfile", ref="main")
    info = gl.projects.get(PROJECT)
    assert (info.default_branch, info.path_with_namespace) == ("main", PROJECT)
    assert bot_fake.request_count("GET", r"/repository/files/docker%2FDockerfile/raw") == 2


# --------------------------------------------------------------------------- tree, tags, merge requests

# What `git ls-tree` reports for the bot_fake files plus those added below (computed with git).
DOCKER_TREE_ID = "1dad956d972356742a4dcfc0bd84bdd7282219f2"
GIT_IDS = {
    "Dockerfile": "abf8b7c7b8728eafe93fe4fe366bf7faacbe275c",
    "base": "50ed187f85545617211b009eafafbfe34b71a86f",
    "link": "1d1fe94df492104ae6b144c08727a0fa8f15ab86",
    "run.sh": "587be6b4c3f93f93c489c0111bba5596147a26cb",
}


def add_docker_directory(fake: FakeGitLab, ref: str = SHA) -> None:
    """docker/{Dockerfile (from bot_fake), base/Dockerfile, run.sh (executable), link (symlink)}."""
    fake.add_file(PROJECT, ref, "docker/base/Dockerfile", b"FROM debian:12\n")
    fake.add_file(PROJECT, ref, "docker/run.sh", b"x\n", mode="100755")
    fake.add_file(PROJECT, ref, "docker/link", b"Dockerfile", mode="120000")


def test_repository_tree_lists_one_directory_with_git_ids(bot_fake: FakeGitLab, project: Project) -> None:
    add_docker_directory(bot_fake)
    tree = project.repository_tree(path="docker", ref=SHA, get_all=True)
    assert isinstance(tree, list)
    # Trees first (GitLab asks Gitaly for TREES_FIRST), then blobs; symlinks are blobs too.
    assert [(e["type"], e["path"], e["mode"]) for e in tree] == [
        ("tree", "docker/base", "040000"),
        ("blob", "docker/Dockerfile", "100644"),
        ("blob", "docker/link", "120000"),
        ("blob", "docker/run.sh", "100755"),
    ]
    assert all(set(e) == {"id", "name", "type", "path", "mode"} for e in tree)
    assert {e["name"]: e["id"] for e in tree} == GIT_IDS
    root = project.repository_tree(ref=SHA, get_all=True)
    assert [(e["name"], e["type"], e["id"]) for e in root] == [("docker", "tree", DOCKER_TREE_ID)]
    # No ref: the default branch.
    assert [e["path"] for e in project.repository_tree(get_all=True)] == [".imglife.yml"]


def test_repository_tree_paginates_like_other_lists(
    bot_fake: FakeGitLab, project: Project, http: httpx.Client
) -> None:
    for i in range(25):
        bot_fake.add_file(PROJECT, "main", f"many/{i:02d}.txt", str(i))
    first = http.get(
        f"{bot_fake.url}{API}/projects/1/repository/tree",
        headers={"PRIVATE-TOKEN": TOKEN},
        params={"path": "many", "per_page": 10},
    )
    assert [e["name"] for e in first.json()] == [f"{i:02d}.txt" for i in range(10)]
    assert (first.headers["X-Total"], first.headers["X-Total-Pages"], first.headers["X-Next-Page"]) == (
        "25",
        "3",
        "2",
    )
    walked = project.repository_tree(path="many", per_page=10, get_all=True)
    assert len(walked) == 25
    assert bot_fake.request_count("GET", r"/repository/tree") == 4


def test_repository_tree_errors_follow_the_request_spec(
    bot_fake: FakeGitLab, project: Project, http: httpx.Client
) -> None:
    cases = [
        ({"path": "nope", "ref": SHA}, "404 invalid revision or path Not Found"),
        ({"path": "docker", "ref": "no-such-branch"}, "404 Tree Not Found"),
        ({"path": "docker/Dockerfile", "ref": SHA}, "404 path not treeish Not Found"),
    ]
    for params, message in cases:
        with pytest.raises(gitlab.GitlabGetError) as err:
            project.repository_tree(**params)
        assert (err.value.response_code, err.value.error_message) == (404, message)
    bot_fake.add_token("glpat-guest", "guest", role=GUEST)
    guest = http.get(
        f"{bot_fake.url}{API}/projects/1/repository/tree", headers={"PRIVATE-TOKEN": "glpat-guest"}
    )
    assert (guest.status_code, guest.json()) == (403, {"message": "403 Forbidden"})


def test_tags_through_python_gitlab(bot_fake: FakeGitLab, project: Project) -> None:
    bot_fake.add_tag(PROJECT, "v1.0", SHA)
    annotated = bot_fake.add_tag(PROJECT, "release/2.0", "c" * 40, message="Release 2.0")
    light = project.tags.get("v1.0")
    assert (light.name, light.target, light.commit["id"], light.message) == ("v1.0", SHA, SHA, None)
    assert light.created_at is None
    release = project.tags.get("release/2.0")
    assert release.commit["id"] == "c" * 40
    assert release.target == annotated.target != "c" * 40  # the tag object, not the commit
    assert (release.message, release.protected) == ("Release 2.0", False)
    # python-gitlab sends the name as one segment, as GitLab's route requires.
    assert bot_fake.request_count("GET", r"/repository/tags/release%2F2\.0$") == 1
    with pytest.raises(gitlab.GitlabGetError) as err:
        project.tags.get("v9")
    assert (err.value.response_code, err.value.error_message) == (404, "404 Tag Not Found")
    # A tag reads the files of its commit.
    assert [e["path"] for e in project.repository_tree(path="docker", ref="v1.0")] == ["docker/Dockerfile"]
    assert project.files.raw("docker/Dockerfile", ref="v1.0") == b"FROM alpine:3.20\n"


def test_merge_request_carries_its_head_sha(bot_fake: FakeGitLab, project: Project) -> None:
    mr = project.mergerequests.get(MR_IID)
    assert (mr.iid, mr.sha, mr.source_branch, mr.target_branch, mr.state) == (
        MR_IID,
        SHA,
        "feature",
        "main",
        "opened",
    )
    assert mr.references["full"] == f"{PROJECT}!{MR_IID}"
    with bot_fake.lock:  # a push to the source branch
        bot_fake.project(PROJECT).merge_requests[MR_IID].sha = "d" * 40
    assert project.mergerequests.get(MR_IID).sha == "d" * 40
    with pytest.raises(gitlab.GitlabGetError) as err:
        project.mergerequests.get(ISSUE_IID)  # issues and MRs count separately
    assert (err.value.response_code, err.value.error_message) == (404, "404 Not found")
