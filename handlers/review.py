"""Merge/pull request check: the base images a change builds on, judged, as a status and one comment.

Files are read at the change's head SHA (its Dockerfiles and CI variables), settings from
``.imglife.yml`` on the default branch. A repository with no base image from ``build.registry``
and no earlier imglife comment is left alone: the bot does not comment on projects it has nothing
to say about.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from bot.basefind import FoundBase, bases_in_registry, find_bases_in_ci, find_bases_in_dockerfile
from bot.config import Config
from bot.events import Forge as ForgeKind
from bot.events import Repo
from bot.forges.api import CommitState, CommitStatus
from bot.repoconfig import RepoConfig, RepoConfigError
from handlers import sources
from handlers.check import CheckResult, check_base
from handlers.context import BotContext, base_images_config, read_repo_config
from handlers.reports import (
    CHECK_MARKER_KIND,
    Thread,
    marker,
    render_check_comment,
    render_config_problems,
    upsert_comment,
)

STATUS_CONTEXT = "imglife/check"
GITLAB_CI_FILE = ".gitlab-ci.yml"
WORKFLOW_DIRECTORIES = (".gitea/workflows", ".forgejo/workflows", ".github/workflows")
WORKFLOW_SUFFIXES = (".yml", ".yaml")
MAX_WORKFLOW_FILES = 20

MSG_ALL_GOOD = "{count} base image{s} up to date and supported"
MSG_FINDINGS = "{count} base image{s}: {findings}"
MSG_NONE_FOUND = "no base image from {registry} found"
MSG_INVALID_SETTINGS = "invalid .imglife.yml: {problem}"
MSG_MISSING_DOCKERFILE = "listed in .imglife.yml but not found at this commit"


@dataclass(frozen=True, slots=True)
class Review:
    """The outcome of one check of a change; ``posted`` is False when the bot stayed silent."""

    results: tuple[tuple[FoundBase, CheckResult], ...]
    problems: tuple[FoundBase, ...]
    state: CommitState
    description: str
    comment: str
    posted: bool


async def _scan_files(
    ctx: BotContext, repo: Repo, settings: RepoConfig, sha: str
) -> tuple[list[FoundBase], list[str]]:
    """Every base reference in the change's Dockerfiles and CI files, and the names of the files read."""
    found: list[FoundBase] = []
    files: list[str] = []
    for path in settings.dockerfiles:
        raw = await ctx.forge.read_file(repo, path, ref=sha)
        if raw is None:
            if settings.dockerfiles != RepoConfig().dockerfiles:
                found.append(FoundBase("", path, None, MSG_MISSING_DOCKERFILE))
            continue
        files.append(path)
        found += find_bases_in_dockerfile(raw.decode("utf-8", errors="replace"), path)
    ci_files = [GITLAB_CI_FILE] if repo.forge is ForgeKind.GITLAB else []
    if repo.forge is ForgeKind.GITEA:
        for directory in WORKFLOW_DIRECTORIES:
            listed = await ctx.forge.list_directory(repo, directory, ref=sha)
            ci_files += [name for name in listed if name.endswith(WORKFLOW_SUFFIXES)]
    for path in ci_files[:MAX_WORKFLOW_FILES]:
        raw = await ctx.forge.read_file(repo, path, ref=sha)
        if raw is None:
            continue
        files.append(path)
        # YAML parsing of a contributor's file runs off the event loop (PyYAML is slow on hostile input).
        found += await asyncio.to_thread(find_bases_in_ci, raw.decode("utf-8", errors="replace"), path)
    return found, files


def _verdict(
    results: Sequence[tuple[FoundBase, CheckResult]],
    problems: Sequence[FoundBase],
    *,
    strict: bool,
    registry: str,
) -> tuple[CommitState, str]:
    count = len(results)
    if not count and not problems:
        return CommitState.SUCCESS, MSG_NONE_FOUND.format(registry=registry)
    findings = []
    outdated = sum(1 for _f, r in results if r.up_to_date is False)
    ended = sum(1 for _f, r in results if str(r.eol_status) == "eol")
    unknown = sum(1 for _f, r in results if not r.known) + len(problems)
    if outdated:
        findings.append(f"{outdated} outdated")
    if ended:
        findings.append(f"{ended} at end of life")
    if unknown:
        findings.append(f"{unknown} unknown")
    plural = "" if count == 1 else "s"
    if not findings:
        return CommitState.SUCCESS, MSG_ALL_GOOD.format(count=count, s=plural)
    failed = strict and (any(r.fails_strict() for _f, r in results) or bool(problems))
    state = CommitState.FAILURE if failed else CommitState.SUCCESS
    return state, MSG_FINDINGS.format(count=count, s=plural, findings=", ".join(findings))


async def judge_bases(
    ctx: BotContext, config: Config, bases: Sequence[FoundBase]
) -> tuple[tuple[FoundBase, CheckResult], ...]:
    """Each base checked against ``config`` and the EOL data it names."""
    eol, loaded = await sources.eol_data(config, eol_url=None, fetch=ctx.fetch, store=ctx.store)
    today = ctx.now().date()
    return tuple(
        (
            item,
            check_base(
                item.reference, config, eol, today=today, critical=ctx.critical_days, eol_note=loaded.missing
            ),
        )
        for item in bases
    )


async def review_change(ctx: BotContext, thread: Thread, sha: str, *, ref: str | None, bot_id: int) -> Review:
    """Check the bases of the change at ``sha``; post ``imglife/check`` and the one MR comment."""
    repo = thread.repo
    try:
        settings = await read_repo_config(ctx.forge, repo) or RepoConfig()
    except RepoConfigError as exc:
        # Said where the author looks: a silent bot would leave them guessing.
        body = render_config_problems(exc.problems)
        await upsert_comment(ctx.forge, thread, marker(CHECK_MARKER_KIND), body, bot_id=bot_id)
        description = MSG_INVALID_SETTINGS.format(problem=exc.problems[0] if exc.problems else exc)
        status = CommitStatus(STATUS_CONTEXT, CommitState.FAILURE, description)
        await ctx.forge.set_status(repo, sha, status, ref=ref)
        return Review((), (), CommitState.FAILURE, description, body, posted=True)
    found, files = await _scan_files(ctx, repo, settings, sha)
    base_config = await base_images_config(ctx)
    registry = base_config.build.registry if base_config.build else ""  # never empty: checked by the loader
    bases, problems = bases_in_registry(found, registry)
    results = await judge_bases(ctx, base_config, bases)
    state, description = _verdict(results, problems, strict=settings.check.strict, registry=registry)
    body = render_check_comment(
        results, problems, registry=registry, files=files, sha=sha, strict=settings.check.strict
    )
    # Silent where there is nothing to say and nothing said before; otherwise the one comment is kept current.
    quiet = not results and not problems
    posted = await upsert_comment(
        ctx.forge, thread, marker(CHECK_MARKER_KIND), body, bot_id=bot_id, create=not quiet
    )
    if posted is not None:
        await ctx.forge.set_status(repo, sha, CommitStatus(STATUS_CONTEXT, state, description), ref=ref)
    return Review(results, tuple(problems), state, description, body, posted=posted is not None)
