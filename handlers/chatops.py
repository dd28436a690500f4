"""Chat-ops: ``/imglife <command>`` in a comment, answered by one reply comment edited as the job goes.

Order of checks: the comment must hold a command line (outside code and quotes); the line must
validate (grammar, configured registries; otherwise a reply says why and shows the help); the
author must have the command's role, asked of the forge at run time (otherwise a reply names the
role and nothing runs). Then: 👀 on the comment, a "working" reply, the work, the reply edited with
the result. The reply is found again by a marker naming the comment, so a re-delivered comment
edits the same reply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import structlog

from bot.basefind import FoundBase
from bot.chatops import ChatCommand, CommandError, CommandLine, first_command, help_text, quote, validate
from bot.config import Command as CommandName
from bot.config import Config, Role
from bot.errors import ImglifeError
from bot.events import Actor
from bot.forges.api import Forge, PermissionUnknown
from bot.oci.reference import parse_reference
from bot.redaction import redact_text
from bot.versions import newest, parse_version
from handlers.context import BotContext, base_images_config, foreign_image, read_repo_config
from handlers.reports import Thread, render_check_comment, reply_marker, upsert_comment
from handlers.review import judge_bases, review_change
from handlers.status import gather_report, md_code, md_text, render_eol_markdown, render_markdown
from handlers.sync import Progress, no_progress
from handlers.tagpush import MSG_FOREIGN_REGISTRY, register_tag

log = structlog.get_logger(__name__)

AVAILABLE: Final[tuple[CommandName, ...]] = ("help", "check", "status", "eol", "register", "sync", "cleanup")
# A long sync or cleanup edits its reply as it goes, at most this often (forges rate-limit edits).
PROGRESS_EDIT_SECONDS: Final = 5.0
PROGRESS_LINES: Final = 15
ROLE_LEVELS: Final[dict[Role, int]] = {
    "guest": 10,
    "reporter": 20,
    "read": 20,
    "developer": 30,
    "write": 30,
    "maintainer": 40,
    "admin": 40,
    "owner": 50,
}
LEVEL_NAMES: Final = {
    0: "no access",
    10: "guest",
    20: "reporter",
    30: "developer",
    40: "maintainer",
    50: "owner",
}
GITEA_NAMES: Final = {0: "no access", 10: "read", 20: "read", 30: "write", 40: "admin", 50: "owner"}

COMMENT_SOURCE = "this comment"
MSG_WORKING = "⏳ Working on {command}…"
MSG_INVALID = "⚠️ {reason}\n\n{help}"
MSG_REFUSED = "🚫 {command} needs the {role} role in this project (you have {have}); nothing was run."
MSG_ROLE_UNKNOWN = "🚫 {command} was not run: {reason}."
MSG_FAILED = "❌ {command} failed: {reason}"
MSG_INTERNAL = "❌ {command} failed with an internal error; the bot's log has the details."
MSG_DONE_HEADER = "**{command}**"
MSG_CHECK_NEEDS_BASES = "in an issue, name the base images to check: `/imglife check BASE...`"
MSG_NO_IMAGES = (
    "this project publishes no images: `.imglife.yml` on the default branch lists none under `images:`"
)
MSG_NO_TAGS = "{image} has no version tag in the registry; name the tag: `/imglife register TAG`"
MSG_NO_GIT_TAG = "there is no git tag {tag} in this project"
MSG_REGISTERED = "✅ registered {images}"
MSG_NOT_IN_REGISTRY = "{images} not in the registry"


class ChatCommandFailed(ImglifeError):
    """The command ran and failed in part; ``report`` (markdown) says what happened."""

    def __init__(self, report: str) -> None:
        super().__init__("the command failed")
        self.report = report


class Outcome(StrEnum):
    NO_COMMAND = "no_command"
    INVALID = "invalid"
    REFUSED = "refused"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ChatRequest:
    thread: Thread
    comment_id: int
    actor: Actor
    body: str
    sha: str | None  # the MR head from the payload, when the forge sends it
    ref: str | None


def role_name(level: int, *, gitea: bool) -> str:
    names = GITEA_NAMES if gitea else LEVEL_NAMES
    return names.get(level, names[max(k for k in names if k <= level)] if level > 0 else names[0])


def _check_registries(config: Config) -> list[str]:
    return [config.build.registry] if config.build else []


async def _base_config(ctx: BotContext) -> Config | None:
    try:
        config = await base_images_config(ctx)
    except ImglifeError:
        return None
    return config


async def _check(ctx: BotContext, request: ChatRequest, command: ChatCommand, bot_id: int) -> str:
    thread = request.thread
    if not command.bases:
        if not thread.change_request:
            raise ImglifeError(MSG_CHECK_NEEDS_BASES)
        sha = request.sha or await ctx.forge.change_request_head(thread.repo, thread.number)
        if sha is None:
            raise ImglifeError("cannot find the head commit of this merge request")
        review = await review_change(ctx, thread, sha, ref=request.ref, bot_id=bot_id)
        return review.comment
    config = await base_images_config(ctx)
    results = await judge_bases(
        ctx, config, [FoundBase(str(base), COMMENT_SOURCE, None) for base in command.bases]
    )
    registry = config.build.registry if config.build else ""
    return render_check_comment(results, [], registry=registry, files=[], sha=None, strict=False)


async def _register(ctx: BotContext, request: ChatRequest, command: ChatCommand) -> str:
    repo = request.thread.repo
    settings = await read_repo_config(ctx.forge, repo)
    if settings is None or not settings.images:
        raise ImglifeError(MSG_NO_IMAGES)
    if (foreign := foreign_image(ctx.config, settings)) is not None:
        raise ImglifeError(MSG_FOREIGN_REGISTRY.format(image=quote(foreign)))
    tag = command.tag
    if tag is None:
        first = parse_reference(settings.images[0])
        versions = [t for t in await ctx.images.list_tags(first) if parse_version(t) is not None]
        tag = newest(versions)
        if tag is None:
            raise ImglifeError(MSG_NO_TAGS.format(image=settings.images[0]))
    sha = await ctx.forge.tag_commit(repo, tag)
    if sha is None:
        raise ImglifeError(MSG_NO_GIT_TAG.format(tag=quote(tag)))
    attempt = await register_tag(ctx, repo, tag, sha, final=True, wait="this command (no waiting)")
    if attempt.failures:
        raise ImglifeError("; ".join(attempt.failures))
    if attempt.missing:
        raise ImglifeError(MSG_NOT_IN_REGISTRY.format(images=", ".join(attempt.missing)))
    images = ", ".join(md_code(r.record.image) for r in attempt.registered)
    rows = [f"- {md_code(r.record.image)} on {md_code(r.record.base)}" for r in attempt.registered]
    return "\n".join([MSG_REGISTERED.format(images=images), "", *rows]) + "\n"


class ProgressReply:
    """Edits the command's reply with the latest progress lines, at most every PROGRESS_EDIT_SECONDS."""

    def __init__(self, forge: Forge, thread: Thread, reply_id: int, header: str) -> None:
        self._forge, self._thread, self._reply_id, self._header = forge, thread, reply_id, header
        self._lines: list[str] = []
        self._edited = time.monotonic()

    async def __call__(self, line: str) -> None:
        self._lines.append(line)
        if time.monotonic() - self._edited < PROGRESS_EDIT_SECONDS:
            return
        self._edited = time.monotonic()
        shown = "\n".join(f"- {md_text(item)}" for item in self._lines[-PROGRESS_LINES:])
        body = f"{self._header}\n\n{shown}\n"
        thread = self._thread
        await self._forge.edit_comment(
            thread.repo, thread.number, self._reply_id, body, change_request=thread.change_request
        )


