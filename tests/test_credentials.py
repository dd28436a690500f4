"""OCI registry and package registry credentials: every source, their precedence, and redaction.

Credential helpers are exercised through a real executable on PATH
(``tests/helpers/docker-credential-imglife-test``), speaking the docker-credential-helpers protocol.
Environments are passed explicitly; ``os.environ`` is only read for the real ``PATH``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.credentials import (
    ANONYMOUS,
    CredentialResolver,
    PackageRegistryCredential,
    RegistryCredential,
    docker_config_path,
    env_prefix,
    package_registry_credentials,
    registry_host,
)
from bot.errors import EXIT_USAGE, CredentialError
from bot.redaction import MASK, redact_text

HELPERS_DIR = Path(__file__).parent / "helpers"
TEST_HELPER = "imglife-test"
PASSWORD = "s3cr3t-pw-7f2a"
TOKEN = "s3cr3t-tok-91c4"
JOB_TOKEN = "s3cr3t-job-55e0"
HELPER_SECRET = "s3cr3t-helper-3b8d"
DOCKER_PASSWORD = "s3cr3t-dock:er-0a9e"  # contains ':' on purpose
IDENTITY_TOKEN = "s3cr3t-idtok-c1d7"
REGISTRY_TOKEN = "s3cr3t-regtok-e4f0"
ALL_SECRETS = (PASSWORD, TOKEN, JOB_TOKEN, HELPER_SECRET, DOCKER_PASSWORD, IDENTITY_TOKEN, REGISTRY_TOKEN)


def unique_secret(label: str) -> str:
    """A secret nobody registered before, to prove that resolving is what registers it."""
    # Underscores: secrets other tests registered ("pw-3") must not occur inside it by chance.
    return f"s3cr3t_{label}_{uuid.uuid4().hex[:12]}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets or ALL_SECRETS:
        assert secret not in text


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def env(home: Path, tmp_path: Path) -> dict[str, str]:
    """A minimal environment: the helpers directory on PATH and an empty HOME."""
    return {
        "PATH": f"{HELPERS_DIR}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": str(home),
        "IMGLIFE_TEST_CREDSTORE": str(tmp_path / "credstore.json"),
        "IMGLIFE_TEST_CREDHELPER_LOG": str(tmp_path / "credhelper.log"),
    }


@pytest.fixture
def write_config(home: Path) -> Callable[..., Path]:
    """Write ``~/.docker/config.json`` (or another directory's) and return its path."""

    def write(data: Any, directory: Path | None = None, *, raw: str | None = None) -> Path:
        config_dir = directory if directory is not None else home / ".docker"
        config_dir.mkdir(parents=True, exist_ok=True)
        path = config_dir / "config.json"
        path.write_text(raw if raw is not None else json.dumps(data), encoding="utf-8")
        return path

    return write


@pytest.fixture
def credstore(env: dict[str, str]) -> Callable[[dict[str, tuple[str, str]]], None]:
    """Fill the test helper's store: ``{server URL: (username, secret)}``."""

    def fill(entries: dict[str, tuple[str, str]]) -> None:
        data = {url: {"Username": user, "Secret": secret} for url, (user, secret) in entries.items()}
        Path(env["IMGLIFE_TEST_CREDSTORE"]).write_text(json.dumps(data), encoding="utf-8")

    return fill


def helper_log(env: dict[str, str]) -> list[dict[str, Any]]:
    log = Path(env["IMGLIFE_TEST_CREDHELPER_LOG"])
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def helper_calls(env: dict[str, str]) -> list[dict[str, Any]]:
    """The test helper's calls: its arguments and what it read on stdin."""
    return [{"argv": call["argv"], "stdin": call["stdin"]} for call in helper_log(env)]


# --- host normalisation and variable names ----------------------------------------------------


@pytest.mark.parametrize(
    ("host", "prefix"),
    [
        ("docker.io", "IMGLIFE_DOCKER_IO"),
        ("quay.io", "IMGLIFE_QUAY_IO"),
        ("ghcr.io", "IMGLIFE_GHCR_IO"),
        ("registry.example.com", "IMGLIFE_REGISTRY_EXAMPLE_COM"),
        ("registry:5000", "IMGLIFE_REGISTRY_5000"),
        ("Registry.Local:5000", "IMGLIFE_REGISTRY_LOCAL_5000"),
        ("my-registry.example.com", "IMGLIFE_MY_REGISTRY_EXAMPLE_COM"),
        ("index.docker.io", "IMGLIFE_DOCKER_IO"),
        ("registry-1.docker.io", "IMGLIFE_DOCKER_IO"),
        ("registry.hub.docker.com", "IMGLIFE_DOCKER_IO"),
        ("https://index.docker.io/v1/", "IMGLIFE_DOCKER_IO"),
    ],
)
def test_env_prefix_follows_the_upstream_naming_rule(host: str, prefix: str) -> None:
    assert env_prefix(host) == prefix


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("registry:5000", "registry:5000"),
        ("REGISTRY:5000", "registry:5000"),
        ("https://registry.example.com", "registry.example.com"),
        ("http://registry:5000/v2/", "registry:5000"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        (" gitlab.example.com:5050 ", "gitlab.example.com:5050"),
        ("https://user:pw@registry.example.com/", "registry.example.com"),
    ],
)
def test_registry_host_normalises_every_spelling(value: str, host: str) -> None:
    assert registry_host(value) == host


