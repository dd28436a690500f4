"""Container-tag versions: parsing, ordering, sorting with dates, cycles (pure)."""

import itertools
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import get_args

import pytest

from bot.config.schema import CycleTrack
from bot.versions import (
    Version,
    compare,
    cycle_of,
    newest,
    parse_version,
    sort_tags,
    split_core_tag,
    version_sort_key,
)


# --- parsing -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "release", "prerelease", "suffix", "core"),
    [
        ("3.21.3", (3, 21, 3), (), "", None),
        ("3", (3,), (), "", None),
        ("v1.22", (1, 22), (), "", None),
        ("V2.53.0", (2, 53, 0), (), "", None),
        ("22.04", (22, 4), (), "", None),
        ("2024.01.15", (2024, 1, 15), (), "", None),
        ("20240807", (20240807,), (), "", None),
        ("1.2.3.4", (1, 2, 3, 4), (), "", None),
        # pre-releases: after "-", attached, any case, with or without a number and its separator
        ("1.0.0-rc.1", (1, 0, 0), ("rc", 1), "", None),
        ("1.0.0-rc1", (1, 0, 0), ("rc", 1), "", None),
        ("1.0.0-rc-1", (1, 0, 0), ("rc", 1), "", None),
        ("1.0.0-RC1", (1, 0, 0), ("rc", 1), "", None),
        ("1.0.0-alpha", (1, 0, 0), ("alpha",), "", None),
        ("1.0.0-alpha.beta", (1, 0, 0), ("alpha", "beta"), "", None),
        ("1.0.0-beta.2", (1, 0, 0), ("beta", 2), "", None),
        ("1.0.0-beta.2.x7", (1, 0, 0), ("beta", 2, "x7"), "", None),
        ("v3.0.0-beta.0", (3, 0, 0), ("beta", 0), "", None),
        ("v1.31.0-alpha.1", (1, 31, 0), ("alpha", 1), "", None),
        ("3.13.0rc2", (3, 13, 0), ("rc", 2), "", None),
        ("3.13.0a1", (3, 13, 0), ("a", 1), "", None),
        ("3.13.0b3", (3, 13, 0), ("b", 3), "", None),
        ("1.23rc1", (1, 23), ("rc", 1), "", None),
        ("1.0-SNAPSHOT", (1, 0), ("snapshot",), "", None),
        ("2.0.0-preview.3", (2, 0, 0), ("preview", 3), "", None),
        ("2.0.0-pre", (2, 0, 0), ("pre",), "", None),
        ("2.0.0-dev", (2, 0, 0), ("dev",), "", None),
        ("2.0.0-c1", (2, 0, 0), ("c", 1), "", None),
        # variant suffixes, alone or after a pre-release
        ("1.22.3-alpine3.21", (1, 22, 3), (), "-alpine3.21", None),
        ("20.11.0-bookworm-slim", (20, 11, 0), (), "-bookworm-slim", None),
        ("3.12.1-slim", (3, 12, 1), (), "-slim", None),
        ("16.3-bullseye", (16, 3), (), "-bullseye", None),
        ("7-centos7", (7,), (), "-centos7", None),
        ("8.0-windowsservercore-ltsc2022", (8, 0), (), "-windowsservercore-ltsc2022", None),
        ("1.27.0-alpine3.19-perl", (1, 27, 0), (), "-alpine3.19-perl", None),
        ("1.0.0-a1b2", (1, 0, 0), (), "-a1b2", None),
        ("1.0.0-alphabet", (1, 0, 0), (), "-alphabet", None),
        ("1.0.0-rc.1-alpine", (1, 0, 0), ("rc", 1), "-alpine", None),
        ("1.0.0-rc-alpine", (1, 0, 0), ("rc",), "-alpine", None),
        ("3.13.0rc2-slim-bookworm", (3, 13, 0), ("rc", 2), "-slim-bookworm", None),
        ("1.23rc1-alpine3.20", (1, 23), ("rc", 1), "-alpine3.20", None),
        # org base tags
        ("3.21.3-core1.2.0", (3, 21, 3), (), "", (1, 2, 0)),
        ("v3.21.3-core1", (3, 21, 3), (), "", (1,)),
        ("1.22-alpine3.21-core1.0.0", (1, 22), (), "-alpine3.21", (1, 0, 0)),
        ("1.0.0-rc1-core2.0.0", (1, 0, 0), ("rc", 1), "", (2, 0, 0)),
        ("3.21.3-core", (3, 21, 3), (), "-core", None),
        ("3.21.3-core1.0.0-rc1", (3, 21, 3), (), "-core1.0.0-rc1", None),
    ],
)
def test_version_tags_parse(tag, release, prerelease, suffix, core):
    version = parse_version(tag)
    assert version is not None
    assert version.text == tag
    assert (version.release, version.prerelease, version.suffix, version.core) == (
        release,
        prerelease,
        suffix,
        core,
    )
    assert version.is_prerelease == bool(prerelease)


