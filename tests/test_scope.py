"""Least-privilege scopes: the command table, refusals, and the scoped credential guard."""

from __future__ import annotations

import re

import pytest

import bot.credentials.scope as scope_module
from bot.credentials import (
    ANONYMOUS,
    COMMAND_ACCESS,
    Access,
    CredentialResolver,
    CredentialScope,
    RegistryCredential,
    ScopedCredentials,
)
from bot.errors import EXIT_FAILURE, ScopeError

READ, WRITE = Access.PACKAGES_READ, Access.PACKAGES_WRITE
PULL, PUSH, DELETE = Access.OCI_PULL, Access.OCI_PUSH, Access.OCI_DELETE
SECRET = "s3cr3t-scope-8e1b"

EXPECTED = {
    "inspect": {PULL},
    "sync": {PULL, PUSH},
    "cleanup": {READ, PULL, PUSH, DELETE},
    "register": {READ, WRITE, PULL},
    "check": {READ},
    "status": {READ},
    "eol update": {READ, WRITE},
    "eol notify": {READ},
    "app list": {READ},
    "app purge": {READ, WRITE},
    "serve": {READ, WRITE, PULL, PUSH, DELETE},
}


class FakeResolver:
    """Records which hosts were asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(self, host: str) -> RegistryCredential:
        self.asked.append(host)
        return RegistryCredential(source="fake", username="u", password=SECRET)

    def hint(self, host: str) -> str:
        return f"hint for {host}"


def test_access_values_are_stable_strings() -> None:
    assert [str(access) for access in Access] == [
        "packages:read",
        "packages:write",
        "oci:pull",
        "oci:push",
        "oci:delete",
    ]


def test_command_table() -> None:
    assert {command: set(access) for command, access in COMMAND_ACCESS.items()} == EXPECTED


def test_command_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        COMMAND_ACCESS["check"] = frozenset(Access)  # type: ignore[index]


def test_serve_is_the_union_of_every_command() -> None:
    others = [access for command, access in COMMAND_ACCESS.items() if command != "serve"]
    assert COMMAND_ACCESS["serve"] == frozenset().union(*others)


@pytest.mark.parametrize("command", ["check", "status"])
def test_check_and_status_never_touch_oci_registries(command: str) -> None:
    scope = CredentialScope.for_command(command)
    assert not scope.uses_oci
    assert scope.access == {READ}


@pytest.mark.parametrize("command", ["sync", "cleanup"])
def test_sync_and_cleanup_never_write_the_package_registry(command: str) -> None:
    assert not CredentialScope.for_command(command).allows(WRITE)


def test_register_only_pulls_from_oci_registries() -> None:
    scope = CredentialScope.for_command("register")
    assert scope.allows(PULL)
    assert not scope.allows(PUSH)
    assert not scope.allows(DELETE)


def test_docstring_table_matches_the_command_table() -> None:
    """The module docstring's table is copied into the README; it must say what the code does."""
    doc = scope_module.__doc__ or ""
    words = {
        "read": READ,
        "write": WRITE,
        "pull": PULL,
        "push": PUSH,
        "delete": DELETE,
    }
    rows: dict[str, set[Access]] = {}
    for line in doc.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("command", "") or set(cells[0]) <= {"-"}:
            continue
        granted = {words[w] for cell in cells[1:3] for w in re.findall(r"[a-z]+", cell)}
        rows[cells[0]] = granted
    assert rows == EXPECTED


@pytest.mark.parametrize(("target", "writes"), [("git", False), ("pkgregistry", True)])
def test_eol_update_writes_packages_only_with_the_pkgregistry_target(target: str, writes: bool) -> None:
    scope = CredentialScope.for_command("eol update", eol_target=target)
    assert scope.allows(READ)
    assert scope.allows(WRITE) is writes
    assert not scope.uses_oci


def test_eol_update_defaults_to_the_git_target() -> None:
    assert not CredentialScope.for_command("eol update").allows(WRITE)


def test_eol_target_is_validated() -> None:
    with pytest.raises(ValueError, match="eol_target 'svn'"):
        CredentialScope.for_command("eol update", eol_target="svn")


