"""Least privilege: which systems each command may reach, and the guard that enforces it.

Each command runs with a :class:`CredentialScope`; credentials are handed out only through
:class:`ScopedCredentials`, so a command cannot even obtain a credential for a system its row does
not name, and handlers call :meth:`CredentialScope.require` before each kind of access.

| command    | package registry | OCI registries     | why                                            |
|------------|------------------|--------------------|------------------------------------------------|
| inspect    | —                | pull               | describes an image (checks registry access)    |
| sync       | —                | pull, push         | mirrors upstream images                        |
| cleanup    | read             | pull, push, delete | records protect tags; push: see below          |
| register   | read, write      | pull               | writes records; pulls to auto-detect base      |
| check      | read             | —                  | config, EOL data and records only              |
| status     | read             | —                  | reports from records and EOL data              |
| eol update | read, write      | —                  | write only with ``eol_target: pkgregistry``    |
| eol notify | read             | —                  | finds affected applications through records    |
| app list   | read             | —                  | lists build records                            |
| app purge  | read, write      | —                  | deletes old build records                      |
| serve      | read, write      | pull, push, delete | the bot runs every command above (union)       |

Decisions, where this differs from or adds to the upstream table:

- ``cleanup`` reads the package registry (upstream: none) because the safety guard reads build records
  to protect the base tags applications use; it never writes there. It pushes because a single tag
  is deleted by re-pointing it to a throwaway manifest first (so tags sharing its digest survive),
  and because archive copies are pushed to ``retention.archive.registry``.
- ``register`` pulls from OCI registries (upstream: none) only for base and platform auto-detection
  (SPEC §4); it never pushes or deletes.
- ``eol update`` gets package write only when ``eol_target`` is ``pkgregistry``;
  :meth:`CredentialScope.for_command` takes the target (default ``git``, the configuration default).
  :data:`COMMAND_ACCESS` lists the most the command may ever get.
- ``serve`` is the union: the bot runs all commands in one process. Handlers still run with their
  own command's scope inside the bot.
- A refusal is a :class:`bot.errors.ScopeError` (exit 1: it is a bug or a misuse, not bad input)
  whose message names the command, what it tried, and what its scope allows.
- There is no ``build`` row: imglife does not build images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from bot.credentials.packages import PackageRegistryCredential, package_registry_credentials
from bot.credentials.registry import RegistryCredential
from bot.errors import ScopeError


class Access(StrEnum):
    """One kind of access to one system."""

    PACKAGES_READ = "packages:read"
    PACKAGES_WRITE = "packages:write"
    OCI_PULL = "oci:pull"
    OCI_PUSH = "oci:push"
    OCI_DELETE = "oci:delete"


PACKAGES_ACCESS = frozenset({Access.PACKAGES_READ, Access.PACKAGES_WRITE})
OCI_ACCESS = frozenset({Access.OCI_PULL, Access.OCI_PUSH, Access.OCI_DELETE})
EOL_TARGET_GIT = "git"
EOL_TARGET_PKGREGISTRY = "pkgregistry"
EOL_TARGETS = (EOL_TARGET_GIT, EOL_TARGET_PKGREGISTRY)
EOL_UPDATE = "eol update"

_READ, _WRITE = Access.PACKAGES_READ, Access.PACKAGES_WRITE
_PULL, _PUSH, _DELETE = Access.OCI_PULL, Access.OCI_PUSH, Access.OCI_DELETE
_COMMANDS: dict[str, frozenset[Access]] = {
    "inspect": frozenset({_PULL}),
    "sync": frozenset({_PULL, _PUSH}),
    "cleanup": frozenset({_READ, _PULL, _PUSH, _DELETE}),
    "register": frozenset({_READ, _WRITE, _PULL}),
    "check": frozenset({_READ}),
    "status": frozenset({_READ}),
    EOL_UPDATE: frozenset({_READ, _WRITE}),
    "eol notify": frozenset({_READ}),
    "app list": frozenset({_READ}),
    "app purge": frozenset({_READ, _WRITE}),
}
_COMMANDS["serve"] = frozenset().union(*_COMMANDS.values())
COMMAND_ACCESS: Mapping[str, frozenset[Access]] = MappingProxyType(_COMMANDS)

# Infinitive phrases for refusals ("imglife check may not <phrase>").
ACCESS_ACTIONS: Mapping[Access, str] = MappingProxyType(
    {
        Access.PACKAGES_READ: "read the package registry",
        Access.PACKAGES_WRITE: "write to the package registry",
        Access.OCI_PULL: "pull from OCI registries",
        Access.OCI_PUSH: "push to OCI registries",
        Access.OCI_DELETE: "delete from OCI registries",
    }
)
# Third-person verbs for scope descriptions, in the order they are listed.
_OCI_VERBS = (
    (Access.OCI_PULL, "pulls from"),
    (Access.OCI_PUSH, "pushes to"),
    (Access.OCI_DELETE, "deletes from"),
)

MSG_REFUSED = "imglife {command} may not {what} (least privilege: {description})"
MSG_UNKNOWN_COMMAND = "no credential scope for command {command!r}; known commands: {known}"
MSG_BAD_EOL_TARGET = "unknown eol_target {target!r}; expected one of: {known}"
WHAT_OCI_CREDENTIALS = "use OCI registry credentials (for {host})"
WHAT_PACKAGE_CREDENTIALS = "use package registry credentials"


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


@dataclass(frozen=True, slots=True)
class CredentialScope:
    """What one command may reach."""

    command: str
    access: frozenset[Access]

    @classmethod
    def for_command(cls, name: str, *, eol_target: str = EOL_TARGET_GIT) -> CredentialScope:
        """The scope of ``name``; ``eol_target`` narrows ``eol update`` (writes only to pkgregistry)."""
        command = " ".join(name.split())
        if command not in COMMAND_ACCESS:
            raise ValueError(MSG_UNKNOWN_COMMAND.format(command=name, known=", ".join(COMMAND_ACCESS)))
        if eol_target not in EOL_TARGETS:
            raise ValueError(MSG_BAD_EOL_TARGET.format(target=eol_target, known=", ".join(EOL_TARGETS)))
        access = COMMAND_ACCESS[command]
        if command == EOL_UPDATE and eol_target != EOL_TARGET_PKGREGISTRY:
            access = access - {Access.PACKAGES_WRITE}
        return cls(command=command, access=access)

    def allows(self, access: Access) -> bool:
        return access in self.access

    @property
    def uses_oci(self) -> bool:
        return bool(self.access & OCI_ACCESS)

    @property
    def uses_packages(self) -> bool:
        return bool(self.access & PACKAGES_ACCESS)

    def describe(self) -> str:
        """One clause for messages, e.g. ``check reads the package registry only``."""
        parts: list[str] = []
        verbs = [verb for access, verb in _OCI_VERBS if access in self.access]
        if verbs:
            parts.append(f"{_join(verbs)} OCI registries")
        package_verbs = [
            verb for access, verb in ((_READ, "reads"), (_WRITE, "writes")) if access in self.access
        ]
        if package_verbs:
            parts.append(f"{_join(package_verbs)} the package registry")
        if not parts:
            return f"{self.command} uses no registry"
        suffix = " only" if len(parts) == 1 else ""
        return f"{self.command} {' and '.join(parts)}{suffix}"

    def require(self, access: Access, *, what: str | None = None) -> None:
        """Raise :class:`ScopeError` unless the scope grants ``access``; ``what`` words the attempt."""
        if access not in self.access:
            raise self.refusal(what or ACCESS_ACTIONS[access])

    def refusal(self, what: str) -> ScopeError:
        """The error for an attempt (``what``, an infinitive phrase) outside this scope."""
        return ScopeError(MSG_REFUSED.format(command=self.command, what=what, description=self.describe()))


class RegistryCredentialSource(Protocol):
    """What :class:`ScopedCredentials` needs from a resolver (a :class:`CredentialResolver`)."""

    async def resolve(self, host: str) -> RegistryCredential: ...

    def hint(self, host: str) -> str: ...


class ScopedCredentials:
    """Hands out credentials only for the systems the scope names."""

    def __init__(self, resolver: RegistryCredentialSource, scope: CredentialScope) -> None:
        self._resolver = resolver
        self._scope = scope

    @property
    def scope(self) -> CredentialScope:
        return self._scope

    async def resolve(self, host: str) -> RegistryCredential:
        """The credential for an OCI registry host; refused when the command has no OCI access."""
        if not self._scope.uses_oci:
            raise self._scope.refusal(WHAT_OCI_CREDENTIALS.format(host=host))
        return await self._resolver.resolve(host)

    def hint(self, host: str) -> str:
        return self._resolver.hint(host)

    def package_credentials(
        self, provider: str, environ: Mapping[str, str], *, require: bool = True
    ) -> PackageRegistryCredential:
        """Package registry credentials; refused when the command has no package registry access."""
        if not self._scope.uses_packages:
            raise self._scope.refusal(WHAT_PACKAGE_CREDENTIALS)
        return package_registry_credentials(provider, environ, require=require)