# --- IMGLIFE_<HOST>_* variables ----------------------------------------------------------------


async def test_env_username_and_password_give_basic_credentials(env: dict[str, str]) -> None:
    env |= {"IMGLIFE_REGISTRY_5000_USERNAME": "alice", "IMGLIFE_REGISTRY_5000_PASSWORD": PASSWORD}
    credential = await CredentialResolver(env).resolve("registry:5000")
    assert credential == RegistryCredential(
        source="IMGLIFE_REGISTRY_5000_USERNAME/IMGLIFE_REGISTRY_5000_PASSWORD",
        username="alice",
        password=PASSWORD,
    )
    assert not credential.bearer_fallback
    assert not credential.is_anonymous


async def test_env_token_alone_is_a_password_for_imglife_with_bearer_fallback(env: dict[str, str]) -> None:
    env["IMGLIFE_GHCR_IO_TOKEN"] = TOKEN
    credential = await CredentialResolver(env).resolve("ghcr.io")
    assert credential.source == "IMGLIFE_GHCR_IO_TOKEN"
    assert credential.username == "imglife"
    assert credential.password == TOKEN
    assert credential.bearer_fallback


async def test_env_token_uses_the_username_when_given(env: dict[str, str]) -> None:
    env |= {"IMGLIFE_QUAY_IO_USERNAME": "robot+ci", "IMGLIFE_QUAY_IO_TOKEN": TOKEN}
    credential = await CredentialResolver(env).resolve("quay.io")
    assert (credential.username, credential.password, credential.bearer_fallback) == ("robot+ci", TOKEN, True)
    assert credential.source == "IMGLIFE_QUAY_IO_USERNAME/IMGLIFE_QUAY_IO_TOKEN"


async def test_env_password_wins_over_token(env: dict[str, str]) -> None:
    env |= {
        "IMGLIFE_QUAY_IO_USERNAME": "bob",
        "IMGLIFE_QUAY_IO_PASSWORD": PASSWORD,
        "IMGLIFE_QUAY_IO_TOKEN": TOKEN,
    }
    credential = await CredentialResolver(env).resolve("quay.io")
    assert (credential.username, credential.password, credential.bearer_fallback) == ("bob", PASSWORD, False)


@pytest.mark.parametrize(
    "alias", ["docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"]
)
async def test_docker_hub_aliases_read_the_docker_io_variables(env: dict[str, str], alias: str) -> None:
    env |= {"IMGLIFE_DOCKER_IO_USERNAME": "hubuser", "IMGLIFE_DOCKER_IO_PASSWORD": PASSWORD}
    credential = await CredentialResolver(env).resolve(alias)
    assert (credential.username, credential.password) == ("hubuser", PASSWORD)


@pytest.mark.parametrize(
    ("variables", "missing"),
    [
        (
            {"IMGLIFE_REGISTRY_5000_USERNAME": "alice"},
            ["IMGLIFE_REGISTRY_5000_PASSWORD", "IMGLIFE_REGISTRY_5000_TOKEN"],
        ),
        ({"IMGLIFE_REGISTRY_5000_PASSWORD": PASSWORD}, ["IMGLIFE_REGISTRY_5000_USERNAME"]),
        (
            {"IMGLIFE_REGISTRY_5000_PASSWORD": PASSWORD, "IMGLIFE_REGISTRY_5000_TOKEN": TOKEN},
            ["IMGLIFE_REGISTRY_5000_USERNAME"],
        ),
    ],
)
async def test_partial_env_variables_are_an_error_naming_what_is_missing(
    env: dict[str, str], variables: dict[str, str], missing: list[str]
) -> None:
    env |= variables
    with pytest.raises(CredentialError) as caught:
        await CredentialResolver(env).resolve("registry:5000")
    message = str(caught.value)
    for name in missing:
        assert name in message
    assert "registry:5000" in message
    assert caught.value.exit_code == EXIT_USAGE
    assert_no_secret(message)


