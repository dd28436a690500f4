"""Errors imglife raises on purpose: each carries the exit code the CLI reports.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``; anything that is
not an :class:`ImglifeError` is a bug and is reported as such, without a traceback unless the
log level is debug.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1  # the work failed: registry refused, store unreachable, check failed under --strict
EXIT_USAGE = 2  # bad usage or invalid configuration


class ImglifeError(Exception):
    """Base class for errors with a user-facing message and an exit code."""

    exit_code: int = EXIT_FAILURE


class UsageError(ImglifeError):
    """The command line is wrong (bad flag value, malformed argument)."""

    exit_code = EXIT_USAGE


class ConfigError(ImglifeError):
    """The configuration is invalid; ``problems`` lists every error found, one per line."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class InvalidReference(UsageError):
    """An image reference does not follow the OCI/Docker reference grammar."""


class CredentialError(ImglifeError):
    """Credentials are incomplete or cannot be obtained (bad env vars, failing helper)."""

    exit_code = EXIT_USAGE


class ScopeError(ImglifeError):
    """A command tried to reach a system its least-privilege scope does not grant."""


class RegistryError(ImglifeError):
    """An OCI registry refused, failed or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotFoundError(RegistryError):
    """The manifest, blob or repository does not exist."""


class AuthError(RegistryError):
    """The registry (or its token realm) refused the credentials."""


class RegistryUnavailable(RegistryError):
    """The registry could not be reached, or kept failing after retries."""


class RecordStoreError(ImglifeError):
    """The record store (package registry, S3, directory) refused, failed or could not be reached."""


class RecordStoreForbidden(RecordStoreError):
    """The record store understood the credentials and refused the operation (HTTP 403)."""


class RecordFormatError(RecordStoreError):
    """A stored build record is not valid JSON of the expected shape."""
