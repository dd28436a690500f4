"""``.imglife.yml``: defaults, and the message a project sees for each mistake (pure)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import EXIT_USAGE, ConfigError
from bot.repoconfig import (
    DEFAULT_DOCKERFILES,
    MAX_DOCKERFILES,
    CheckSettings,
    RepoConfig,
    RepoConfigError,
    parse_repo_config,
)

SOURCE = ".imglife.yml"


def parse(text: str) -> RepoConfig:
    return parse_repo_config(textwrap.dedent(text), source=SOURCE)


def problems(text: str) -> list[str]:
    with pytest.raises(RepoConfigError) as caught:
        parse(text)
    return caught.value.problems


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "# nothing configured yet\n",
        "---\n",
        "images:\ndockerfiles:\ncheck:\n",
        "check: {strict: null}",
    ],
)
def test_empty_file_and_empty_keys_mean_defaults(text):
    config = parse(text)
    assert config == RepoConfig()
    assert config.images == ()
    assert config.dockerfiles == DEFAULT_DOCKERFILES == ("Dockerfile",)
    assert config.check.strict is False


def test_a_full_file():
    config = parse(
        """\
        images:
          - registry.example.com/apps/myservice
          - Registry.Example.com/apps/worker
          - alpine-tools
        dockerfiles:
          - Dockerfile
          - ./docker/worker.Dockerfile
          - docker/./debug.Dockerfile
        check:
          strict: true
        """
    )
    assert config == RepoConfig(
        images=(
            "registry.example.com/apps/myservice",
            "registry.example.com/apps/worker",
            "docker.io/library/alpine-tools",
        ),
        dockerfiles=("Dockerfile", "docker/worker.Dockerfile", "docker/debug.Dockerfile"),
        check=CheckSettings(strict=True),
    )


def test_an_empty_dockerfile_list_scans_nothing():
    assert parse("dockerfiles: []").dockerfiles == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "image: [registry.example.com/apps/x]",
            ".imglife.yml:1:1: image: unknown key 'image' (expected one of: images, dockerfiles, check); "
            "did you mean 'images'?",
            id="unknown-key-with-suggestion",
        ),
        pytest.param(
            "token: abc",
            ".imglife.yml:1:1: token: unknown key 'token' (expected one of: images, dockerfiles, check)",
            id="unknown-key",
        ),
        pytest.param(
            "check: {strict: true, stric: false}",
            ".imglife.yml:1:23: check.stric: unknown key 'stric' (expected one of: strict); "
            "did you mean 'strict'?",
            id="unknown-check-key",
        ),
        pytest.param(
            "images: registry.example.com/apps/x",
            ".imglife.yml:1:1: images: expected a list of image repositories, got the string "
            "'registry.example.com/apps/x'",
            id="images-not-a-list",
        ),
        pytest.param(
            "images:\n  - registry.example.com/apps/x\n  - registry.example.com/apps/y:1.0\n",
            ".imglife.yml:3:5: images[1]: invalid image reference 'registry.example.com/apps/y:1.0': "
            "a repository is expected here, without tag",
            id="image-with-tag",
        ),
        pytest.param(
            "images: ['registry.example.com/apps/y@sha256:" + "a" * 64 + "']",
            ".imglife.yml:1:10: images[0]: invalid image reference 'registry.example.com/apps/y@sha256:"
            + "a" * 64
            + "': a repository is expected here, without digest",
            id="image-with-digest",
        ),
        pytest.param(
            "images: [registry.example.com/Apps/x]",
            ".imglife.yml:1:10: images[0]: invalid image reference 'registry.example.com/Apps/x': "
            "repository path component 'Apps' must be lower-case letters and digits, separated by "
            "'.', '_', '__' or '-'",
            id="image-upper-case",
        ),
        pytest.param(
            "images: [https://registry.example.com/apps/x]",
            ".imglife.yml:1:10: images[0]: invalid image reference 'https://registry.example.com/apps/x': "
            "drop the URL scheme; plain-HTTP registries are listed in registry.insecure_registries",
            id="image-url",
        ),
        pytest.param(
            "images: [42]",
            ".imglife.yml:1:10: images[0]: expected a string, got the integer 42",
            id="image-number",
        ),
        pytest.param(
            "images: [registry.example.com/a/x, Registry.example.com/a/x]",
            ".imglife.yml:1:36: images[1]: duplicate of images[0]",
            id="image-duplicate",
        ),
        pytest.param(
            "dockerfiles: Dockerfile",
            ".imglife.yml:1:1: dockerfiles: expected a list of Dockerfile paths, got the string 'Dockerfile'",
            id="dockerfiles-not-a-list",
        ),
        pytest.param(
            "dockerfiles: [/etc/passwd]",
            ".imglife.yml:1:15: dockerfiles[0]: must be a path relative to the repository root, "
            "not '/etc/passwd'",
            id="absolute",
        ),
        pytest.param(
            "dockerfiles: [../other/Dockerfile]",
            ".imglife.yml:1:15: dockerfiles[0]: must stay inside the repository: '../other/Dockerfile' has a "
            "'..' component",
            id="parent",
        ),
        pytest.param(
            "dockerfiles: [docker/../../Dockerfile]",
            ".imglife.yml:1:15: dockerfiles[0]: must stay inside the repository: "
            "'docker/../../Dockerfile' has a '..' component",
            id="parent-inside",
        ),
        pytest.param(
            "dockerfiles: ['docker\\..\\Dockerfile']",
            ".imglife.yml:1:15: dockerfiles[0]: use '/' to separate directories, not '\\' "
            "('docker\\\\..\\\\Dockerfile')",
            id="backslash",
        ),
        pytest.param(
            "dockerfiles: ['docker//Dockerfile']",
            ".imglife.yml:1:15: dockerfiles[0]: has an empty path component (a doubled or trailing '/'): "
            "'docker//Dockerfile'",
            id="double-slash",
        ),
        pytest.param(
            "dockerfiles: ['docker/']",
            ".imglife.yml:1:15: dockerfiles[0]: has an empty path component (a doubled or trailing '/'): "
            "'docker/'",
            id="trailing-slash",
        ),
        pytest.param(
            "dockerfiles: ['.']",
            ".imglife.yml:1:15: dockerfiles[0]: has an empty path component (a doubled or trailing '/'): '.'",
            id="dot",
        ),
        pytest.param(
            "dockerfiles: ['']",
            ".imglife.yml:1:15: dockerfiles[0]: must not be empty",
            id="empty",
        ),
        pytest.param(
            'dockerfiles: ["a\\x00b"]',
            ".imglife.yml:1:15: dockerfiles[0]: contains a control character",
            id="nul",
        ),
        pytest.param(
            "dockerfiles: [Dockerfile, ./Dockerfile]",
            ".imglife.yml:1:27: dockerfiles[1]: duplicate of dockerfiles[0]",
            id="duplicate",
        ),
        pytest.param(
            "dockerfiles: [" + ", ".join(f"d{index}" for index in range(MAX_DOCKERFILES + 1)) + "]",
            ".imglife.yml:1:1: dockerfiles: at most 20 entries, got 21",
            id="too-many",
        ),
        pytest.param(
            "check: true",
            ".imglife.yml:1:1: check: expected a mapping with the keys strict, got the boolean true",
            id="check-not-a-mapping",
        ),
        pytest.param(
            "check:\n  strict: 'yes'\n",
            ".imglife.yml:2:3: check.strict: expected true or false, got the string 'yes'",
            id="strict-string",
        ),
        pytest.param(
            "check: {strict: 1}",
            ".imglife.yml:1:9: check.strict: expected true or false, got the integer 1",
            id="strict-number",
        ),
        pytest.param(
            "- images",
            ".imglife.yml:1:1: the top level must be a mapping with the keys images, dockerfiles, check, "
            "got a list",
            id="top-level-list",
        ),
        pytest.param(
            "images: [a]\nimages: [b]\n",
            ".imglife.yml:2:1: images: duplicate key 'images' (first at line 1); "
            "YAML would silently keep only the last one",
            id="duplicate-key",
        ),
        pytest.param(
            "images: [",
            ".imglife.yml:1:10: not valid YAML: expected the node content, but found '<stream end>'",
            id="broken-yaml",
        ),
        pytest.param(
            "images: !!python/object:os.system [x]",
            ".imglife.yml:1:9: images: unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'",
            id="python-tag",
        ),
        pytest.param(
            "when: 2024-13-01", ".imglife.yml: not valid YAML: month must be in 1..12", id="bad-date"
        ),
        pytest.param("[" * 1100, ".imglife.yml: not valid YAML: maximum recursion depth exceeded", id="deep"),
    ],
)
def test_each_mistake_names_its_key_path(text, expected):
    assert problems(text) == [expected]


def test_every_problem_is_reported_at_once_in_file_order():
    found = problems(
        """\
        images: [registry.example.com/apps/x:1]
        dockerfiles: [/abs, ../up]
        check: {strict: maybe}
        extra: 1
        """
    )
    assert [line.split(": ", 2)[1] for line in found] == [
        "images[0]",
        "dockerfiles[0]",
        "dockerfiles[1]",
        "check.strict",
        "extra",
    ]
    assert all(line.startswith(".imglife.yml:") for line in found)


def test_the_error_is_a_usage_error_naming_the_source():
    with pytest.raises(RepoConfigError) as caught:
        parse_repo_config("nope: 1", source="group/app:.imglife.yml")
    assert isinstance(caught.value, ConfigError)
    assert caught.value.exit_code == EXIT_USAGE
    assert str(caught.value).startswith("group/app:.imglife.yml:1:1: nope: unknown key")


def test_too_large_files_are_refused_before_parsing():
    with pytest.raises(RepoConfigError, match="larger than 64 KiB"):
        parse_repo_config("#" * (64 * 1024 + 1), source=SOURCE)


def test_long_paths_and_values_are_cut_in_messages():
    (message,) = problems("dockerfiles: ['/" + "a" * 500 + "']")
    assert len(message) < 200


def test_config_is_frozen():
    config = parse("")
    with pytest.raises(AttributeError):
        config.images = ("x",)  # type: ignore[misc]


KEY = st.sampled_from(["images", "dockerfiles", "check", "strict", "image", "- ", "  ", "\n", ": ", "{", "["])


@settings(max_examples=250, deadline=None)
@given(st.lists(st.one_of(KEY, st.text(max_size=15)), max_size=30).map("".join))
def test_property_only_repo_config_errors_are_raised(text):
    error: RepoConfigError | None = None
    try:
        config = parse_repo_config(text, source=SOURCE)
    except RepoConfigError as exc:
        error = exc
    if error is not None:
        assert error.problems
        assert all(problem.startswith(SOURCE) for problem in error.problems)
        return
    assert len(config.dockerfiles) <= MAX_DOCKERFILES
    assert all(not path.startswith("/") and ".." not in path.split("/") for path in config.dockerfiles)