async def test_partial_env_is_an_error_even_when_docker_config_has_credentials(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    write_config({"auths": {"registry:5000": {"auth": b64(f"dock:{DOCKER_PASSWORD}")}}})
    env["IMGLIFE_REGISTRY_5000_USERNAME"] = "alice"
    with pytest.raises(CredentialError, match="IMGLIFE_REGISTRY_5000_PASSWORD"):
        await CredentialResolver(env).resolve("registry:5000")


async def test_empty_env_variables_count_as_unset(env: dict[str, str]) -> None:
    env |= {
        "IMGLIFE_REGISTRY_5000_USERNAME": "",
        "IMGLIFE_REGISTRY_5000_PASSWORD": "",
        "IMGLIFE_REGISTRY_5000_TOKEN": "",
    }
    assert await CredentialResolver(env).resolve("registry:5000") == ANONYMOUS
    env["IMGLIFE_REGISTRY_5000_USERNAME"] = "alice"
    with pytest.raises(CredentialError):
        await CredentialResolver(env).resolve("registry:5000")


async def test_variables_of_other_hosts_are_not_used(env: dict[str, str]) -> None:
    env |= {"IMGLIFE_QUAY_IO_USERNAME": "alice", "IMGLIFE_QUAY_IO_PASSWORD": PASSWORD}
    assert await CredentialResolver(env).resolve("ghcr.io") == ANONYMOUS


async def test_no_source_means_anonymous(env: dict[str, str]) -> None:
    credential = await CredentialResolver(env).resolve("registry:5000")
    assert credential is ANONYMOUS
    assert credential.is_anonymous
    assert credential.source == "anonymous"


async def test_empty_host_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(CredentialError, match="registry host is required"):
        await CredentialResolver(env).resolve("  ")


def test_hint_names_the_variables_for_the_host(env: dict[str, str]) -> None:
    resolver = CredentialResolver(env)
    assert resolver.hint("registry:5000") == (
        "set IMGLIFE_REGISTRY_5000_USERNAME and IMGLIFE_REGISTRY_5000_PASSWORD, "
        "or IMGLIFE_REGISTRY_5000_TOKEN"
    )
    assert resolver.hint("registry-1.docker.io").startswith("set IMGLIFE_DOCKER_IO_USERNAME")


# --- GitLab CI job token -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ci_registry",
    [
        "gitlab.example.com:5050",
        "GitLab.example.com:5050",
        "https://gitlab.example.com:5050",
        "gitlab.example.com:5050/",
    ],
)
async def test_job_token_is_used_for_the_ci_registry_host(env: dict[str, str], ci_registry: str) -> None:
    env |= {"CI_JOB_TOKEN": JOB_TOKEN, "CI_REGISTRY": ci_registry}
    credential = await CredentialResolver(env).resolve("gitlab.example.com:5050")
    assert credential == RegistryCredential(
        source="CI_JOB_TOKEN (GitLab CI job token for $CI_REGISTRY)",
        username="gitlab-ci-token",
        password=JOB_TOKEN,
    )


async def test_job_token_is_never_sent_to_other_hosts(env: dict[str, str]) -> None:
    env |= {"CI_JOB_TOKEN": JOB_TOKEN, "CI_REGISTRY": "gitlab.example.com:5050"}
    resolver = CredentialResolver(env)
    for host in ("gitlab.example.com", "registry:5000", "docker.io", "gitlab.example.com:5051"):
        assert await resolver.resolve(host) == ANONYMOUS


@pytest.mark.parametrize("missing", ["CI_JOB_TOKEN", "CI_REGISTRY"])
async def test_job_token_needs_both_variables(env: dict[str, str], missing: str) -> None:
    env |= {"CI_JOB_TOKEN": JOB_TOKEN, "CI_REGISTRY": "gitlab.example.com:5050"}
    del env[missing]
    assert await CredentialResolver(env).resolve("gitlab.example.com:5050") == ANONYMOUS


async def test_env_variables_beat_the_job_token(env: dict[str, str]) -> None:
    env |= {
        "CI_JOB_TOKEN": JOB_TOKEN,
        "CI_REGISTRY": "gitlab.example.com:5050",
        "IMGLIFE_GITLAB_EXAMPLE_COM_5050_TOKEN": TOKEN,
    }
    credential = await CredentialResolver(env).resolve("gitlab.example.com:5050")
    assert credential.password == TOKEN
    assert credential.source == "IMGLIFE_GITLAB_EXAMPLE_COM_5050_TOKEN"


async def test_job_token_beats_docker_config(env: dict[str, str], write_config: Callable[..., Path]) -> None:
    write_config({"auths": {"gitlab.example.com:5050": {"auth": b64(f"dock:{DOCKER_PASSWORD}")}}})
    env |= {"CI_JOB_TOKEN": JOB_TOKEN, "CI_REGISTRY": "gitlab.example.com:5050"}
    credential = await CredentialResolver(env).resolve("gitlab.example.com:5050")
    assert credential.password == JOB_TOKEN