def test_release_text_is_kept_as_written():
    assert parse_version("v22.04-slim") == Version(
        text="v22.04-slim", release=(22, 4), release_text="22.04", suffix="-slim"
    )


GARBAGE = [
    "",
    "latest",
    "stable",
    "edge",
    "main",
    "main-abc123",
    "noble-20240801",
    "bookworm-slim",
    "mainline-alpine",
    "sha256-" + "a" * 64 + ".sig",
    "sha256:" + "a" * 64,
    "0a1b2c3",  # a short commit id that starts with a digit
    "1.2.3foo",
    "1.2.3_foo",
    "1.2.3.RELEASE",
    "1.2.3-",
    "1.2.3.",
    ".1.2",
    "1..2",
    "1.2--alpine",
    "v",
    "vv1.2",
    "-core1.0.0",
    "latest-core1.0.0",
    "1.2 3",
    "1.2.3-foo/bar",
    "\uff11.\uff12",  # full-width digits
    "1.0-\u017fnapshot",  # a long s, which case-folds to "s"
    "9" * 129,
    "1." * 64 + "1",
]


@pytest.mark.parametrize("tag", GARBAGE)
def test_non_versions_parse_to_none_and_never_raise(tag):
    assert parse_version(tag) is None
    assert cycle_of(tag, "minor") is None
    assert version_sort_key(tag) == (0, tag)
    assert compare(tag, "1.0.0") == -1


def test_the_longest_valid_tag_still_parses():
    tag = "9" * 128
    version = parse_version(tag)
    assert version is not None
    assert version.release == (int(tag),)


