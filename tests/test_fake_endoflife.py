"""FakeEndOfLife against endoflife.date's documented API shapes (v0 and v1).

The v0 cycle shape comes from the v0 OpenAPI description (``assets/openapi.yml`` upstream) and
real responses; the v1 envelope from ``api_v1/openapi.yml``. The default data set is also run
through imglife's own parser and status rule, so "warning" here means "warning" to the bot.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from bot.lifecycle.eoldata import EolStatus, eol_status, parse_cycle
from tests.fakes.endoflife import (
    DEFAULT_CYCLES,
    EOL,
    EOL_TRUE,
    NO_EOL,
    OK,
    SCHEMA_VERSION,
    STATES,
    WARNING,
    FakeEndOfLife,
    default_cycle,
)

TODAY = date(2026, 3, 1)
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
IMGLIFE_CRITICAL_DAYS = 30  # bot/lifecycle/eoldata.DEFAULT_CRITICAL_DAYS
# imglife's status for each state of the default data set.
EXPECTED_STATUS = {
    NO_EOL: EolStatus.OK,
    OK: EolStatus.OK,
    WARNING: EolStatus.WARNING,
    EOL: EolStatus.EOL,
    EOL_TRUE: EolStatus.EOL,
}
# Keys a v0 cycle may carry (assets/openapi.yml plus the fields real responses add).
V0_KEYS = {
    "cycle",
    "codename",
    "releaseDate",
    "support",
    "eol",
    "extendedSupport",
    "latest",
    "latestReleaseDate",
    "lts",
    "link",
    "discontinued",
}
V1_RELEASE_REQUIRED = {
    "name",
    "codename",
    "label",
    "releaseDate",
    "isLts",
    "ltsFrom",
    "isEol",
    "eolFrom",
    "isMaintained",
    "latest",
}
V1_PRODUCT_REQUIRED = {
    "name",
    "label",
    "aliases",
    "category",
    "tags",
    "identifiers",
    "labels",
    "links",
    "releases",
}

# One TLS context for the module: httpx loads the CA bundle per client otherwise (~90 ms).
TLS = ssl.create_default_context()


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(verify=TLS) as client:
        yield client


@pytest.fixture
def fake() -> Iterator[FakeEndOfLife]:
    with FakeEndOfLife.with_defaults(today=TODAY) as server:
        yield server


def get_json(http: httpx.Client, url: str) -> Any:
    response = http.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def is_date_or_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and ISO_DATE.match(value) is not None)


# --------------------------------------------------------------------------- v0


def test_all_json_lists_the_products_sorted(fake: FakeEndOfLife, http: httpx.Client) -> None:
    names = get_json(http, f"{fake.url}/api/all.json")

    assert names == sorted(DEFAULT_CYCLES) == ["alpine", "debian", "go", "nodejs", "python", "ubuntu"]


@pytest.mark.parametrize("product", sorted(DEFAULT_CYCLES))
def test_v0_cycles_have_the_documented_fields_and_types(
    fake: FakeEndOfLife, http: httpx.Client, product: str
) -> None:
    response = http.get(f"{fake.url}/api/{product}.json")
    cycles = response.json()

    # Compact JSON plus the trailing newline Ruby's `puts` writes, CORS open like Netlify's.
    assert response.content.endswith(b"]\n")
    assert b", " not in response.content
    assert response.headers["access-control-allow-origin"] == "*"
    assert [c["cycle"] for c in cycles] == [name for name, _ in DEFAULT_CYCLES[product]]
    for cycle in cycles:
        assert set(cycle) <= V0_KEYS
        assert next(iter(cycle)) == "cycle"  # upstream merges the name in first
        assert isinstance(cycle["cycle"], str)
        assert ISO_DATE.match(cycle["releaseDate"])
        assert is_date_or_bool(cycle["eol"])
        assert isinstance(cycle["latest"], str)
        assert cycle["latest"].startswith(cycle["cycle"] + ".")
        assert ISO_DATE.match(cycle["latestReleaseDate"])
        assert is_date_or_bool(cycle["lts"])  # always present, false unless LTS
        for optional in ("support", "extendedSupport", "discontinued"):
            assert optional not in cycle or is_date_or_bool(cycle[optional])
        assert cycle.get("link") is None or cycle["link"].startswith("https://")
        assert "codename" not in cycle or isinstance(cycle["codename"], str)


def test_eol_dates_follow_today(http: httpx.Client) -> None:
    later = TODAY + timedelta(days=10)
    with FakeEndOfLife.with_defaults(today=TODAY) as now, FakeEndOfLife.with_defaults(today=later) as then:
        before = {c["cycle"]: c["eol"] for c in get_json(http, f"{now.url}/api/alpine.json")}
        after = {c["cycle"]: c["eol"] for c in get_json(http, f"{then.url}/api/alpine.json")}

    assert before["3.22"] is False
    assert before["3.18"] is True
    assert before["3.21"] == (TODAY + timedelta(days=400)).isoformat()
    assert before["3.20"] == (TODAY + timedelta(days=14)).isoformat()
    assert before["3.19"] == (TODAY - timedelta(days=45)).isoformat()
    assert after["3.20"] == (later + timedelta(days=14)).isoformat()


@pytest.mark.parametrize("product", sorted(DEFAULT_CYCLES))
def test_each_default_product_has_one_cycle_per_imglife_status(
    fake: FakeEndOfLife, http: httpx.Client, product: str
) -> None:
    cycles = {c["cycle"]: c for c in get_json(http, f"{fake.url}/api/{product}.json")}

    for state in STATES:
        name = default_cycle(product, state)
        parsed = parse_cycle(cycles[name], where=product)  # imglife's own reader
        assert eol_status(parsed, today=TODAY, critical=IMGLIFE_CRITICAL_DAYS) is EXPECTED_STATUS[state]


def test_unknown_product_is_an_html_404(fake: FakeEndOfLife, http: httpx.Client) -> None:
    response = http.get(f"{fake.url}/api/no-such-product.json")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_json_not_found_gives_the_2023_json_404(http: httpx.Client) -> None:
    with FakeEndOfLife({}, json_not_found=True) as fake:
        response = http.get(f"{fake.url}/api/nope.json")

    assert response.status_code == 404
    assert response.json() == {"message": "Product not found"}


def test_set_product_serves_cycles_verbatim(fake: FakeEndOfLife, http: httpx.Client) -> None:
    # The old v0 description shows numeric cycles (cycle: 3.9); a client must cope with them.
    fake.set_product("legacy", [{"cycle": 3.9, "releaseDate": date(2020, 10, 5), "eol": "2025-10-05"}])

    assert get_json(http, f"{fake.url}/api/legacy.json") == [
        {"cycle": 3.9, "releaseDate": "2020-10-05", "eol": "2025-10-05"}
    ]
    assert "legacy" in get_json(http, f"{fake.url}/api/all.json")

    fake.remove_product("legacy")
    assert http.get(f"{fake.url}/api/legacy.json").status_code == 404


def test_single_cycle_endpoint_omits_the_cycle_key(fake: FakeEndOfLife, http: httpx.Client) -> None:
    cycle = get_json(http, f"{fake.url}/api/python/3.13.json")

    assert "cycle" not in cycle
    assert cycle["latest"].startswith("3.13.")
    assert http.get(f"{fake.url}/api/python/2.7.json").status_code == 404


def test_serve_garbage_answers_200_with_a_non_json_body(fake: FakeEndOfLife, http: httpx.Client) -> None:
    fake.serve_garbage("alpine")

    for path in ("/api/alpine.json", "/api/v1/products/alpine/"):
        response = http.get(f"{fake.url}{path}")
        assert response.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            response.json()
    assert http.get(f"{fake.url}/api/go.json").status_code == 200  # other products unaffected

    fake.set_product("alpine", fake.cycles("alpine"))
    assert isinstance(get_json(http, f"{fake.url}/api/alpine.json"), list)


def test_serve_garbage_can_claim_json(fake: FakeEndOfLife, http: httpx.Client) -> None:
    fake.serve_garbage("go", b'[{"cycle":"1.2', content_type="application/json")

    response = http.get(f"{fake.url}/api/go.json")

    assert (response.status_code, response.headers["content-type"]) == (200, "application/json")
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_fail_next_gives_one_500_then_data(fake: FakeEndOfLife, http: httpx.Client) -> None:
    fake.fail_next("GET", r"^/api/ubuntu\.json$", 500)

    first = http.get(f"{fake.url}/api/ubuntu.json")
    second = http.get(f"{fake.url}/api/ubuntu.json")

    assert first.status_code == 500
    assert second.status_code == 200
    assert isinstance(second.json(), list)
    assert [r.faulted for r in fake.requests] == [True, False]


def test_empty_fake_has_no_products(http: httpx.Client) -> None:
    with FakeEndOfLife({}) as fake:
        assert get_json(http, f"{fake.url}/api/all.json") == []
        assert http.get(f"{fake.url}/api/alpine.json").status_code == 404


# --------------------------------------------------------------------------- v1


def test_v1_product_envelope(fake: FakeEndOfLife, http: httpx.Client) -> None:
    document = get_json(http, f"{fake.url}/api/v1/products/ubuntu/")
    no_slash = get_json(http, f"{fake.url}/api/v1/products/ubuntu")

    assert document == no_slash
    assert {"schema_version", "last_modified", "result"} <= set(document)
    assert document["schema_version"] == SCHEMA_VERSION
    assert document["last_modified"].startswith(TODAY.isoformat())  # pinned with `today`
    result = document["result"]
    assert set(result) >= V1_PRODUCT_REQUIRED
    assert result["name"] == "ubuntu"
    assert result["category"] in result["tags"]
    assert isinstance(result["labels"]["eol"], str)
    assert result["links"]["html"] == f"{fake.url}/ubuntu"


def test_v1_releases_split_date_or_bool_fields(fake: FakeEndOfLife, http: httpx.Client) -> None:
    releases = {
        r["name"]: r for r in get_json(http, f"{fake.url}/api/v1/products/ubuntu")["result"]["releases"]
    }

    for release in releases.values():
        assert set(release) >= V1_RELEASE_REQUIRED
        for flag in ("isLts", "isEol", "isMaintained", "isEoas", "isEoes"):
            assert isinstance(release[flag], bool)
        for when in ("ltsFrom", "eolFrom", "eoasFrom", "eoesFrom"):
            assert release[when] is None or ISO_DATE.match(release[when])
        assert set(release["latest"]) == {"name", "date", "link"}
    by_state = {state: releases[default_cycle("ubuntu", state)] for state in STATES}
    assert (by_state[NO_EOL]["isEol"], by_state[NO_EOL]["eolFrom"]) == (False, None)
    assert (by_state[OK]["isEol"], by_state[WARNING]["isEol"]) == (False, False)
    assert by_state[EOL]["isEol"] is True
    assert by_state[EOL]["eolFrom"] is not None
    assert (by_state[EOL_TRUE]["isEol"], by_state[EOL_TRUE]["eolFrom"]) == (True, None)
    # Ubuntu's extended support outlives EOL: the ended cycle is still maintained.
    assert by_state[EOL]["isMaintained"] is True
    assert by_state[EOL_TRUE]["isMaintained"] is False
    assert by_state[OK]["isLts"] is True
    assert by_state[OK]["label"].endswith("(LTS)")


def test_v1_optional_columns_only_where_the_product_has_them(fake: FakeEndOfLife, http: httpx.Client) -> None:
    alpine = get_json(http, f"{fake.url}/api/v1/products/alpine")["result"]

    assert alpine["labels"]["eoas"] is None
    assert alpine["labels"]["eoes"] is None
    for release in alpine["releases"]:
        assert not {"isEoas", "eoasFrom", "isEoes", "eoesFrom", "isDiscontinued"} & set(release)


def test_v1_nodejs_lts_dates(fake: FakeEndOfLife, http: httpx.Client) -> None:
    releases = get_json(http, f"{fake.url}/api/v1/products/nodejs")["result"]["releases"]

    newest, older = releases[0], releases[1]
    assert newest["isLts"] is False
    assert newest["ltsFrom"] > TODAY.isoformat()
    assert older["isLts"] is True
    assert older["ltsFrom"] < TODAY.isoformat()


def test_v1_release_and_latest(fake: FakeEndOfLife, http: httpx.Client) -> None:
    latest = get_json(http, f"{fake.url}/api/v1/products/go/releases/latest")
    named = get_json(http, f"{fake.url}/api/v1/products/go/releases/1.24/")

    assert latest["schema_version"] == SCHEMA_VERSION
    assert latest["result"]["name"] == DEFAULT_CYCLES["go"][0][0]
    assert named["result"]["name"] == "1.24"
    assert http.get(f"{fake.url}/api/v1/products/go/releases/0.1").status_code == 404


def test_v1_unknown_product_is_an_html_404(fake: FakeEndOfLife, http: httpx.Client) -> None:
    response = http.get(f"{fake.url}/api/v1/products/no-such-product/")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
