"""An in-process fake of the endoflife.date API: the legacy v0 paths imglife reads, and v1.

Shapes follow endoflife.date's own API descriptions and site generator
(``tests/fakes/README.md`` lists the sources with links). The points a client trips over:

* **v0 answers a bare JSON list** of cycles, newest first. Per cycle ``eol`` (and ``support``,
  ``extendedSupport``, ``discontinued``, ``lts``) is a ``YYYY-MM-DD`` string **or** a boolean;
  optional fields are simply absent (only ``lts`` is always there, ``false`` by default).
  ``cycle`` is a string in today's data; the v0 description still allows a number (its old
  examples show ``cycle: 3.9``), and :meth:`FakeEndOfLife.set_product` serves whatever it is given.
* **An unknown product is a 404 HTML page**, not JSON (``json_not_found=True`` gives the
  ``{"message": "Product not found"}`` JSON that endoflife.date sent from 2023 until the v1 launch).
* **v1 wraps everything** in ``{"schema_version", "generated_at", "last_modified", "result"}`` and
  splits every date-or-boolean field into ``isX``/``xFrom``.

The default data set (:meth:`FakeEndOfLife.with_defaults`) is computed from a ``today`` the test
chooses, so every product has one cycle in each state of :data:`STATES`::

    with FakeEndOfLife.with_defaults(today=date(2026, 3, 1)) as eol:
        httpx.get(f"{eol.url}/api/alpine.json")          # 3.22 eol:false, 3.21 ok, 3.20 warning, ...
        default_cycle("alpine", WARNING)                  # "3.20": eol 14 days after today
        eol.serve_garbage("alpine")                      # 200 with an HTML body
        eol.fail_next("GET", r"^/api/go\\.json$", 500)    # next request for go fails
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from aiohttp import web

from .server import JSON_CONTENT_TYPE, Call, FakeServer, HTTPFault, Router

__all__ = [
    "DEFAULT_CYCLES",
    "EOL",
    "EOL_TRUE",
    "NO_EOL",
    "OK",
    "STATES",
    "WARNING",
    "FakeEndOfLife",
    "ProductMeta",
    "default_cycle",
    "default_products",
]

API_V0 = "/api"
API_V1 = "/api/v1"
# api_v1/openapi.yml info.version, kept in sync with _plugins/generate-api-v1.rb upstream.
SCHEMA_VERSION = "1.1.0"

# Netlify's headers on the static API files (endoflife.date#2408 shows them verbatim).
API_HEADERS: Final[Mapping[str, str]] = {
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": "public, max-age=0, must-revalidate",
}
HTML_CONTENT_TYPE = "text/html; charset=UTF-8"
# Since the v1 launch an unknown product gets the site's HTML 404 page (endoflife.date#7922,
# CHANGELOG_API.md "Changes in 404 error responses"); this is a stand-in for that page.
NOT_FOUND_HTML = (
    b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="UTF-8"><title>404 - endoflife.date</title>'
    b"</head><body><h1>404</h1><p>Page not found</p></body></html>\n"
)
# What endoflife.date#2425 served from 2023-02 until the v1 launch (reported in #7922).
NOT_FOUND_JSON: Final[Mapping[str, str]] = {"message": "Product not found"}
# A 200 that is not JSON: what a captive portal or a misconfigured mirror hands out.
GARBAGE_BODY = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in to continue</title></head>"
    b'<body><form action="/login"></form></body></html>\n'
)
GARBAGE_CONTENT_TYPE = "text/html; charset=utf-8"

PINNED_TIME = time(12, 0)  # clock reading when only `today` is given

# Cycle states of the default data set, named after imglife's EOL statuses (bot/lifecycle/eoldata).
OK = "ok"  # eol date far ahead
WARNING = "warning"  # eol date inside the 30-day warning window
EOL = "eol"  # eol date passed
NO_EOL = "no_eol"  # eol: false (no end planned) -> imglife says ok
EOL_TRUE = "eol_true"  # eol: true (ended, date unknown) -> imglife says eol
STATES: Final = (NO_EOL, OK, WARNING, EOL, EOL_TRUE)  # newest cycle first, as the API lists them

# Offsets from `today` that put a cycle in its state with a wide margin on both sides of
# imglife's default window (IMGLIFE_ALERT_CRITICAL_DAYS = 30).
OK_EOL_AFTER = timedelta(days=400)
WARNING_EOL_AFTER = timedelta(days=14)
EOL_EOL_BEFORE = timedelta(days=45)
ACTIVE_SUPPORT_BEFORE_EOL = timedelta(days=180)
EXTENDED_SUPPORT_AFTER_EOL = timedelta(days=5 * 365)
NODE_LTS_AFTER_RELEASE = timedelta(days=180)
NEWEST_NODE_LTS_AFTER = timedelta(days=30)  # the newest Node.js line is not LTS yet
# Cycle i (0 = newest) was released FIRST_RELEASE_BEFORE + i * RELEASE_SPACING before today.
FIRST_RELEASE_BEFORE = timedelta(days=200)
RELEASE_SPACING = timedelta(days=400)
LATEST_RELEASE_BEFORE = timedelta(days=10)
LATEST_RELEASE_SPACING = timedelta(days=30)

# (cycle, state) per product, newest first; every product has every state once.
DEFAULT_CYCLES: Final[Mapping[str, tuple[tuple[str, str], ...]]] = {
    "alpine": (("3.22", NO_EOL), ("3.21", OK), ("3.20", WARNING), ("3.19", EOL), ("3.18", EOL_TRUE)),
    "debian": (("13", NO_EOL), ("12", OK), ("11", WARNING), ("10", EOL), ("9", EOL_TRUE)),
    "go": (("1.25", NO_EOL), ("1.24", OK), ("1.23", WARNING), ("1.22", EOL), ("1.21", EOL_TRUE)),
    "nodejs": (("24", NO_EOL), ("22", OK), ("20", WARNING), ("18", EOL), ("16", EOL_TRUE)),
    "python": (("3.14", NO_EOL), ("3.13", OK), ("3.12", WARNING), ("3.11", EOL), ("3.10", EOL_TRUE)),
    "ubuntu": (("25.04", NO_EOL), ("24.04", OK), ("22.04", WARNING), ("20.04", EOL), ("18.04", EOL_TRUE)),
}

CODENAMES: Final[Mapping[str, Mapping[str, str]]] = {
    "debian": {"13": "Trixie", "12": "Bookworm", "11": "Bullseye", "10": "Buster", "9": "Stretch"},
    "nodejs": {"24": "Krypton", "22": "Jod", "20": "Iron", "18": "Hydrogen", "16": "Gallium"},
    "ubuntu": {
        "25.04": "Plucky Puffin",
        "24.04": "Noble Numbat",
        "22.04": "Jammy Jellyfish",
        "20.04": "Focal Fossa",
        "18.04": "Bionic Beaver",
    },
}
UBUNTU_LTS = frozenset({"24.04", "22.04", "20.04", "18.04"})
# Which optional v0 fields each default product carries, as on the real site.
WITH_SUPPORT = frozenset({"nodejs", "python", "ubuntu", "debian"})
WITH_EXTENDED_SUPPORT = frozenset({"ubuntu", "debian"})


@dataclass(frozen=True)
class ProductMeta:
    """Product-level data only v1 shows (v0 has none)."""

    label: str
    category: str
    link_template: str | None = None  # "{cycle}", "{latest}", "{codename}" are filled in


DEFAULT_META: Final[Mapping[str, ProductMeta]] = {
    "alpine": ProductMeta(
        "Alpine Linux", "os", "https://alpinelinux.org/posts/Alpine-{latest}-released.html"
    ),
    "debian": ProductMeta("Debian", "os", "https://www.debian.org/News/"),
    "go": ProductMeta("Go", "lang", "https://go.dev/doc/devel/release#go{latest}"),
    "nodejs": ProductMeta("Node.js", "framework", "https://github.com/nodejs/node/releases/tag/v{latest}"),
    "python": ProductMeta("Python", "lang", "https://www.python.org/downloads/release/python-{compact}/"),
    "ubuntu": ProductMeta("Ubuntu", "os", "https://wiki.ubuntu.com/{camel}/ReleaseNotes/"),
}

# v1 column labels: stand-ins for the site's per-product wording (labels.eol is required, the
# others are null when no cycle of the product has that column).
LABEL_EOAS = "Active Support"
LABEL_EOL = "Security Support"
LABEL_EOES = "Extended Support"
LABEL_DISCONTINUED = "Discontinued"
LTS_LABEL = "LTS"
# _plugins/product-data-enricher.rb: a boolean phase counts as this many days from today.
FAR = 4096


def default_cycle(product: str, state: str) -> str:
    """The cycle of a default ``product`` that is in ``state`` (one of :data:`STATES`)."""
    for name, cycle_state in DEFAULT_CYCLES[product]:
        if cycle_state == state:
            return name
    raise KeyError(f"{product} has no {state} cycle")


def default_products(today: date) -> dict[str, list[dict[str, Any]]]:
    """The default data set in v0 shape, dates relative to ``today`` (see :data:`STATES`)."""
    return {product: _default_cycles(product, today) for product in DEFAULT_CYCLES}


def _default_cycles(product: str, today: date) -> list[dict[str, Any]]:
    cycles = []
    for index, (name, state) in enumerate(DEFAULT_CYCLES[product]):
        release = today - FIRST_RELEASE_BEFORE - RELEASE_SPACING * index
        eol = _eol_for(state, today)
        latest = _latest_version(product, name, index)
        codename = CODENAMES.get(product, {}).get(name)
        # Key order as upstream writes it: cycle first, then the product file's front matter.
        cycle: dict[str, Any] = {"cycle": name}
        if codename is not None:
            cycle["codename"] = codename
        cycle["releaseDate"] = release.isoformat()
        if product in WITH_SUPPORT:
            cycle["support"] = _shifted(eol, -ACTIVE_SUPPORT_BEFORE_EOL)
        cycle["eol"] = _iso_or_bool(eol)
        if product in WITH_EXTENDED_SUPPORT:
            cycle["extendedSupport"] = _shifted(eol, EXTENDED_SUPPORT_AFTER_EOL)
        cycle["latest"] = latest
        cycle["latestReleaseDate"] = (
            today - LATEST_RELEASE_BEFORE - LATEST_RELEASE_SPACING * index
        ).isoformat()
        cycle["lts"] = _default_lts(product, name, index, release, today)
        cycle["link"] = _link(product, name, latest, codename)
        cycles.append(cycle)
    return cycles


def _eol_for(state: str, today: date) -> date | bool:
    offsets = {OK: OK_EOL_AFTER, WARNING: WARNING_EOL_AFTER, EOL: -EOL_EOL_BEFORE}
    if state == NO_EOL:
        return False
    if state == EOL_TRUE:
        return True
    return today + offsets[state]


def _shifted(eol: date | bool, delta: timedelta) -> str | bool:
    """A support phase ending ``delta`` from ``eol``; with a boolean eol, a boolean phase."""
    if isinstance(eol, date):
        return (eol + delta).isoformat()
    # support/extendedSupport booleans mean "still running": eol false -> true, eol true -> false.
    return not eol


def _iso_or_bool(value: date | bool) -> str | bool:
    return value.isoformat() if isinstance(value, date) else value


def _latest_version(product: str, cycle: str, index: int) -> str:
    patch = 2 + 3 * index
    if product == "nodejs":
        return f"{cycle}.{patch}.0"
    return f"{cycle}.{patch}"


def _default_lts(product: str, cycle: str, index: int, release: date, today: date) -> bool | str:
    if product == "ubuntu":
        return cycle in UBUNTU_LTS
    if product == "nodejs":
        # Node.js lines become LTS on a date (lts is then a date string, not a boolean).
        lts = today + NEWEST_NODE_LTS_AFTER if index == 0 else release + NODE_LTS_AFTER_RELEASE
        return lts.isoformat()
    return False


def _link(product: str, cycle: str, latest: str, codename: str | None) -> str | None:
    meta = DEFAULT_META.get(product)
    if meta is None or meta.link_template is None:
        return None
    camel = (codename or "").replace(" ", "")
    return meta.link_template.format(cycle=cycle, latest=latest, compact=latest.replace(".", ""), camel=camel)


# --------------------------------------------------------------------------- serialisation


def _json_default(value: Any) -> str:
    # Tests may hand in date objects; upstream writes them as YYYY-MM-DD.
    if isinstance(value, date):  # datetime included
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {value!r}")


def _api_json(data: Any) -> bytes:
    """Ruby's ``to_json`` / Jekyll's ``jsonify`` (compact), plus the newline ``puts`` adds."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode() + b"\n"


