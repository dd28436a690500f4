"""handlers.sync without a registry: tag selection, os_normalize naming, settings, the summary."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.config.schema import Hook, SyncConfig, SyncEntry
from bot.errors import EXIT_USAGE, UsageError
from bot.hooks import HookResult
from handlers.sync import (
    EntryOutcome,
    SyncSummary,
    TagOutcome,
    TagPair,
    TagStatus,
    dates_needed,
    format_bytes,
    keep_newest,
    match_tags,
    merge_targets,
    os_variant_candidates,
    select_entries,
    sync_parallelism,
)

UTC = dt.UTC
ALPINE_TAGS = ["3.21.3", "3.20.6", "3.21", "3", "latest", "edge", "3.21.2", "3.19.7", "3.22.0_alpha20250108"]
GOLANG_TAGS = [
    "1.22.3-alpine3.21",
    "1.22-alpine3.21",
    "1-alpine3.21",
    "1.22.2-alpine3.21",
    "1.23rc1-alpine3.21",
    "alpine3.21",
    "alpine3.20",
    "1.22.3-alpine3.20",
    "1.22.3-alpine3.21-core1.0.0",
    "1.22.3",
    "latest",
]


def entry(**values: object) -> SyncEntry:
    fields: dict[str, object] = {
        "source": "docker.io/library/alpine",
        "target": "registry.example.com/m/alpine",
    }
    fields.update(values)
    return SyncEntry.model_validate(fields)


# --- selection -------------------------------------------------------------------------------


def test_regex_is_searched_not_matched_whole():
    assert match_tags(ALPINE_TAGS, entry(tag_regex=r"^3\.\d+\.\d+$")) == [
        "3.21.3",
        "3.20.6",
        "3.21.2",
        "3.19.7",
    ]
    # Unanchored: re.search finds "21" anywhere, as upstream documents its patterns anchored.
    assert match_tags(ALPINE_TAGS, entry(tag_regex=r"21")) == ["3.21.3", "3.21", "3.21.2"]


def test_fixed_tag_ignores_the_listing():
    assert match_tags([], entry(tag="3.21.3")) == ["3.21.3"]
    assert match_tags(ALPINE_TAGS, entry(tag="no-such")) == ["no-such"]


def test_duplicates_in_a_listing_are_matched_once():
    assert match_tags(["1.0", "1.0", "2.0"], entry(tag_regex=".")) == ["1.0", "2.0"]


def test_keep_last_keeps_the_newest_versions():
    tags = match_tags(ALPINE_TAGS, entry(tag_regex=r"^3\.\d+\.\d+$"))
    assert keep_newest(tags, 2) == ["3.21.3", "3.21.2"]
    assert keep_newest(tags, None) == ["3.21.3", "3.21.2", "3.20.6", "3.19.7"]
    assert keep_newest(tags, 10) == ["3.21.3", "3.21.2", "3.20.6", "3.19.7"]


def test_non_versions_fall_back_to_dates_and_come_after_versions():
    dates = {
        "edge": dt.datetime(2025, 3, 1, tzinfo=UTC),
        "latest": dt.datetime(2025, 2, 1, tzinfo=UTC),
    }
    assert keep_newest(["latest", "edge", "nightly", "3.21.3"], 3, dates) == ["3.21.3", "edge", "latest"]
    assert keep_newest(["latest", "edge", "nightly"], None, dates) == ["edge", "latest", "nightly"]


@pytest.mark.parametrize(
    ("tags", "keep_last", "needed"),
    [
        (["3.21.3", "latest", "edge"], None, []),  # everything is kept: order does not matter
        (["3.21.3", "latest", "edge"], 3, []),  # everything fits
        (["3.21.3", "3.20.6", "latest"], 2, []),  # the versions fill keep_last on their own
        (["3.21.3", "latest", "edge"], 2, ["latest", "edge"]),  # the cut falls among non-versions
        (["nightly", "weekly"], 1, ["nightly", "weekly"]),
    ],
)
def test_dates_are_only_needed_where_the_cut_falls_among_non_versions(tags, keep_last, needed):
    assert dates_needed(tags, keep_last) == needed


# --- os_normalize ------------------------------------------------------------------------------


def test_os_variant_candidates_are_version_tags_with_exactly_that_suffix_newest_first():
    assert os_variant_candidates("alpine3.21", GOLANG_TAGS) == [
        "1.23rc1-alpine3.21",
        "1.22.3-alpine3.21",
        "1.22.2-alpine3.21",
        "1.22-alpine3.21",
        "1-alpine3.21",
    ]
    # Most specific first among equal releases: 1.22.3 > 1.22 > 1.
    assert os_variant_candidates("alpine3.20", GOLANG_TAGS) == ["1.22.3-alpine3.20"]


@pytest.mark.parametrize("tag", ["latest", "bookworm", "1.22.3", "1.22-alpine3.21", "alpine3"])
def test_versions_and_tags_without_version_prefixed_siblings_are_not_os_variants(tag):
    assert os_variant_candidates(tag, GOLANG_TAGS) == []


def test_merge_targets_writes_a_target_tag_once():
    pairs = [
        TagPair("1.22.3-alpine3.21", "1.22.3-alpine3.21"),
        TagPair("alpine3.21", "1.22.3-alpine3.21"),
        TagPair("alpine3.20", "alpine3.20"),
    ]
    kept, dropped = merge_targets(pairs)
    assert kept == [pairs[0], pairs[2]]
    assert dropped == [pairs[1]]


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [(None, 4), ("", 4), ("  ", 4), ("1", 1), ("16", 16), (" 8 ", 8)])
def test_parallelism_from_the_environment(raw, value):
    environ = {} if raw is None else {"IMGLIFE_SYNC_PARALLELISM": raw}
    assert sync_parallelism(environ) == value


@pytest.mark.parametrize("raw", ["0", "-1", "four", "2.5", "1e3"])
def test_bad_parallelism_is_a_usage_error(raw):
    with pytest.raises(UsageError, match="IMGLIFE_SYNC_PARALLELISM must be a whole number") as caught:
        sync_parallelism({"IMGLIFE_SYNC_PARALLELISM": raw})
    assert caught.value.exit_code == EXIT_USAGE


def test_only_selects_entries_by_source_or_target_as_written():
    sync = SyncConfig.model_validate(
        {
            "entries": [
                {"source": "alpine", "target": "registry.example.com/m/alpine", "tag": "3"},
                {"source": "docker.io/library/golang", "target": "registry.example.com/m/golang", "tag": "1"},
            ]
        }
    )
    assert [i for i, _ in select_entries(sync)] == [0, 1]
    assert [i for i, _ in select_entries(sync, ["alpine"])] == [0]
    assert [i for i, _ in select_entries(sync, ["registry.example.com/m/golang"])] == [1]
    with pytest.raises(UsageError, match=r"docker\.io/library/alpine: not the source or target"):
        select_entries(sync, ["docker.io/library/alpine"])  # the config spells it "alpine"


# --- summary -----------------------------------------------------------------------------------


def hook_result(cmd: str, code: int | None, *, continue_on_error: bool = False) -> HookResult:
    hook = Hook(cmd=cmd, timeout=5, continue_on_error=continue_on_error)
    return HookResult(
        cmd=hook.cmd,
        label="sync.hooks.post_sync[0]",
        exit_code=code,
        timed_out=code is None,
        timeout=hook.timeout,
        duration=0.1,
        output_tail=(),
        continue_on_error=hook.continue_on_error,
    )


def summary(*, dry_run: bool = False, hooks: list[HookResult] | None = None) -> SyncSummary:
    first = EntryOutcome(0, "docker.io/library/alpine", "registry.example.com/m/alpine")
    first.tags = [
        TagOutcome("3.21.3", "3.21.3", TagStatus.COPIED, "new", "sha256:" + "a" * 64, 3 * 1024 * 1024),
        TagOutcome("3.20.6", "3.20.6", TagStatus.SKIPPED, "already in the target", "sha256:" + "b" * 64),
        TagOutcome(
            "alpine3.21", "1.22.3-alpine3.21", TagStatus.GONE, "deleted from the source after it was listed"
        ),
        TagOutcome(
            "evil`*@here", "evil`*@here", TagStatus.FAILED, "cannot copy: registry said <b>@admin</b>"
        ),
    ]
    first.warnings = ["os_normalize: x keeps its name"]
    second = EntryOutcome(1, "docker.io/library/golang", "registry.example.com/m/golang", error="cannot list")
    return SyncSummary([first, second], hooks or [], dry_run, 1.25)


def test_summary_counts_and_exit_state():
    result = summary()
    assert result.count(TagStatus.COPIED) == 1
    assert result.count(TagStatus.GONE) == 1
    assert result.failed_entries == 1
    assert result.bytes_uploaded == 3 * 1024 * 1024
    assert not result.ok
    assert result.headline() == (
        "2 entries, tags: 1 copied, 1 skipped, 2 failed, 1 gone upstream; 3.0 MiB uploaded in 1.2s"
    )


def test_gone_and_skipped_tags_do_not_fail_a_run():
    entry_ = EntryOutcome(0, "a", "registry.example.com/a")
    entry_.tags = [TagOutcome("1", "1", TagStatus.GONE, "gone"), TagOutcome("2", "2", TagStatus.SKIPPED, "x")]
    assert SyncSummary([entry_], [], False, 0.0).ok


def test_a_fatal_hook_fails_the_run_a_tolerated_one_does_not():
    entry_ = EntryOutcome(0, "a", "registry.example.com/a")
    assert not SyncSummary([entry_], [hook_result("x", 1)], False, 0.0).ok
    assert SyncSummary([entry_], [hook_result("x", 1, continue_on_error=True)], False, 0.0).ok


def test_text_summary_lists_every_tag():
    text = summary(hooks=[hook_result("notify.sh", 3)]).text()
    lines = text.splitlines()
    assert lines[0].startswith("sync: 2 entries, tags: 1 copied")
    assert "docker.io/library/alpine -> registry.example.com/m/alpine" in lines
    assert any(line.split()[:2] == ["copied", "3.21.3"] for line in lines)
    assert (
        "  gone       alpine3.21 -> 1.22.3-alpine3.21  (deleted from the source after it was listed)" in lines
    )
    assert "  FAILED   cannot list" in lines
    assert "hook sync.hooks.post_sync[0] `notify.sh`: exited with code 3" in lines


def test_markdown_escapes_untrusted_text_and_mentions():
    markdown = summary(hooks=[hook_result("notify.sh", 0)]).markdown()
    assert markdown.startswith("### imglife sync\n\n❌ 2 entries, tags: 1 copied, ")
    assert "#### `docker.io/library/alpine` → `registry.example.com/m/alpine`" in markdown
    assert "| `alpine3.21` → `1.22.3-alpine3.21` | 🗑️ gone |" in markdown
    # A tag with a backtick cannot be a code span: it is escaped text instead.
    assert (
        "| evil\\`\\*@\u200bhere | ❌ failed | cannot copy: registry said \\<b\\>@\u200badmin\\</b\\> |"
        in markdown
    )
    assert "@admin" not in markdown
    assert "- hook ✅ `sync.hooks.post_sync[0]` `notify.sh`: ok" in markdown
    assert (
        summary(dry_run=True)
        .markdown()
        .startswith("### imglife sync (dry run)\n\n❌ 2 entries, tags: 0 to copy")
    )


def test_empty_summary():
    empty = SyncSummary([], [], False, 0.0)
    assert empty.ok
    assert empty.text() == "sync: nothing to sync: sync.entries is empty\n"
    assert "nothing to sync" in empty.markdown()


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB")]
)
def test_format_bytes(count, text):
    assert format_bytes(count) == text
