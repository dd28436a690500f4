"""The ``imglife.yaml`` schema: frozen pydantic models, one per section, with their cross-checks.

Every model forbids unknown keys (a typo must never pass silently) and is immutable once loaded.
Scalars are strict: YAML already types them, so ``port: "8080"`` or ``sbom: "yes"`` is a mistake
to report, not something to coerce; and a string key never accepts a number, because ``1.10``
read as a float is ``1.1`` and the information is gone.

Section presence: ``registry`` is required; ``sync``, ``retention``, ``lifecycle``, ``status`` and
``bot`` always exist on :class:`Config` (their defaults when absent or empty); ``build`` is
``None`` when absent, because it has required keys and an empty one would describe nothing.

Errors that involve several keys are raised as one ``imglife`` error whose context carries
``problems`` — ``(key path relative to the model, message)`` pairs — so the loader can report
each at its own line; :func:`format_key_path` renders those paths.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from bot.errors import InvalidReference
from bot.oci.reference import (
    ImageReference,
    is_host,
    looks_like_registry_host,
    normalize_host,
    parse_reference,
    parse_repository,
    validate_tag,
)

# --- vocabularies ------------------------------------------------------------------------------
Provider: TypeAlias = Literal["gitlab", "gitea", "s3", "local"]
ImageType: TypeAlias = Literal["core", "spe", "spe-dev"]
CycleTrack: TypeAlias = Literal["major", "minor", "patch", "full"]
EolProvider: TypeAlias = Literal["endoflife", "local"]
EolTarget: TypeAlias = Literal["git", "pkgregistry"]
NotifyLevel: TypeAlias = Literal["warning", "eol"]
Command: TypeAlias = Literal["help", "check", "status", "eol", "register", "sync", "cleanup"]
Role: TypeAlias = Literal["guest", "reporter", "developer", "maintainer", "owner", "read", "write", "admin"]
ScheduledJob: TypeAlias = Literal["sync", "eol update", "eol notify", "cleanup"]
Forge: TypeAlias = Literal["gitlab", "gitea"]

# --- defaults (upstream's, imglife-docs.md §2, unless marked as this project's) ---------------
DEFAULT_PROVIDER: Provider = "gitlab"
DEFAULT_S3_REGION = "us-east-1"
DEFAULT_LOCAL_PATH = "imglife-records"  # this project's local provider
DEFAULT_CONFIG_REF = "main"
DEFAULT_BUILD_PLATFORMS = ("linux/amd64",)
DEFAULT_TAG_FORMAT = "{version}-core{core_version}"
DEFAULT_HOOK_TIMEOUT = 60.0
DEFAULT_CYCLE_TRACK: CycleTrack = "minor"
DEFAULT_KEEP_LAST = 5
DEFAULT_MAX_AGE_DAYS = 30
DEFAULT_ARCHIVE_KEEP_DAYS = 90
DEFAULT_EOL_DATA_FILE = "eol-data.yaml"
DEFAULT_ENDOFLIFE_URL = "https://endoflife.date"
# Docker Hub's own API (not the registry): tags with their dates in one listing.
DEFAULT_DOCKERHUB_API_URL = "https://hub.docker.com"
DEFAULT_BOT_HOST = "0.0.0.0"  # noqa: S104 - the bot runs in a container behind a proxy or load balancer
DEFAULT_BOT_PORT = 8080
DEFAULT_BOT_WORKERS = 4
DEFAULT_REGISTER_WAIT = 30 * 60.0
DEFAULT_JOB_ATTEMPTS = 3
DEFAULT_RETRY_DELAY = 10.0
DEFAULT_VISIBILITY_TIMEOUT = 60.0
DEFAULT_DRAIN_TIMEOUT = 30.0
DEFAULT_MAX_BODY_BYTES = 25 * 1024 * 1024

# Keys of `registry` that only make sense for some providers; the others are common to all.
PROVIDER_KEYS: dict[str, tuple[Provider, ...]] = {
    "url": ("gitlab", "gitea", "s3"),
    "api_url": ("gitlab",),
    "project_id": ("gitlab",),
    "owner": ("gitea",),
    "repo": ("gitea",),
    "bucket": ("s3",),
    "region": ("s3",),
    "prefix": ("s3",),
    "path": ("local",),
}
REQUIRED_PROVIDER_KEYS: dict[Provider, tuple[tuple[str, str], ...]] = {
    "gitlab": (
        ("url", "the GitLab instance URL, e.g. https://gitlab.example.com"),
        ("project_id", "the GitLab project holding the packages: its ID (42) or path ('group/project')"),
    ),
    "gitea": (
        ("url", "the Gitea/Forgejo instance URL, e.g. https://gitea.example.com"),
        ("owner", "the Gitea user or organisation that owns the packages"),
    ),
    "s3": (("bucket", "the S3 bucket name"),),
    "local": (),
}
# Defaults of chat-ops permissions (SPEC §6.3), in GitLab's names; Gitea uses read/write/admin.
DEFAULT_PERMISSIONS: dict[Command, Role] = {
    "help": "reporter",
    "check": "reporter",
    "status": "reporter",
    "eol": "reporter",
    "register": "developer",
    "sync": "maintainer",
    "cleanup": "maintainer",
}
TAG_FORMAT_TOKENS = ("version", "core_version", "name", "mirror_tag")
# Upstream's Go-template spelling of the same tokens (`{{.Version}}-core{{.CoreVersion}}`).
GO_TEMPLATE_FIELDS = {
    "Version": "version",
    "CoreVersion": "core_version",
    "Name": "name",
    "MirrorTag": "mirror_tag",
}

# --- patterns and messages ------------------------------------------------------------------
CHECK_ERROR = "imglife"  # pydantic error type of every message this module writes itself
_PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?\Z")
_DURATION_RE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_TOKEN_RE = re.compile(r"\{([^{}]*)\}")
_GO_TOKEN_RE = re.compile(r"\{\{-?\s*\.(\w+)\s*-?\}\}")
_PROJECT_PATH_RE = re.compile(r"^[\w.-]+(?:/[\w.-]+)+\Z")
_KEY_PATH_PLAIN_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
# Where "does it ever fire" is asked from: a fixed instant, so validation does not depend on today.
_CRON_PROBE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_CRON_ITEM_RE = re.compile(r"^(?:\*|(?P<lo>[0-9a-z]+)(?:-(?P<hi>[0-9a-z]+))?)(?:/(?P<step>[0-9]+))?$")

MSG_CREDENTIALS_IN_URL = (
    "URLs must not carry credentials ('user:password@'): credentials come from the environment "
    "(GITLAB_TOKEN, GITEA_TOKEN, AWS_*, IMGLIFE_<HOST>_*), never from imglife.yaml"
)
MSG_NOT_EMPTY = "must not be empty"

KeyPath: TypeAlias = tuple[str | int, ...]
Problem: TypeAlias = tuple[KeyPath, str]


def format_key_path(path: Sequence[str | int]) -> str:
    """``("sync", "entries", 2, "tag_regex")`` → ``sync.entries[2].tag_regex``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _KEY_PATH_PLAIN_RE.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def invalid(message: str) -> PydanticCustomError:
    """A validation error that shows ``message`` exactly as written."""
    return PydanticCustomError(CHECK_ERROR, "{message}", {"message": message})


