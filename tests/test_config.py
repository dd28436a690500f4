"""imglife.yaml: defaults, cross-checks, and the exact messages a user sees for each mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from bot.config import (
    DEFAULT_CONFIG_NAME,
    ENV_CONFIG,
    BuildConfig,
    BuildImage,
    Config,
    insecure_hosts,
    load_config,
    parse_config,
    parse_duration,
    resolve_config_path,
)
from bot.config.loader import StrictLoader
from bot.config.schema import MSG_CREDENTIALS_IN_URL
from bot.errors import EXIT_USAGE, ConfigError, UsageError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GITLAB_REGISTRY = """\
registry:
  url: https://gitlab.example.com
  project_id: 42
"""


def write(tmp_path: Path, text: str, name: str = "imglife.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def problems(tmp_path: Path, text: str) -> list[str]:
    """The problem lines of the ConfigError, with the temporary directory cut from the file name."""
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.exit_code == EXIT_USAGE
    return [line.replace(f"{tmp_path}/", "") for line in caught.value.problems]


# --- defaults -------------------------------------------------------------------------------------


def test_minimal_config_gets_upstream_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, GITLAB_REGISTRY)

    assert config.registry.provider == "gitlab"
    assert config.registry.project_id == 42
    assert config.registry.config_ref == "main"
    assert config.registry.region == "us-east-1"
    assert config.sync.entries == ()
    assert config.sync.platforms is None
    assert config.build is None
    assert config.retention.keep_last == 5
    assert config.retention.max_age_days == 30
    assert config.retention.exclude_tags == ()
    assert config.retention.archive.enabled is False
    assert config.retention.archive.keep_days == 90
    assert config.lifecycle.eol_provider == "endoflife"
    assert config.lifecycle.eol_target == "git"
    assert config.lifecycle.eol_data_file == tmp_path / "eol-data.yaml"
    assert config.lifecycle.endoflife_url == "https://endoflife.date"
    assert config.lifecycle.notify.min_status == "warning"
    assert config.bot.host == "0.0.0.0"  # noqa: S104 - a string compared, nothing bound
    assert config.bot.port == 8080
    assert config.bot.workers == 4
    assert config.bot.register_wait == 1800.0
    assert config.bot.max_body_bytes == 25 * 1024 * 1024
    assert config.bot.schedule == {}


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, GITLAB_REGISTRY + "sync:\nretention:\nstatus:\nbot:\nbuild:\n")

    assert config.sync.entries == ()
    assert config.retention.keep_last == 5
    assert config.bot.port == 8080
    assert config.build is None


def test_build_and_hook_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        GITLAB_REGISTRY
        + """
sync:
  hooks:
    post_sync:
      - cmd: notify-team.sh
  entries:
    - source: alpine
      tag: "3.21"
      target: registry.example.com/mirrors/alpine
build:
  core_version: "1.0.0"
  registry: registry.example.com/bases