async def _run(
    ctx: BotContext, request: ChatRequest, command: ChatCommand, bot_id: int, progress: Progress
) -> str:
    if command.name == "sync":
        summary = await ctx.mirror(only=command.sources, dry_run=command.dry_run, on_progress=progress)
        if not summary.ok:
            raise ChatCommandFailed(summary.markdown())
        return summary.markdown()
    if command.name == "cleanup":
        cleaned = await ctx.purge(dry_run=command.dry_run, on_progress=progress)
        if cleaned.failed:
            raise ChatCommandFailed(cleaned.markdown())
        return cleaned.markdown()
    if command.name == "help":
        return help_text(AVAILABLE) + "\n"
    if command.name == "check":
        return await _check(ctx, request, command, bot_id)
    if command.name == "register":
        return await _register(ctx, request, command)
    config = await base_images_config(ctx)
    report = await gather_report(
        config,
        store=ctx.store,
        fetch=ctx.fetch,
        now=ctx.now(),
        critical=ctx.critical_days,
        config_source=ctx.store.description,
    )
    return render_eol_markdown(report) if command.name == "eol" else render_markdown(report)


async def answer_comment(ctx: BotContext, request: ChatRequest, *, bot_id: int) -> Outcome:
    """Run the first ``/imglife`` command of a comment, if any, and answer it in one reply."""
    line: CommandLine | None = first_command(request.body)
    if line is None:
        return Outcome.NO_COMMAND
    thread = request.thread
    mark = reply_marker(request.comment_id)
    shown = md_code(line.raw[:80])
    base_config = await _base_config(ctx)
    registries = _check_registries(base_config or ctx.config)
    # sync runs the bot's own configuration, so its entries are the ones a comment may name.
    sync_sources = [name for entry in ctx.config.sync.entries for name in (entry.source, entry.target)]
    command = validate(line, registries=registries, sync_sources=sync_sources, available=AVAILABLE)
    if isinstance(command, CommandError):
        body = MSG_INVALID.format(reason=command.message, help=help_text(AVAILABLE))
        await upsert_comment(ctx.forge, thread, mark, body, bot_id=bot_id)
        return Outcome.INVALID
    role = ctx.config.bot.permission_for(command.name)
    needed = ROLE_LEVELS[role]
    try:
        have = await ctx.forge.access_level(thread.repo, request.actor)
    except PermissionUnknown as exc:
        body = MSG_ROLE_UNKNOWN.format(command=shown, reason=md_text(str(exc)))
        await upsert_comment(ctx.forge, thread, mark, body, bot_id=bot_id)
        return Outcome.REFUSED
    if have < needed:
        gitea = thread.repo.forge == "gitea"
        body = MSG_REFUSED.format(
            command=shown, role=role_name(needed, gitea=gitea), have=role_name(have, gitea=gitea)
        )
        await upsert_comment(ctx.forge, thread, mark, body, bot_id=bot_id)
        return Outcome.REFUSED
    await ctx.forge.react(
        thread.repo, thread.number, request.comment_id, change_request=thread.change_request
    )
    working = MSG_WORKING.format(command=shown)
    reply_id = await upsert_comment(ctx.forge, thread, mark, working, bot_id=bot_id)
    progress = ProgressReply(ctx.forge, thread, reply_id, f"{mark}\n{working}") if reply_id else no_progress
    try:
        result = await _run(ctx, request, command, bot_id, progress)
    except ChatCommandFailed as exc:
        body = f"{MSG_DONE_HEADER.format(command=shown)}\n\n{exc.report}"
        await upsert_comment(ctx.forge, thread, mark, body, bot_id=bot_id)
        return Outcome.FAILED
    except ImglifeError as exc:
        body = MSG_FAILED.format(command=shown, reason=md_text(redact_text(str(exc))))
        await upsert_comment(ctx.forge, thread, mark, body, bot_id=bot_id)
        return Outcome.FAILED
    except Exception:
        log.exception("chatops_command_crashed", command=command.name)
        await upsert_comment(ctx.forge, thread, mark, MSG_INTERNAL.format(command=shown), bot_id=bot_id)
        return Outcome.FAILED
    body = f"{MSG_DONE_HEADER.format(command=shown)}\n\n{result}"
    await upsert_comment(ctx.forge, thread, mark, body, bot_id=bot_id)
    return Outcome.DONE
