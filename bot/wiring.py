"""The one place that builds concrete clients from configuration and environment.

Commands ask for what they need by name; the command's least-privilege scope travels with
every client built here, so a command cannot reach a system its row of the scope table does
not name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from bot.config import Config, insecure_hosts
from bot.credentials import Access, CredentialResolver, CredentialScope, ScopedCredentials
from bot.errors import ConfigError
from bot.oci.client import RegistryClient
from bot.records import RecordStore
from bot.records.gitea import GiteaRecordStore
from bot.records.gitlab import GitLabRecordStore
from bot.records.guard import ScopedRecordStore
from bot.records.local import LocalRecordStore

T = TypeVar("T")


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
    scope = CredentialScope.for_command(command)
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