""",
    )

    hook = config.sync.hooks.post_sync[0]
    assert (hook.cmd, hook.timeout, hook.continue_on_error) == ("notify-team.sh", 60.0, False)
    entry = config.sync.entries[0]
    assert entry.check_digest is False
    assert entry.os_normalize is False
    assert entry.source_ref.name == "docker.io/library/alpine"
    assert config.build is not None
    assert config.build.platforms == ("linux/amd64",)
    assert config.build.sbom is False
    assert config.build.tag_format == "{version}-core{core_version}"


# --- registry providers -----------------------------------------------------------------------------


def test_gitlab_needs_url_and_project_id_reported_at_the_registry_line(tmp_path: Path) -> None:
    assert problems(tmp_path, "# base images\nregistry:\n  provider: gitlab\n") == [
        "imglife.yaml:2:1: registry.url: required for provider gitlab: the GitLab instance URL, "
        "e.g. https://gitlab.example.com",
        "imglife.yaml:2:1: registry.project_id: required for provider gitlab: the GitLab project holding "
        "the packages: its ID (42) or path ('group/project')",
    ]


def test_gitlab_project_id_may_be_a_path_but_not_a_boolean(tmp_path: Path) -> None:
    config = load(
        tmp_path, "registry:\n  url: https://gitlab.example.com\n  project_id: platform/base-images\n"
    )
    assert config.registry.project_id == "platform/base-images"

    assert problems(tmp_path, "registry:\n  url: https://gitlab.example.com\n  project_id: true\n") == [
        "imglife.yaml:3:3: registry.project_id: expected a GitLab project ID (integer) or path "
        "('group/project'), got bool"
    ]


def test_gitea_needs_url_and_owner(tmp_path: Path) -> None:
    assert problems(tmp_path, "registry:\n  provider: gitea\n  repo: base-images\n") == [
        "imglife.yaml:1:1: registry.url: required for provider gitea: the Gitea/Forgejo instance URL, "
        "e.g. https://gitea.example.com",
        "imglife.yaml:1:1: registry.owner: required for provider gitea: the Gitea user or organisation "
        "that owns the packages",
    ]


def test_s3_needs_bucket_and_defaults_region(tmp_path: Path) -> None:
    assert problems(tmp_path, "registry:\n  provider: s3\n") == [
        "imglife.yaml:1:1: registry.bucket: required for provider s3: the S3 bucket name"
    ]
    config = load(tmp_path, "registry:\n  provider: s3\n  bucket: imglife\n")
    assert config.registry.region == "us-east-1"


def test_local_path_defaults_next_to_the_config_file(tmp_path: Path) -> None:
    config = load(tmp_path, "registry:\n  provider: local\n")
    assert config.registry.path == tmp_path / "imglife-records"

    config = load(tmp_path, "registry:\n  provider: local\n  path: ../records\n")
    assert config.registry.path == tmp_path / "../records"


def test_key_of_another_provider_names_the_provider_it_belongs_to(tmp_path: Path) -> None:
    assert problems(tmp_path, GITLAB_REGISTRY + "  bucket: imglife\n  owner: platform\n") == [
        "imglife.yaml:4:3: registry.bucket: 'bucket' is a key of provider s3, not of provider gitlab",
        "imglife.yaml:5:3: registry.owner: 'owner' is a key of provider gitea, not of provider gitlab",
    ]
    assert problems(tmp_path, "registry:\n  provider: local\n  url: https://gitlab.example.com\n") == [
        "imglife.yaml:3:3: registry.url: 'url' is a key of provider gitlab, gitea, s3, not of provider local"
    ]


def test_registry_url_must_be_http(tmp_path: Path) -> None:
    assert problems(tmp_path, "registry:\n  url: gitlab.example.com\n  project_id: 1\n") == [
        "imglife.yaml:2:3: registry.url: must be an http:// or https:// URL (got 'gitlab.example.com')"
    ]


def test_unknown_provider_suggests_the_closest(tmp_path: Path) -> None:
    assert problems(tmp_path, "registry:\n  provider: gitlb\n") == [
        "imglife.yaml:2:3: registry.provider: must be one of: gitlab, gitea, s3, local "
        "(got the string 'gitlb'); did you mean 'gitlab'?"
    ]


def test_password_from_a_shell_variable_in_a_hook_is_fine(tmp_path: Path) -> None:
    hook = "      - cmd: git clone https://oauth2:${CI_JOB_TOKEN}@gitlab.example.com/platform/tools.git\n"
    config = load(tmp_path, GITLAB_REGISTRY + "sync:\n  hooks:\n    post_sync:\n" + hook)
    assert config.sync.hooks.post_sync[0].cmd.startswith("git clone https://oauth2:${CI_JOB_TOKEN}@")


def test_credentials_in_urls_are_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        registry:
          url: https://bot:hunter2@gitlab.example.com
          project_id: 42
        sync:
          hooks:
            post_sync:
              - cmd: curl -X POST https://user:pass@hooks.example.com/done
        """,
    )
    hint = (
        "URLs must not carry credentials ('user:password@'): credentials come from the environment "
        "(GITLAB_TOKEN, GITEA_TOKEN, AWS_*, IMGLIFE_<HOST>_*), never from imglife.yaml"
    )
    assert found == [
        f"imglife.yaml:2:3: registry.url: {hint}",
        f"imglife.yaml:7:9: sync.hooks.post_sync[0].cmd: {hint}",
    ]


# --- unknown and duplicate keys ------------------------------------------------------------------


def test_unknown_key_lists_expected_keys_and_suggests_the_closest(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        GITLAB_REGISTRY
        + """\
sync:
  entries:
    - source: docker.io/library/alpine
      tga: "3.21"
      target: registry.example.com/mirrors/alpine
""",
    )
    assert found == [
        "imglife.yaml:7:7: sync.entries[0].tga: unknown key 'tga' (expected one of: source, target, tag, "
        "tag_regex, keep_last, check_digest, platforms, os_normalize, lifecycle, hooks); did you mean 'tag'?"
    ]


def test_unknown_section_and_secret_looking_key(tmp_path: Path) -> None:
    found = problems(tmp_path, GITLAB_REGISTRY + "  token: glpat-xxxx\nretension:\n  keep_last: 3\n")
    assert found == [
        "imglife.yaml:4:3: registry.token: unknown key 'token' (expected one of: provider, url, api_url, "
        "project_id, owner, repo, bucket, region, prefix, path, insecure_registries, config_ref); "
        "secrets never go in imglife.yaml: they come from the environment",
        "imglife.yaml:5:1: retension: unknown key 'retension' (expected one of: registry, sync, build, "
        "retention, lifecycle, status, bot); did you mean 'retention'?",
    ]


