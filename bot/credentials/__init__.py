"""Credentials: OCI registries (per host), the package registry, and least-privilege scopes.

- :mod:`bot.credentials.registry`: :class:`CredentialResolver` picks the credential for a registry
  host: ``IMGLIFE_<HOST>_*`` > GitLab CI job token > Docker CLI config > anonymous.
- :mod:`bot.credentials.docker_config`: the Docker CLI ``config.json`` and credential helpers.
- :mod:`bot.credentials.packages`: ``GITLAB_TOKEN`` / ``GITEA_TOKEN`` / ``AWS_*`` for record stores.
- :mod:`bot.credentials.scope`: which command may reach which system, and the guard enforcing it.

Every secret value read anywhere in this package is registered with
:func:`bot.redaction.register_secret`, and no credential object shows a secret in its ``repr``.
"""

from __future__ import annotations

from bot.credentials.docker_config import DockerAuth, DockerConfig, docker_config_path, registry_host
from bot.credentials.packages import PackageRegistryCredential, package_registry_credentials
from bot.credentials.registry import ANONYMOUS, CredentialResolver, RegistryCredential, env_prefix
from bot.credentials.scope import (
    ACCESS_ACTIONS,
    COMMAND_ACCESS,
    Access,
    CredentialScope,
    RegistryCredentialSource,
    ScopedCredentials,
)

__all__ = [
    "ACCESS_ACTIONS",
    "ANONYMOUS",
    "COMMAND_ACCESS",
    "Access",
    "CredentialResolver",
    "CredentialScope",
    "DockerAuth",
    "DockerConfig",
    "PackageRegistryCredential",
    "RegistryCredential",
    "RegistryCredentialSource",
    "ScopedCredentials",
    "docker_config_path",
    "env_prefix",
    "package_registry_credentials",
    "registry_host",
]
