"""Container-tag versions: parse, order and reduce to release cycles (pure, no IO).

Shared by ``check``/``status`` (is a base older than the newest one? which cycle is it in?) and by
``sync``/``cleanup`` (which tags are the ``keep_last`` newest?).

**Grammar.** A tag is a *version* when it reads ``[v|V]RELEASE[PRE][-SUFFIX][-coreCORE]``:

* ``RELEASE`` — dot-separated ASCII numbers: ``3.21.3``, ``22.04``, ``2024.01.15``, ``20240807``.
  Calendar-style tags are plain numeric versions.
* ``PRE`` — a pre-release, either attached to the numbers (Python's ``3.13.0rc2``, Go's ``1.23rc1``)
  or after a ``-`` (``1.0.0-rc.1``, ``v3.0.0-beta.0``, ``1.0-SNAPSHOT``). Its first identifier must
  be a pre-release word — ``alpha beta rc pre preview dev snapshot a b c``, any case — optionally
  followed by a number, itself optionally after ``.``/``-`` (``rc1``, ``rc.1``, ``rc-1`` are all
  ``("rc", 1)``); more ``.``-separated identifiers may follow (``1.0.0-alpha.beta.2``). The
  pre-release ends at the next ``-``. The word is compared in lower case.
* ``SUFFIX`` — anything else after a ``-`` (tag characters only): a *variant* of the same release,
  not a pre-release: ``-alpine3.21``, ``-slim-bookworm``, ``-windowsservercore-ltsc2022``. A first
  identifier that merely starts with a pre-release letter (``alpine``, ``bookworm``, ``centos7``) is a
  variant, since the word must be followed by a digit, ``.``, ``-`` or the end.
* ``-coreCORE`` — the org base-image scheme ``<upstream>-core<org-version>`` (``3.21.3-core1.2.0``,
  ``1.22-alpine3.21-core1.0.0``); ``CORE`` is dot-separated numbers, at the very end of the tag.

Anything else is a *non-version*, never an error: ``latest``, ``edge``, ``main-abc123``,
``sha256-<hex>.sig``, ``noble-20240801``, letters glued to the numbers that are not a pre-release
(``0a1b2c3`` — a short commit id —, ``1.2.3foo``), other separators (``1.2.3_foo``, ``1.2.3.RELEASE``),
a trailing ``-`` or ``.``, and tags longer than the OCI limit of 128 characters.

**Order** (:func:`version_sort_key`, ascending = oldest first). Between two versions, the first
difference decides:

1. the release, numerically component by component, a missing component counting as 0
   (``1.9 < 1.10``; ``3.21`` and ``3.21.0`` are equal at this step);
2. pre-release before release, pre-releases by semver precedence: identifier by identifier,
   numbers numerically, words by ASCII, a number before a word, a shorter list first when one is a
   prefix of the other (``1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1
   < 1.0.0``);
3. the variant suffix, no suffix first, then in natural order (digit runs compared as numbers:
   ``-alpine3.9 < -alpine3.21``) — only ever between equal releases;
4. the core version of org base tags, numerically like the release (no core first), so the
   upstream version always dominates: ``3.21.3-core1.0.0 < 3.21.3-core1.2.0 < 3.21.4-core1.0.0``;
5. tie-breaks for equal-valued but distinct tags: more release components is newer
   (``3.21 < 3.21.0``), then the tag text (``1.2.3 < v1.2.3``).

Every non-version is older than every version; non-versions among themselves order by text.
Distinct tags never compare equal, so the order is total and sorting is deterministic whatever
the input order.

**Dates** (:func:`sort_tags` and :func:`newest` only). Creation dates are the fallback for
non-versions only: versions always sort by version, even when dated; non-versions come after all
versions (newest first), dated ones by date, then undated ones by text. When every tag is a
non-version this is simply "by date, undated last". Naive datetimes are taken as UTC.
``newest_first=False`` returns exactly the reverse of ``newest_first=True``.

**Cycles** (:func:`cycle_of`): the first 1 (``major``), 2 (``minor``) or 3 (``patch``) release
components, or all of them (``full``), as written — no ``v``, pre-release, suffix or core:
``3.21.3`` → ``3`` / ``3.21`` / ``3.21.3``; ``22.04`` stays ``22.04`` (not ``22.4``), and a tag with
fewer components than the track asks gives its whole release (``22.04``, ``patch`` → ``22.04``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from bot.config.schema import CycleTrack

MAX_TAG_LENGTH = 128  # OCI distribution spec: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}

SortKey: TypeAlias = tuple[object, ...]
"""A key usable by :func:`sorted`; only keys from the same function compare meaningfully."""

PRERELEASE_WORDS = ("alpha", "beta", "rc", "preview", "pre", "dev", "snapshot", "a", "b", "c")

_NUMBERS = r"[0-9]+(?:\.[0-9]+)*"
_CORE_TAG_RE = re.compile(rf"(?P<upstream>.+)-core(?P<core>{_NUMBERS})")
_PRERELEASE = (
    rf"(?P<word>{'|'.join(PRERELEASE_WORDS)})(?:[.-]?(?P<number>[0-9]+))?"
    r"(?P<more>(?:\.[0-9A-Za-z]+)*)"
)
_VERSION_RE = re.compile(
    rf"[vV]?(?P<release>{_NUMBERS})"
    rf"(?:-?(?P<pre>{_PRERELEASE}))?"
    r"(?P<suffix>(?:-[0-9A-Za-z_.]+)*)",
    re.IGNORECASE | re.ASCII,
)
_NATURAL_SPLIT_RE = re.compile(r"([0-9]+)")
_TRACK_DEPTH: dict[str, int | None] = {"major": 1, "minor": 2, "patch": 3, "full": None}


@dataclass(frozen=True, slots=True)
class Version:
    """A parsed version tag (see the module docstring for the grammar)."""

    text: str
    """The tag as given."""
    release: tuple[int, ...]
    """The release numbers: ``"3.21.3"`` → ``(3, 21, 3)``, ``"v1.22"`` → ``(1, 22)``."""
    release_text: str
    """The release numbers as written, without ``v``: ``"v22.04-slim"`` → ``"22.04"``."""
    prerelease: tuple[str | int, ...] = ()
    """Pre-release identifiers, the word in lower case (``"1.0.0-RC1"`` → ``("rc", 1)``); ``()`` for
    releases."""
    suffix: str = ""
    """The variant after the release and pre-release, with its ``-``: ``"-alpine3.21"``; ``""`` for none."""
    core: tuple[int, ...] | None = None
    """The core version of an org base tag: ``"3.21.3-core1.2.0"`` → ``(1, 2, 0)``; else ``None``."""

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)


def split_core_tag(tag: str) -> tuple[str, str] | None:
    """``"<upstream>-core<core>"`` → ``(upstream, core)``; ``None`` without a ``-core<numbers>`` ending.

    ``"3.21.3-core1.2.0"`` → ``("3.21.3", "1.2.0")``; ``"1.22-alpine3.21-core1.0.0"`` →
    ``("1.22-alpine3.21", "1.0.0")``. Purely textual: the upstream part need not be a version.
    """
    match = _CORE_TAG_RE.fullmatch(tag)
    return (match["upstream"], match["core"]) if match else None


def parse_version(tag: str) -> Version | None:
    """Parse a tag; ``None`` for a non-version (``latest``, ``main-abc123``, garbage). Never raises."""
    if not tag or len(tag) > MAX_TAG_LENGTH:
        return None
    upstream, core = tag, None
    if split := split_core_tag(tag):
        upstream, core_text = split
        core = _numbers(core_text)
    match = _VERSION_RE.fullmatch(upstream)
    if match is None:
        return None
    prerelease: tuple[str | int, ...] = ()
    if match["pre"] is not None:
        prerelease = (match["word"].lower(),)
        if match["number"] is not None:
            prerelease += (int(match["number"]),)
        prerelease += tuple(int(i) if i.isdigit() else i for i in match["more"].split(".")[1:])
    return Version(
        text=tag,
        release=_numbers(match["release"]),
        release_text=match["release"],
        prerelease=prerelease,
        suffix=match["suffix"],
        core=core,
    )


def version_sort_key(tag: str) -> SortKey:
    """The total order of the module docstring, ascending = oldest first (non-versions first)."""
    version = parse_version(tag)
    if version is None:
        return (0, tag)
    return (1, *_version_key(version))


def compare(a: str, b: str) -> int:
    """``-1``, ``0`` or ``1`` as ``a`` is older than, the same tag as, or newer than ``b``.

    Only identical texts compare equal: ``compare("3.21", "3.21.0") == -1`` by the tie-break.
    """
    key_a, key_b = version_sort_key(a), version_sort_key(b)
    return (key_a > key_b) - (key_a < key_b)


def sort_tags(
    tags: Iterable[str],
    *,
    dates: Mapping[str, datetime] | None = None,
    newest_first: bool = True,
) -> list[str]:
    """Sort tags by version, non-versions last by date then text (module docstring, *Dates*).

    Duplicates are kept. ``newest_first=False`` gives exactly the reversed list.
    """
    return sorted(tags, key=_dated_key(dates or {}), reverse=newest_first)


def newest(tags: Iterable[str], *, dates: Mapping[str, datetime] | None = None) -> str | None:
    """The first tag :func:`sort_tags` would return; ``None`` for no tags."""
    return max(tags, key=_dated_key(dates or {}), default=None)


def cycle_of(tag: str, track: CycleTrack) -> str | None:
    """The release cycle a version tag belongs to under ``track``; ``None`` for a non-version.

    ``("3.21.3", "minor")`` → ``"3.21"``; ``("1.22.3-alpine3.21", "minor")`` → ``"1.22"``;
    ``("3.21.3-core1.2.0", "major")`` → ``"3"``; ``("22.04", "patch")`` → ``"22.04"``. Raises
    :class:`ValueError` for a track outside ``major``/``minor``/``patch``/``full``.
    """
    if track not in _TRACK_DEPTH:
        raise ValueError(f"unknown cycle track {track!r}: expected one of {', '.join(_TRACK_DEPTH)}")
    version = parse_version(tag)
    if version is None:
        return None
    depth = _TRACK_DEPTH[track]
    return ".".join(version.release_text.split(".")[:depth])


# --- keys ---------------------------------------------------------------------------------------
def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _numeric_key(numbers: tuple[int, ...]) -> tuple[int, ...]:
    """Trailing zeros dropped, so tuple comparison treats missing components as 0."""
    end = len(numbers)
    while end and numbers[end - 1] == 0:
        end -= 1
    return numbers[:end]


def _identifier_key(identifier: str | int) -> tuple[int, int | str]:
    """Numbers before words, each among their own kind (never an int compared with a str)."""
    return (0, identifier) if isinstance(identifier, int) else (1, identifier)


def _natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    return tuple(
        _identifier_key(int(part) if part.isdigit() else part)
        for part in _NATURAL_SPLIT_RE.split(text)
        if part
    )


def _version_key(version: Version) -> SortKey:
    prerelease = (0, tuple(_identifier_key(i) for i in version.prerelease)) if version.prerelease else (1, ())
    core = (0, ()) if version.core is None else (1, _numeric_key(version.core))
    return (
        _numeric_key(version.release),
        prerelease,
        _natural_key(version.suffix),
        core,
        len(version.release),
        version.text,
    )


def _dated_key(dates: Mapping[str, datetime]) -> Callable[[str], SortKey]:
    """Versions > dated non-versions (by date, then text) > undated non-versions (by text)."""

    def key(tag: str) -> SortKey:
        version = parse_version(tag)
        if version is not None:
            return (2, *_version_key(version))
        date = dates.get(tag)
        if date is None:
            return (0, tag)
        if date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
        return (1, date, tag)

    return key