def test_for_command_normalises_spaces_and_refuses_unknown_commands() -> None:
    assert CredentialScope.for_command("app   list").command == "app list"
    with pytest.raises(ValueError, match="no credential scope for command 'build'"):
        CredentialScope.for_command("build")


@pytest.mark.parametrize("command", sorted(EXPECTED))
def test_allows_matches_the_table(command: str) -> None:
    scope = CredentialScope.for_command(command, eol_target="pkgregistry")
    for access in Access:
        assert scope.allows(access) is (access in EXPECTED[command])


def test_require_refuses_with_a_least_privilege_message() -> None:
    scope = CredentialScope.for_command("check")
    with pytest.raises(ScopeError) as caught:
        scope.require(PUSH, what="push to OCI registries")
    assert str(caught.value) == (
        "imglife check may not push to OCI registries "
        "(least privilege: check reads the package registry only)"
    )
    assert caught.value.exit_code == EXIT_FAILURE


def test_require_words_the_attempt_by_default() -> None:
    with pytest.raises(ScopeError, match=r"^imglife sync may not write to the package registry \(least"):
        CredentialScope.for_command("sync").require(WRITE)


def test_require_passes_when_granted() -> None:
    scope = CredentialScope.for_command("cleanup")
    for access in (READ, PULL, PUSH, DELETE):
        scope.require(access, what="anything")


@pytest.mark.parametrize(
    ("command", "description"),
    [
        ("check", "check reads the package registry only"),
        ("sync", "sync pulls from and pushes to OCI registries only"),
        (
            "cleanup",
            "cleanup pulls from, pushes to and deletes from OCI registries and reads the package registry",
        ),
        ("register", "register pulls from OCI registries and reads and writes the package registry"),
        ("app purge", "app purge reads and writes the package registry only"),
    ],
)
def test_describe(command: str, description: str) -> None:
    assert CredentialScope.for_command(command).describe() == description


def test_describe_an_empty_scope() -> None:
    assert CredentialScope(command="nothing", access=frozenset()).describe() == "nothing uses no registry"


@pytest.mark.parametrize("command", ["check", "status", "eol notify", "app list", "app purge", "eol update"])
async def test_scoped_resolve_is_refused_without_oci_access(command: str) -> None:
    resolver = FakeResolver()
    scoped = ScopedCredentials(resolver, CredentialScope.for_command(command))
    with pytest.raises(ScopeError) as caught:
        await scoped.resolve("registry:5000")
    assert f"imglife {command} may not use OCI registry credentials (for registry:5000)" in str(caught.value)
    assert resolver.asked == []
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("command", ["sync", "cleanup", "register", "serve"])
async def test_scoped_resolve_delegates_with_oci_access(command: str) -> None:
    resolver = FakeResolver()
    scoped = ScopedCredentials(resolver, CredentialScope.for_command(command))
    credential = await scoped.resolve("registry:5000")
    assert credential.password == SECRET
    assert resolver.asked == ["registry:5000"]
    assert scoped.hint("registry:5000") == "hint for registry:5000"
    assert scoped.scope.command == command


async def test_scoped_resolve_with_the_real_resolver() -> None:
    scoped = ScopedCredentials(
        CredentialResolver({"HOME": "/nonexistent"}), CredentialScope.for_command("sync")
    )
    assert await scoped.resolve("registry:5000") == ANONYMOUS


def test_scoped_package_credentials_are_refused_without_packages_access() -> None:
    scoped = ScopedCredentials(FakeResolver(), CredentialScope.for_command("sync"))
    with pytest.raises(ScopeError) as caught:
        scoped.package_credentials("gitlab", {"GITLAB_TOKEN": SECRET})
    assert str(caught.value) == (
        "imglife sync may not use package registry credentials "
        "(least privilege: sync pulls from and pushes to OCI registries only)"
    )


@pytest.mark.parametrize("command", ["check", "register", "cleanup", "serve"])
def test_scoped_package_credentials_with_packages_access(command: str) -> None:
    scoped = ScopedCredentials(FakeResolver(), CredentialScope.for_command(command))
    assert scoped.package_credentials("gitlab", {"GITLAB_TOKEN": SECRET}).token == SECRET
    assert scoped.package_credentials("gitea", {}, require=False).missing == ("GITEA_TOKEN",)