def test_status_accepts_only_an_empty_mapping(tmp_path: Path) -> None:
    assert load(tmp_path, GITLAB_REGISTRY + "status: {}\n").status is not None
    assert problems(tmp_path, GITLAB_REGISTRY + "status:\n  format: markdown\n") == [
        "imglife.yaml:5:3: status.format: unknown key 'format' (this section takes no keys)"
    ]


def test_duplicate_key_is_an_error_not_last_one_wins(tmp_path: Path) -> None:
    found = problems(tmp_path, GITLAB_REGISTRY + "retention:\n  keep_last: 3\n  keep_last: 10\n")
    assert found == [
        "imglife.yaml:6:3: retention.keep_last: duplicate key 'keep_last' (first at line 5); "
        "YAML would silently keep only the last one"
    ]


def test_strict_loader_rejects_duplicates_when_used_with_yaml_load() -> None:
    text = "a: 1\nb: &x {c: 2}\nd:\n  <<: *x\n  c: 3\n"
    assert yaml.load(text, Loader=StrictLoader) == {  # noqa: S506 - StrictLoader is a SafeLoader
        "a": 1,
        "b": {"c": 2},
        "d": {"c": 3},
    }
    with pytest.raises(
        yaml.constructor.ConstructorError, match="found duplicate key 'a' \\(first at line 1\\)"
    ):
        yaml.load("a: 1\na: 2\n", Loader=StrictLoader)  # noqa: S506 - StrictLoader is a SafeLoader


def test_non_string_key_is_reported(tmp_path: Path) -> None:
    assert problems(tmp_path, GITLAB_REGISTRY + "on: true\n") == [
        "imglife.yaml:4:1: key 'on' is not a string (YAML reads it as the boolean true); quote it"
    ]


def test_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        GITLAB_REGISTRY
        + """\
sync:
  entries:
    - &alpine
      source: docker.io/library/alpine
      tag_regex: '^3\\.\\d+\\.\\d+$'
      target: registry.example.com/mirrors/alpine
      keep_last: 3
    - <<: *alpine
      keep_last: 1
      target: registry.example.com/mirrors/alpine-latest
""",
    )
    first, second = config.sync.entries
    assert (first.keep_last, second.keep_last) == (3, 1)
    assert second.source == first.source
    assert second.target == "registry.example.com/mirrors/alpine-latest"


def test_alias_bomb_is_stopped(tmp_path: Path) -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 8):
        previous = f"*a{level - 1}"
        levels.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    found = problems(tmp_path, "\n".join(levels) + "\n")
    assert found == ["imglife.yaml:1:1: the document expands to more than 100000 values (alias bomb?)"]


# --- file-level problems ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.problems == [f"{tmp_path}/nope.yaml: file not found"]


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert caught.value.problems == [f"{tmp_path}: is a directory, not a configuration file"]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "imglife.yaml"
    path.write_bytes(b"registry:\n  url: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [f"{path}: not UTF-8 text (invalid byte at offset 17)"]


def test_not_yaml(tmp_path: Path) -> None:
    assert problems(tmp_path, "registry:\n  url: [unclosed\n") == [
        "imglife.yaml:3:1: not valid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence)"
    ]


def test_empty_file_and_non_mapping_top_level(tmp_path: Path) -> None:
    assert problems(tmp_path, "# nothing yet\n") == [
        "imglife.yaml: the file is empty; it needs at least a 'registry' section"
    ]
    assert problems(tmp_path, "- registry\n") == [
        "imglife.yaml:1:1: the top level must be a mapping of sections (registry, sync, build, ...), got a "
        "list"
    ]


def test_missing_registry_section(tmp_path: Path) -> None:
    assert problems(tmp_path, "retention:\n  keep_last: 3\n") == [
        "imglife.yaml:1:1: registry: required key is missing"
    ]


# --- sync -----------------------------------------------------------------------------------------


SYNC_TWO_ENTRIES = (
    GITLAB_REGISTRY
    + """\
sync:
  entries:
    - source: docker.io/library/alpine
      tag: "3.21.3"
      target: registry.example.com/mirrors/alpine
    - source: docker.io/library/golang
      tag_regex: '^(1\\.\\d+'
      target: registry.example.com/mirrors/golang
"""
)


def test_bad_regex_is_reported_with_its_key_path(tmp_path: Path) -> None:
    assert problems(tmp_path, SYNC_TWO_ENTRIES) == [
        "imglife.yaml:10:7: sync.entries[1].tag_regex: invalid regular expression: "
        "missing ), unterminated subpattern at position 1"
    ]


def test_bad_reference_in_source_and_tag_in_target(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        GITLAB_REGISTRY
        + """\
sync:
  entries:
    - source: docker.io/library/Alpine
      tag: "3.21"
      target: registry.example.com/mirrors/alpine:3.21
""",
    )
    assert found == [
        "imglife.yaml:6:7: sync.entries[0].source: invalid image reference 'docker.io/library/Alpine': "
        "repository path component 'Alpine' must be lower-case letters and digits, separated by '.', '_', "
        "'__' or '-'",
        "imglife.yaml:8:7: sync.entries[0].target: invalid image reference "
        "'registry.example.com/mirrors/alpine:3.21': a repository is expected here, without tag",
    ]


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (
            "      tag: '3.21'\n      tag_regex: '^3'\n",
            "imglife.yaml:9:7: sync.entries[0].tag_regex: give either tag (one fixed tag) or tag_regex "
            "(tags matching a pattern), not both",
        ),
        (
            "",
            "imglife.yaml:6:7: sync.entries[0]: needs tag (one fixed tag) or tag_regex "
            "(the tags matching a pattern)",
        ),
    ],
    ids=["both", "neither"],
)
def test_exactly_one_of_tag_and_tag_regex(tmp_path: Path, tags: str, expected: str) -> None:
    text = (
        GITLAB_REGISTRY
        + "sync:\n  entries:\n    - source: alpine\n      target: registry.example.com/mirrors/alpine\n"
        + tags
    )
    assert problems(tmp_path, text) == [expected]


