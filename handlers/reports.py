"""The bot's comments: one per merge request (and per chat-ops command), found again and edited in place.

A comment is the bot's when it carries the hidden marker **and** was written by the bot's own user:
a marker pasted by someone else (or quoted in a reply) never makes the bot edit that person's
comment. Check results are rendered here as a markdown table; every untrusted value (references
from files, tags, file names) goes through :func:`md_code`/:func:`md_text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.basefind import FoundBase
from bot.events import Repo
from bot.forges.api import Comment, Forge
from handlers.check import CheckResult
from handlers.status import md_code, md_text

MARKER_TEMPLATE = "<!-- imglife:{kind} -->"
CHECK_MARKER_KIND = "check"
REPLY_MARKER_KIND = "reply:{comment_id}"

CHECK_TITLE = "### imglife: base image check"
CHECK_HEADER = "| Base image | Found in | Latest | Up to date | End of life |"
CHECK_RULE = "|---|---|---|---|---|"
UP_TO_DATE_LABELS = {True: "✅ yes", False: "⚠️ no", None: "❔ unknown"}
EOL_LABELS = {"ok": "✅ supported", "warning": "⚠️ soon", "eol": "❌ ended", "unknown": "❔ unknown"}
MSG_NO_BASES = "No base image from {registry} was found in {files}."
MSG_CHECKED_AT = "_Checked at {sha}{strict}._"
MSG_STRICT = " (strict: a failed check fails the commit status)"
MSG_BAD_SETTINGS = (
    "`.imglife.yml` on the default branch is invalid, so this change was not checked; fix it there:"
)
MAX_LISTED_FILES = 10


def marker(kind: str) -> str:
    return MARKER_TEMPLATE.format(kind=kind)


def reply_marker(comment_id: int) -> str:
    return marker(REPLY_MARKER_KIND.format(comment_id=comment_id))


def find_own_comment(comments: Sequence[Comment], mark: str, bot_id: int) -> Comment | None:
    """The bot's comment carrying ``mark``: both the marker and the author must match."""
    for comment in comments:
        if comment.author_id == bot_id and mark in comment.body:
            return comment
    return None


@dataclass(frozen=True, slots=True)
class Thread:
    """Where a reply goes: an MR/PR or an issue of a repository."""

    repo: Repo
    number: int
    change_request: bool


async def upsert_comment(
    forge: Forge, thread: Thread, mark: str, body: str, *, bot_id: int, create: bool = True
) -> int | None:
    """Edit the bot's comment carrying ``mark``, or create it (unless ``create`` is False).

    Returns the comment id, or None when there was none and ``create`` is False.
    """
    comments = await forge.comments(thread.repo, thread.number, change_request=thread.change_request)
    text = f"{mark}\n{body}"
    existing = find_own_comment(comments, mark, bot_id)
    if existing is None:
        if not create:
            return None
        created = await forge.create_comment(
            thread.repo, thread.number, text, change_request=thread.change_request
        )
        return created.id
    if existing.body != text:
        await forge.edit_comment(
            thread.repo, thread.number, existing.id, text, change_request=thread.change_request
        )
    return existing.id


def _eol_cell(result: CheckResult) -> str:
    label = EOL_LABELS.get(str(result.eol_status), str(result.eol_status))
    return f"{label} ({result.eol_date.isoformat()})" if result.eol_date else label


def render_check_table(results: Sequence[tuple[FoundBase, CheckResult]]) -> list[str]:
    lines = [CHECK_HEADER, CHECK_RULE]
    for found, result in results:
        latest = md_code(result.latest) if result.latest else "—"
        cells = [
            md_code(result.base),
            md_code(found.source),
            latest,
            UP_TO_DATE_LABELS[result.up_to_date],
            _eol_cell(result),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_config_problems(problems: Sequence[str]) -> str:
    """The MR comment when ``.imglife.yml`` on the default branch cannot be used."""
    lines = [CHECK_TITLE, "", MSG_BAD_SETTINGS, ""]
    lines += [f"- {md_text(problem)}" for problem in problems]
    return "\n".join(lines) + "\n"


def render_check_comment(
    results: Sequence[tuple[FoundBase, CheckResult]],
    problems: Sequence[FoundBase],
    *,
    registry: str,
    files: Sequence[str],
    sha: str | None,
    strict: bool,
) -> str:
    """The MR comment: the table, then warnings and the references that could not be read."""
    lines = [CHECK_TITLE, ""]
    if results:
        lines += render_check_table(results)
    elif not problems:
        shown = ", ".join(md_code(name) for name in files[:MAX_LISTED_FILES]) or "no file"
        lines.append(MSG_NO_BASES.format(registry=md_code(registry), files=shown))
    warnings = [(result.base, warning) for _found, result in results for warning in result.warnings]
    if warnings:
        lines += ["", "**Warnings**", ""]
        lines += [f"- {md_code(base)}: {md_text(warning)}" for base, warning in warnings]
    if problems:
        lines += ["", "**Could not be checked**", ""]
        for item in problems:
            what = f"{md_code(item.reference)} in " if item.reference else ""
            lines.append(f"- {what}{md_code(item.source)}: {md_text(item.problem or '')}")
    if sha is not None:
        lines += ["", MSG_CHECKED_AT.format(sha=md_code(sha[:12]), strict=MSG_STRICT if strict else "")]
    return "\n".join(lines) + "\n"