def problems_error(problems: list[Problem]) -> PydanticCustomError:
    """Several problems found by one cross-check; each keeps its own key path."""
    summary = "; ".join(
        f"{format_key_path(path)}: {message}" if path else message for path, message in problems
    )
    return PydanticCustomError(CHECK_ERROR, "{message}", {"message": summary, "problems": problems})


# --- scalar types ---------------------------------------------------------------------------


def _non_empty(value: str) -> str:
    if not value.strip():
        raise invalid(MSG_NOT_EMPTY)
    return value


def _url_checker(schemes: tuple[str, ...], *, strip_slash: bool) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            parts = urlsplit(value)
            port_ok = parts.port is None or parts.port > 0
        except ValueError as exc:
            raise invalid(f"invalid URL {value!r}: {exc}") from None
        if parts.scheme not in schemes:
            wanted = " or ".join(f"{scheme}://" for scheme in schemes)
            article = "an" if wanted.startswith("http") else "a"
            raise invalid(f"must be {article} {wanted} URL (got {value!r})")
        if "@" in parts.netloc:
            raise invalid(MSG_CREDENTIALS_IN_URL)
        if not parts.hostname and parts.scheme != "unix":
            raise invalid(f"invalid URL {value!r}: no host")
        if not port_ok:
            raise invalid(f"invalid URL {value!r}: bad port")
        return value.rstrip("/") if strip_slash else value

    return check


