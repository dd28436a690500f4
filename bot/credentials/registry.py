"""OCI registry credentials: which credential imglife presents to which registry host.

The rules of SPEC §4 and the upstream *Credentials* page, with the decisions they leave open:

- Hosts are normalised before anything else: scheme, user-info and path are dropped (``$CI_REGISTRY``
  and docker config keys may be URLs), the host is lower-cased, and Docker Hub's aliases
  (``docker.io``, ``index.docker.io``, ``registry-1.docker.io``, ``registry.hub.docker.com``) fold into
  ``docker.io``. Results are cached per normalised host for the life of the resolver.
- Variable names: ``IMGLIFE_`` + the normalised host upper-cased with every character other than an
  ASCII letter or digit replaced by ``_`` (``registry:5000`` -> ``IMGLIFE_REGISTRY_5000``).
- Precedence: ``IMGLIFE_<HOST>_*`` > GitLab CI job token > Docker CLI config > anonymous. The first
  source that names the host decides; a broken source (partial variables, malformed config, failing
  helper) is an error, never silently skipped, so a typo cannot turn into anonymous access.
- An empty variable counts as unset (CI systems often define variables as empty strings).
- ``USERNAME`` + ``PASSWORD`` -> Basic credentials.
- ``TOKEN`` (with or without ``USERNAME``) -> the token is the password, the user is ``USERNAME`` or
  ``imglife``, and ``bearer_fallback`` is set: when the token realm refuses it as a password, the
  client presents the token itself as the bearer (GitHub/Quay-style tokens).
- ``PASSWORD`` and ``TOKEN`` both set -> the password wins (it is the more specific form, and the
  token is still registered for redaction).
- ``USERNAME`` alone, or ``PASSWORD`` without ``USERNAME`` (even with ``TOKEN``) -> CredentialError
  naming the missing variables, never a value.
- GitLab CI: when ``CI_JOB_TOKEN`` and ``CI_REGISTRY`` are both set, the host of ``$CI_REGISTRY``
  (``host``, ``host:port`` or a URL) gets user ``gitlab-ci-token`` with the job token as password,
  unless an ``IMGLIFE_*`` variable names that host. No other host ever receives the job token.
- Docker CLI config and credential helpers: see :mod:`bot.credentials.docker_config`. The config
  file is read once per resolver, only when a host falls through to it.
- Every secret value read is registered with :func:`bot.redaction.register_secret`: the resolver
  registers all ``IMGLIFE_*_PASSWORD``/``IMGLIFE_*_TOKEN`` values and ``CI_JOB_TOKEN`` when it is
  created, and Docker config secrets when they are read;
  :class:`RegistryCredential` never shows a secret in its ``repr``/``str``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.credentials.docker_config import DockerConfig, docker_config_path, registry_host
from bot.errors import CredentialError
from bot.redaction import register_secret

ENV_PREFIX = "IMGLIFE_"
SECRET_VARIABLE_SUFFIXES = ("_PASSWORD", "_TOKEN")
DEFAULT_TOKEN_USERNAME = "imglife"  # noqa: S105 (a user name, not a secret)
CI_JOB_TOKEN_VAR = "CI_JOB_TOKEN"  # noqa: S105 (a variable name)
CI_REGISTRY_VAR = "CI_REGISTRY"
CI_JOB_TOKEN_USERNAME = "gitlab-ci-token"  # noqa: S105 (GitLab's fixed user name)
CI_JOB_TOKEN_SOURCE = "CI_JOB_TOKEN (GitLab CI job token for $CI_REGISTRY)"  # noqa: S105 (a description)
ANONYMOUS_SOURCE = "anonymous"
DEFAULT_HELPER_TIMEOUT = 10.0
_NON_ALNUM_RE = re.compile(r"[^A-Za-z0-9]")

MSG_ENV_NO_USERNAME = (
    "{prefix}_PASSWORD is set but {prefix}_USERNAME is missing: set {prefix}_USERNAME for {host}, "
    "or use {prefix}_TOKEN alone"
)
MSG_ENV_USERNAME_ONLY = (
    "{prefix}_USERNAME is set but {prefix}_PASSWORD and {prefix}_TOKEN are missing: "
    "set {prefix}_PASSWORD (or {prefix}_TOKEN) for {host}"
)
MSG_HINT = "set {prefix}_USERNAME and {prefix}_PASSWORD, or {prefix}_TOKEN"
MSG_EMPTY_HOST = "a registry host is required to look up credentials"


@dataclass(frozen=True, slots=True, repr=False)
class RegistryCredential:
    """A credential for one registry host; ``source`` says where it came from, never what it is."""

    source: str
    username: str | None = None
    password: str | None = None  # a password, or a token used as the password
    identity_token: str | None = None  # OAuth2 refresh token (docker ``identitytoken``, helper "<token>")
    registry_token: str | None = None  # bearer token presented directly (docker ``registrytoken``)
    bearer_fallback: bool = False  # IMGLIFE_<HOST>_TOKEN: may be presented as the bearer itself

    @property
    def is_anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def __repr__(self) -> str:
        kinds = [
            name
            for name, value in (
                ("password", self.password),
                ("identity_token", self.identity_token),
                ("registry_token", self.registry_token),
            )
            if value
        ]
        secrets = ", ".join(f"{name}=<hidden>" for name in kinds)
        extra = f", {secrets}" if secrets else ""
        fallback = ", bearer_fallback=True" if self.bearer_fallback else ""
        return f"RegistryCredential(source={self.source!r}, username={self.username!r}{extra}{fallback})"

    def __str__(self) -> str:
        if self.is_anonymous:
            return ANONYMOUS_SOURCE
        user = f"{self.username} " if self.username else ""
        return f"{user}from {self.source}"


ANONYMOUS = RegistryCredential(source=ANONYMOUS_SOURCE)


def env_prefix(host: str) -> str:
    """``IMGLIFE_<HOST>`` for a registry host: ``registry:5000`` -> ``IMGLIFE_REGISTRY_5000``."""
    return ENV_PREFIX + _NON_ALNUM_RE.sub("_", registry_host(host)).upper()


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value or None


class CredentialResolver:
    """Resolves the credential for each registry host from the environment and the Docker config."""

    def __init__(
        self,
        environ: Mapping[str, str],
        *,
        home: Path | None = None,
        helper_timeout: float = DEFAULT_HELPER_TIMEOUT,
    ) -> None:
        # A snapshot: what a resolver answers must not change under it.
        self._environ = dict(environ)
        # Register every secret the resolver may hand out now, not when its host is first asked
        # for: a value can show up in a log (a URL, an echoed command) before that.
        for name, value in self._environ.items():
            if name == CI_JOB_TOKEN_VAR or (
                name.startswith(ENV_PREFIX) and name.endswith(SECRET_VARIABLE_SUFFIXES)
            ):
                register_secret(value)
        self._home = home
        self._helper_timeout = helper_timeout
        self._cache: dict[str, RegistryCredential] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._docker_config: DockerConfig | None = None
        self._docker_config_loaded = False

    async def resolve(self, host: str) -> RegistryCredential:
        """The credential for ``host`` (any spelling); cached per normalised host."""
        key = registry_host(host)
        if not key:
            raise CredentialError(MSG_EMPTY_HOST)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        # One lookup per host even when many pulls start at once (a helper may prompt or be slow).
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            cached = self._cache.get(key)
            if cached is None:
                cached = await self._resolve_uncached(key)
                self._cache[key] = cached
        return cached

    def hint(self, host: str) -> str:
        """One sentence naming the variables that would give imglife credentials for ``host``."""
        return MSG_HINT.format(prefix=env_prefix(host))

    async def _resolve_uncached(self, host: str) -> RegistryCredential:
        credential = self._from_environment(host) or self._from_job_token(host)
        if credential is not None:
            return credential
        return await self._from_docker_config(host) or ANONYMOUS

    def _from_environment(self, host: str) -> RegistryCredential | None:
        prefix = env_prefix(host)
        username = _env(self._environ, f"{prefix}_USERNAME")
        password = _env(self._environ, f"{prefix}_PASSWORD")
        token = _env(self._environ, f"{prefix}_TOKEN")
        register_secret(password)
        register_secret(token)

        if password is not None:
            if username is None:
                raise CredentialError(MSG_ENV_NO_USERNAME.format(prefix=prefix, host=host))
            return RegistryCredential(
                source=f"{prefix}_USERNAME/{prefix}_PASSWORD", username=username, password=password
            )
        if token is not None:
            source = f"{prefix}_USERNAME/{prefix}_TOKEN" if username else f"{prefix}_TOKEN"
            return RegistryCredential(
                source=source,
                username=username or DEFAULT_TOKEN_USERNAME,
                password=token,
                bearer_fallback=True,
            )
        if username is not None:
            raise CredentialError(MSG_ENV_USERNAME_ONLY.format(prefix=prefix, host=host))
        return None

    def _from_job_token(self, host: str) -> RegistryCredential | None:
        job_token = _env(self._environ, CI_JOB_TOKEN_VAR)
        ci_registry = _env(self._environ, CI_REGISTRY_VAR)
        register_secret(job_token)
        if job_token is None or ci_registry is None or registry_host(ci_registry) != host:
            return None
        return RegistryCredential(
            source=CI_JOB_TOKEN_SOURCE, username=CI_JOB_TOKEN_USERNAME, password=job_token
        )

    async def _from_docker_config(self, host: str) -> RegistryCredential | None:
        if not self._docker_config_loaded:
            self._docker_config = DockerConfig.load(docker_config_path(self._environ, self._home))
            self._docker_config_loaded = True
        if self._docker_config is None:
            return None
        found = await self._docker_config.lookup(
            host, environ=self._environ, helper_timeout=self._helper_timeout
        )
        if found is None:
            return None
        return RegistryCredential(
            source=found.source,
            username=found.username,
            password=found.password,
            identity_token=found.identity_token,
            registry_token=found.registry_token,
        )
