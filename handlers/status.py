"""``imglife status``: which applications run on which base image tag, and how current it all is.

The report is built once (:func:`build_report`) and rendered as Markdown (an issue comment or a
README section), JSON or plain text. Record fields come from CI jobs and are untrusted: Markdown
escapes them, and ``@`` never becomes a mention.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.config import Config
from bot.errors import InvalidReference
from bot.lifecycle.eoldata import EolData, EolStatus
from bot.oci.reference import parse_reference
from bot.records import BuildRecord, RecordScan, RecordStore, format_timestamp
from bot.versions import sort_tags
from handlers import sources
from handlers.bases import BaseImage, TagVerdict, base_images, find_base, judge_tag
from handlers.sources import Fetch

STATUS_LABELS = {
    EolStatus.OK: "✅ OK",
    EolStatus.WARNING: "⚠️ < {days} days",
    EolStatus.EOL: "❌ EOL",
    EolStatus.UNKNOWN: "❔ unknown",
}
CURRENT_LABELS = {True: "✅ yes", False: "⚠️ no"}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
ZERO_WIDTH_SPACE = "\u200b"


@dataclass(frozen=True, slots=True)
class AppUse:
    record: BuildRecord
    tag: str
    current: bool


@dataclass(slots=True)
class BaseReport:
    base: BaseImage
    latest: TagVerdict
    tags: dict[str, TagVerdict] = field(default_factory=dict)
    apps: list[AppUse] = field(default_factory=list)

    @property
    def current_apps(self) -> int:
        return sum(1 for app in self.apps if app.current)


@dataclass(slots=True)
class StatusReport:
    generated_at: dt.datetime
    config_source: str
    eol_source: str
    eol_missing: str | None
    critical_days: int
    bases: list[BaseReport]
    orphans: list[BuildRecord]
    problems: list[str]


def build_report(
    config: Config,
    eol: EolData,
    scan: RecordScan,
    *,
    now: dt.datetime,
    critical: int,
    config_source: str,
    eol_source: str,
    eol_missing: str | None = None,
) -> StatusReport:
    today = now.date()
    reports = {
        base.repository: BaseReport(
            base, judge_tag(base, base.latest_tag, eol, today=today, critical=critical)
        )
        for base in base_images(config)
    }
    orphans: list[BuildRecord] = []
    for record in sorted(scan.records, key=lambda r: r.image):
        declared = find_base(config, record.base)
        if declared is None:
            orphans.append(record)
            continue
        report = reports.get(declared.repository)
        if report is None:  # a spe-dev base: known, but never reported
            continue
        try:
            tag = parse_reference(record.base).tag or ""
        except InvalidReference:
            orphans.append(record)
            continue
        verdict = report.tags.get(tag) or judge_tag(declared, tag, eol, today=today, critical=critical)
        report.tags[tag] = verdict
        report.apps.append(AppUse(record, tag, verdict.up_to_date))
    for report in reports.values():
        order = {tag: i for i, tag in enumerate(sort_tags(report.tags))}
        report.apps.sort(key=lambda app: (order.get(app.tag, 0), app.record.image))
    return StatusReport(
        generated_at=now,
        config_source=config_source,
        eol_source=eol_source,
        eol_missing=eol_missing,
        critical_days=critical,
        bases=list(reports.values()),
        orphans=orphans,
        problems=list(scan.problems),
    )


async def gather_report(
    config: Config,
    *,
    store: RecordStore,
    fetch: Fetch,
    now: dt.datetime,
    critical: int,
    config_source: str,
    shown: Callable[[str], str] = str,
) -> StatusReport:
    """Read the EOL data and every build record, and judge them against ``config``."""
    eol, loaded = await sources.eol_data(config, eol_url=None, fetch=fetch, store=store)
    scan = await store.scan()
    return build_report(
        config,
        eol,
        scan,
        now=now,
        critical=critical,
        config_source=config_source,
        eol_source=shown(loaded.source),
        eol_missing=loaded.missing,
    )


# -- Markdown ------------------------------------------------------------------------------------


def md_text(value: str) -> str:
    """Untrusted text as inert Markdown: specials escaped, one line, no @mentions."""
    flat = " ".join(value.split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", flat).replace("@", "@" + ZERO_WIDTH_SPACE)


def md_code(value: str) -> str:
    """Untrusted text in a code span (mentions do not fire there); falls back to escaped text."""
    flat = " ".join(value.split())
    if "`" in flat or not flat:
        return md_text(flat)
    return f"`{flat}`"


def _day(when: dt.datetime) -> str:
    return when.date().isoformat()


def status_label(status: EolStatus, critical: int) -> str:
    return STATUS_LABELS[status].format(days=critical)


def eol_cell(verdict: TagVerdict, critical: int) -> str:
    date = verdict.eol_date.isoformat() if verdict.eol_date else "—"
    return f"{date} {status_label(verdict.eol_status, critical)}"


def render_markdown(report: StatusReport) -> str:
    apps = sum(len(b.apps) for b in report.bases)
    outdated = sum(len(b.apps) - b.current_apps for b in report.bases)
    lines = [
        "## Base images",
        "",
        f"_Generated by imglife at {format_timestamp(report.generated_at)} from"
        f" {md_code(report.config_source)} and {md_code(report.eol_source)}: {len(report.bases)} base images,"
        f" {apps} applications, {outdated} on an outdated tag._",
        "",
    ]
    if report.eol_missing:
        lines += [f"> ⚠️ {md_text(report.eol_missing)}", ""]
    if not report.bases:
        lines += ["No base images are declared in `build.images`.", ""]
    else:
        lines += [
            "| Base image | Latest tag | EOL | Applications on latest |",
            "|---|---|---|---|",
        ]
        for base in report.bases:
            lines.append(
                f"| {md_code(base.base.repository)} | {md_code(base.base.latest_tag)} | "
                f"{eol_cell(base.latest, report.critical_days)} | {base.current_apps} of {len(base.apps)} |"
            )
        lines.append("")
    for base in report.bases:
        if not base.apps:
            continue
        lines += [
            f"### {md_code(base.base.repository)}",
            "",
            "| Application | Base tag | On latest | EOL of its tag | Project | Built |",
            "|---|---|---|---|---|---|",
        ]
        for app in base.apps:
            verdict = base.tags[app.tag]
            lines.append(
                f"| {md_code(app.record.image)} | {md_code(app.tag)} | {CURRENT_LABELS[app.current]} | "
                f"{eol_cell(verdict, report.critical_days)} | {md_text(app.record.project)} | "
                f"{_day(app.record.built_at)} |"
            )
        lines.append("")
    if report.orphans:
        lines += [
            "### Orphaned records",
            "",
            "Build records whose base image is not declared in `build.images`:",
            "",
            "| Application | Base | Project | Built |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {md_code(r.image)} | {md_code(r.base)} | {md_text(r.project)} | {_day(r.built_at)} |"
            for r in report.orphans
        ]
        lines.append("")
    if report.problems:
        lines += ["### Unreadable records", ""]
        lines += [f"- {md_text(problem)}" for problem in report.problems]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_eol_markdown(report: StatusReport) -> str:
    """The EOL summary (chat-ops ``eol``): each base's latest tag, and the tags in use that end soon."""
    lines = ["## End of life", ""]
    if report.eol_missing:
        lines += [f"> ⚠️ {md_text(report.eol_missing)}", ""]
    if not report.bases:
        return "\n".join([*lines, "No base images are declared in `build.images`."]) + "\n"
    lines += ["| Base image | Latest tag | Cycle | EOL |", "|---|---|---|---|"]
    for base in report.bases:
        cycle = md_code(base.latest.cycle) if base.latest.cycle else "—"
        lines.append(
            f"| {md_code(base.base.repository)} | {md_code(base.base.latest_tag)} | {cycle} | "
            f"{eol_cell(base.latest, report.critical_days)} |"
        )
    ending = [
        (base, tag, verdict)
        for base in report.bases
        for tag, verdict in base.tags.items()
        if verdict.eol_status in (EolStatus.WARNING, EolStatus.EOL)
    ]
    if ending:
        lines += ["", "**Tags in use that are at or near end of life**", ""]
        for base, tag, verdict in ending:
            users = sum(1 for app in base.apps if app.tag == tag)
            lines.append(
                f"- {md_code(f'{base.base.repository}:{tag}')}: {eol_cell(verdict, report.critical_days)}, "
                f"{users} application{'s' if users != 1 else ''}"
            )
    return "\n".join(lines) + "\n"