def parse_duration(value: object) -> float:
    """Seconds from a Go-style duration (``30s``, ``2m``, ``1h30m``, ``250ms``) or a number of seconds.

    Raises ``ValueError`` (a pydantic custom error, so that it reads well inside validation).
    """
    if isinstance(value, bool):
        raise invalid(f"expected a duration such as 30s, 2m or 1h30m, got {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int past the largest float
            seconds = math.inf
    elif isinstance(value, str) and _DURATION_RE.match(value.strip()):
        seconds = sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART_RE.findall(value))
    elif isinstance(value, str):
        raise invalid(
            f"invalid duration {value!r}: give a unit (ms, s, m, h), e.g. 30s, 2m, 1h30m; "
            "a bare number of seconds is written without quotes"
        )
    else:
        raise invalid(f"expected a duration such as 30s, 2m or 1h30m, got {type(value).__name__}")
    if not math.isfinite(seconds):
        raise invalid(f"a duration must be finite (got {value!r})")
    if seconds < 0:
        raise invalid(f"a duration cannot be negative (got {value!r})")
    return seconds


def _positive_duration(value: float) -> float:
    if value <= 0:
        raise invalid("must be longer than 0s")
    return value


def _repository(value: str) -> str:
    try:
        parse_repository(value)
    except InvalidReference as exc:
        raise invalid(str(exc)) from None
    return value


def _tag(value: str) -> str:
    try:
        return validate_tag(value)
    except InvalidReference as exc:
        raise invalid(str(exc)) from None


def _host_port(value: str) -> str:
    if "://" in value:
        raise invalid(f"expected host[:port], without a scheme (got {value!r})")
    if not is_host(value):
        raise invalid(f"expected a registry host[:port] such as registry.local:5000 (got {value!r})")
    return value


def _registry_path(value: str) -> str:
    """A registry host with an optional repository path below it: ``registry.example.com/bases``."""
    value = value.rstrip("/")
    host, _, path = value.partition("/")
    if "://" in value:
        raise invalid(f"expected host/path without a URL scheme (got {value!r})")
    if not is_host(host) or not looks_like_registry_host(host):
        raise invalid(
            f"expected a registry host followed by an optional path, such as registry.example.com/bases "
            f"(got {value!r}: {host!r} is not a registry host)"
        )
    if path:
        try:
            parse_repository(value)
        except InvalidReference as exc:
            raise invalid(str(exc)) from None
    return value


def _platform(value: str) -> str:
    if not _PLATFORM_RE.match(value):
        raise invalid(
            f"expected a platform os/arch[/variant] such as linux/amd64 or linux/arm/v7 (got {value!r})"
        )
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except (re.error, OverflowError) as exc:  # OverflowError: a{4294967296}
        raise invalid(f"invalid regular expression: {exc}") from None
    except RecursionError:
        raise invalid("invalid regular expression: nested too deeply") from None
    return value


