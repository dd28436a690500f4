"""What the bot's jobs run with: the configuration in force, the forge clients and the stores.

The configuration can be replaced while serving (a push to ``bot.config_repo``); each job takes
the configuration current when it starts, with the record store and registry client built for it.
Clients built for a replaced configuration are closed at shutdown, not while a job may use them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.config import Config
from bot.events import Forge as ForgeKind
from bot.forges.api import Forge
from bot.oci.client import RegistryClient
from bot.oci.copy import ImageCopier
from bot.oci.hub import DockerHubTags
from bot.records import RecordStore
from bot.wiring import UrlFetcher, forge_client, record_store, registry_client
from handlers.cleanup import CleanupSummary, cleanup_registry
from handlers.context import BotContext
from handlers.sync import Progress, SyncSummary, sync_mirrors, sync_parallelism

COMMAND_NAME = "serve"


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
    ) -> None:
        self._path = config_path
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
        self._services = self._build(config)

    @property
    def config(self) -> Config:
        return self._services.config

    def _build(self, config: Config) -> _Services:
        return _Services(
            config,
            record_store(config, self._environ, COMMAND_NAME),
            registry_client(config, self._environ, COMMAND_NAME),
            UrlFetcher(config, self._environ),
            DockerHubTags(config.sync.dockerhub_api_url),
            self._parallelism,
            self._environ,
            self._on_bytes,
        )

    def replace_config(self, config: Config) -> None:
        """Use ``config`` for every job that starts from now on.

        Of the ``bot`` section only what jobs read is taken (``permissions``, ``register_wait``):
        the listener, the workers, the forge clients and ``config_repo`` stay as started, so a
        reloaded file cannot stop later reloads or point the bot at another forge.
        """
        running = self._services.config.bot
        bot = running.model_copy(
            update={"permissions": config.bot.permissions, "register_wait": config.bot.register_wait}
        )
        self._retired.append(self._services)
        self._services = self._build(config.model_copy(update={"bot": bot}))

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