def _json_response(data: Any) -> web.Response:
    return web.Response(
        status=200, body=_api_json(data), headers={"Content-Type": JSON_CONTENT_TYPE, **API_HEADERS}
    )


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _explode(value: Any, today: date, *, end_of_phase: bool) -> tuple[bool | None, str | None]:
    """``isX``/``xFrom`` from a date-or-boolean field (product-data-enricher.rb's explode).

    A date means "from that day on" (``today > date``); a boolean is taken as is, inverted for
    end-of-phase fields (``support: true`` means active support is *not* over).
    """
    as_date = _as_date(value)
    if as_date is not None:
        return today > as_date, as_date.isoformat()
    if isinstance(value, bool):
        return (not value if end_of_phase else value), None
    return None, None


def _days_toward(value: Any, today: date, *, end_of_phase: bool) -> int:
    as_date = _as_date(value)
    if as_date is not None:
        return (as_date - today).days
    if end_of_phase:  # support/extendedSupport: true -> still running
        return FAR if value else -FAR
    return -FAR if value else FAR  # eol/discontinued: true -> already reached


# --------------------------------------------------------------------------- state


@dataclass
class _Product:
    cycles: list[dict[str, Any]]
    meta: ProductMeta
    last_modified: datetime
    garbage: tuple[bytes, str] | None = None