# --- ordering --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("older", "newer"),
    [
        # numeric, component by component
        ("1.9", "1.10"),
        ("3.20.6", "3.21.3"),
        ("3.21.3", "3.21.10"),
        ("2.0.0", "10.0.0"),
        ("3.21", "3.21.1"),
        ("3.21.9", "3.22"),
        ("1.2.3", "1.2.3.1"),
        # calendar-style
        ("22.04", "24.04"),
        ("20.04", "22.04"),
        ("2023.12.31", "2024.01.15"),
        ("2024.01.15", "2024.02.01"),
        # missing components count as 0, distinct tags still ordered: more components newer, then text
        ("3.21", "3.21.0"),
        ("3", "3.0.0"),
        ("22.04", "22.4"),
        ("1.2.3", "v1.2.3"),
        ("V1.2.3", "v1.2.3"),
        # a leading v is just decoration
        ("v1.2.3", "1.2.4"),
        ("1.2.3", "v1.2.4"),
        # semver pre-release precedence
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
        ("1.0.0-alpha.beta", "1.0.0-beta"),
        ("1.0.0-beta", "1.0.0-beta.2"),
        ("1.0.0-beta.2", "1.0.0-beta.11"),
        ("1.0.0-beta.11", "1.0.0-rc.1"),
        ("1.0.0-rc.1", "1.0.0"),
        ("1.0.0-rc2", "1.0.0-rc10"),
        ("1.0.0-rc.1", "1.0.0-rc1"),  # equal precedence: text decides
        ("1.0.0-RC1", "1.0.0-rc1"),
        ("1.0.0-dev", "1.0.0-rc1"),
        ("3.13.0a1", "3.13.0b1"),
        ("3.13.0b3", "3.13.0rc1"),
        ("3.13.0rc2", "3.13.0"),
        ("1.23rc1", "1.23.0"),
        ("1.0-SNAPSHOT", "1.0"),
        ("0.9.9", "1.0.0-alpha"),
        ("1.0.0", "1.0.1-rc.1"),
        # variants: same release by suffix (none first, natural order), a different release dominates
        ("1.22.3", "1.22.3-alpine3.21"),
        ("1.22.3-alpine3.20", "1.22.3-alpine3.21"),
        ("1.22.3-alpine3.9", "1.22.3-alpine3.21"),
        ("1.22.3-alpine3.21", "1.22.3-bookworm"),
        ("20.11.0-bookworm", "20.11.0-bookworm-slim"),
        ("1.22.3-bookworm", "1.22.4"),
        ("1.22.3-alpine3.21", "1.22.4-alpine3.20"),
        ("3.12.1-slim", "3.12.2"),
        ("1.22.3-rc1-alpine", "1.22.3"),
        ("1.22.3-rc1", "1.22.3-rc1-alpine"),
        ("1.22.3-rc1-alpine", "1.22.3-rc2"),
        # org base tags: upstream first, then core
        ("3.21.3-core1.0.0", "3.21.3-core1.2.0"),
        ("3.21.3-core1.2.0", "3.21.4-core1.0.0"),
        ("3.21.3-core1.9.0", "3.21.3-core1.10.0"),
        ("3.21.3-core2.0.0", "3.22.0-core1.0.0"),
        ("1.22-alpine3.21-core1.0.0", "1.22-alpine3.21-core1.1.0"),
        ("1.22-alpine3.20-core9.0.0", "1.22-alpine3.21-core1.0.0"),
        ("3.21.3-rc1-core9.0.0", "3.21.3-core1.0.0"),
        ("3.21.3", "3.21.3-core1.0.0"),
        ("3.21.3-core1.0", "3.21.3-core1.0.0"),
        ("3.21-core1.0.0", "3.21.0-core1.0.0"),
        ("3.21.0-core1.0.0", "3.21-core1.2.0"),  # equal upstream value: the core decides
        # non-versions are older than any version, and ordered by text among themselves
        ("latest", "0.0.1"),
        ("edge", "1.0.0-alpha"),
        ("edge", "latest"),
        ("latest", "stable"),
        ("0a1b2c3", "main"),
    ],
)
def test_ordering_pairs(older, newer):
    assert version_sort_key(older) < version_sort_key(newer)
    assert compare(older, newer) == -1
    assert compare(newer, older) == 1
    assert sort_tags([older, newer]) == [newer, older]
    assert sort_tags([newer, older], newest_first=False) == [older, newer]
    assert newest([older, newer]) == newest([newer, older]) == newer


@pytest.mark.parametrize("tag", ["3.21.3", "latest", "1.0.0-rc1", "3.21.3-core1.0.0", ""])
def test_a_tag_compares_equal_only_to_itself(tag):
    assert compare(tag, tag) == 0


# --- sorting with and without dates ----------------------------------------------------------------
def test_sort_tags_newest_first_by_default_and_reversible():
    tags = ["3.20.6", "latest", "3.21.3", "3.21.0-rc1", "edge", "3.21.0", "3.19.4"]
    expected = ["3.21.3", "3.21.0", "3.21.0-rc1", "3.20.6", "3.19.4", "latest", "edge"]
    assert sort_tags(tags) == expected
    assert sort_tags(tags, newest_first=False) == expected[::-1]
    assert sort_tags(tags) == sorted(tags, key=version_sort_key, reverse=True)
    assert newest(tags) == "3.21.3"


def test_sort_tags_accepts_any_iterable_and_keeps_duplicates():
    assert sort_tags(iter(["1.0", "2.0", "1.0"])) == ["2.0", "1.0", "1.0"]
    assert sort_tags([]) == []
    assert newest([]) is None
    assert newest(iter([])) is None


T0 = datetime(2024, 11, 1, tzinfo=UTC)


def test_dates_do_not_reorder_versions():
    dates = {"3.21.3": T0, "3.20.6": T0 + timedelta(days=30), "3.19.4": T0 + timedelta(days=60)}
    assert sort_tags(dates, dates=dates) == ["3.21.3", "3.20.6", "3.19.4"]
    assert newest(dates, dates=dates) == "3.21.3"


