"""Per-repository settings: the ``.imglife.yml`` the bot reads from a repository's default branch (pure).

SPEC §6.2. The file is optional and every key has a default; an empty file means the defaults::

    images:                      # image repositories this project publishes (no tag: the tag is the git tag)
      - registry.example.com/apps/myservice
    dockerfiles:                 # where the merge-request check looks for FROM lines
      - Dockerfile
      - docker/worker.Dockerfile
    check:
      strict: true               # a failed check fails the commit status (default: false)

Validation is as strict as for ``imglife.yaml``: unknown keys, duplicate keys and wrong types
are errors, and every problem is reported at once, each as ``SOURCE:LINE:COL: key.path: message``
in one :class:`RepoConfigError`. Dockerfile paths are relative to the repository root and may not
leave it (no absolute paths, no ``..``): they are later put into forge API URLs.

A frozen dataclass validated by hand rather than a pydantic model: four keys, and the messages
(with positions from :func:`bot.config.loader.parse_yaml`) read better written directly.
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

import yaml

from bot.config.loader import ParsedYaml, Problem, describe_reader_error, describe_value, parse_yaml
from bot.config.schema import KeyPath
from bot.errors import ConfigError, InvalidReference
from bot.oci.reference import parse_repository

REPO_CONFIG_NAME: Final = ".imglife.yml"
DEFAULT_DOCKERFILES: Final = ("Dockerfile",)
MAX_DOCKERFILES: Final = 20  # each one is a forge API call per merge-request event
MAX_IMAGES: Final = 20  # each one is polled and registered on every tag push
MAX_PATH_CHARS: Final = 1024
MAX_CONFIG_CHARS: Final = 64 * 1024
MAX_SHOWN_VALUE: Final = 60
TOP_LEVEL_KEYS: Final = ("images", "dockerfiles", "check")
CHECK_KEYS: Final = ("strict",)
SUGGESTION_CUTOFF: Final = 0.6

MSG_TOO_LARGE = f"larger than {MAX_CONFIG_CHARS // 1024} KiB; this file holds a few settings"
MSG_NOT_YAML = "not valid YAML: {problem}"
MSG_NOT_MAPPING = "the top level must be a mapping with the keys {keys}, got {what}"
MSG_UNKNOWN_KEY = "unknown key {key} (expected one of: {expected})"
MSG_SUGGESTION = "; did you mean {close!r}?"
MSG_EXPECTED_LIST = "expected a list of {what}, got {got}"
MSG_EXPECTED_MAPPING = "expected a mapping with the keys {keys}, got {got}"
MSG_EXPECTED_STRING = "expected a string, got {got}"
MSG_EXPECTED_BOOL = "expected true or false, got {got}"
MSG_TOO_MANY = "at most {limit} entries, got {count}"
MSG_DUPLICATE = "duplicate of {key}[{index}]"
MSG_EMPTY_PATH = "must not be empty"
MSG_PATH_TOO_LONG = f"longer than {MAX_PATH_CHARS} characters"
MSG_ABSOLUTE = "must be a path relative to the repository root, not {path!r}"
MSG_PARENT = "must stay inside the repository: {path!r} has a '..' component"
MSG_BACKSLASH = "use '/' to separate directories, not '\\' ({path!r})"
MSG_CONTROL = "contains a control character"
MSG_EMPTY_COMPONENT = "has an empty path component (a doubled or trailing '/'): {path!r}"


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """The ``check:`` section: ``strict`` makes a failed check fail the commit status."""

    strict: bool = False


@dataclass(frozen=True, slots=True)
class RepoConfig:
    """A validated ``.imglife.yml``.

    ``images`` are normalised repository names (``registry.example.com/apps/myservice``,
    ``docker.io/library/x``); ``dockerfiles`` are normalised relative POSIX paths (``./`` and
    ``.`` components removed), in the order written.
    """

    images: tuple[str, ...] = ()
    dockerfiles: tuple[str, ...] = DEFAULT_DOCKERFILES
    check: CheckSettings = field(default_factory=CheckSettings)


class RepoConfigError(ConfigError):
    """``.imglife.yml`` is invalid; ``problems`` holds one ``SOURCE:LINE:COL: path: message`` each."""


class _Validator:
    def __init__(self, parsed: ParsedYaml) -> None:
        self.parsed = parsed
        self.problems: list[Problem] = list(parsed.problems)

    def problem(self, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.parsed.position_of(path), path, message))

    def known_keys(self, mapping: dict[str, Any], path: KeyPath, expected: tuple[str, ...]) -> None:
        for key in mapping:
            if key in expected:
                continue
            message = MSG_UNKNOWN_KEY.format(key=repr(key[:MAX_SHOWN_VALUE]), expected=", ".join(expected))
            close = difflib.get_close_matches(key, expected, n=1, cutoff=SUGGESTION_CUTOFF)
            if close:
                message += MSG_SUGGESTION.format(close=close[0])
            self.problem((*path, key), message)

    def string_list(self, data: dict[str, Any], key: str, what: str, limit: int) -> list[tuple[int, str]]:
        """The string items of list ``key`` with their indexes; problems for everything else."""
        value = data.get(key)
        if not isinstance(value, list):
            self.problem((key,), MSG_EXPECTED_LIST.format(what=what, got=describe_value(value)))
            return []
        if len(value) > limit:
            self.problem((key,), MSG_TOO_MANY.format(limit=limit, count=len(value)))
            return []
        items: list[tuple[int, str]] = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                items.append((index, item))
            else:
                self.problem((key, index), MSG_EXPECTED_STRING.format(got=describe_value(item)))
        return items

    def images(self, data: dict[str, Any]) -> tuple[str, ...]:
        if data.get("images") is None:
            return ()
        names: list[str] = []
        first: dict[str, int] = {}
        for index, text in self.string_list(data, "images", "image repositories", MAX_IMAGES):
            try:
                name = parse_repository(text).name
            except InvalidReference as exc:
                self.problem(("images", index), str(exc))
                continue
            if name in first:
                self.problem(("images", index), MSG_DUPLICATE.format(key="images", index=first[name]))
                continue
            first[name] = index
            names.append(name)
        return tuple(names)

    def dockerfiles(self, data: dict[str, Any]) -> tuple[str, ...]:
        if data.get("dockerfiles") is None:
            return DEFAULT_DOCKERFILES
        paths: list[str] = []
        first: dict[str, int] = {}
        for index, text in self.string_list(data, "dockerfiles", "Dockerfile paths", MAX_DOCKERFILES):
            path = self.relative_path(("dockerfiles", index), text)
            if path is None:
                continue
            if path in first:
                self.problem(
                    ("dockerfiles", index), MSG_DUPLICATE.format(key="dockerfiles", index=first[path])
                )
                continue
            first[path] = index
            paths.append(path)
        return tuple(paths)

    def relative_path(self, key_path: KeyPath, text: str) -> str | None:
        """``text`` as a normalised path inside the repository, or ``None`` after a problem."""
        shown = text[:MAX_SHOWN_VALUE]
        if not text.strip():
            message = MSG_EMPTY_PATH
        elif len(text) > MAX_PATH_CHARS:
            message = MSG_PATH_TOO_LONG
        elif any(unicodedata.category(char) == "Cc" for char in text):
            message = MSG_CONTROL
        elif "\\" in text:
            message = MSG_BACKSLASH.format(path=shown)
        elif text.startswith("/"):
            message = MSG_ABSOLUTE.format(path=shown)
        elif ".." in text.split("/"):
            message = MSG_PARENT.format(path=shown)
        else:
            components = [part for part in text.split("/") if part != "."]
            if not components or "" in components:
                message = MSG_EMPTY_COMPONENT.format(path=shown)
            else:
                return "/".join(components)
        self.problem(key_path, message)
        return None

    def check(self, data: dict[str, Any]) -> CheckSettings:
        section = data.get("check")
        if section is None:
            return CheckSettings()
        if not isinstance(section, dict):
            keys = ", ".join(CHECK_KEYS)
            self.problem(("check",), MSG_EXPECTED_MAPPING.format(keys=keys, got=describe_value(section)))
            return CheckSettings()
        self.known_keys(section, ("check",), CHECK_KEYS)
        strict = section.get("strict")
        if strict is None:
            return CheckSettings()
        if not isinstance(strict, bool):
            self.problem(("check", "strict"), MSG_EXPECTED_BOOL.format(got=describe_value(strict)))
            return CheckSettings()
        return CheckSettings(strict=strict)


def _raise(source: str, problems: list[Problem]) -> NoReturn:
    lines: list[str] = []
    for problem in sorted(problems, key=lambda problem: (problem.position.line, problem.position.column)):
        line = problem.render(source)
        if line not in lines:
            lines.append(line)
    raise RepoConfigError(lines)


def _parse(text: str, source: str) -> ParsedYaml:
    if len(text) > MAX_CONFIG_CHARS:
        raise RepoConfigError([f"{source}: {MSG_TOO_LARGE}"])
    try:
        return parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "unreadable"
        raise RepoConfigError([f"{where}: {MSG_NOT_YAML.format(problem=problem)}"]) from None
    except yaml.reader.ReaderError as exc:  # a control character: no mark, and a two-line str()
        line, column, problem = describe_reader_error(exc, text)
        raise RepoConfigError([f"{source}:{line}:{column}: {MSG_NOT_YAML.format(problem=problem)}"]) from None
    # PyYAML raises ValueError for impossible dates and numbers (`2024-13-01`), and recurses once
    # per nesting level while composing.
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise RepoConfigError([f"{source}: {MSG_NOT_YAML.format(problem=exc)}"]) from None


def parse_repo_config(text: str, *, source: str) -> RepoConfig:
    """Validate ``.imglife.yml`` text; ``source`` names it in messages (e.g. ``group/app:.imglife.yml``).

    Raises :class:`RepoConfigError` (and nothing else) listing every problem found.
    """
    parsed = _parse(text, source)
    validator = _Validator(parsed)
    data = parsed.data
    if data is None:
        if validator.problems:
            _raise(source, validator.problems)
        return RepoConfig()
    if not isinstance(data, dict):
        keys = ", ".join(TOP_LEVEL_KEYS)
        validator.problem((), MSG_NOT_MAPPING.format(keys=keys, what=describe_value(data)))
        _raise(source, validator.problems)
    validator.known_keys(data, (), TOP_LEVEL_KEYS)
    config = RepoConfig(
        images=validator.images(data),
        dockerfiles=validator.dockerfiles(data),
        check=validator.check(data),
    )
    if validator.problems:
        _raise(source, validator.problems)
    return config
