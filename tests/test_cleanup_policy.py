"""The retention policy, the safety guard, the ledger and the summary of cleanup (pure parts)."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest

from bot.commands.cleanup import use_color
from bot.config import Config, RetentionConfig
from bot.config.loader import parse_config
from bot.errors import RegistryError
from bot.oci.reference import parse_reference
from bot.records import BuildRecord, RecordScan
from handlers.cleanup import (
    Action,
    CleanupPlan,
    CleanupSummary,
    Ledger,
    LedgerEntry,
    Protections,
    RepositoryPlan,
    TagFacts,
    archive_reference,
    decide,
    declared_repositories,
    guard_problem,
    parse_created,
    protections,
)

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
REPO = "registry.example.com/bases/alpine"
CONFIG = """\
registry: {provider: local, path: records}
build:
  core_version: "1.0.0"
  registry: registry.example.com/bases
  images:
    - {name: alpine, type: core, version: "3.21.3", mirror_image: registry.example.com/mirror/alpine,
       mirror_tag: "3.21.3"}
    - {name: node, type: spe, version: "22.11.0"}
sync:
  entries:
    - {source: docker.io/library/alpine, target: registry.example.com/mirror/alpine, tag_regex: '^3\\.'}
    - {source: docker.io/library/node, target: registry.example.com/mirror/node, tag: "22"}