# -- JSON and text -------------------------------------------------------------------------------


def _verdict_json(verdict: TagVerdict) -> dict[str, Any]:
    return {
        "tag": verdict.tag,
        "up_to_date": verdict.up_to_date,
        "cycle": verdict.cycle,
        "eol_date": verdict.eol_date.isoformat() if verdict.eol_date else None,
        "eol_status": str(verdict.eol_status),
        "warnings": list(verdict.warnings),
    }


def render_json(report: StatusReport) -> dict[str, Any]:
    return {
        "generated_at": format_timestamp(report.generated_at),
        "config": report.config_source,
        "eol_data": report.eol_source,
        "eol_data_missing": report.eol_missing,
        "alert_critical_days": report.critical_days,
        "bases": [
            {
                "repository": base.base.repository,
                "type": base.base.image.type,
                "latest": base.base.latest,
                "latest_tag": _verdict_json(base.latest),
                "applications": [
                    {**app.record.to_json(), "base_tag": app.tag, "up_to_date": app.current}
                    for app in base.apps
                ],
            }
            for base in report.bases
        ],
        "orphaned_records": [record.to_json() for record in report.orphans],
        "problems": report.problems,
    }


def render_text(report: StatusReport) -> str:
    lines: list[str] = []
    for base in report.bases:
        latest = base.latest
        date = latest.eol_date.isoformat() if latest.eol_date else "-"
        lines.append(
            f"{base.base.latest}  eol {date} ({latest.eol_status})  "
            f"{base.current_apps}/{len(base.apps)} applications on latest"
        )
        for app in base.apps:
            state = "latest" if app.current else "OUTDATED"
            lines.append(f"  {app.record.image}  on {app.tag}  {state}  ({app.record.project})")
    for record in report.orphans:
        lines.append(f"orphaned: {record.image}  base {record.base} is not declared in build.images")
    if report.eol_missing:
        lines.append(f"warning: {report.eol_missing}")
    return "\n".join(lines) + ("\n" if lines else "")
