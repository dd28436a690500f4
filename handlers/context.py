"""What the bot's handlers work with: the forge, the stores and the clock, as interfaces only.

``bot/server/router.py`` builds one :class:`BotContext` per job from the configuration in force
when the job starts (a reloaded configuration applies to the next job, never half-way through one).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.config import Config, insecure_hosts, parse_config
from bot.events import Repo
from bot.forges.api import Forge
from bot.oci.reference import ImageReference, normalize_host, parse_repository
from bot.oci.sansio import Descriptor
from bot.records import RecordStore
from bot.repoconfig import REPO_CONFIG_NAME, RepoConfig, parse_repo_config
from handlers import sources
from handlers.cleanup import CleanupSummary
from handlers.inspect import ImageSource
from handlers.sources import CONFIG_DOCUMENT, Fetch
from handlers.sync import Progress, SyncSummary

# Where .imglife.yml is read from when a payload does not name the default branch.
FALLBACK_REF = "HEAD"
MAX_CACHED_REPO_CONFIGS = 512
# Parsed .imglife.yml by (project, content): the same file is read for every merge request.
_repo_configs: dict[tuple[str, bytes], RepoConfig] = {}


class Mirror(Protocol):
    """``imglife sync`` for the bot: all entries, or those ``only`` names."""

    async def __call__(
        self, *, only: Collection[str], dry_run: bool, on_progress: Progress
    ) -> SyncSummary: ...


class Purge(Protocol):
    """``imglife cleanup`` for the bot (never ``--force``: the safety guard stays on)."""

    async def __call__(self, *, dry_run: bool, on_progress: Progress) -> CleanupSummary: ...


class Images(ImageSource, Protocol):
    """The registry reads the bot makes: describe an image, see whether a tag exists, list tags."""

    async def head_manifest(self, ref: ImageReference) -> Descriptor | None: ...

    async def list_tags(self, repo: ImageReference, *, page_size: int | None = None) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class BotContext:
    forge: Forge
    config: Config  # the bot's imglife.yaml (possibly reloaded from bot.config_repo)
    config_path: Path  # where it was loaded from; relative paths in it are resolved against it
    store: RecordStore
    images: Images
    fetch: Fetch
    critical_days: int
    now: Callable[[], dt.datetime]
    mirror: Mirror
    purge: Purge


async def base_images_config(ctx: BotContext) -> Config:
    """The base-images configuration the checks judge against (package registry, else the bot's own)."""
    config, _ = await sources.base_images_config(
        ctx.config, ctx.config_path, config_url=None, fetch=ctx.fetch, store=ctx.store
    )
    return config


def configured_registries(config: Config) -> frozenset[str]:
    """The OCI registry hosts the operator's ``imglife.yaml`` names.

    ``.imglife.yml`` is written by whoever may push to a project's default branch, not by the
    operator: the images it lists must be on one of these hosts, or the bot would contact any
    host a project names (SSRF).
    """
    hosts = set(insecure_hosts(config))
    for entry in config.sync.entries:
        hosts.update(parse_repository(name).registry for name in (entry.source, entry.target))
    paths = [config.retention.archive.registry]
    if config.build is not None:
        paths.append(config.build.registry)
        hosts.update(parse_repository(i.mirror_image).registry for i in config.build.images if i.mirror_image)
    hosts.update(normalize_host(path.split("/", 1)[0]) for path in paths if path)
    return frozenset(hosts)


def foreign_image(config: Config, settings: RepoConfig) -> str | None:
    """The first image of ``settings`` on a registry the configuration does not name, if any."""
    allowed = configured_registries(config)
    return next((image for image in settings.images if parse_repository(image).registry not in allowed), None)


async def read_repo_config(forge: Forge, repo: Repo) -> RepoConfig | None:
    """``.imglife.yml`` from the default branch (never from a merge request's branch); None when absent.

    Raises :class:`bot.repoconfig.RepoConfigError` when the file is invalid.
    """
    ref = repo.default_branch or FALLBACK_REF
    raw = await forge.read_file(repo, REPO_CONFIG_NAME, ref=ref)
    if raw is None:
        return None
    key = (repo.path, raw)
    cached = _repo_configs.get(key)
    if cached is None:
        text = raw.decode("utf-8", errors="replace")
        # PyYAML is slow on hostile input; keep the event loop (and the acknowledgements) responsive.
        cached = await asyncio.to_thread(parse_repo_config, text, source=f"{repo.path}:{REPO_CONFIG_NAME}")
        if len(_repo_configs) >= MAX_CACHED_REPO_CONFIGS:
            _repo_configs.pop(next(iter(_repo_configs)))
        _repo_configs[key] = cached
    return cached


async def read_bot_config(
    forge: Forge, repo: Repo, sha: str, *, base_dir: Path
) -> tuple[Config, bytes] | None:
    """The base-images ``imglife.yaml`` of ``bot.config_repo`` at ``sha`` and its text; None when absent.

    Raises :class:`bot.errors.ConfigError` listing every problem of an invalid file.
    """
    raw = await forge.read_file(repo, CONFIG_DOCUMENT, ref=sha)
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace")
    config = await asyncio.to_thread(
        parse_config, text, f"{repo.path}:{CONFIG_DOCUMENT}@{sha[:12]}", base_dir
    )
    return config, raw
