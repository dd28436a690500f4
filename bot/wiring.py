"""The one place that builds concrete clients from configuration and environment.

Commands ask for what they need by name; the command's least-privilege scope travels with
every client built here, so a command cannot reach a system its row of the scope table does
not name.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.config import Config, insecure_hosts
from bot.credentials import CredentialResolver, CredentialScope, ScopedCredentials
from bot.oci.client import RegistryClient


def registry_client(config: Config | None, environ: Mapping[str, str], command: str) -> RegistryClient:
    """An OCI registry client for ``command``, with its credentials and insecure hosts."""
    scope = CredentialScope.for_command(command)
    credentials = ScopedCredentials(CredentialResolver(environ), scope)
    insecure = insecure_hosts(config) if config is not None else frozenset()
    return RegistryClient(credentials, scope=scope, insecure_hosts=insecure)