"""


def config(text: str = CONFIG) -> Config:
    return parse_config(text, source="imglife.yaml", base_dir=Path("/nonexistent"))


def fact(tag: str, days: float | None, digest: str | None = None) -> TagFacts:
    created = None if days is None else NOW - dt.timedelta(days=days)
    return TagFacts(tag, digest or f"sha256:{abs(hash(tag)):064x}"[:71], created)


def actions(decisions) -> dict[str, Action]:
    return {d.tag: d.action for d in decisions}


def record(image: str, base: str) -> BuildRecord:
    return BuildRecord(image, base, "r", "t/p", ("linux/amd64",), NOW)


# -- the policy --------------------------------------------------------------------------------


def test_a_tag_is_a_candidate_when_it_breaks_either_limit():
    retention = RetentionConfig(keep_last=2, max_age_days=30)
    facts = [fact("young-1", 1), fact("old-but-newest-2", 31), fact("young-3", 2), fact("pos-4", 20)]
    decisions = decide(REPO, facts, retention=retention, now=NOW, protected=Protections())
    assert [d.tag for d in decisions] == ["young-1", "young-3", "pos-4", "old-but-newest-2"]
    assert actions(decisions) == {
        "young-1": Action.KEEP,
        "young-3": Action.KEEP,
        "pos-4": Action.DELETE,  # position 3 > keep_last 2, though 20 days old
        "old-but-newest-2": Action.DELETE,  # 31 days > 30 (and position 4)
    }
    reasons = {d.tag: d.reason for d in decisions}
    assert reasons["pos-4"] == "position 3 beyond keep_last 2; 20 days old, within max_age_days 30"
    assert reasons["young-1"] == "position 1 within keep_last 2; 1 day old, within max_age_days 30"


def test_an_old_tag_goes_even_among_the_keep_last_newest():
    # upstream: "a tag 120 days old is deleted regardless of position"
    decisions = decide(
        REPO,
        [fact("only", 120)],
        retention=RetentionConfig(keep_last=5, max_age_days=90),
        now=NOW,
        protected=Protections(),
    )
    assert decisions[0].action is Action.DELETE
    assert decisions[0].reason == "position 1 within keep_last 5; 120 days old, over max_age_days 90"


def test_exactly_max_age_days_old_is_not_older_than_max_age_days():
    retention = RetentionConfig(keep_last=5, max_age_days=30)
    decisions = decide(REPO, [fact("edge", 30)], retention=retention, now=NOW, protected=Protections())
    assert decisions[0].action is Action.KEEP


def test_excluded_tags_are_kept_and_take_no_position():
    retention = RetentionConfig(keep_last=1, max_age_days=30, exclude_tags=("latest", "stable"))
    facts = [fact("latest", 0), fact("v2", 1), fact("stable", 400), fact("v1", 2)]
    decisions = decide(REPO, facts, retention=retention, now=NOW, protected=Protections())
    assert actions(decisions) == {
        "latest": Action.KEEP,
        "v2": Action.KEEP,  # position 1: "latest" did not count
        "stable": Action.KEEP,
        "v1": Action.DELETE,
    }
    assert {d.tag: d.reason for d in decisions}["stable"] == "in retention.exclude_tags"


def test_undated_tags_sort_oldest_and_only_their_position_counts():
    retention = RetentionConfig(keep_last=3, max_age_days=1)
    facts = [fact("nodate-a", None), fact("dated", 0.5), fact("nodate-b", None), fact("nodate-c", None)]
    decisions = decide(REPO, facts, retention=retention, now=NOW, protected=Protections())
    assert [d.tag for d in decisions] == ["dated", "nodate-c", "nodate-b", "nodate-a"]
    assert actions(decisions)["nodate-b"] is Action.KEEP  # position 3, no age to break
    assert actions(decisions)["nodate-a"] is Action.DELETE
    assert "no creation date (sorted as oldest)" in decisions[-1].reason


def test_equal_dates_are_ordered_by_version_newest_first():
    same = NOW - dt.timedelta(days=3)
    facts = [TagFacts(t, f"sha256:{i:064x}", same) for i, t in enumerate(["3.9.0", "3.10.0", "3.10.1"])]
    decisions = decide(REPO, facts, retention=RetentionConfig(keep_last=1), now=NOW, protected=Protections())
    assert [d.tag for d in decisions] == ["3.10.1", "3.10.0", "3.9.0"]
    assert actions(decisions)["3.10.1"] is Action.KEEP


def test_unreadable_tags_are_errors_kept_and_take_no_position():
    facts = [TagFacts("broken", problem="cannot fetch manifest"), fact("v1", 1), fact("v0", 2)]
    decisions = decide(REPO, facts, retention=RetentionConfig(keep_last=1), now=NOW, protected=Protections())
    assert actions(decisions) == {"v1": Action.KEEP, "v0": Action.DELETE, "broken": Action.ERROR}
    assert {d.tag: d.reason for d in decisions}["broken"] == "cannot be read: cannot fetch manifest"


def test_candidates_are_archived_when_the_archive_is_enabled():
    retention = RetentionConfig.model_validate(
        {"keep_last": 0, "archive": {"enabled": True, "registry": "registry.example.com/archive"}}
    )
    decisions = decide(REPO, [fact("v1", 1)], retention=retention, now=NOW, protected=Protections())
    assert decisions[0].action is Action.ARCHIVE


def test_protected_candidates_are_kept_with_what_protects_them():
    cfg = config()
    records = [
        record("registry.example.com/apps/api:2.0", f"{REPO}:3.20.1-core1.0.0"),
        record("registry.example.com/apps/web:1.0", f"{REPO}:3.20.1-core1.0.0"),
        record("registry.example.com/apps/pinned:1.0", f"{REPO}@sha256:{'d' * 64}"),
        record("registry.example.com/apps/odd:1.0", "not a reference!"),
    ]
    protected = protections(cfg, records)
    facts = [
        fact("3.21.3-core1.0.0", 300),
        fact("3.20.1-core1.0.0", 200),
        TagFacts("by-digest", f"sha256:{'d' * 64}", NOW - dt.timedelta(days=100)),
        fact("3.19.0-core1.0.0", 400),
    ]
    decisions = decide(REPO, facts, retention=RetentionConfig(keep_last=0), now=NOW, protected=protected)
    reasons = {d.tag: d.reason for d in decisions}
    assert actions(decisions) == {
        "3.21.3-core1.0.0": Action.KEEP,
        "3.20.1-core1.0.0": Action.KEEP,
        "by-digest": Action.KEEP,
        "3.19.0-core1.0.0": Action.DELETE,
    }
    assert reasons["3.21.3-core1.0.0"].startswith("latest tag of base image alpine (otherwise: position")
    assert reasons["3.20.1-core1.0.0"].startswith(
        "used by build record registry.example.com/apps/api:2.0 and 1 more (otherwise:"
    )
    assert reasons["by-digest"].startswith("used by build record registry.example.com/apps/pinned:1.0")
    mirror = decide(
        "registry.example.com/mirror/alpine",
        [fact("3.21.3", 90), fact("3.21.2", 90)],
        retention=RetentionConfig(keep_last=0),
        now=NOW,
        protected=protected,
    )
    assert actions(mirror) == {"3.21.3": Action.KEEP, "3.21.2": Action.DELETE}
    assert mirror[0].reason.startswith("mirror_tag of base image alpine")


def test_declared_repositories_are_the_base_images_then_the_mirrors():
    repositories = declared_repositories(config())
    assert [(r.name, r.role) for r in repositories] == [
        ("registry.example.com/bases/alpine", "base image alpine"),
        ("registry.example.com/bases/node", "base image node"),
        ("registry.example.com/mirror/alpine", "mirror of docker.io/library/alpine"),
        ("registry.example.com/mirror/node", "mirror of docker.io/library/node"),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T10:00:00Z", dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)),
        ("2024-03-01T10:00:00.123456789Z", dt.datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=dt.UTC)),
        ("2024-03-01T12:00:00+02:00", dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC)),
        ("1970-01-01T00:00:00Z", None),  # SOURCE_DATE_EPOCH=0: not a build date
        ("0001-01-01T00:00:00Z", None),  # Go's zero time
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_creation_dates(value, expected):
    assert parse_created(value) == expected


def test_archive_path_is_the_archive_registry_plus_the_source_path():
    source = parse_reference("registry.example.com/bases/alpine:3.19.4-core1.0.0")
    target = archive_reference("registry.example.com/archive", source)
    assert str(target) == "registry.example.com/archive/bases/alpine:3.19.4-core1.0.0"
    other_host = archive_reference("archive.example.com", parse_reference("registry:5000/a/b:1"))
    assert str(other_host) == "archive.example.com/a/b:1"


# -- the safety guard --------------------------------------------------------------------------

BASE = f"{REPO}:3.21.3-core1.0.0"


@pytest.mark.parametrize(
    ("scan", "expected"),
    [
        (RecordScan(), None),  # a young project: no records at all
        (RecordScan(records=[record("r.example.com/a/b:1", BASE)]), None),
        (RecordScan(problems=["x.json: not JSON"]), "none of the 1 build record in S can be read"),
        (
            RecordScan(records=[record("r.example.com/a/b:1", BASE)], problems=["y.json: not JSON"]),
            "1 of the 2 build records in S cannot be read (first: y.json: not JSON)",
        ),
        (
            RecordScan(records=[record("r.example.com/a/b:1", "registry.example.com/other/x:1")]),
            "none of the 1 build record in S uses a base image declared in build.images",
        ),
    ],
    ids=["no-records", "fine", "none-readable", "some-unreadable", "none-on-a-base"],
)
def test_the_guard_engages_on_unreadable_records_or_none_on_a_base(scan, expected):
    problem = guard_problem(config(), scan, store="S")
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.startswith(expected)


def test_the_guard_never_engages_without_build_images():
    mirror_only = config(
        "registry: {provider: local}\nsync:\n  entries:\n"
        "    - {source: docker.io/library/alpine, target: r.example.com/m/alpine, tag: '3'}\n"
    )
    assert guard_problem(mirror_only, RecordScan(problems=["bad"]), store="S") is None


# -- the ledger --------------------------------------------------------------------------------


def entry(tag: str, digest: str, archived: dt.datetime) -> LedgerEntry:
    return LedgerEntry(f"r.example.com/archive/a:{tag}", f"r.example.com/a:{tag}", digest, archived)


def test_ledger_round_trip_and_due_entries():
    ledger = Ledger(
        {
            e.archive: e
            for e in [entry("1", "sha256:1", NOW), entry("2", "sha256:2", NOW - dt.timedelta(days=9))]
        }
    )
    again = Ledger.parse(ledger.encode(now=NOW), where="test")
    assert again == ledger
    assert [e.archive for e in again.due(NOW + dt.timedelta(days=1), keep_days=10)] == [
        "r.example.com/archive/a:2"
    ]
    assert again.due(NOW, keep_days=0)  # keep_days 0: due at once


def test_ledger_merge_keeps_the_first_archive_time_and_removes_only_unchanged_entries():
    old = entry("1", "sha256:1", NOW - dt.timedelta(days=5))
    replaced = entry("2", "sha256:2", NOW - dt.timedelta(days=50))
    ledger = Ledger({old.archive: old, replaced.archive: replaced})
    merged = ledger.merged(
        removed=[entry("2", "sha256:OTHER", NOW), entry("3", "sha256:3", NOW)],
        added=[entry("1", "sha256:1", NOW), entry("4", "sha256:4", NOW)],
    )
    assert merged.entries[old.archive].archived_at == old.archived_at  # same digest archived again
    assert replaced.archive in merged.entries  # its digest changed since: not removed
    assert set(merged.entries) == {old.archive, replaced.archive, "r.example.com/archive/a:4"}
    assert set(ledger.entries) == {old.archive, replaced.archive}  # merged() returns a new ledger
    assert merged.merged(removed=[merged.entries["r.example.com/archive/a:4"]], added=[]).entries.keys() == {
        old.archive,
        replaced.archive,
    }


@pytest.mark.parametrize(
    "data", [b"not json", b"[]", b'{"schema": "other"}', b'{"schema": "imglife.archive-ledger/v1"}']
)
def test_an_unreadable_ledger_is_an_error_not_an_empty_ledger(data):
    with pytest.raises(RegistryError, match="archive ledger"):
        Ledger.parse(data, where="r/imglife-archive-ledger:ledger")


# -- output ------------------------------------------------------------------------------------


def summary(**kwargs) -> CleanupSummary:
    values = dict(
        duration=3.84, examined=24, deleted=["a"] * 5, archived=["b"] * 2, kept=17, errors=[], warnings=[]
    )
    values.update(kwargs)
    return CleanupSummary(**values)


def test_the_summary_is_upstreams_block():
    assert summary().text() == (
        "Cleanup Summary · 3.8s\n"
        "───────────────────────────────────\n"
        "Tags examined 24\n"
        "├─ Deleted 5\n"
        "├─ Archived 2\n"
        "├─ Kept 17\n"
        "└─ Errors 0"
    )
    assert summary(dry_run=True).text().startswith("[dry-run] Cleanup Summary · 3.8s\n")
    assert "\033[" not in summary(errors=["x"]).text()
    colored = summary(errors=["x"]).text(color=True)
    assert "\033[31m1\033[0m" in colored
    assert colored.startswith("\033[1m")
    assert re.sub(r"\033\[\d+m", "", colored) == summary(errors=["x"]).text()


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("environ", "stream", "expected"),
    [
        ({}, FakeTty(), True),
        ({}, io.StringIO(), False),
        ({"NO_COLOR": "1"}, FakeTty(), False),
        ({"TERM": "dumb"}, FakeTty(), False),
        ({"TERM": "xterm-256color"}, FakeTty(), True),
    ],
)
def test_colours_only_on_a_terminal_without_no_color_or_term_dumb(environ, stream, expected):
    assert use_color(environ, stream) is expected


def test_the_markdown_summary_escapes_what_it_did_not_write():
    text = summary(
        deleted=["r.example.com/a:`x`"],
        errors=["r.example.com/a:1: delete failed: @admin <b>no</b> **bold**"],
        warnings=["w"],
    ).markdown()
    assert "| Tags examined | 24 |" in text
    assert "| Deleted | 1 |" in text
    assert "@admin" not in text  # no mention fires
    assert "<b>" not in text
    assert "\\*\\*bold\\*\\*" in text
    assert "<details><summary>Errors (1)</summary>" in text
    assert "Would delete" in summary(dry_run=True).markdown()
    many = summary(deleted=[f"r.example.com/a:{i}" for i in range(60)]).markdown()
    assert "- … and 10 more" in many


def test_the_listing_names_every_tag_with_its_action_and_reason():
    cfg = config()
    repository = declared_repositories(cfg)[0]
    decisions = decide(
        repository.name,
        [fact("3.21.3-core1.0.0", 3), fact("3.20.0-core1.0.0", 40)],
        retention=RetentionConfig(),
        now=NOW,
        protected=Protections(),
    )
    expired = entry("old", "sha256:1", NOW - dt.timedelta(days=100))
    listing = CleanupPlan(
        [RepositoryPlan(repository, decisions)], [expired], keep_days=90, warnings=["something odd"]
    ).listing()
    assert listing.splitlines() == [
        "registry.example.com/bases/alpine (base image alpine): 2 tags",
        "  keep     3.21.3-core1.0.0  2026-05-29  "
        "position 1 within keep_last 5; 3 days old, within max_age_days 30",
        "  delete   3.20.0-core1.0.0  2026-04-22  "
        "position 2 within keep_last 5; 40 days old, over max_age_days 30",
        "archived copies past keep_days 90: 1",
        "  delete   r.example.com/archive/a:old  archived 2026-02-21, keep_days 90 passed on 2026-05-22",
        "warning: something odd",
    ]