def test_dated_non_versions_follow_versions_by_date_then_undated_by_text():
    tags = ["stable", "3.21.3", "edge", "latest", "main", "3.20.6", "nightly"]
    dates = {
        "3.20.6": T0 + timedelta(days=99),  # ignored: a version
        "edge": T0 + timedelta(days=2),
        "latest": T0 + timedelta(days=1),
        "nightly": T0 + timedelta(days=1),  # same date as latest: text decides
    }
    expected = ["3.21.3", "3.20.6", "edge", "nightly", "latest", "stable", "main"]
    assert sort_tags(tags, dates=dates) == expected
    assert sort_tags(tags, dates=dates, newest_first=False) == expected[::-1]


def test_all_non_versions_sort_by_date_undated_last():
    tags = ["noble-20240801", "noble-20240904", "noble", "jammy-20240808", "latest"]
    dates = {
        "noble-20240801": T0,
        "noble-20240904": T0 + timedelta(days=34),
        "jammy-20240808": T0 + timedelta(days=7),
    }
    expected = ["noble-20240904", "jammy-20240808", "noble-20240801", "noble", "latest"]
    assert sort_tags(tags, dates=dates) == expected
    assert newest(tags, dates=dates) == "noble-20240904"
    assert newest(["noble", "latest"], dates=dates) == "noble"  # undated only: text order
    # without dates the same tags are in (reversed) text order
    assert sort_tags(tags) == sorted(tags, reverse=True)


def test_naive_dates_are_utc_and_mix_with_aware_ones():
    dates = {
        "a": datetime(2024, 1, 1, 12, 0),  # naive: 12:00 UTC
        "b": datetime(2024, 1, 1, 13, 0, tzinfo=timezone(timedelta(hours=2))),  # 11:00 UTC
        "c": datetime(2024, 1, 1, 12, 30, tzinfo=UTC),
    }
    assert sort_tags(dates, dates=dates) == ["c", "a", "b"]


def test_sorting_does_not_depend_on_input_order():
    tags = [*CORPUS, *GARBAGE]
    dates = {tag: T0 + timedelta(hours=len(tag) % 5) for tag in tags[::3]}
    expected = sort_tags(tags, dates=dates)
    rng = random.Random(1234)
    for _ in range(20):
        rng.shuffle(tags)
        assert sort_tags(tags, dates=dates) == expected
        assert newest(tags, dates=dates) == expected[0]


# --- cycles ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "track", "cycle"),
    [
        ("3.21.3", "major", "3"),
        ("3.21.3", "minor", "3.21"),
        ("3.21.3", "patch", "3.21.3"),
        ("3.21.3", "full", "3.21.3"),
        ("v1.22.3", "minor", "1.22"),
        ("1.22.3-alpine3.21", "major", "1"),
        ("1.22.3-alpine3.21", "minor", "1.22"),
        ("1.22.3-alpine3.21", "patch", "1.22.3"),
        ("1.22.3-alpine3.21", "full", "1.22.3"),
        ("3.21.3-core1.2.0", "minor", "3.21"),
        ("3.21.3-core1.2.0", "full", "3.21.3"),
        ("1.22-alpine3.21-core1.0.0", "minor", "1.22"),
        ("1.23rc1", "minor", "1.23"),
        ("1.0.0-rc.1", "patch", "1.0.0"),
        ("3.13.0rc2-slim-bookworm", "minor", "3.13"),
        # fewer components than the track asks: the whole release
        ("22.04", "major", "22"),
        ("22.04", "minor", "22.04"),  # as written, not "22.4"
        ("22.04", "patch", "22.04"),
        ("22.04", "full", "22.04"),
        ("3", "minor", "3"),
        ("16-alpine3.20", "minor", "16"),
        # more components than patch: full keeps them all
        ("1.2.3.4", "patch", "1.2.3"),
        ("1.2.3.4", "full", "1.2.3.4"),
        ("2024.01.15", "minor", "2024.01"),
        # non-versions
        ("latest", "minor", None),
        ("edge", "full", None),
        ("main-abc123", "major", None),
    ],
)
def test_cycle_of(tag, track, cycle):
    assert cycle_of(tag, track) == cycle