class FakeEndOfLife(FakeServer):
    """endoflife.date on ``127.0.0.1``: v0 ``/api/...json`` and v1 ``/api/v1/products/...``.

    ``products`` maps a product to its cycles in **v0 shape** (served verbatim, newest first);
    ``None`` loads :func:`default_products` for ``today``. ``today`` (default: the clock's date)
    also drives v1's computed ``isEol``/``isMaintained`` fields; given without ``clock``, it pins
    the clock to noon UTC that day (v1's ``generated_at``/``last_modified``).
    """

    thread_name = "fake-endoflife"

    def __init__(
        self,
        products: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        *,
        today: date | None = None,
        json_not_found: bool = False,
        latency: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if clock is None and today is not None:
            # A pinned `today` pins the v1 timestamps too, so documents compare equal between runs.
            pinned = datetime.combine(today, PINNED_TIME, tzinfo=UTC)
            clock = lambda: pinned  # noqa: E731 - a one-line constant clock
        super().__init__(latency=latency, clock=clock)
        self._today = today
        self.json_not_found = json_not_found
        self._products: dict[str, _Product] = {}
        initial = default_products(self.today) if products is None else products
        for name, cycles in initial.items():
            self.set_product(name, cycles)

    @classmethod
    def with_defaults(cls, *, today: date, **kwargs: Any) -> FakeEndOfLife:
        """The default data set with every date relative to ``today``."""
        return cls(None, today=today, **kwargs)

    # ------------------------------------------------------------------ test API

    @property
    def today(self) -> date:
        return self._today if self._today is not None else self.now().date()

    @property
    def product_names(self) -> list[str]:
        with self.lock:
            return sorted(self._products)

    def cycles(self, product: str) -> list[dict[str, Any]]:
        """A copy of the cycles served for ``product`` (KeyError when unknown)."""
        with self.lock:
            return copy.deepcopy(self._products[product].cycles)

    def set_product(
        self,
        name: str,
        cycles: Sequence[Mapping[str, Any]],
        *,
        meta: ProductMeta | None = None,
    ) -> None:
        """Add or replace ``name`` (cycles in v0 shape, newest first); clears :meth:`serve_garbage`."""
        product = _Product(
            cycles=[copy.deepcopy(dict(c)) for c in cycles],
            meta=meta or DEFAULT_META.get(name) or ProductMeta(label=name, category="app"),
            last_modified=self.now(),
        )
        with self.lock:
            self._products[name] = product

    def remove_product(self, name: str) -> None:
        """Forget ``name``: it then answers 404 and leaves ``all.json``."""
        with self.lock:
            self._products.pop(name, None)

    def serve_garbage(
        self,
        product: str,
        body: bytes = GARBAGE_BODY,
        *,
        content_type: str = GARBAGE_CONTENT_TYPE,
    ) -> None:
        """Answer ``200`` with ``body`` (not JSON) for ``product`` on every API path until reset.

        Works for an unknown product too (it then appears in ``all.json`` with no cycles).
        """
        with self.lock:
            entry = self._products.get(product)
            if entry is None:
                entry = _Product([], ProductMeta(label=product, category="app"), self.now())
                self._products[product] = entry
            entry.garbage = (body, content_type)

    # ------------------------------------------------------------------ routes

    def routes(self, router: Router) -> None:
        # all.json first: "{product}.json" would match it too.
        router.get(f"{API_V0}/all.json", self._all_products)
        router.get(f"{API_V0}/{{product}}.json", self._product_v0)
        router.get(f"{API_V0}/{{product}}/{{cycle}}.json", self._cycle_v0)
        for slash in ("", "/"):
            # Netlify serves each v1 document as .../index.json, with or without the slash.
            router.get(f"{API_V1}/products/{{product}}{slash}", self._product_v1)
            router.get(f"{API_V1}/products/{{product}}/releases/{{release}}{slash}", self._release_v1)

    def route_not_found(self, method: str, path: str) -> HTTPFault:
        if self.json_not_found:
            return HTTPFault(404, _api_json(NOT_FOUND_JSON))
        return HTTPFault(404, NOT_FOUND_HTML, content_type=HTML_CONTENT_TYPE)

    def method_not_allowed(self, method: str, path: str) -> HTTPFault:
        # A static site: anything but GET/HEAD on a file is refused by the CDN.
        return HTTPFault(405, b"", content_type=HTML_CONTENT_TYPE)

    def _lookup(self, call: Call) -> _Product:
        name = call.params["product"]
        with self.lock:
            product = self._products.get(name)
            if product is None:
                raise self.route_not_found(call.method, call.request.rel_url.raw_path)
            if product.garbage is not None:
                body, content_type = product.garbage
                # Raised as a fault so the 200 goes out untouched (HTTPFault carries any status).
                raise HTTPFault(200, body, content_type=content_type)
            return copy.deepcopy(product)

    async def _all_products(self, call: Call) -> web.StreamResponse:
        return _json_response(self.product_names)  # upstream sorts them

    async def _product_v0(self, call: Call) -> web.StreamResponse:
        return _json_response(self._lookup(call).cycles)

    async def _cycle_v0(self, call: Call) -> web.StreamResponse:
        product = self._lookup(call)
        wanted = call.params["cycle"]
        for cycle in product.cycles:
            # Upstream's file name is the cycle with "/" replaced by "-"; the file omits "cycle".
            if str(cycle.get("cycle", "")).replace("/", "-") == wanted:
                return _json_response({k: v for k, v in cycle.items() if k != "cycle"})
        raise self.route_not_found(call.method, call.request.rel_url.raw_path)

    async def _product_v1(self, call: Call) -> web.StreamResponse:
        product = self._lookup(call)
        name = call.params["product"]
        return _json_response(
            {
                "schema_version": SCHEMA_VERSION,
                "generated_at": self.now().isoformat(timespec="seconds"),
                "last_modified": product.last_modified.isoformat(timespec="seconds"),
                "result": self._product_details(name, product),
            }
        )

    async def _release_v1(self, call: Call) -> web.StreamResponse:
        product = self._lookup(call)
        wanted = call.params["release"]
        cycles = product.cycles
        match = cycles[:1] if wanted == "latest" else [c for c in cycles if str(c.get("cycle")) == wanted]
        if not match:
            raise self.route_not_found(call.method, call.request.rel_url.raw_path)
        return _json_response(
            {
                "schema_version": SCHEMA_VERSION,
                "generated_at": self.now().isoformat(timespec="seconds"),
                "result": self._release(match[0], product),
            }
        )

    # ------------------------------------------------------------------ v1 documents

    def _product_details(self, name: str, product: _Product) -> dict[str, Any]:
        cycles = product.cycles
        has = {key: any(key in c for c in cycles) for key in ("support", "extendedSupport", "discontinued")}
        return {
            "name": name,
            "aliases": [],
            "label": product.meta.label,
            "category": product.meta.category,
            "tags": [product.meta.category],  # the category is always one of the tags
            "versionCommand": None,
            "identifiers": [],
            "labels": {
                "eoas": LABEL_EOAS if has["support"] else None,
                "discontinued": LABEL_DISCONTINUED if has["discontinued"] else None,
                "eol": LABEL_EOL,
                "eoes": LABEL_EOES if has["extendedSupport"] else None,
            },
            "links": {"icon": None, "html": f"{self.url}/{name}", "releasePolicy": None},
            "releases": [self._release(c, product) for c in cycles],
        }

    def _release(self, cycle: Mapping[str, Any], product: _Product) -> dict[str, Any]:
        today = self.today
        is_lts, lts_from = _explode(cycle.get("lts", False), today, end_of_phase=False)
        is_eol, eol_from = _explode(cycle.get("eol"), today, end_of_phase=False)
        name = str(cycle.get("cycle", ""))
        release: dict[str, Any] = {
            "name": name,
            "codename": cycle.get("codename"),
            "label": f"{name} ({LTS_LABEL})" if is_lts else name,
            "releaseDate": cycle.get("releaseDate"),
            "isLts": bool(is_lts),
            "ltsFrom": lts_from,
        }
        # Optional phases appear only when the product has that column (see the openapi text).
        if "support" in cycle:
            release["isEoas"], release["eoasFrom"] = _explode(cycle["support"], today, end_of_phase=True)
        release["isEol"], release["eolFrom"] = bool(is_eol), eol_from
        if "discontinued" in cycle:
            release["isDiscontinued"], release["discontinuedFrom"] = _explode(
                cycle["discontinued"], today, end_of_phase=False
            )
        if "extendedSupport" in cycle:
            release["isEoes"], release["eoesFrom"] = _explode(
                cycle["extendedSupport"], today, end_of_phase=True
            )
        release["isMaintained"] = self._is_maintained(cycle, today)
        latest = cycle.get("latest")
        release["latest"] = (
            None
            if latest is None
            else {"name": str(latest), "date": cycle.get("latestReleaseDate"), "link": cycle.get("link")}
        )
        release["custom"] = None  # no product here declares custom fields
        return release

    @staticmethod
    def _is_maintained(cycle: Mapping[str, Any], today: date) -> bool:
        """Any phase still running: a date today or later, ``support: true`` or ``eol: false``."""
        phases = (("support", True), ("eol", False), ("discontinued", False), ("extendedSupport", True))
        return any(
            _days_toward(cycle[key], today, end_of_phase=end) >= 0 for key, end in phases if key in cycle
        )