def _project_id(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(
            f"expected a GitLab project ID (integer) or path ('group/project'), got {type(value).__name__}"
        )
    if isinstance(value, int) and value < 1:
        raise invalid(f"a project ID is a positive integer (got {value})")
    if isinstance(value, str) and not _PROJECT_PATH_RE.match(value):
        raise invalid(f"expected a project path 'group/project' or a numeric ID (got {value!r})")
    return value


def _project_path(value: str) -> str:
    if not _PROJECT_PATH_RE.match(value):
        raise invalid(f"expected a repository path 'owner/name' or 'group/subgroup/project' (got {value!r})")
    return value


def _cron(value: str) -> str:
    fields = value.split()
    if len(fields) != len(_CRON_FIELDS):
        raise invalid(
            f"expected a cron expression of 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)} in {value!r}"
        )
    for text, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.lower().split(","):
            match = _CRON_ITEM_RE.match(item)
            if not match:
                raise invalid(f"invalid cron {label} field {text!r} in {value!r}")
            for bound in (match["lo"], match["hi"]):
                if bound is None:
                    continue
                # Names count from the field's low bound: jan is month 1, sun is weekday 0.
                number = (
                    names.index(bound) + low if bound in names else int(bound) if bound.isdigit() else None
                )
                if number is None or not low <= number <= high:
                    raise invalid(f"cron {label} field {text!r} in {value!r}: values go from {low} to {high}")
            if match["step"] is not None and int(match["step"]) < 1:
                raise invalid(f"cron {label} field {text!r} in {value!r}: a step must be at least 1")
    # The scheduler evaluates with croniter: whatever passes here must be something it can run.
    # Imported here: only a config with a schedule needs it, and every command loads the schema.
    from croniter import CroniterBadDateError, CroniterError, croniter

    try:
        croniter(value, _CRON_PROBE).get_next(dt.datetime)
    except CroniterBadDateError:
        raise invalid(f"cron expression {value!r} never fires (no such date)") from None
    except CroniterError as exc:
        raise invalid(f"invalid cron expression {value!r}: {exc}") from None
    return value


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Relative paths are relative to the directory of the config file (``context["base_dir"]``)."""
    base_dir = info.context.get("base_dir") if isinstance(info.context, Mapping) else None
    try:
        value = value.expanduser()
    except RuntimeError:  # ~user of a user that does not exist here
        raise invalid(f"cannot expand {str(value)!r}: no such user's home directory") from None
    if base_dir is not None and not value.is_absolute():
        return Path(base_dir) / value
    return value


NonEmptyStr = Annotated[str, AfterValidator(_non_empty)]
BaseUrl = Annotated[str, AfterValidator(_url_checker(("http", "https"), strip_slash=True))]
WebhookUrl = Annotated[str, AfterValidator(_url_checker(("http", "https"), strip_slash=False))]
RedisUrl = Annotated[str, AfterValidator(_url_checker(("redis", "rediss", "unix"), strip_slash=False))]
Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive_duration)]
Repository = Annotated[str, AfterValidator(_repository)]
Tag = Annotated[str, AfterValidator(_tag)]
HostPort = Annotated[str, AfterValidator(_host_port)]
RegistryPath = Annotated[str, AfterValidator(_registry_path)]
Platform = Annotated[str, AfterValidator(_platform)]
Regex = Annotated[str, AfterValidator(_regex)]
ProjectId = Annotated[int | str, BeforeValidator(_project_id)]
ProjectPath = Annotated[str, AfterValidator(_project_path)]
Cron = Annotated[str, AfterValidator(_cron)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
Platforms = Annotated[tuple[Platform, ...], Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- registry ---------------------------------------------------------------------------------


class RegistryConfig(_Model):
    """Where build records (and optionally EOL data and this config) are kept."""

    provider: Provider = DEFAULT_PROVIDER
    url: BaseUrl | None = None
    api_url: BaseUrl | None = None
    project_id: ProjectId | None = None
    owner: NonEmptyStr | None = None
    repo: NonEmptyStr | None = None
    bucket: NonEmptyStr | None = None
    region: NonEmptyStr = DEFAULT_S3_REGION
    prefix: str | None = None
    path: Path | None = None
    insecure_registries: tuple[HostPort, ...] = ()
    config_ref: NonEmptyStr = DEFAULT_CONFIG_REF

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve_path(value, info)

    @model_validator(mode="after")
    def _check_provider(self, info: ValidationInfo) -> Self:
        problems: list[Problem] = []
        for key, providers in PROVIDER_KEYS.items():
            if (
                key in self.model_fields_set
                and self.provider not in providers
                and getattr(self, key) is not None
            ):
                owners = ", ".join(providers)
                problems.append(
                    ((key,), f"'{key}' is a key of provider {owners}, not of provider {self.provider}")
                )
        for key, meaning in REQUIRED_PROVIDER_KEYS[self.provider]:
            if getattr(self, key) is None:
                problems.append(((key,), f"required for provider {self.provider}: {meaning}"))
        if problems:
            raise problems_error(problems)
        if self.provider == "local" and self.path is None:
            return self.model_copy(update={"path": _resolve_path(Path(DEFAULT_LOCAL_PATH), info)})
        return self


# --- hooks --------------------------------------------------------------------------------


class Hook(_Model):
    """An operator command run after sync or build: through a shell, with a timeout."""

    cmd: NonEmptyStr
    timeout: PositiveDuration = DEFAULT_HOOK_TIMEOUT
    continue_on_error: StrictBool = False


class SyncHooks(_Model):
    post_sync: tuple[Hook, ...] = ()


class BuildHooks(_Model):
    post_image_build: tuple[Hook, ...] = ()


# --- sync -----------------------------------------------------------------------------------


class Lifecycle(_Model):
    """EOL tracking of a mirrored image: its endoflife.date product and how a tag maps to a cycle.

    ``track`` and upstream's ``extract`` mean the same; after validation ``track`` holds whichever
    was given (``minor`` when neither was), and ``extract`` is kept only as written.
    """

    product: NonEmptyStr
    track: CycleTrack = DEFAULT_CYCLE_TRACK
    extract: CycleTrack | None = None

    @model_validator(mode="after")
    def _merge_extract(self) -> Self:
        if self.extract is None:
            return self
        if "track" in self.model_fields_set and self.track != self.extract:
            raise problems_error(
                [
                    (
                        ("extract",),
                        f"conflicts with track: {self.track} (track and extract mean the same; keep one)",
                    )
                ]
            )
        return self.model_copy(update={"track": self.extract})


class SyncEntry(_Model):
    """One upstream repository mirrored into a target repository."""

    source: Repository
    target: Repository
    tag: Tag | None = None
    tag_regex: Regex | None = None
    keep_last: PositiveInt | None = None
    check_digest: StrictBool = False
    platforms: Platforms | None = None
    os_normalize: StrictBool = False
    lifecycle: Lifecycle | None = None
    hooks: SyncHooks = Field(default_factory=SyncHooks)

    @model_validator(mode="after")
    def _check_tags(self) -> Self:
        problems: list[Problem] = []
        if self.tag is not None and self.tag_regex is not None:
            problems.append(
                (
                    ("tag_regex",),
                    "give either tag (one fixed tag) or tag_regex (tags matching a pattern), not both",
                )
            )
        elif self.tag is None and self.tag_regex is None:
            problems.append(((), "needs tag (one fixed tag) or tag_regex (the tags matching a pattern)"))
        if self.source_ref.name == self.target_ref.name:
            problems.append((("target",), f"is the same repository as source ({self.source_ref.name})"))
        if problems:
            raise problems_error(problems)
        return self

    @property
    def source_ref(self) -> ImageReference:
        return parse_repository(self.source)

    @property
    def target_ref(self) -> ImageReference:
        return parse_repository(self.target)

    @property
    def tag_pattern(self) -> re.Pattern[str] | None:
        return None if self.tag_regex is None else re.compile(self.tag_regex)


class SyncConfig(_Model):
    """Mirrors; ``platforms`` is the default platform filter (``None``: every platform).

    ``dockerhub_api_url`` (this project's addition) is the base URL of Docker Hub's API, which
    lists a ``docker.io`` source's tags with their dates; a mirror or a test server may stand in.
    """

    platforms: Platforms | None = None
    hooks: SyncHooks = Field(default_factory=SyncHooks)
    dockerhub_api_url: BaseUrl = DEFAULT_DOCKERHUB_API_URL
    entries: tuple[SyncEntry, ...] = ()

    def platforms_for(self, entry: SyncEntry) -> tuple[str, ...] | None:
        """The platforms to mirror for ``entry``: its own, else the section's, else all (``None``)."""
        return entry.platforms if entry.platforms is not None else self.platforms


# --- build ------------------------------------------------------------------------------------


def _normalize_tag_format(value: str) -> str:
    unknown_go = sorted({field for field in _GO_TOKEN_RE.findall(value) if field not in GO_TEMPLATE_FIELDS})
    if unknown_go:
        allowed = ", ".join(f"{{{{.{field}}}}}" for field in GO_TEMPLATE_FIELDS)
        raise invalid(f"unknown template field .{unknown_go[0]} in {value!r} (allowed: {allowed})")
    normalized = _GO_TOKEN_RE.sub(lambda m: "{" + GO_TEMPLATE_FIELDS[m[1]] + "}", value)
    if "{{" in normalized or "}}" in normalized:
        raise invalid(
            f"unsupported template syntax in {value!r}: only the fields "
            f"{', '.join(f'{{{{.{f}}}}}' for f in GO_TEMPLATE_FIELDS)} can be used"
        )
    allowed_tokens = ", ".join(f"{{{token}}}" for token in TAG_FORMAT_TOKENS)
    for token in _TOKEN_RE.findall(normalized):
        if token not in TAG_FORMAT_TOKENS:
            shown = "{" + token + "}"
            if not shown.isprintable():  # a line break would split the problem's line
                shown = repr(shown)
            raise invalid(f"unknown token {shown} in tag_format {value!r} (allowed: {allowed_tokens})")
    if "{" in _TOKEN_RE.sub("", normalized) or "}" in _TOKEN_RE.sub("", normalized):
        raise invalid(f"unbalanced brace in tag_format {value!r} (tokens: {allowed_tokens})")
    return normalized


TagFormat = Annotated[str, AfterValidator(_non_empty), AfterValidator(_normalize_tag_format)]


def format_tag(tag_format: str, values: Mapping[str, str]) -> str:
    """Apply a normalised ``tag_format``; tokens are replaced literally (no ``str.format`` lookups)."""
    return _TOKEN_RE.sub(lambda m: values[m[1]], tag_format)


class BuildImage(_Model):
    """A base image built by the organisation; ``version`` falls back to ``mirror_tag``."""

    name: NonEmptyStr
    folder: NonEmptyStr | None = None
    type: ImageType
    mirror_image: Repository | None = None
    mirror_tag: Tag | None = None
    version: NonEmptyStr | None = None
    tmpl: NonEmptyStr | None = None
    args: dict[str, str] = Field(default_factory=dict)
    platforms: Platforms | None = None
    sbom: StrictBool | None = None
    hooks: BuildHooks | None = None

    @model_validator(mode="after")
    def _check_version(self) -> Self:
        if self.version is None and self.mirror_tag is None:
            raise invalid("needs version or mirror_tag: the latest tag is computed from it")
        return self

    @property
    def effective_version(self) -> str:
        """The ``{version}`` of the tag: ``version``, else ``mirror_tag``."""
        version = self.version if self.version is not None else self.mirror_tag
        if version is None:  # excluded by validation; kept for model_construct() callers
            raise ValueError(f"image {self.name!r} has neither version nor mirror_tag")
        return version


class BuildConfig(_Model):
    """The organisation's base images: which exist and what their latest tag is."""

    core_version: NonEmptyStr
    registry: RegistryPath
    builder: NonEmptyStr | None = None
    platforms: Platforms = DEFAULT_BUILD_PLATFORMS
    sbom: StrictBool = False
    tag_format: TagFormat = DEFAULT_TAG_FORMAT
    hooks: BuildHooks = Field(default_factory=BuildHooks)
    images: tuple[BuildImage, ...] = ()

    @model_validator(mode="after")
    def _check_images(self) -> Self:
        problems: list[Problem] = []
        first_index: dict[str, int] = {}
        for index, image in enumerate(self.images):
            if image.name in first_index:
                problems.append(
                    (
                        ("images", index, "name"),
                        f"duplicate image name {image.name!r} (already images[{first_index[image.name]}])",
                    )
                )
                continue
            first_index[image.name] = index
            try:
                parse_repository(self.repository_of(image))
            except InvalidReference as exc:
                problems.append((("images", index, "name"), str(exc)))
                continue
            if "{mirror_tag}" in self.tag_format and image.mirror_tag is None:
                problems.append(
                    (("images", index), f"tag_format {self.tag_format!r} uses {{mirror_tag}}: set mirror_tag")
                )
                continue
            tag = self.latest_tag(image)
            try:
                validate_tag(tag)
            except InvalidReference as exc:
                key = "version" if image.version is not None else "mirror_tag"
                problems.append((("images", index, key), f"the computed tag is not valid: {exc}"))
        if problems:
            raise problems_error(problems)
        return self

    def repository_of(self, image: BuildImage) -> str:
        """``{build.registry}/{name}``, e.g. ``registry.example.com/bases/alpine``."""
        return f"{self.registry}/{image.name}"

    def latest_tag(self, image: BuildImage) -> str:
        """``tag_format`` applied to the image, e.g. ``3.21.3-core1.0.0``."""
        return format_tag(
            self.tag_format,
            {
                "version": image.effective_version,
                "core_version": self.core_version,
                "name": image.name,
                "mirror_tag": image.mirror_tag or "",
            },
        )

    def latest_reference(self, image: BuildImage) -> str:
        """``repository:latest_tag``."""
        return f"{self.repository_of(image)}:{self.latest_tag(image)}"

    def platforms_for(self, image: BuildImage) -> tuple[str, ...]:
        return image.platforms if image.platforms is not None else self.platforms

    def image_named(self, name: str) -> BuildImage | None:
        return next((image for image in self.images if image.name == name), None)

    def find_image(self, reference: str | ImageReference) -> BuildImage | None:
        """The image whose repository is that of ``reference`` (tag and digest ignored)."""
        if isinstance(reference, str):
            try:
                reference = parse_reference(reference)
            except InvalidReference:
                return None
        for image in self.images:
            if parse_repository(self.repository_of(image)).name == reference.name:
                return image
        return None


# --- retention ------------------------------------------------------------------------------


class ArchiveConfig(_Model):
    enabled: StrictBool = False
    registry: RegistryPath | None = None
    keep_days: NonNegativeInt = DEFAULT_ARCHIVE_KEEP_DAYS

    @model_validator(mode="after")
    def _check_registry(self) -> Self:
        if self.enabled and self.registry is None:
            raise problems_error(
                [(("registry",), "required when archive.enabled is true, e.g. registry.example.com/archive")]
            )
        return self


def _exact_tag(value: str) -> str:
    try:
        return validate_tag(value)
    except InvalidReference as exc:
        raise invalid(f"{exc} (exclude_tags are exact tag names, not patterns)") from None


class RetentionConfig(_Model):
    keep_last: NonNegativeInt = DEFAULT_KEEP_LAST
    max_age_days: NonNegativeInt = DEFAULT_MAX_AGE_DAYS
    exclude_tags: tuple[Annotated[str, AfterValidator(_exact_tag)], ...] = ()
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)


# --- lifecycle ------------------------------------------------------------------------------


class NotifyConfig(_Model):
    """Where ``eol notify`` posts, in addition to ``IMGLIFE_SLACK_WEBHOOK_URL``/``_NOTIFY_WEBHOOK_URL``."""

    slack_webhook_url: WebhookUrl | None = None
    webhook_urls: tuple[WebhookUrl, ...] = ()
    min_status: NotifyLevel = "warning"


class LifecycleConfig(_Model):
    """EOL data: its source, where the refreshed file goes, and notifications."""

    eol_provider: EolProvider = "endoflife"
    eol_target: EolTarget = "git"
    eol_data_file: Path = Field(default=Path(DEFAULT_EOL_DATA_FILE), validate_default=True)
    endoflife_url: BaseUrl = DEFAULT_ENDOFLIFE_URL
    notify: NotifyConfig = Field(default_factory=NotifyConfig)

    @field_validator("eol_data_file")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        if not str(value).strip():
            raise invalid(MSG_NOT_EMPTY)
        return _resolve_path(value, info)


class StatusConfig(_Model):
    """Declared by upstream without documented keys: only an empty mapping (or nothing) is valid."""


# --- bot --------------------------------------------------------------------------------------


class ForgeConfig(_Model):
    url: BaseUrl


class BotConfig(_Model):
    """The webhook bot (this project's addition); every key is optional."""

    host: NonEmptyStr = DEFAULT_BOT_HOST
    port: Annotated[StrictInt, Field(ge=1, le=65535)] = DEFAULT_BOT_PORT
    workers: PositiveInt = DEFAULT_BOT_WORKERS
    gitlab: ForgeConfig | None = None
    gitea: ForgeConfig | None = None
    register_wait: Duration = DEFAULT_REGISTER_WAIT
    permissions: dict[Command, Role] = Field(default_factory=dict)
    config_repo: ProjectPath | None = None
    redis_url: RedisUrl | None = None
    schedule: dict[ScheduledJob, Cron] = Field(default_factory=dict)
    job_attempts: Annotated[StrictInt, Field(ge=1, le=20)] = DEFAULT_JOB_ATTEMPTS
    retry_delay: PositiveDuration = DEFAULT_RETRY_DELAY
    # Redis mode: a job whose replica stopped renewing its lease for this long is run by another.
    visibility_timeout: Annotated[float, BeforeValidator(parse_duration), Field(ge=1.0)] = (
        DEFAULT_VISIBILITY_TIMEOUT
    )
    drain_timeout: Duration = DEFAULT_DRAIN_TIMEOUT
    # GitLab sends at most 25 MiB and the parsers refuse more: the limit can only be lowered.
    max_body_bytes: Annotated[StrictInt, Field(ge=1024, le=DEFAULT_MAX_BODY_BYTES)] = DEFAULT_MAX_BODY_BYTES

    def permission_for(self, command: Command) -> Role:
        """The role a user needs to run ``command``: configured, else the default of SPEC §6.3."""
        return self.permissions.get(command, DEFAULT_PERMISSIONS[command])


# --- the whole file ---------------------------------------------------------------------------

_SECTIONS_WITH_DEFAULTS = ("sync", "retention", "lifecycle", "status", "bot")


class Config(_Model):
    """A validated ``imglife.yaml``; see the module docstring for which sections may be absent."""

    registry: RegistryConfig
    sync: SyncConfig = Field(default_factory=SyncConfig)
    build: BuildConfig | None = None
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    bot: BotConfig = Field(default_factory=BotConfig)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        # An absent section and `sync:` with nothing under it (YAML null) both mean "all defaults";
        # they are validated as `{}` rather than built by a default factory, so that relative paths
        # in their defaults are resolved against the config file's directory too.
        if isinstance(data, Mapping):
            data = dict(data)
            for key in _SECTIONS_WITH_DEFAULTS:
                if data.get(key) is None:
                    data[key] = {}
        return data

    def forge_url(self, forge: Forge) -> str | None:
        """The forge API base URL: ``bot.<forge>.url``, else the package registry's when it is that forge."""
        configured = self.bot.gitlab if forge == "gitlab" else self.bot.gitea
        if configured is not None:
            return configured.url
        if self.registry.provider == forge:
            return self.registry.api_url or self.registry.url
        return None


def insecure_hosts(config: Config) -> frozenset[str]:
    """OCI hosts spoken to over plain HTTP: ``insecure_registries`` plus an ``http://`` registry.url."""
    hosts = {normalize_host(host) for host in config.registry.insecure_registries}
    url = config.registry.url
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme == "http" and parts.netloc:
            hosts.add(normalize_host(parts.netloc))
    return frozenset(hosts)