def test_cycle_of_rejects_an_unknown_track():
    with pytest.raises(ValueError, match="unknown cycle track 'micro'"):
        cycle_of("3.21.3", "micro")  # type: ignore[arg-type]


def test_cycle_of_handles_every_configurable_track():
    for track in get_args(CycleTrack):
        assert cycle_of("3.21.3", track) is not None


# --- core tags -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "split"),
    [
        ("3.21.3-core1.2.0", ("3.21.3", "1.2.0")),
        ("1.22-alpine3.21-core1.0.0", ("1.22-alpine3.21", "1.0.0")),
        ("v3.21.3-core1", ("v3.21.3", "1")),
        ("latest-core1.0.0", ("latest", "1.0.0")),  # textual: the upstream need not be a version
        ("1.0-core2-core3.0", ("1.0-core2", "3.0")),  # the last -core<numbers> counts
        ("3.21.3", None),
        ("3.21.3-core", None),
        ("3.21.3-core1.0.0-rc1", None),
        ("3.21.3-core1.", None),
        ("3.21.3-corex", None),
        ("-core1.0.0", None),
        ("core1.0.0", None),
        ("", None),
    ],
)
def test_split_core_tag(tag, split):
    assert split_core_tag(tag) == split


# --- the order is total and consistent with compare over realistic tags ----------------------------
CORPUS = [
    # alpine
    "3.21.3", "3.21.2", "3.21.0", "3.21", "3.20.6", "3.20", "3.19.4", "3", "edge", "latest", "20240807",
    # golang
    "1.22.3-alpine3.21", "1.22.3-alpine3.20", "1.22-alpine3.21", "1.22.12", "1.22", "1.23rc1",
    "1.23rc2-alpine3.20", "1.23.0", "1.23.0-bookworm", "1.21.13-bullseye", "alpine3.21", "alpine",
    # node
    "20.11.0-bookworm-slim", "20.11.0-bookworm", "20.11.0", "20.11-alpine", "20-slim", "22.0.0-rc.1",
    "lts-alpine", "current",
    # ubuntu
    "22.04", "24.04", "20.04", "noble", "jammy-20240808", "noble-20240801",
    # python
    "3.12.1-slim", "3.12.1", "3.12.0-slim-bookworm", "3.13.0rc2-slim", "3.13.0a1", "3.13.0b3", "3.13",
    # semver and v-prefixed
    "v1.2.3", "1.2.3", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1",
    "1.0.0-RC1", "1.0.0", "v3.0.0-beta.0", "2.53.0",
    # org base tags
    "3.21.3-core1.0.0", "3.21.3-core1.2.0", "3.21.4-core1.0.0", "1.22-alpine3.21-core1.0.0",
    "3.21-core1.0.0", "3.21.0-core1.0.0",
    # others
    "stable", "main-abc123", "sha256-" + "e" * 64 + ".sig", "2024.01.15",
]  # fmt: skip


def test_corpus_is_sizeable_and_unique():
    assert len(CORPUS) == len(set(CORPUS)) >= 60


def test_compare_is_a_total_order_over_the_corpus():
    ordered = sorted(CORPUS, key=version_sort_key)
    position = {tag: index for index, tag in enumerate(ordered)}
    cmp = {(a, b): compare(a, b) for a, b in itertools.product(CORPUS, repeat=2)}
    for (a, b), result in cmp.items():
        # consistent with the sorted positions; antisymmetric; equal only to itself
        assert result == (position[a] > position[b]) - (position[a] < position[b]), (a, b)
        assert result == -cmp[b, a]
        assert (result == 0) == (a == b)
    # transitive: a < b and b < c imply a < c, i.e. everything newer than b is newer than a
    newer = {a: {b for b in CORPUS if cmp[a, b] < 0} for a in CORPUS}
    for a in CORPUS:
        for b in newer[a]:
            assert newer[b] <= newer[a], (a, b, newer[b] - newer[a])
    assert sort_tags(CORPUS) == ordered[::-1]
    assert newest(CORPUS) == ordered[-1] == "20240807"  # a date-like tag is just a big number
