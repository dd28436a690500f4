"""Package registry credentials (build records, EOL data): environment variables only.

| provider | variables                                                                   |
|----------|-----------------------------------------------------------------------------|
| gitlab   | ``GITLAB_TOKEN``                                                            |
| gitea    | ``GITEA_TOKEN``                                                             |
| s3       | ``AWS_ACCESS_KEY_ID`` + ``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``, ``AWS_REGION``) |
| local    | none (a directory on disk)                                                  |

Decisions:

- An empty variable counts as unset.
- ``require=True`` (the default): a missing variable is a :class:`CredentialError` naming it.
  ``require=False``: a credential is returned whose ``missing`` lists the variables that are not
  set and whose secret fields are ``None`` — for reads that may proceed anonymously (a public
  Gitea package) or stores whose SDK has its own credential chain (S3 instance roles).
- S3 with only one of ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` is always an error, even with
  ``require=False``: half a key pair is a misconfiguration, not an absence.
- ``AWS_REGION`` is optional; ``AWS_DEFAULT_REGION`` is read when it is unset (both are the SDKs'
  usual names). Without either the store uses ``registry.region`` from the configuration.
- An unknown provider is a :class:`CredentialError` listing the known ones.
- Every secret read (tokens, the AWS key id, secret key and session token) is registered with
  :func:`bot.redaction.register_secret`. The key id is not strictly secret but identifies an
  account, so it is masked too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.errors import CredentialError
from bot.redaction import register_secret

PROVIDER_GITLAB = "gitlab"
PROVIDER_GITEA = "gitea"
PROVIDER_S3 = "s3"
PROVIDER_LOCAL = "local"
PROVIDERS = (PROVIDER_GITLAB, PROVIDER_GITEA, PROVIDER_S3, PROVIDER_LOCAL)
TOKEN_VARIABLES = {PROVIDER_GITLAB: "GITLAB_TOKEN", PROVIDER_GITEA: "GITEA_TOKEN"}
AWS_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"
AWS_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 (a variable name)
AWS_SESSION_TOKEN = "AWS_SESSION_TOKEN"  # noqa: S105 (a variable name)
AWS_REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
LOCAL_SOURCE = "none (local directory store)"

MSG_MISSING = "{variables} {verb} not set (needed for the {provider} package registry)"
MSG_HALF_KEY_PAIR = (
    "{present} is set but {missing} is not: the s3 package registry needs both "
    f"{AWS_ACCESS_KEY_ID} and {AWS_SECRET_ACCESS_KEY}"
)
MSG_UNKNOWN_PROVIDER = "unknown package registry provider {provider!r}; expected one of: {known}"


@dataclass(frozen=True, slots=True, repr=False)
class PackageRegistryCredential:
    """Credentials for the package registry; ``source`` names the variables, never their values."""

    provider: str
    source: str
    token: str | None = None  # gitlab, gitea
    access_key_id: str | None = None  # s3
    secret_access_key: str | None = None  # s3
    session_token: str | None = None  # s3, optional
    region: str | None = None  # s3, optional (not a secret)
    missing: tuple[str, ...] = ()  # variables that were required but unset (require=False only)

    @property
    def is_complete(self) -> bool:
        return not self.missing

    def __repr__(self) -> str:
        hidden = [
            name
            for name, value in (
                ("token", self.token),
                ("access_key_id", self.access_key_id),
                ("secret_access_key", self.secret_access_key),
                ("session_token", self.session_token),
            )
            if value
        ]
        secrets = "".join(f", {name}=<hidden>" for name in hidden)
        region = f", region={self.region!r}" if self.region else ""
        missing = f", missing={self.missing!r}" if self.missing else ""
        return (
            f"PackageRegistryCredential(provider={self.provider!r}, source={self.source!r}"
            f"{secrets}{region}{missing})"
        )

    __str__ = __repr__


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value or None


def _missing_error(provider: str, variables: list[str]) -> CredentialError:
    verb = "is" if len(variables) == 1 else "are"
    return CredentialError(
        MSG_MISSING.format(variables=" and ".join(variables), verb=verb, provider=provider)
    )


def package_registry_credentials(
    provider: str, environ: Mapping[str, str], *, require: bool = True
) -> PackageRegistryCredential:
    """Read the package registry credentials for ``provider`` from ``environ``."""
    if provider == PROVIDER_LOCAL:
        return PackageRegistryCredential(provider=provider, source=LOCAL_SOURCE)
    if provider in TOKEN_VARIABLES:
        variable = TOKEN_VARIABLES[provider]
        token = _env(environ, variable)
        register_secret(token)
        if token is None:
            if require:
                raise _missing_error(provider, [variable])
            return PackageRegistryCredential(provider=provider, source=variable, missing=(variable,))
        return PackageRegistryCredential(provider=provider, source=variable, token=token)
    if provider == PROVIDER_S3:
        return _s3_credentials(environ, require=require)
    raise CredentialError(MSG_UNKNOWN_PROVIDER.format(provider=provider, known=", ".join(PROVIDERS)))


def _s3_credentials(environ: Mapping[str, str], *, require: bool) -> PackageRegistryCredential:
    key_id = _env(environ, AWS_ACCESS_KEY_ID)
    secret = _env(environ, AWS_SECRET_ACCESS_KEY)
    session_token = _env(environ, AWS_SESSION_TOKEN)
    region = next((value for name in AWS_REGION_VARIABLES if (value := _env(environ, name))), None)
    for value in (key_id, secret, session_token):
        register_secret(value)

    source = f"{AWS_ACCESS_KEY_ID}/{AWS_SECRET_ACCESS_KEY}"
    if session_token is not None:
        source += f"/{AWS_SESSION_TOKEN}"
    if (key_id is None) != (secret is None):
        present, missing = (
            (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
            if key_id
            else (AWS_SECRET_ACCESS_KEY, AWS_ACCESS_KEY_ID)
        )
        raise CredentialError(MSG_HALF_KEY_PAIR.format(present=present, missing=missing))
    if key_id is None:
        if require:
            raise _missing_error(PROVIDER_S3, [AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY])
        return PackageRegistryCredential(
            provider=PROVIDER_S3,
            source=source,
            region=region,
            missing=(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY),
        )
    return PackageRegistryCredential(
        provider=PROVIDER_S3,
        source=source,
        access_key_id=key_id,
        secret_access_key=secret,
        session_token=session_token,
        region=region,
    )