def test_source_and_target_must_differ(tmp_path: Path) -> None:
    text = (
        GITLAB_REGISTRY
        + "sync:\n  entries:\n    - {source: alpine, target: docker.io/library/alpine, tag: '3'}\n"
    )
    assert problems(tmp_path, text) == [
        "imglife.yaml:6:24: sync.entries[0].target: is the same repository as source "
        "(docker.io/library/alpine)"
    ]


LIFECYCLE_ENTRY = (
    GITLAB_REGISTRY
    + """\
sync:
  entries:
    - source: alpine
      tag: '3.21.3'
      target: registry.example.com/mirrors/alpine
      lifecycle:
        product: alpine
"""
)


def test_track_and_extract_mean_the_same(tmp_path: Path) -> None:
    def track(extra: str) -> str | None:
        lifecycle = load(tmp_path, LIFECYCLE_ENTRY + extra).sync.entries[0].lifecycle
        assert lifecycle is not None
        return lifecycle.track

    assert track("        extract: major\n") == "major"
    assert track("        track: patch\n") == "patch"
    assert track("        track: full\n        extract: full\n") == "full"
    assert track("") == "minor"


def test_track_and_extract_conflict(tmp_path: Path) -> None:
    assert problems(tmp_path, LIFECYCLE_ENTRY + "        track: major\n        extract: minor\n") == [
        "imglife.yaml:12:9: sync.entries[0].lifecycle.extract: conflicts with track: major "
        "(track and extract mean the same; keep one)"
    ]
    assert problems(tmp_path, LIFECYCLE_ENTRY + "        track: minr\n") == [
        "imglife.yaml:11:9: sync.entries[0].lifecycle.track: must be one of: major, minor, patch, full "
        "(got the string 'minr'); did you mean 'minor'?"
    ]


def test_platforms_are_checked_and_inherited(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        SYNC_TWO_ENTRIES.replace("'^(1", "'^1").replace(
            "sync:\n", "sync:\n  platforms: [linux/amd64, linux/arm/v7]\n"
        ),
    )
    entry = config.sync.entries[0]
    assert config.sync.platforms_for(entry) == ("linux/amd64", "linux/arm/v7")

    assert problems(tmp_path, GITLAB_REGISTRY + "sync:\n  platforms: [amd64, []]\n") == [
        "imglife.yaml:5:15: sync.platforms[0]: expected a platform os/arch[/variant] such as linux/amd64 or "
        "linux/arm/v7 (got 'amd64')",
        "imglife.yaml:5:22: sync.platforms[1]: expected a string, got a list",
    ]


def test_dockerhub_api_url_defaults_to_hub_and_must_be_an_http_url(tmp_path: Path) -> None:
    assert load(tmp_path, GITLAB_REGISTRY).sync.dockerhub_api_url == "https://hub.docker.com"
    mirror = load(
        tmp_path, GITLAB_REGISTRY + "sync:\n  dockerhub_api_url: http://hub-mirror.internal:8080/\n"
    )
    assert mirror.sync.dockerhub_api_url == "http://hub-mirror.internal:8080"  # trailing slash dropped

    assert problems(tmp_path, GITLAB_REGISTRY + "sync:\n  dockerhub_api_url: hub.docker.com\n") == [
        "imglife.yaml:5:3: sync.dockerhub_api_url: must be an http:// or https:// URL (got 'hub.docker.com')"
    ]
    assert problems(
        tmp_path, GITLAB_REGISTRY + "sync:\n  dockerhub_api_url: https://u:p@hub.docker.com\n"
    ) == [f"imglife.yaml:5:3: sync.dockerhub_api_url: {MSG_CREDENTIALS_IN_URL}"]