async def test_env_variables_beat_docker_config(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    write_config({"auths": {"registry:5000": {"auth": b64(f"dock:{DOCKER_PASSWORD}")}}})
    env |= {"IMGLIFE_REGISTRY_5000_USERNAME": "alice", "IMGLIFE_REGISTRY_5000_PASSWORD": PASSWORD}
    credential = await CredentialResolver(env).resolve("registry:5000")
    assert (credential.username, credential.password) == ("alice", PASSWORD)


async def test_env_variables_beat_a_broken_docker_config(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    # The config is only read when a host falls through to it.
    write_config(None, raw="{not json")
    env["IMGLIFE_REGISTRY_5000_TOKEN"] = TOKEN
    assert (await CredentialResolver(env).resolve("registry:5000")).password == TOKEN


# --- Docker CLI config: auths ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("registry:5000", "registry:5000"),
        ("registry.example.com", "registry.example.com"),
        ("https://registry.example.com", "registry.example.com"),
        ("http://registry:5000/v2/", "registry:5000"),
        ("REGISTRY:5000", "registry:5000"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("https://index.docker.io/v1/", "registry-1.docker.io"),
        ("index.docker.io", "docker.io"),
        ("docker.io", "index.docker.io"),
    ],
)
async def test_auths_keys_match_on_the_normalised_host(
    env: dict[str, str], write_config: Callable[..., Path], key: str, host: str
) -> None:
    path = write_config({"auths": {key: {"auth": b64(f"dock:{DOCKER_PASSWORD}")}}})
    credential = await CredentialResolver(env).resolve(host)
    assert (credential.username, credential.password) == ("dock", DOCKER_PASSWORD)
    assert credential.source == f"docker config {path} (auths)"


async def test_auths_of_other_hosts_are_not_used(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    write_config({"auths": {"registry:5000": {"auth": b64(f"dock:{DOCKER_PASSWORD}")}}})
    resolver = CredentialResolver(env)
    assert await resolver.resolve("registry:5001") == ANONYMOUS
    assert await resolver.resolve("registry") == ANONYMOUS


async def test_auths_password_may_contain_colons(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    write_config({"auths": {"registry:5000": {"auth": b64("dock:a:b:c-s3cr3t")}}})
    credential = await CredentialResolver(env).resolve("registry:5000")
    assert (credential.username, credential.password) == ("dock", "a:b:c-s3cr3t")


async def test_auths_username_and_password_fields(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    write_config({"auths": {"registry:5000": {"username": "dock", "password": DOCKER_PASSWORD}}})
    credential = await CredentialResolver(env).resolve("registry:5000")
    assert (credential.username, credential.password) == ("dock", DOCKER_PASSWORD)
    assert not credential.bearer_fallback


async def test_auths_auth_overrides_username_and_password_fields(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    entry = {"auth": b64(f"dock:{DOCKER_PASSWORD}"), "username": "other", "password": "other-pw"}
    write_config({"auths": {"registry:5000": entry}})
    credential = await CredentialResolver(env).resolve("registry:5000")
    assert (credential.username, credential.password) == ("dock", DOCKER_PASSWORD)


async def test_auths_identitytoken(env: dict[str, str], write_config: Callable[..., Path]) -> None:
    write_config({"auths": {"registry.example.com": {"username": "dock", "identitytoken": IDENTITY_TOKEN}}})
    credential = await CredentialResolver(env).resolve("registry.example.com")
    assert credential.identity_token == IDENTITY_TOKEN
    assert credential.username == "dock"
    assert credential.password is None
    assert not credential.is_anonymous


async def test_auths_registrytoken(env: dict[str, str], write_config: Callable[..., Path]) -> None:
    write_config({"auths": {"registry.example.com": {"registrytoken": REGISTRY_TOKEN}}})
    credential = await CredentialResolver(env).resolve("registry.example.com")
    assert credential.registry_token == REGISTRY_TOKEN
    assert credential.username is None
    assert not credential.is_anonymous


@pytest.mark.parametrize("entry", [{}, {"auth": ""}, {"email": "a@example.com"}, {"username": "dock"}])
async def test_auths_entries_without_secrets_are_anonymous(
    env: dict[str, str], write_config: Callable[..., Path], entry: dict[str, str]
) -> None:
    write_config({"auths": {"registry:5000": entry}})
    assert await CredentialResolver(env).resolve("registry:5000") == ANONYMOUS


async def test_auths_prefers_the_key_spelled_as_the_host(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    auths = {
        "https://registry:5000": {"auth": b64("first:pw-first")},
        "registry:5000": {"auth": b64(f"exact:{DOCKER_PASSWORD}")},
    }
    write_config({"auths": auths})
    assert (await CredentialResolver(env).resolve("registry:5000")).username == "exact"


async def test_auths_skips_an_empty_entry_for_a_populated_alias(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    auths = {"docker.io": {}, "https://index.docker.io/v1/": {"auth": b64(f"hub:{DOCKER_PASSWORD}")}}
    write_config({"auths": auths})
    assert (await CredentialResolver(env).resolve("docker.io")).username == "hub"


@pytest.mark.parametrize(
    "auth",
    [
        "%%%not-base64-s3cr3t%%%",
        b64("no-colon-s3cr3t-4d1e"),
        b64(":s3cr3t-empty-user-77aa"),
        base64.b64encode(b"\xff\xfe-s3cr3t").decode(),
    ],
)
async def test_malformed_auth_is_an_error_naming_file_and_host_not_value(
    env: dict[str, str], write_config: Callable[..., Path], auth: str
) -> None:
    path = write_config({"auths": {"registry:5000": {"auth": auth}}})
    with pytest.raises(CredentialError) as caught:
        await CredentialResolver(env).resolve("registry:5000")
    message = str(caught.value)
    assert str(path) in message
    assert "registry:5000" in message
    assert auth not in message
    assert "s3cr3t" not in message


async def test_malformed_auth_of_another_host_does_not_matter(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    write_config({"auths": {"other:5000": {"auth": "%%%"}, "registry:5000": {"auth": b64("dock:pw-ok-1")}}})
    assert (await CredentialResolver(env).resolve("registry:5000")).username == "dock"


async def test_config_that_is_not_json_is_an_error_naming_the_file(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    path = write_config(None, raw='{"auths": {"registry:5000": {"auth": "s3cr3t-broken-6c2f"}')
    with pytest.raises(CredentialError) as caught:
        await CredentialResolver(env).resolve("registry:5000")
    assert str(path) in str(caught.value)
    assert "not valid JSON" in str(caught.value)
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        ([], "top level"),
        ({"auths": []}, "'auths'"),
        ({"auths": {"registry:5000": "dock:pw"}}, "'auths' entry"),
        ({"credHelpers": ["pass"]}, "'credHelpers'"),
        ({"credsStore": 3}, "'credsStore'"),
        ({"auths": {"registry:5000": {"password": 3}}}, "'password'"),
    ],
)
async def test_config_with_the_wrong_shape_is_an_error_naming_the_file(
    env: dict[str, str], write_config: Callable[..., Path], data: Any, what: str
) -> None:
    path = write_config(data)
    with pytest.raises(CredentialError) as caught:
        await CredentialResolver(env).resolve("registry:5000")
    assert str(path) in str(caught.value)
    assert what in str(caught.value)


async def test_empty_config_file_is_an_empty_config(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    write_config(None, raw="  \n")
    assert await CredentialResolver(env).resolve("registry:5000") == ANONYMOUS


async def test_docker_config_variable_beats_home(
    env: dict[str, str], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    write_config({"auths": {"registry:5000": {"auth": b64("from-home:pw-home-1")}}})
    elsewhere = write_config(
        {"auths": {"registry:5000": {"auth": b64("from-docker-config:pw-dc-1")}}}, tmp_path / "dc"
    )
    env["DOCKER_CONFIG"] = str(tmp_path / "dc")
    credential = await CredentialResolver(env).resolve("registry:5000")
    assert credential.username == "from-docker-config"
    assert str(elsewhere) in credential.source


async def test_docker_config_directory_without_a_file_means_no_docker_login(
    env: dict[str, str], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    write_config({"auths": {"registry:5000": {"auth": b64("from-home:pw-home-2")}}})
    env["DOCKER_CONFIG"] = str(tmp_path / "empty-dir")
    assert await CredentialResolver(env).resolve("registry:5000") == ANONYMOUS


async def test_home_argument_beats_the_home_variable(
    env: dict[str, str], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    other_home = tmp_path / "other-home"
    write_config({"auths": {"registry:5000": {"auth": b64("other:pw-other-1")}}}, other_home / ".docker")
    credential = await CredentialResolver(env, home=other_home).resolve("registry:5000")
    assert credential.username == "other"


def test_docker_config_path_rules(tmp_path: Path) -> None:
    assert docker_config_path({"DOCKER_CONFIG": "/etc/dc", "HOME": "/home/x"}) == Path("/etc/dc/config.json")
    assert docker_config_path({"DOCKER_CONFIG": "", "HOME": "/home/x"}) == Path("/home/x/.docker/config.json")
    assert docker_config_path({"HOME": "/home/x"}, tmp_path) == tmp_path / ".docker" / "config.json"
    assert docker_config_path({}) == Path.home() / ".docker" / "config.json"


# --- Docker CLI config: credential helpers -----------------------------------------------------


async def test_cred_helpers_run_the_helper_protocol(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry:5000": ("helper-user", HELPER_SECRET)})
    write_config({"credHelpers": {"registry:5000": TEST_HELPER}})
    credential = await CredentialResolver(env).resolve("registry:5000")
    assert (credential.username, credential.password) == ("helper-user", HELPER_SECRET)
    assert credential.source == "docker-credential-imglife-test"
    assert helper_calls(env) == [{"argv": ["get"], "stdin": "registry:5000"}]


async def test_creds_store_runs_the_helper_for_any_host(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry.example.com": ("store-user", HELPER_SECRET)})
    write_config({"credsStore": TEST_HELPER})
    credential = await CredentialResolver(env).resolve("https://registry.example.com")
    assert (credential.username, credential.password) == ("store-user", HELPER_SECRET)


@pytest.mark.parametrize("host", ["docker.io", "registry-1.docker.io", "index.docker.io"])
async def test_helpers_are_asked_for_docker_hub_with_its_login_url(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None], host: str
) -> None:
    credstore({"https://index.docker.io/v1/": ("hub-user", HELPER_SECRET)})
    write_config({"credsStore": TEST_HELPER})
    credential = await CredentialResolver(env).resolve(host)
    assert credential.username == "hub-user"
    assert helper_calls(env) == [{"argv": ["get"], "stdin": "https://index.docker.io/v1/"}]


async def test_cred_helpers_keys_are_normalised(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"https://index.docker.io/v1/": ("hub-user", HELPER_SECRET)})
    write_config({"credHelpers": {"index.docker.io": TEST_HELPER}})
    assert (await CredentialResolver(env).resolve("docker.io")).username == "hub-user"


async def test_helper_token_username_means_identity_token(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry.example.com": ("<token>", IDENTITY_TOKEN)})
    write_config({"credHelpers": {"registry.example.com": TEST_HELPER}})
    credential = await CredentialResolver(env).resolve("registry.example.com")
    assert credential.identity_token == IDENTITY_TOKEN
    assert credential.username is None
    assert credential.password is None


async def test_cred_helpers_beat_creds_store_and_auths(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None], tmp_path: Path
) -> None:
    credstore({"registry:5000": ("from-cred-helpers", HELPER_SECRET)})
    # credsStore names a helper that does not exist: it must not even be looked for.
    write_config(
        {
            "credHelpers": {"registry:5000": TEST_HELPER},
            "credsStore": "imglife-absent",
            "auths": {"registry:5000": {"auth": b64("from-auths:pw-auths-1")}},
        }
    )
    assert (await CredentialResolver(env).resolve("registry:5000")).username == "from-cred-helpers"


async def test_creds_store_beats_auths(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry:5000": ("from-store", HELPER_SECRET)})
    write_config(
        {"credsStore": TEST_HELPER, "auths": {"registry:5000": {"auth": b64("from-auths:pw-auths-2")}}}
    )
    assert (await CredentialResolver(env).resolve("registry:5000")).username == "from-store"


async def test_helper_not_found_falls_through_to_auths(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({})
    write_config(
        {
            "credHelpers": {"registry:5000": TEST_HELPER},
            "auths": {"registry:5000": {"auth": b64("auth-user:pw-3")}},
        }
    )
    credential = await CredentialResolver(env).resolve("registry:5000")
    assert credential.username == "auth-user"
    assert "(auths)" in credential.source
    assert len(helper_calls(env)) == 1


async def test_helper_not_found_and_no_auths_is_anonymous(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"other:5000": ("u", HELPER_SECRET)})
    write_config({"credsStore": TEST_HELPER})
    assert await CredentialResolver(env).resolve("registry:5000") == ANONYMOUS


async def test_missing_helper_binary_is_an_error_naming_the_helper(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    path = write_config({"credHelpers": {"registry:5000": "imglife-absent"}})
    with pytest.raises(CredentialError) as caught:
        await CredentialResolver(env).resolve("registry:5000")
    assert "docker-credential-imglife-absent" in str(caught.value)
    assert "not found on PATH" in str(caught.value)
    assert str(path) in str(caught.value)


async def test_helper_is_looked_up_on_the_given_path_only(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry:5000": ("u", HELPER_SECRET)})
    write_config({"credsStore": TEST_HELPER})
    env["PATH"] = "/nonexistent"
    with pytest.raises(CredentialError, match="docker-credential-imglife-test"):
        await CredentialResolver(env).resolve("registry:5000")


@pytest.mark.parametrize("name", ["../../bin/sh", "pass; rm -rf /", "a b", "$(id)", "x/y"])
async def test_invalid_helper_names_are_refused_before_running_anything(
    env: dict[str, str], write_config: Callable[..., Path], name: str
) -> None:
    write_config({"credsStore": name})
    with pytest.raises(CredentialError, match="credential helper name"):
        await CredentialResolver(env).resolve("registry:5000")
    assert helper_calls(env) == []


async def test_helper_timeout_is_an_error_and_the_helper_is_killed(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry:5000": ("u", HELPER_SECRET)})
    write_config({"credsStore": TEST_HELPER})
    env["IMGLIFE_TEST_CREDHELPER_MODE"] = "sleep"
    started = time.monotonic()
    with pytest.raises(CredentialError) as caught:
        await CredentialResolver(env, helper_timeout=0.5).resolve("registry:5000")
    assert time.monotonic() - started < 10
    assert "docker-credential-imglife-test" in str(caught.value)
    assert "within 0.5s" in str(caught.value)
    assert_no_secret(str(caught.value))
    (call,) = helper_log(env)
    with pytest.raises(ProcessLookupError):
        os.kill(call["pid"], 0)  # killed and reaped, not left sleeping


async def test_helper_garbage_output_is_an_error_that_does_not_quote_it(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry:5000": ("u", HELPER_SECRET)})
    write_config({"credsStore": TEST_HELPER})
    env["IMGLIFE_TEST_CREDHELPER_MODE"] = "garbage"
    with pytest.raises(CredentialError) as caught:
        await CredentialResolver(env).resolve("registry:5000")
    assert "docker-credential-imglife-test" in str(caught.value)
    assert "not a credentials object" in str(caught.value)
    assert_no_secret(str(caught.value))


async def test_helper_failure_is_an_error_with_its_message(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry:5000": ("u", HELPER_SECRET)})
    write_config({"credsStore": TEST_HELPER})
    env["IMGLIFE_TEST_CREDHELPER_MODE"] = "fail"
    with pytest.raises(CredentialError) as caught:
        await CredentialResolver(env).resolve("registry:5000")
    message = str(caught.value)
    assert "docker-credential-imglife-test failed for registry:5000 (exit status 1)" in message
    assert "test keyring is locked" in message
    assert_no_secret(message)


@pytest.mark.parametrize(
    "output",
    ['["ServerURL"]', '{"Username": "u"}', '{"Username": 3, "Secret": "x-s3cr3t"}', '{"Secret": 42}'],
)
async def test_helper_output_with_the_wrong_shape_is_an_error(
    env: dict[str, str], write_config: Callable[..., Path], tmp_path: Path, output: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-imglife-shape"
    helper.write_text(f"#!/bin/sh\ncat >/dev/null\nprintf '%s' '{output}'\n", encoding="utf-8")
    helper.chmod(0o755)
    write_config({"credsStore": "imglife-shape"})
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    with pytest.raises(CredentialError, match="not a credentials object"):
        await CredentialResolver(env).resolve("registry:5000")


async def test_helper_empty_secret_means_no_credentials(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry:5000": ("u", "")})
    write_config({"credsStore": TEST_HELPER})
    assert await CredentialResolver(env).resolve("registry:5000") == ANONYMOUS


# --- caching ------------------------------------------------------------------------------------


async def test_resolution_is_cached_per_normalised_host(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"https://index.docker.io/v1/": ("hub-user", HELPER_SECRET)})
    write_config({"credsStore": TEST_HELPER})
    resolver = CredentialResolver(env)
    first = await resolver.resolve("docker.io")
    assert await resolver.resolve("registry-1.docker.io") is first
    assert await resolver.resolve("INDEX.DOCKER.IO") is first
    assert len(helper_calls(env)) == 1


async def test_concurrent_resolutions_run_the_helper_once(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    credstore({"registry:5000": ("u", HELPER_SECRET)})
    write_config({"credsStore": TEST_HELPER})
    resolver = CredentialResolver(env)
    results = await asyncio.gather(*(resolver.resolve("registry:5000") for _ in range(8)))
    assert all(result is results[0] for result in results)
    assert len(helper_calls(env)) == 1


async def test_resolver_takes_a_snapshot_of_the_environment(env: dict[str, str]) -> None:
    resolver = CredentialResolver(env)
    env["IMGLIFE_REGISTRY_5000_TOKEN"] = TOKEN
    assert await resolver.resolve("registry:5000") == ANONYMOUS


# --- secrets never shown --------------------------------------------------------------------------


def test_credential_repr_and_str_never_show_secrets() -> None:
    credential = RegistryCredential(
        source="somewhere",
        username="alice",
        password=PASSWORD,
        identity_token=IDENTITY_TOKEN,
        registry_token=REGISTRY_TOKEN,
        bearer_fallback=True,
    )
    for text in (repr(credential), str(credential), f"{credential}", repr([credential])):
        assert_no_secret(text)
        assert "somewhere" in text
    assert "password=<hidden>" in repr(credential)
    assert str(ANONYMOUS) == "anonymous"


async def test_env_secrets_are_registered_for_redaction(env: dict[str, str]) -> None:
    password, token, job_token = unique_secret("pw"), unique_secret("tok"), unique_secret("job")
    assert redact_text(f"x {password} {token} {job_token}") == f"x {password} {token} {job_token}"
    env |= {
        "IMGLIFE_REGISTRY_5000_USERNAME": "alice",
        "IMGLIFE_REGISTRY_5000_PASSWORD": password,
        "IMGLIFE_REGISTRY_5000_TOKEN": token,  # ignored (the password wins) but still a secret
        "CI_JOB_TOKEN": job_token,
        "CI_REGISTRY": "gitlab.example.com:5050",
    }
    await CredentialResolver(env).resolve("registry:5000")
    assert redact_text(f"x {password} {token} {job_token}") == f"x {MASK} {MASK} {MASK}"


async def test_docker_config_secrets_are_registered_for_redaction(
    env: dict[str, str], write_config: Callable[..., Path]
) -> None:
    password, identity, registry_token = unique_secret("dpw"), unique_secret("idt"), unique_secret("rgt")
    auth = b64(f"dock:{password}")
    write_config(
        {
            "auths": {
                "registry:5000": {"auth": auth},
                "registry:5001": {"identitytoken": identity},
                "registry:5002": {"registrytoken": registry_token},
            }
        }
    )
    resolver = CredentialResolver(env)
    for host in ("registry:5000", "registry:5001", "registry:5002"):
        await resolver.resolve(host)
    text = f"{password} {identity} {registry_token} {auth} dock:{password}"
    assert password not in redact_text(text)
    assert identity not in redact_text(text)
    assert registry_token not in redact_text(text)
    assert auth not in redact_text(text)


async def test_helper_secrets_are_registered_for_redaction(
    env: dict[str, str], write_config: Callable[..., Path], credstore: Callable[..., None]
) -> None:
    secret = unique_secret("hlp")
    credstore({"registry:5000": ("u", secret)})
    write_config({"credsStore": TEST_HELPER})
    assert redact_text(secret) == secret
    await CredentialResolver(env).resolve("registry:5000")
    assert redact_text(f"token is {secret}") == f"token is {MASK}"


# --- package registry ----------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "variable"), [("gitlab", "GITLAB_TOKEN"), ("gitea", "GITEA_TOKEN")])
def test_package_token_providers(provider: str, variable: str) -> None:
    credential = package_registry_credentials(provider, {variable: TOKEN})
    assert credential == PackageRegistryCredential(provider=provider, source=variable, token=TOKEN)
    assert credential.is_complete


@pytest.mark.parametrize(("provider", "variable"), [("gitlab", "GITLAB_TOKEN"), ("gitea", "GITEA_TOKEN")])
def test_package_token_missing_is_an_error_naming_the_variable(provider: str, variable: str) -> None:
    with pytest.raises(CredentialError, match=variable) as caught:
        package_registry_credentials(provider, {variable: "", "GITLAB_TOKEN_OTHER": TOKEN})
    assert caught.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(("provider", "variable"), [("gitlab", "GITLAB_TOKEN"), ("gitea", "GITEA_TOKEN")])
def test_package_token_missing_without_require_is_reported_missing(provider: str, variable: str) -> None:
    credential = package_registry_credentials(provider, {}, require=False)
    assert credential.token is None
    assert credential.missing == (variable,)
    assert not credential.is_complete


def test_package_s3_credentials() -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE7F2A",
        "AWS_SECRET_ACCESS_KEY": PASSWORD,
        "AWS_SESSION_TOKEN": TOKEN,
        "AWS_REGION": "eu-west-3",
        "AWS_DEFAULT_REGION": "us-west-2",
    }
    credential = package_registry_credentials("s3", environ)
    assert credential.access_key_id == "AKIAEXAMPLE7F2A"
    assert credential.secret_access_key == PASSWORD
    assert credential.session_token == TOKEN
    assert credential.region == "eu-west-3"
    assert credential.source == "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN"


def test_package_s3_optional_parts() -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE0001",
        "AWS_SECRET_ACCESS_KEY": PASSWORD,
        "AWS_DEFAULT_REGION": "x-1",
    }
    credential = package_registry_credentials("s3", environ)
    assert credential.session_token is None
    assert credential.region == "x-1"
    no_region = package_registry_credentials(
        "s3", {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE0001", "AWS_SECRET_ACCESS_KEY": "pw"}
    )
    assert no_region.region is None


def test_package_s3_missing_both_keys() -> None:
    with pytest.raises(CredentialError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"):
        package_registry_credentials("s3", {"AWS_REGION": "eu-west-3"})
    credential = package_registry_credentials("s3", {"AWS_REGION": "eu-west-3"}, require=False)
    assert credential.missing == ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    assert credential.region == "eu-west-3"


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE0002"}, "AWS_SECRET_ACCESS_KEY"),
        ({"AWS_SECRET_ACCESS_KEY": PASSWORD}, "AWS_ACCESS_KEY_ID"),
    ],
)
@pytest.mark.parametrize("require", [True, False])
def test_package_s3_half_key_pair_is_always_an_error(
    environ: dict[str, str], missing: str, require: bool
) -> None:
    with pytest.raises(CredentialError, match=f"{missing} is not") as caught:
        package_registry_credentials("s3", environ, require=require)
    assert_no_secret(str(caught.value))


def test_package_local_needs_nothing() -> None:
    credential = package_registry_credentials("local", {})
    assert credential.is_complete
    assert credential.token is None
    assert credential.provider == "local"


def test_package_unknown_provider() -> None:
    with pytest.raises(CredentialError, match="unknown package registry provider 'ftp'"):
        package_registry_credentials("ftp", {})


def test_package_credentials_never_show_secrets_and_are_registered() -> None:
    token, key_id, secret, session = (unique_secret(x) for x in ("glt", "kid", "sak", "sst"))
    gitlab = package_registry_credentials("gitlab", {"GITLAB_TOKEN": token})
    s3 = package_registry_credentials(
        "s3", {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_SESSION_TOKEN": session}
    )
    for text in (repr(gitlab), str(gitlab), repr(s3), str(s3)):
        assert_no_secret(text, token, key_id, secret, session)
    assert "token=<hidden>" in repr(gitlab)
    for value in (token, key_id, secret, session):
        assert redact_text(f"value={value}") == f"value={MASK}"
