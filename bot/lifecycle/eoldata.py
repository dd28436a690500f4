"""EOL data (pure): the upstream ``eol-data.yaml`` format, and how a cycle's EOL becomes a status.

The file maps an endoflife.date product to its release cycles, newest first::

    alpine:
      - cycle: "3.21"
        eol: "2026-11-01"        # a date, or true (ended, date unknown), or false (no end planned)
        latest: "3.21.3"
        latestReleaseDate: "2024-11-07"

``eol_status``: ``eol`` once the date is reached (or ``eol: true``), ``warning`` within
``IMGLIFE_ALERT_CRITICAL_DAYS`` (default 30) of it, ``ok`` before that (or ``eol: false``), and
``unknown`` when there is no data for the cycle.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from bot.errors import ImglifeError, UsageError

CRITICAL_DAYS_VARIABLE = "IMGLIFE_ALERT_CRITICAL_DAYS"
DEFAULT_CRITICAL_DAYS = 30
# Fields written back to eol-data.yaml, in upstream's order; others from the API are dropped.
FILE_FIELDS = ("cycle", "releaseDate", "eol", "latest", "latestReleaseDate", "lts")


# libyaml's loader is ~10x faster than PyYAML's pure-Python one on a file of many cycles.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class EolDataError(ImglifeError):
    """EOL data is missing, malformed or could not be fetched."""


class EolStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"
    EOL = "eol"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Cycle:
    """One release cycle of a product; ``eol`` is a date, True, False, or None when not given."""

    cycle: str
    eol: dt.date | bool | None = None
    latest: str | None = None
    latest_release_date: dt.date | None = None
    release_date: dt.date | None = None
    lts: bool | dt.date | None = None

    @property
    def eol_date(self) -> dt.date | None:
        return self.eol if isinstance(self.eol, dt.date) else None

    def to_yaml(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "cycle": self.cycle,
            "releaseDate": _iso(self.release_date),
            "eol": _iso(self.eol) if isinstance(self.eol, dt.date) else self.eol,
            "latest": self.latest,
            "latestReleaseDate": _iso(self.latest_release_date),
            "lts": _iso(self.lts) if isinstance(self.lts, dt.date) else self.lts,
        }
        return {key: values[key] for key in FILE_FIELDS if values[key] is not None}


@dataclass(frozen=True, slots=True)
class EolData:
    """Cycles per product, as read from eol-data.yaml or endoflife.date."""

    products: Mapping[str, tuple[Cycle, ...]] = field(default_factory=dict)

    def find(self, product: str, cycle: str) -> Cycle | None:
        return next((c for c in self.products.get(product, ()) if c.cycle == cycle), None)

    def dump(self) -> str:
        document = {
            product: [c.to_yaml() for c in cycles] for product, cycles in sorted(self.products.items())
        }
        return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def critical_days(environ: Mapping[str, str]) -> int:
    """The warning window from ``IMGLIFE_ALERT_CRITICAL_DAYS`` (default 30)."""
    raw = environ.get(CRITICAL_DAYS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_CRITICAL_DAYS
    if not raw.isdigit():
        raise UsageError(f"{CRITICAL_DAYS_VARIABLE} must be a whole number of days, got {raw!r}")
    return int(raw)


def eol_status(cycle: Cycle | None, *, today: dt.date, critical: int) -> EolStatus:
    if cycle is None or cycle.eol is None:
        return EolStatus.UNKNOWN
    if cycle.eol is True:
        return EolStatus.EOL
    if cycle.eol is False:
        return EolStatus.OK
    if today >= cycle.eol:
        return EolStatus.EOL
    if (cycle.eol - today).days <= critical:
        return EolStatus.WARNING
    return EolStatus.OK


# -- parsing -----------------------------------------------------------------------------------


def parse_cycle(raw: Any, *, where: str) -> Cycle:
    """One cycle from eol-data.yaml or the endoflife.date API; ``where`` names it in errors."""
    if not isinstance(raw, Mapping):
        raise EolDataError(f"{where}: a cycle is a mapping with 'cycle' and 'eol', got {type(raw).__name__}")
    name = raw.get("cycle")
    if isinstance(name, bool) or not isinstance(name, str | int | float) or str(name).strip() == "":
        raise EolDataError(f"{where}.cycle: missing or not a version string")
    cycle_where = f"{where} (cycle {name})"
    return Cycle(
        cycle=str(name),
        eol=_date_or_bool(raw.get("eol"), f"{cycle_where}.eol"),
        latest=str(raw["latest"]) if raw.get("latest") is not None else None,
        latest_release_date=_date(raw.get("latestReleaseDate"), f"{cycle_where}.latestReleaseDate"),
        release_date=_date(raw.get("releaseDate"), f"{cycle_where}.releaseDate"),
        lts=_lts(raw.get("lts"), f"{cycle_where}.lts"),
    )


def parse_eol_data(text: str | bytes, *, source: str) -> EolData:
    """Parse eol-data.yaml; every error names ``source`` and the product/cycle at fault."""
    try:
        document = yaml.load(text, Loader=SAFE_LOADER)  # noqa: S506 - a safe loader (C when built)
    except yaml.YAMLError as exc:
        raise EolDataError(f"{source}: not valid YAML: {exc}") from None
    if document is None:
        return EolData()
    if not isinstance(document, Mapping):
        raise EolDataError(f"{source}: expected a mapping of product -> list of cycles")
    products: dict[str, tuple[Cycle, ...]] = {}
    for product, cycles in document.items():
        where = f"{source}: {product}"
        if not isinstance(cycles, list):
            raise EolDataError(f"{where}: expected a list of cycles")
        products[str(product)] = tuple(parse_cycle(c, where=f"{where}[{i}]") for i, c in enumerate(cycles))
    return EolData(products)


def _date(value: Any, where: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise EolDataError(f"{where}: expected a date YYYY-MM-DD, got {value!r}")


def _date_or_bool(value: Any, where: str) -> dt.date | bool | None:
    if isinstance(value, bool):
        return value
    try:
        return _date(value, where)
    except EolDataError:
        raise EolDataError(f"{where}: expected a date YYYY-MM-DD, true or false, got {value!r}") from None


def _lts(value: Any, where: str) -> bool | dt.date | None:
    # endoflife.date gives lts as a boolean or as the date the cycle became LTS.
    return _date_or_bool(value, where)