# --- hooks and durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("30s", 30.0),
        ("2m", 120.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        (45, 45.0),
        (0.5, 0.5),
    ],
)
def test_duration_parsing(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["90", "1d", "-5s", -5, float("inf"), True, None])
def test_invalid_durations(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


def test_hook_timeout_and_bad_durations(tmp_path: Path) -> None:
    hooks = "sync:\n  hooks:\n    post_sync:\n      - cmd: a\n        timeout: {}\n"
    config = load(tmp_path, GITLAB_REGISTRY + hooks.format("1h30m") + "bot:\n  register_wait: 2m\n")
    assert config.sync.hooks.post_sync[0].timeout == 5400.0
    assert config.bot.register_wait == 120.0

    assert problems(tmp_path, GITLAB_REGISTRY + hooks.format("5 minutes")) == [
        "imglife.yaml:8:9: sync.hooks.post_sync[0].timeout: invalid duration '5 minutes': give a unit "
        "(ms, s, m, h), e.g. 30s, 2m, 1h30m; a bare number of seconds is written without quotes"
    ]
    assert problems(tmp_path, GITLAB_REGISTRY + hooks.format("0s")) == [
        "imglife.yaml:8:9: sync.hooks.post_sync[0].timeout: must be longer than 0s"
    ]


def test_hook_needs_a_command(tmp_path: Path) -> None:
    text = GITLAB_REGISTRY + "sync:\n  hooks:\n    post_sync:\n      - timeout: 5s\n      - cmd: ' '\n"
    assert problems(tmp_path, text) == [
        "imglife.yaml:7:9: sync.hooks.post_sync[0].cmd: required key is missing",
        "imglife.yaml:8:9: sync.hooks.post_sync[1].cmd: must not be empty",
    ]


# --- build ----------------------------------------------------------------------------------------


BUILD = (
    GITLAB_REGISTRY
    + """\
build:
  core_version: "1.0.0"
  registry: registry.example.com/bases
  images:
    - name: alpine
      type: core
      mirror_image: registry.example.com/mirrors/alpine
      mirror_tag: "3.21.3"
      version: "3.21.3"
    - name: alpine-dev
      type: spe-dev
      mirror_tag: "3.20.6"
"""
)


def test_latest_tag_uses_version_then_mirror_tag(tmp_path: Path) -> None:
    build = load(tmp_path, BUILD).build
    assert build is not None
    alpine, dev = build.images

    assert build.repository_of(alpine) == "registry.example.com/bases/alpine"
    assert build.latest_tag(alpine) == "3.21.3-core1.0.0"
    assert build.latest_reference(dev) == "registry.example.com/bases/alpine-dev:3.20.6-core1.0.0"
    assert build.find_image("registry.example.com/bases/alpine:3.19.0-core0.9.0") is alpine
    assert build.find_image("registry.example.com/bases/other:1") is None
    assert build.image_named("alpine-dev") is dev
    assert build.platforms_for(alpine) == ("linux/amd64",)


def test_tag_format_go_template_is_normalised(tmp_path: Path) -> None:
    text = BUILD.replace(
        "  images:\n", "  tag_format: '{{ .Version }}-{{.Name}}-core{{.CoreVersion}}'\n  images:\n"
    )
    build = load(tmp_path, text).build
    assert build is not None
    assert build.tag_format == "{version}-{name}-core{core_version}"
    assert build.latest_tag(build.images[0]) == "3.21.3-alpine-core1.0.0"


def test_tag_format_unknown_tokens(tmp_path: Path) -> None:
    text = BUILD.replace("  images:\n", "  tag_format: '{mirror-tag}-{build_name}'\n  images:\n")
    assert problems(tmp_path, text) == [
        "imglife.yaml:7:3: build.tag_format: unknown token {mirror-tag} in tag_format "
        "'{mirror-tag}-{build_name}' "
        "(allowed: {version}, {core_version}, {name}, {mirror_tag})"
    ]
    text = BUILD.replace("  images:\n", "  tag_format: '{{.Version}}-{{.Image}}'\n  images:\n")
    assert problems(tmp_path, text) == [
        "imglife.yaml:7:3: build.tag_format: unknown template field .Image in '{{.Version}}-{{.Image}}' "
        "(allowed: {{.Version}}, {{.CoreVersion}}, {{.Name}}, {{.MirrorTag}})"
    ]


def test_core_version_must_be_quoted(tmp_path: Path) -> None:
    assert problems(tmp_path, BUILD.replace('core_version: "1.0.0"', "core_version: 1.10")) == [
        "imglife.yaml:5:3: build.core_version: expected a string, got the number 1.10; quote it: "
        'core_version: "1.10"'
    ]


def test_image_needs_version_or_mirror_tag_and_a_unique_name(tmp_path: Path) -> None:
    text = (
        BUILD
        + "    - name: alpine\n      type: core\n      version: '3.19'\n    - name: bare\n      type: spe\n"
    )
    assert problems(tmp_path, text) == [
        "imglife.yaml:19:7: build.images[3]: needs version or mirror_tag: the latest tag is computed from it"
    ]
    text = BUILD + "    - name: alpine\n      type: core\n      version: '3.19'\n"
    assert problems(tmp_path, text) == [
        "imglife.yaml:16:7: build.images[2].name: duplicate image name 'alpine' (already images[0])"
    ]


def test_image_type_and_required_build_keys(tmp_path: Path) -> None:
    text = GITLAB_REGISTRY + "build:\n  images:\n    - name: x\n      version: '1'\n      type: base\n"
    assert problems(tmp_path, text) == [
        "imglife.yaml:4:1: build.core_version: required key is missing",
        "imglife.yaml:4:1: build.registry: required key is missing",
        "imglife.yaml:8:7: build.images[0].type: must be one of: core, spe, spe-dev (got the string 'base')",
    ]


def test_build_registry_needs_a_host(tmp_path: Path) -> None:
    assert problems(tmp_path, BUILD.replace("registry: registry.example.com/bases", "registry: bases")) == [
        "imglife.yaml:6:3: build.registry: expected a registry host followed by an optional path, such as "
        "registry.example.com/bases (got 'bases': 'bases' is not a registry host)"
    ]


def test_computed_tag_must_be_valid(tmp_path: Path) -> None:
    assert problems(tmp_path, BUILD.replace('version: "3.21.3"', 'version: "3.21 beta"')) == [
        "imglife.yaml:12:7: build.images[0].version: the computed tag is not valid: invalid tag "
        "'3.21 beta-core1.0.0': a tag is 1-128 characters of letters, digits, '_', '.' and '-', "
        "and does not start with '.' or '-'"
    ]


def test_build_helpers_work_on_models_built_in_code() -> None:
    build = BuildConfig(
        core_version="2.0.0",
        registry="registry.example.com/bases",
        tag_format="{{.MirrorTag}}-core{{.CoreVersion}}",
        images=(BuildImage(name="node", type="spe", mirror_tag="22-alpine", version="22.1.0"),),
    )
    assert build.latest_reference(build.images[0]) == "registry.example.com/bases/node:22-alpine-core2.0.0"


# --- retention, lifecycle, bot ---------------------------------------------------------------------


def test_retention_archive_and_bounds(tmp_path: Path) -> None:
    text = (
        GITLAB_REGISTRY
        + "retention:\n  keep_last: -1\n  exclude_tags: ['v*']\n  archive:\n    enabled: true\n"
    )
    assert problems(tmp_path, text) == [
        "imglife.yaml:5:3: retention.keep_last: must be at least 0 (got the integer -1)",
        "imglife.yaml:6:18: retention.exclude_tags[0]: invalid tag 'v*': a tag is 1-128 characters of "
        "letters, "
        "digits, '_', '.' and '-', and does not start with '.' or '-' (exclude_tags are exact tag names, "
        "not patterns)",
        "imglife.yaml:7:3: retention.archive.registry: required when archive.enabled is true, "
        "e.g. registry.example.com/archive",
    ]


def test_lifecycle_values(tmp_path: Path) -> None:
    text = GITLAB_REGISTRY + (
        "lifecycle:\n  eol_provider: file\n  endoflife_url: ftp://mirror\n  notify:\n    min_status: "
        "critical\n"
    )
    assert problems(tmp_path, text) == [
        "imglife.yaml:5:3: lifecycle.eol_provider: must be one of: endoflife, local (got the string 'file')",
        "imglife.yaml:6:3: lifecycle.endoflife_url: must be an http:// or https:// URL (got 'ftp://mirror')",
        "imglife.yaml:8:5: lifecycle.notify.min_status: must be one of: warning, eol (got the string "
        "'critical')",
    ]
    config = load(tmp_path, GITLAB_REGISTRY + "lifecycle:\n  endoflife_url: http://127.0.0.1:8000/\n")
    assert config.lifecycle.endoflife_url == "http://127.0.0.1:8000"


def test_bot_section(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        GITLAB_REGISTRY
        + """\
bot:
  permissions:
    sync: developer
    register: write
  schedule:
    eol update: "0 5 * * mon"
    cleanup: "*/15 0-6 1,15 jan-jun 0"
  config_repo: platform/base-images
  redis_url: redis://redis.internal:6379/0
""",
    )
    assert config.bot.permission_for("sync") == "developer"
    assert config.bot.permission_for("register") == "write"
    assert config.bot.permission_for("cleanup") == "maintainer"
    assert config.bot.permission_for("help") == "reporter"
    assert config.bot.schedule["eol update"] == "0 5 * * mon"


def test_bot_section_errors(tmp_path: Path) -> None:
    text = GITLAB_REGISTRY + (
        "bot:\n"
        "  port: '8080'\n"
        "  workers: 0\n"
        "  permissions:\n    chekc: reporter\n    sync: root\n"
        "  schedule:\n    sync: '0 3 * *'\n    cleanup: '61 * * * *'\n    backup: '0 0 * * *'\n"
        "  redis_url: redis://:hunter2@redis:6379\n"
    )
    assert problems(tmp_path, text) == [
        "imglife.yaml:5:3: bot.port: expected an integer, got the string '8080'",
        "imglife.yaml:6:3: bot.workers: must be at least 1 (got the integer 0)",
        "imglife.yaml:8:5: bot.permissions.chekc: unknown key 'chekc' (expected one of: help, check, status, "
        "eol, register, sync, cleanup); did you mean 'check'?",
        "imglife.yaml:9:5: bot.permissions.sync: must be one of: guest, reporter, developer, maintainer, "
        "owner, "
        "read, write, admin (got the string 'root')",
        "imglife.yaml:11:5: bot.schedule.sync: expected a cron expression of 5 fields (minute hour "
        "day-of-month "
        "month day-of-week), got 4 in '0 3 * *'",
        "imglife.yaml:12:5: bot.schedule.cleanup: cron minute field '61' in '61 * * * *': values go from 0 "
        "to 59",
        "imglife.yaml:13:5: bot.schedule.backup: unknown key 'backup' (expected one of: sync, eol update, "
        "eol notify, cleanup)",
        "imglife.yaml:14:3: bot.redis_url: URLs must not carry credentials ('user:password@'): credentials "
        "come "
        "from the environment (GITLAB_TOKEN, GITEA_TOKEN, AWS_*, IMGLIFE_<HOST>_*), never from imglife.yaml",
    ]


def test_forge_url_defaults_to_the_registry_of_that_forge(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "registry:\n  url: https://registry.gitlab.com\n  api_url: https://gitlab.com\n  project_id: 1\n",
    )
    assert config.forge_url("gitlab") == "https://gitlab.com"
    assert config.forge_url("gitea") is None

    config = load(
        tmp_path,
        "registry:\n  provider: gitea\n  url: https://gitea.example.com/\n  owner: platform\n"
        "bot:\n  gitlab:\n    url: https://gitlab.example.com\n",
    )
    assert config.forge_url("gitea") == "https://gitea.example.com"
    assert config.forge_url("gitlab") == "https://gitlab.example.com"


# --- many problems at once, insecure hosts, path resolution -----------------------------------


def test_every_problem_is_reported_at_once_in_file_order(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        registry:
          provider: s3
        sync:
          entries:
            - source: alpine
              tag: '3'
              target: registry.example.com/mirrors/alpine
            - source: golang
              tag_regex: '[a-'
              target: registry.example.com/mirrors/golang
              keep_last: 0
        retention:
          max_age_days: thirty
        bot:
          prot: 8080
        """,
    )
    assert found == [
        "imglife.yaml:1:1: registry.bucket: required for provider s3: the S3 bucket name",
        "imglife.yaml:9:7: sync.entries[1].tag_regex: invalid regular expression: "
        "unterminated character set at position 0",
        "imglife.yaml:11:7: sync.entries[1].keep_last: must be at least 1 (got the integer 0)",
        "imglife.yaml:13:3: retention.max_age_days: expected an integer, got the string 'thirty'",
        "imglife.yaml:15:3: bot.prot: unknown key 'prot' (expected one of: host, port, workers, gitlab, "
        "gitea, "
        "register_wait, permissions, config_repo, redis_url, schedule, job_attempts, retry_delay, "
        "visibility_timeout, drain_timeout, max_body_bytes); did you mean 'port'?",
    ]
    assert not any("Input should" in line or "pydantic" in line for line in found)


def test_config_error_message_is_one_problem_per_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, "registry:\n  provider: gitea\n")
    assert str(caught.value).count("\n") == 1


def test_insecure_hosts(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "registry:\n  url: http://Registry.Local:5000\n  project_id: 1\n"
        "  insecure_registries: [localhost:5000, index.docker.io, 'mirror.internal']\n",
    )
    assert insecure_hosts(config) == frozenset(
        {"registry.local:5000", "localhost:5000", "docker.io", "mirror.internal"}
    )
    assert insecure_hosts(load(tmp_path, GITLAB_REGISTRY)) == frozenset()

    assert problems(
        tmp_path, GITLAB_REGISTRY + "  insecure_registries: ['http://registry.local:5000']\n"
    ) == [
        "imglife.yaml:4:25: registry.insecure_registries[0]: expected host[:port], without a scheme "
        "(got 'http://registry.local:5000')"
    ]


def test_config_path_precedence(tmp_path: Path) -> None:
    env = {ENV_CONFIG: "/etc/imglife/from-env.yaml"}
    assert resolve_config_path("custom.yaml", env, tmp_path) == tmp_path / "custom.yaml"
    assert resolve_config_path("/abs/cli.yaml", env, tmp_path) == Path("/abs/cli.yaml")
    assert resolve_config_path(None, env, tmp_path) == Path("/etc/imglife/from-env.yaml")
    assert resolve_config_path(None, {ENV_CONFIG: "rel/env.yaml"}, tmp_path) == tmp_path / "rel/env.yaml"
    assert resolve_config_path(None, {ENV_CONFIG: ""}, tmp_path) == tmp_path / DEFAULT_CONFIG_NAME
    assert resolve_config_path(None, {}, tmp_path) == tmp_path / "imglife.yaml"
    with pytest.raises(UsageError, match="--config: empty path"):
        resolve_config_path("", env, tmp_path)


def test_parse_config_names_its_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("registry:\n  provider: s3\n", "https://gitlab.example.com/raw/imglife.yaml", tmp_path)
    assert caught.value.problems == [
        "https://gitlab.example.com/raw/imglife.yaml:1:1: registry.bucket: required for provider s3: "
        "the S3 bucket name"
    ]


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, GITLAB_REGISTRY)
    with pytest.raises(ValueError, match="frozen"):
        config.registry.url = "https://evil.example.com"  # type: ignore[misc]


# --- examples -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("imglife.*.yaml")), ids=lambda path: path.name)
def test_examples_load(path: Path) -> None:
    config = load_config(path)
    assert config.registry.provider in path.name or path.name == "imglife.full.yaml"


def test_all_expected_examples_exist() -> None:
    names = {path.name for path in EXAMPLES.glob("imglife.*.yaml")}
    assert names >= {
        "imglife.local.yaml",
        "imglife.gitlab.yaml",
        "imglife.gitea.yaml",
        "imglife.s3.yaml",
        "imglife.full.yaml",
    }


def test_local_example_works_offline() -> None:
    config = load_config(EXAMPLES / "imglife.local.yaml")
    assert config.registry.provider == "local"
    assert config.registry.path == EXAMPLES / "imglife-records"
    assert config.lifecycle.eol_provider == "local"
    assert config.lifecycle.eol_data_file.is_file()
    assert config.build is not None
    assert [config.build.latest_reference(image) for image in config.build.images] == [
        "localhost:5000/bases/alpine:3.21.3-core1.0.0",
        "localhost:5000/bases/alpine-dev:3.21.3-core1.0.0",
    ]
    assert insecure_hosts(config) == frozenset({"localhost:5000"})


def _key_paths(model: BaseModel, prefix: str = "") -> tuple[set[str], set[str]]:
    """(every key the schema has, every key the file set) below ``model``; list items are merged."""
    known: set[str] = set()
    given: set[str] = set()
    for name in type(model).model_fields:
        path = prefix + name
        known.add(path)
        if name in model.model_fields_set:
            given.add(path)
        value = getattr(model, name)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, BaseModel):
                sub_known, sub_given = _key_paths(item, f"{path}.")
                known |= sub_known
                given |= sub_given
    return known, given


def test_full_example_sets_every_key() -> None:
    known, given = _key_paths(load_config(EXAMPLES / "imglife.full.yaml"))
    # Keys of the other providers appear commented out: one provider per file.
    other_providers = {
        "registry.owner",
        "registry.repo",
        "registry.bucket",
        "registry.region",
        "registry.prefix",
    }
    assert known - given == other_providers | {"registry.path"}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("registry:\n  provider: local\nwhen: 2001-13-01\n", "a value cannot be read"),
        ("registry:\n  provider: local\nx: 0x_\n", "a value cannot be read"),
        ("registry: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
    ],
)
def test_yaml_values_that_cannot_be_constructed_are_config_errors(tmp_path, text, fragment):
    path = tmp_path / "imglife.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert fragment in str(info.value)
