"""Tag push: register the build records of the images a project publishes for that tag.

One attempt looks at every image still missing: those already in the registry are registered
(base from the image's annotations or labels, else the one base image of ``build.registry`` its
Dockerfiles name at the tag's commit; platforms from the image), the others are reported back as
missing so the caller can try again later (bounded by ``bot.register_wait``). The commit status
``imglife/register`` says where things stand after every attempt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.basefind import FoundBase, bases_in_registry, find_bases_in_dockerfile
from bot.errors import ImglifeError, RegistryUnavailable
from bot.events import Repo
from bot.forges.api import CommitState, CommitStatus
from bot.oci.reference import parse_reference
from bot.repoconfig import RepoConfig, RepoConfigError
from handlers.context import BotContext, base_images_config, foreign_image, read_repo_config
from handlers.inspect import describe_image
from handlers.register import RegisterRequest, Registration, register_build

STATUS_CONTEXT = "imglife/register"
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")  # the OCI tag grammar

MSG_BAD_TAG = "git tag {tag!r} is not a valid image tag (letters, digits, '_', '.', '-'; at most 128)"
MSG_WAITING = "waiting for {missing} in the registry ({done} of {total} registered)"
MSG_TIMED_OUT = "{missing} did not appear in the registry within {wait}"
MSG_REGISTERED = "registered {images} on {bases}"
MSG_FAILED = "{image}: {reason}"
MSG_FOREIGN_REGISTRY = "{image} (.imglife.yml) is not on a registry this bot is configured for"
MSG_NO_BASE = (
    "no base image: the image has no org.opencontainers.image.base.name annotation or label, and its "
    "Dockerfiles name {found}"
)
MSG_NO_BASE_FOUND = "no base image from the base-images registry"
MSG_SEVERAL_BASES = "several base images ({bases})"


@dataclass(frozen=True, slots=True)
class TagAttempt:
    """What one attempt did; ``missing`` are the image references to try again."""

    images: tuple[str, ...]  # every image reference for this tag (repository:tag)
    registered: tuple[Registration, ...]
    missing: tuple[str, ...]
    failures: tuple[str, ...]

    @property
    def done(self) -> bool:
        return not self.missing


NOTHING = TagAttempt((), (), (), ())


def image_references(settings: RepoConfig, tag: str) -> tuple[str, ...]:
    return tuple(f"{image}:{tag}" for image in settings.images)


async def _dockerfile_base(ctx: BotContext, repo: Repo, settings: RepoConfig, sha: str) -> str:
    """The one base of ``build.registry`` the Dockerfiles at ``sha`` build on; raises when not exactly one."""
    found: list[FoundBase] = []
    for path in settings.dockerfiles:
        raw = await ctx.forge.read_file(repo, path, ref=sha)
        if raw is not None:
            found += find_bases_in_dockerfile(raw.decode("utf-8", errors="replace"), path)
    config = await base_images_config(ctx)
    registry = config.build.registry if config.build else ""
    bases = [item.reference for item in bases_in_registry(found, registry).bases]
    if len(bases) == 1:
        return bases[0]
    found_text = MSG_SEVERAL_BASES.format(bases=", ".join(bases)) if bases else MSG_NO_BASE_FOUND
    raise ImglifeError(MSG_NO_BASE.format(found=found_text))


async def _register_one(
    ctx: BotContext, repo: Repo, settings: RepoConfig, image: str, sha: str
) -> Registration | None:
    """Register ``image`` if the registry has it; None when it is not there (yet)."""
    ref = parse_reference(image)
    if await ctx.images.head_manifest(ref) is None:
        return None
    description = await describe_image(ctx.images, ref)
    base = description.base_name or await _dockerfile_base(ctx, repo, settings, sha)
    request = RegisterRequest(
        image=image, revision=sha, project=repo.path, base=base, platforms=tuple(description.platforms)
    )
    return await register_build(request, store=ctx.store, images=None, now=ctx.now())


def _status(attempt: TagAttempt, *, final: bool, wait: str) -> CommitStatus:
    total, done = len(attempt.images), len(attempt.images) - len(attempt.missing) - len(attempt.failures)
    if attempt.failures:
        return CommitStatus(STATUS_CONTEXT, CommitState.FAILURE, "; ".join(attempt.failures))
    missing = ", ".join(attempt.missing)
    if attempt.missing and not final:
        text = MSG_WAITING.format(missing=missing, done=done, total=total)
        return CommitStatus(STATUS_CONTEXT, CommitState.PENDING, text)
    if attempt.missing:
        return CommitStatus(
            STATUS_CONTEXT, CommitState.FAILURE, MSG_TIMED_OUT.format(missing=missing, wait=wait)
        )
    images = ", ".join(r.record.image for r in attempt.registered) or "the images"
    bases = ", ".join(sorted({r.record.base for r in attempt.registered})) or "their bases"
    return CommitStatus(
        STATUS_CONTEXT, CommitState.SUCCESS, MSG_REGISTERED.format(images=images, bases=bases)
    )


async def _refuse(ctx: BotContext, repo: Repo, sha: str, tag: str, reason: str) -> TagAttempt:
    attempt = TagAttempt((), (), (), (reason,))
    await ctx.forge.set_status(repo, sha, _status(attempt, final=True, wait=""), ref=tag)
    return attempt


async def register_tag(
    ctx: BotContext,
    repo: Repo,
    tag: str,
    sha: str,
    *,
    pending: Sequence[str] | None = None,
    final: bool,
    wait: str,
) -> TagAttempt:
    """One attempt for ``tag`` at commit ``sha``; ``pending`` narrows it to images still missing.

    Posts ``imglife/register`` on ``sha`` unless the project publishes no images. ``final`` says
    there will be no further attempt, so a missing image fails the status (``wait`` says how long
    was waited, for the message).
    """
    if pending is None:
        try:
            settings = await read_repo_config(ctx.forge, repo)
        except RepoConfigError as exc:
            return await _refuse(ctx, repo, sha, tag, exc.problems[0] if exc.problems else str(exc))
        if settings is None or not settings.images:
            return NOTHING
        if not TAG_RE.match(tag):
            return await _refuse(ctx, repo, sha, tag, MSG_BAD_TAG.format(tag=tag))
        if (foreign := foreign_image(ctx.config, settings)) is not None:
            return await _refuse(ctx, repo, sha, tag, MSG_FOREIGN_REGISTRY.format(image=foreign))
        images = image_references(settings, tag)
    else:
        settings = await read_repo_config(ctx.forge, repo) or RepoConfig()
        images = tuple(pending)
    # Gitea may name the tag object of an annotated tag; the record wants the commit.
    sha = await ctx.forge.tag_commit(repo, tag) or sha
    registered: list[Registration] = []
    missing: list[str] = []
    failures: list[str] = []
    for image in images:
        try:
            registration = await _register_one(ctx, repo, settings, image, sha)
        except RegistryUnavailable:
            missing.append(image)  # a registry that is down now may be up on the next attempt
            continue
        except ImglifeError as exc:
            failures.append(MSG_FAILED.format(image=image, reason=exc))
            continue
        if registration is None:
            missing.append(image)
        else:
            registered.append(registration)
    attempt = TagAttempt(images, tuple(registered), tuple(missing), tuple(failures))
    await ctx.forge.set_status(repo, sha, _status(attempt, final=final, wait=wait), ref=tag)
    return attempt
