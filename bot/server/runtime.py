"""What the bot's jobs run with: the configuration in force, the forge clients and the stores.

The configuration can be replaced while serving (a push to ``bot.config_repo``); each job takes
the configuration current when it starts, with the record store and registry client built for it.
Clients built for a replaced configuration are closed at shutdown, not while a job may use them.
:meth:`BotRuntime.run_scheduled` runs one ``bot.schedule`` job with the configuration in force.

With several replicas (Redis mode) a reload happens on the one replica that ran the job; it
publishes the text through a :class:`ConfigShare`, and every replica adopts the newest published
text before its next job (:meth:`BotRuntime.refresh`) — provided it was started from the same
``imglife.yaml`` (same digest): a replica started from an edited file keeps its own until a reload.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from bot.config import Config, parse_config
from bot.config.schema import ScheduledJob
from bot.errors import ImglifeError
from bot.events import Forge as ForgeKind
from bot.forges.api import Forge
from bot.lifecycle.endoflife import EndOfLifeClient
from bot.oci.client import RegistryClient
from bot.oci.copy import ImageCopier
from bot.oci.hub import DockerHubTags
from bot.records import RecordStore
from bot.wiring import UrlFetcher, forge_client, record_store, registry_client
from handlers.cleanup import CleanupSummary, cleanup_registry
from handlers.context import BotContext
from handlers.eol import eol_notice, notify_targets, post_notice, refresh_eol_data
from handlers.status import gather_report
from handlers.sync import Progress, SyncSummary, no_progress, sync_mirrors, sync_parallelism

COMMAND_NAME = "serve"

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SharedConfig:
    version: int
    source: bytes
    label: str  # where the text came from: "platform/base-images@0123456789ab"
    base: str  # digest of the imglife.yaml the publishing replica was started from


class ConfigShare(Protocol):
    """Where replicas publish a reloaded configuration and find the newest one (Redis mode)."""

    async def publish(self, source: bytes, label: str, base: str) -> int: ...

    async def newer_than(self, version: int) -> SharedConfig | None: ...


@dataclass(frozen=True, slots=True)
class _Services:
    config: Config
    store: RecordStore
    images: RegistryClient
    fetch: UrlFetcher
    hub: DockerHubTags
    parallelism: int
    environ: Mapping[str, str]
    on_bytes: Callable[[int], None]  # the bytes-synced metric
    critical_days: int
    config_source: Callable[[], bytes]  # the text of ``config``, published beside the EOL data

    async def mirror(self, *, only: Collection[str], dry_run: bool, on_progress: Progress) -> SyncSummary:
        return await sync_mirrors(
            self.config,
            client=self.images,
            copier=ImageCopier(self.images, parallelism=self.parallelism, on_bytes=self.on_bytes),
            hub=self.hub,
            only=only,
            dry_run=dry_run,
            on_progress=on_progress,
            parallelism=self.parallelism,
            environ=self.environ,
        )

    async def purge(self, *, dry_run: bool, on_progress: Progress) -> CleanupSummary:
        return await cleanup_registry(
            self.config,
            client=self.images,
            copier=ImageCopier(self.images, parallelism=self.parallelism, on_bytes=self.on_bytes),
            store=self.store,
            now=dt.datetime.now(dt.UTC),
            dry_run=dry_run,
            on_progress=on_progress,
        )

    async def update_eol(self) -> str:
        """``imglife eol update`` with this configuration; the ``job_finished`` outcome."""
        lifecycle = self.config.lifecycle
        to_registry = lifecycle.eol_target == "pkgregistry" and lifecycle.eol_provider != "local"
        client = EndOfLifeClient(str(lifecycle.endoflife_url))
        try:
            refresh = await refresh_eol_data(
                self.config,
                path=lifecycle.eol_data_file,
                store=self.store if to_registry else None,
                fetch=client.fetch,
                config_source=self.config_source,
                dry_run=False,
            )
        finally:
            await client.aclose()
        if refresh.update is None:
            return "local_provider"
        return "updated" if refresh.update.changed else "unchanged"

    async def notify_eol(self, now: dt.datetime) -> str:
        """``imglife eol notify`` with this configuration; the ``job_finished`` outcome.

        Raises :class:`ConfigError` without targets and :class:`ImglifeError` when a post failed.
        """
        targets = notify_targets(self.config, self.environ, required=True)
        report = await gather_report(
            self.config,
            store=self.store,
            fetch=self.fetch,
            now=now,
            critical=self.critical_days,
            config_source=self.store.description,
        )
        notice = eol_notice(report, min_status=self.config.lifecycle.notify.min_status, now=now)
        if notice is None:
            return "nothing_to_send"
        failures = await post_notice(notice, targets)
        if failures:
            raise ImglifeError("\n".join(failures))
        return "sent"

    async def aclose(self) -> None:
        await self.store.aclose()
        await self.images.aclose()
        await self.fetch.aclose()
        await self.hub.aclose()


class BotRuntime:
    def __init__(
        self,
        config: Config,
        config_path: Path,
        environ: Mapping[str, str],
        *,
        critical_days: int,
        on_bytes: Callable[[int], None] = lambda _count: None,
        share: ConfigShare | None = None,
    ) -> None:
        self._path = config_path
        self._share = share
        self._shared_version = 0
        self._environ = environ
        self._critical_days = critical_days
        self._on_bytes = on_bytes
        self._parallelism = sync_parallelism(environ)  # a bad value stops the start (exit 2)
        self.forges: dict[ForgeKind, Forge] = {}
        for kind in ForgeKind:
            client = forge_client(config, environ, kind)
            if client is not None:
                self.forges[kind] = client
        self._retired: list[_Services] = []
        # Read once: the file on disk may change later, but this text is what the bot runs with.
        source = config_path.read_bytes()
        self._base = hashlib.sha256(source).hexdigest()
        self._services = self._build(config, lambda: source)

    @property
    def config(self) -> Config:
        return self._services.config

    def _build(self, config: Config, source: Callable[[], bytes]) -> _Services:
        return _Services(
            config,
            record_store(config, self._environ, COMMAND_NAME),
            registry_client(config, self._environ, COMMAND_NAME),
            UrlFetcher(config, self._environ),
            DockerHubTags(config.sync.dockerhub_api_url),
            self._parallelism,
            self._environ,
            self._on_bytes,
            self._critical_days,
            source,
        )

    async def replace_config(self, config: Config, source: bytes, *, label: str) -> None:
        """Use ``config`` (parsed from ``source``) for every job that starts from now on, here and,
        in Redis mode, on every replica (raises :class:`ImglifeError` when it cannot be shared).

        Of the ``bot`` section only what jobs read is taken (``permissions``, ``register_wait``,
        ``job_attempts``, ``retry_delay``): the listener, the workers, the queue, the forge clients,
        ``config_repo`` and ``schedule`` stay as started, so a reloaded file cannot stop later
        reloads or point the bot at another forge.
        """
        self._use(config, source)
        if self._share is not None:
            try:
                self._shared_version = await self._share.publish(source, label, self._base)
            except Exception as exc:
                raise ImglifeError(
                    f"reloaded here, but could not share the configuration with the other replicas: {exc}"
                ) from exc

    async def refresh(self) -> None:
        """Adopt a configuration another replica reloaded since the last look (Redis mode)."""
        if self._share is None:
            return
        try:
            shared = await self._share.newer_than(self._shared_version)
        except Exception as exc:  # noqa: BLE001 - Redis away: keep the configuration in force
            log.debug("shared_config_unreadable", error=str(exc))
            return
        if shared is None:
            return
        self._shared_version = shared.version
        if shared.base != self._base:
            log.warning(
                "shared_config_ignored", source=shared.label, reason="started from another imglife.yaml"
            )
            return
        text = shared.source.decode("utf-8", errors="replace")
        try:
            config = await asyncio.to_thread(parse_config, text, shared.label, self._path.parent)
        except ImglifeError as exc:
            log.warning("shared_config_ignored", source=shared.label, reason=str(exc))
            return
        self._use(config, shared.source)
        log.info("config_adopted", source=shared.label, version=shared.version)

    def _use(self, config: Config, source: bytes) -> None:
        running = self._services.config.bot
        keep = ("permissions", "register_wait", "job_attempts", "retry_delay")
        bot = running.model_copy(update={name: getattr(config.bot, name) for name in keep})
        self._retired.append(self._services)
        self._services = self._build(config.model_copy(update={"bot": bot}), lambda: source)

    async def run_scheduled(self, job: ScheduledJob) -> str:
        """Run one ``bot.schedule`` job with the configuration in force; its outcome.

        ``cleanup`` never forces: the retention safety guard stays on, as for ``/imglife cleanup``.
        """
        services = self._services
        if job == "sync":
            if not services.config.sync.entries:
                return "no_entries"
            synced = await services.mirror(only=(), dry_run=False, on_progress=no_progress)
            return "synced" if synced.ok else "failed"
        if job == "cleanup":
            purged = await services.purge(dry_run=False, on_progress=no_progress)
            return "failed" if purged.failed else "cleaned"
        if job == "eol update":
            return await services.update_eol()
        return await services.notify_eol(dt.datetime.now(dt.UTC))

    def context(self, forge: ForgeKind) -> BotContext | None:
        client = self.forges.get(forge)
        if client is None:
            return None
        services = self._services
        return BotContext(
            forge=client,
            config=services.config,
            config_path=self._path,
            store=services.store,
            images=services.images,
            fetch=services.fetch,
            critical_days=self._critical_days,
            now=lambda: dt.datetime.now(dt.UTC),
            mirror=services.mirror,
            purge=services.purge,
        )

    async def aclose(self) -> None:
        for services in [*self._retired, self._services]:
            await services.aclose()
        for client in self.forges.values():
            await client.aclose()
