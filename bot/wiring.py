"""The one place that builds concrete clients from configuration and environment.

Commands ask for what they need by name; the command's least-privilege scope travels with
every client built here, so a command cannot reach a system its row of the scope table does
not name.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TypeVar
from urllib.parse import urlsplit

from bot.config import Config, insecure_hosts
from bot.credentials import Access, CredentialResolver, CredentialScope, ScopedCredentials
from bot.errors import ConfigError, ImglifeError
from bot.events import Forge as ForgeKind
from bot.forges.api import Forge, GiteaForge, GitLabForge
from bot.http import HttpClient, TransportError
from bot.oci.client import RegistryClient
from bot.records import RecordStore
from bot.records.gitea import GiteaRecordStore
from bot.records.gitlab import GitLabRecordStore
from bot.records.guard import ScopedRecordStore
from bot.records.local import LocalRecordStore
from bot.redaction import register_secret

T = TypeVar("T")
# provider -> (variable, header, value template): how a forge's raw-file URLs authenticate.
FORGE_TOKEN_HEADERS = {
    "gitlab": ("GITLAB_TOKEN", "PRIVATE-TOKEN", "{}"),
    "gitea": ("GITEA_TOKEN", "Authorization", "token {}"),
}


def _required(value: T | None, key: str) -> T:
    # The schema's provider checks make these present; this keeps the types honest.
    if value is None:
        raise ConfigError([f"registry.{key}: required for this provider"])
    return value


def registry_client(config: Config | None, environ: Mapping[str, str], command: str) -> RegistryClient:
    """An OCI registry client for ``command``, with its credentials and insecure hosts."""
    scope = CredentialScope.for_command(command)
    credentials = ScopedCredentials(CredentialResolver(environ), scope)
    insecure = insecure_hosts(config) if config is not None else frozenset()
    return RegistryClient(credentials, scope=scope, insecure_hosts=insecure)


def record_store(config: Config, environ: Mapping[str, str], command: str) -> RecordStore:
    """The build-record store named by ``registry.provider``, limited to ``command``'s scope."""
    scope = CredentialScope.for_command(command, eol_target=config.lifecycle.eol_target)
    credentials = ScopedCredentials(CredentialResolver(environ), scope)
    registry = config.registry
    # Reads of a public project may go without a token; writes need one, and say so up front.
    require = scope.allows(Access.PACKAGES_WRITE)
    store: RecordStore
    if registry.provider == "local":
        scope.require(Access.PACKAGES_READ, what=f"read build records in {registry.path}")
        store = LocalRecordStore(_required(registry.path, "path"))
    elif registry.provider == "gitlab":
        token = credentials.package_credentials("gitlab", environ, require=require).token
        url = registry.api_url or _required(registry.url, "url")
        if registry.project_id is None:
            raise ConfigError(["registry.project_id: required for provider gitlab"])
        store = GitLabRecordStore(url, registry.project_id, token)
    elif registry.provider == "gitea":
        token = credentials.package_credentials("gitea", environ, require=require).token
        store = GiteaRecordStore(_required(registry.url, "url"), _required(registry.owner, "owner"), token)
    else:
        # Imported here: aioboto3 costs a third of a second at start-up, and only S3 needs it.
        from bot.records.s3 import S3RecordStore

        credential = credentials.package_credentials("s3", environ, require=True)
        # An explicit registry.region wins; otherwise AWS_REGION, then the default.
        explicit = "region" in registry.model_fields_set
        region = registry.region if explicit else (credential.region or registry.region)
        store = S3RecordStore(
            _required(registry.bucket, "bucket"),
            credential,
            endpoint=registry.url,
            region=region,
            prefix=registry.prefix,
        )
    return ScopedRecordStore(store, scope)


class UrlFetcher:
    """GET a file by URL (``check --config-url``); the forge token goes only to the forge's origin."""

    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self._http = HttpClient(service="fetch", max_connections=4)
        self._origin: tuple[str, str] | None = None
        self._auth: dict[str, str] = {}
        registry = config.registry
        forge_url = registry.api_url or registry.url
        header = FORGE_TOKEN_HEADERS.get(registry.provider)
        if header is not None and forge_url and environ.get(header[0]):
            variable, name, template = header
            self._origin, self._auth = _origin(forge_url), {name: template.format(environ[variable])}

    async def __call__(self, url: str) -> bytes:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ImglifeError(f"cannot fetch {url}: only http:// and https:// URLs are supported")
        headers = self._auth if self._origin is not None and _origin(url) == self._origin else None
        try:
            response = await self._http.request("GET", url, headers=headers)
        except TransportError as exc:
            raise ImglifeError(f"cannot fetch {url}: {exc}") from exc
        if response.status_code != 200:
            raise ImglifeError(f"cannot fetch {url}: HTTP {response.status_code}")
        return response.content

    async def aclose(self) -> None:
        await self._http.aclose()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def lifecycle_sources(
    stack: AsyncExitStack, config: Config, environ: Mapping[str, str], command: str
) -> tuple[RecordStore, UrlFetcher]:
    """The store and URL fetcher that check, status and eol notify read from, closed with ``stack``."""
    store = record_store(config, environ, command)
    stack.push_async_callback(store.aclose)
    fetch = UrlFetcher(config, environ)
    stack.push_async_callback(fetch.aclose)
    return store, fetch


def forge_client(config: Config, environ: Mapping[str, str], forge: ForgeKind) -> Forge | None:
    """The API client the bot answers ``forge``'s webhooks with; None without a URL or a token."""
    gitlab = forge is ForgeKind.GITLAB
    url = config.forge_url("gitlab" if gitlab else "gitea")
    variable = FORGE_TOKEN_HEADERS[str(forge)][0]
    token = environ.get(variable, "").strip()
    if not url or not token:
        return None
    register_secret(token)
    return GitLabForge(url, token) if gitlab else GiteaForge(url, token)
