"""Find, read and validate ``imglife.yaml``, reporting every problem as ``FILE:LINE:COL: key.path: message``.

PyYAML keeps the last of two equal keys without a word and forgets where values came from, so
the document is composed into nodes by :class:`StrictLoader` and walked here: duplicate keys
become problems and the position of every key and list item is remembered by its key path.
Pydantic's errors are then mapped back to those positions and rewritten in plain words. All
problems — YAML, credentials in URLs, schema — are collected before one :class:`ConfigError`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from bot.config.schema import (
    CHECK_ERROR,
    MSG_CREDENTIALS_IN_URL,
    MSG_NOT_EMPTY,
    Config,
    KeyPath,
    format_key_path,
)
from bot.errors import ConfigError, UsageError

ENV_CONFIG = "IMGLIFE_CONFIG"
DEFAULT_CONFIG_NAME = "imglife.yaml"
# Bounds the work an alias bomb ("billion laughs") can cause; real configs have a few hundred nodes.
MAX_NODES = 100_000
SUGGESTION_CUTOFF = 0.6
MAX_SHOWN_VALUE = 60

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_SECRET_KEY_RE = re.compile(r"pass(word|wd)?|token|secret|credential|api[_-]?key", re.IGNORECASE)
# A password written as a shell variable (`https://oauth2:${CI_JOB_TOKEN}@...` in a hook command)
# comes from the environment at run time, which is exactly where it belongs.
# Tried only where a run of scheme characters starts (the lookbehind): from every position, a long
# word is rescanned to its end each time, which is quadratic (a minute for a 64 KiB value).
_URL_WITH_PASSWORD_RE = re.compile(
    r"(?<![a-z0-9+.-])[0-9+.-]*[a-z][a-z0-9+.-]*://[^/\s@:]*:(?!\$)[^/\s@]*@", re.IGNORECASE
)
# PyYAML's scalar constructors trust an explicit tag: `!!timestamp x` raises AttributeError,
# `!!bool x` KeyError, `!!int ''` IndexError.
_CONSTRUCTOR_ERRORS = (yaml.YAMLError, LookupError, AttributeError)
_QUOTED_RE = re.compile(r"'([^']*)'")

MSG_NOT_FOUND = "{path}: file not found"
MSG_IS_DIRECTORY = "{path}: is a directory, not a configuration file"
MSG_PERMISSION = "{path}: permission denied"
MSG_UNREADABLE = "{path}: cannot read: {reason}"
MSG_NOT_UTF8 = "{path}: not UTF-8 text (invalid byte at offset {offset})"
MSG_EMPTY = "{path}: the file is empty; it needs at least a 'registry' section"
MSG_NOT_MAPPING = (
    "{where}: the top level must be a mapping of sections (registry, sync, build, ...), got {what}"
)
MSG_NOT_YAML = "{where}: not valid YAML: {problem}"
MSG_TOO_LARGE = f"the document expands to more than {MAX_NODES} values (alias bomb?)"
MSG_TOO_DEEP = "the document is nested too deeply"
MSG_EMPTY_CLI_PATH = "--config: empty path"


@dataclass(frozen=True, slots=True)
class Position:
    """Where a key (or list item) starts, 1-based; ``raw`` is a scalar value's source text."""

    line: int
    column: int
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    position: Position
    path: KeyPath
    message: str

    def render(self, source: str) -> str:
        where = f"{source}:{self.position.line}:{self.position.column}"
        return (
            f"{where}: {format_key_path(self.path)}: {self.message}"
            if self.path
            else f"{where}: {self.message}"
        )


@dataclass
class ParsedYaml:
    """A YAML document as plain Python data, with the position of each key path and YAML-level problems."""

    data: Any
    positions: dict[KeyPath, Position] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def position_of(self, path: KeyPath) -> Position:
        """The position of ``path``, else of its nearest ancestor present in the file."""
        for length in range(len(path), -1, -1):
            found = self.positions.get(path[:length])
            if found is not None:
                return found
        return Position(1, 1)


class _Abort(Exception):
    """The document cannot be walked further (too large or too deep)."""


class StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys; :meth:`load_positioned` also records positions."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)

    def load_positioned(self) -> ParsedYaml:
        """Compose the single document and walk it; raises ``yaml.YAMLError`` for malformed YAML."""
        root = self.get_single_node()
        parsed = ParsedYaml(data=None)
        if root is None:
            return parsed
        parsed.positions[()] = _position(root)
        walker = _Walker(self, parsed)
        try:
            parsed.data = walker.value(root, ())
        except _Abort as exc:
            parsed.problems.append(Problem(_position(root), (), str(exc)))
        except RecursionError:
            parsed.problems.append(Problem(_position(root), (), MSG_TOO_DEEP))
        return parsed


def _position(node: yaml.Node, raw: str | None = None) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1, raw)


def _raw(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


class _Walker:
    """Turns composed nodes into dicts, lists and scalars, recording positions and duplicate keys."""

    def __init__(self, loader: StrictLoader, parsed: ParsedYaml) -> None:
        self.loader = loader
        self.parsed = parsed
        self.count = 0
        self.active: set[int] = set()

    def problem(self, node: yaml.Node, path: KeyPath, message: str) -> None:
        self.parsed.problems.append(Problem(_position(node), path, message))

    def value(self, node: yaml.Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Abort(MSG_TOO_LARGE)
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.loader.construct_object(node)
            except _CONSTRUCTOR_ERRORS as exc:
                self.problem(node, path, f"cannot read value: {getattr(exc, 'problem', None) or exc}")
                return None
        if id(node) in self.active:
            self.problem(node, path, "an alias refers to a value that contains it (recursive alias)")
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self.sequence(node, path)
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
        finally:
            self.active.discard(id(node))
        return None  # pragma: no cover - the composer only produces the three node kinds

    def check_tag(self, node: yaml.Node, path: KeyPath, expected: str) -> None:
        if node.tag != expected:
            self.problem(node, path, f"unsupported YAML tag {node.tag!r}")

    def sequence(self, node: yaml.SequenceNode, path: KeyPath) -> list[Any]:
        self.check_tag(node, path, _SEQ_TAG)
        items = []
        for index, child in enumerate(node.value):
            self.parsed.positions[(*path, index)] = _position(child, _raw(child))
            items.append(self.value(child, (*path, index)))
        return items

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        self.check_tag(node, path, _MAP_TAG)
        result: dict[str, Any] = {}
        # `<<: *anchor` merges come first so that the mapping's own keys override them (YAML 1.1).
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                result.update(self.merged(value_node, path))
        first_seen: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            key_path = (*path, key)
            if key in first_seen:
                self.problem(
                    key_node,
                    key_path,
                    f"duplicate key {key!r} (first at line {first_seen[key].start_mark.line + 1}); "
                    "YAML would silently keep only the last one",
                )
                continue
            first_seen[key] = key_node
            self.parsed.positions[key_path] = _position(key_node, _raw(value_node))
            result[key] = self.value(value_node, key_path)
        return result

    def merged(self, node: yaml.Node, path: KeyPath) -> dict[str, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        # In `<<: [*a, *b]` the earlier mapping wins.
        for source in reversed(sources):
            if not isinstance(source, yaml.MappingNode):
                self.problem(source, path, "'<<' merges mappings only")
                continue
            merged.update(self.value(source, path))
        return merged

    def key(self, node: yaml.Node, path: KeyPath) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, path, "keys must be plain strings")
            return None
        try:
            key = self.loader.construct_object(node)
        except _CONSTRUCTOR_ERRORS:
            key = None
        if not isinstance(key, str):
            self.problem(
                node,
                path,
                f"key {node.value!r} is not a string (YAML reads it as {describe_value(key)}); quote it",
            )
            return None
        return key


def describe_reader_error(exc: yaml.reader.ReaderError, text: str) -> tuple[int, int, str]:
    """Line and column (1-based) of a character PyYAML refuses, and a one-line message (its str() has two)."""
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - text.rfind("\n", 0, exc.position)
    return line, column, f"unacceptable character #x{exc.character:04x}: {exc.reason}"


def parse_yaml(text: str) -> ParsedYaml:
    """Parse one YAML document strictly; raises ``yaml.YAMLError`` when it is not YAML at all."""
    loader = StrictLoader(text)
    try:
        return loader.load_positioned()
    finally:
        loader.dispose()


# --- turning validation errors into sentences -----------------------------------------------


def describe_value(value: Any, raw: str | None = None) -> str:
    """A value as a person reads it in an error: ``the string 'x'``, ``a list``, ``the date ...``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {raw or str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {raw or value}"
    if isinstance(value, float):
        return f"the number {raw or value}"
    if isinstance(value, str):
        shown = value if len(value) <= MAX_SHOWN_VALUE else value[: MAX_SHOWN_VALUE - 3] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, dt.date):
        return f"the date {raw or value.isoformat()}"
    return f"a {type(value).__name__}"


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` down to the type that holds keys or items."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            members = [arg for arg in get_args(annotation) if arg is not NoneType]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _keys_expected_at(path: KeyPath) -> list[str] | None:
    """The keys the model at ``path`` accepts, by walking the schema's annotations."""
    annotation: Any = Config
    for part in path:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model_field = annotation.model_fields.get(part) if isinstance(part, str) else None
            if model_field is None:
                return None
            annotation = model_field.annotation
            continue
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is tuple and isinstance(part, int) and args:
            annotation = args[0]
        elif origin in (dict, Mapping) and len(args) == 2:
            annotation = args[1]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return None


def _unknown_key(name: str, expected: list[str] | None) -> str:
    if expected is None:
        message = f"unknown key {name!r}"
    elif not expected:
        message = f"unknown key {name!r} (this section takes no keys)"
    else:
        message = f"unknown key {name!r} (expected one of: {', '.join(expected)})"
    close = difflib.get_close_matches(name, expected or [], n=1, cutoff=SUGGESTION_CUTOFF)
    if close:
        message += f"; did you mean {close[0]!r}?"
    if _SECRET_KEY_RE.search(name):
        message += "; secrets never go in imglife.yaml: they come from the environment"
    return message


def _quote_hint(path: KeyPath, raw: str | None) -> str:
    if raw is None:
        return ""
    key = path[-1] if path else None
    quoted = '"' + raw.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"; quote it: {key}: {quoted}" if isinstance(key, str) else f"; quote it: {quoted}"


def _message(error: ErrorDetails, path: KeyPath, raw: str | None, is_key: bool) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    got = describe_value(value, raw)
    if kind == CHECK_ERROR:
        return str(ctx.get("message", error["msg"]))
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return _unknown_key(str(path[-1]), _keys_expected_at(path[:-1]))
    if kind == "literal_error":
        choices = _QUOTED_RE.findall(str(ctx.get("expected", "")))
        if is_key:
            return _unknown_key(str(value), choices)
        message = f"must be one of: {', '.join(choices)} (got {got})"
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=SUGGESTION_CUTOFF)
        return message + (f"; did you mean {close[0]!r}?" if close and isinstance(value, str) else "")
    if kind == "string_type":
        hint = _quote_hint(path, raw) if isinstance(value, bool | int | float | dt.date) else ""
        return f"expected a string, got {got}{hint}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind in ("list_type", "tuple_type", "set_type", "frozen_set_type"):
        return f"expected a list, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return f"expected a mapping, got {got}"
    if kind == "path_type":
        return f"expected a file path, got {got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')} (got {got})"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')} (got {got})"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')} (got {got})"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')} (got {got})"
    if kind == "too_short":
        return "must not be an empty list"
    if kind == "string_too_short":
        return MSG_NOT_EMPTY
    return error["msg"]


def _validation_problems(exc: ValidationError, parsed: ParsedYaml) -> list[Problem]:
    problems: list[Problem] = []
    errors = exc.errors()
    item_error_locs = {error["loc"][:-1] for error in errors if error["loc"]}
    for error in errors:
        # A list whose items failed also reports "too short" for the items that survived: noise.
        if error["type"] == "too_short" and error["loc"] in item_error_locs:
            continue
        loc: list[str | int] = list(error["loc"])
        is_key = bool(loc) and loc[-1] == "[key]"
        if is_key:
            loc.pop()
        path: KeyPath = tuple(loc)
        ctx = error.get("ctx") or {}
        if error["type"] == CHECK_ERROR and "problems" in ctx:
            for sub_path, message in ctx["problems"]:
                full = (*path, *sub_path)
                problems.append(Problem(parsed.position_of(full), full, message))
            continue
        position = parsed.position_of(path)
        raw = parsed.positions[path].raw if path in parsed.positions else None
        problems.append(Problem(position, path, _message(error, path, raw, is_key)))
    return problems


def _credential_problems(parsed: ParsedYaml) -> list[Problem]:
    """``user:password@`` in any string value, wherever it sits (URLs in hook commands and args too)."""
    problems: list[Problem] = []

    def visit(value: Any, path: KeyPath) -> None:
        if isinstance(value, str) and _URL_WITH_PASSWORD_RE.search(value):
            problems.append(Problem(parsed.position_of(path), path, MSG_CREDENTIALS_IN_URL))
        elif isinstance(value, dict):
            for key, child in value.items():
                visit(child, (*path, key))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                visit(child, (*path, index))

    visit(parsed.data, ())
    return problems


def _sorted_unique(problems: list[Problem], source: str) -> list[str]:
    lines: list[str] = []
    for problem in sorted(problems, key=lambda problem: (problem.position.line, problem.position.column)):
        line = problem.render(source)
        if line not in lines:
            lines.append(line)
    return lines


# --- public API ---------------------------------------------------------------------------------


def resolve_config_path(cli_path: str | None, environ: Mapping[str, str], cwd: Path) -> Path:
    """``--config`` > ``$IMGLIFE_CONFIG`` (ignored when empty) > ``./imglife.yaml``, relative to ``cwd``."""
    if cli_path is not None:
        if not cli_path.strip():
            raise UsageError(MSG_EMPTY_CLI_PATH)
        chosen = cli_path
    elif environ.get(ENV_CONFIG, "").strip():
        chosen = environ[ENV_CONFIG]
    else:
        chosen = DEFAULT_CONFIG_NAME
    return cwd / chosen


def parse_config(text: str, source: str, base_dir: Path) -> Config:
    """Validate configuration text; ``source`` names it in messages, ``base_dir`` anchors relative paths.

    For configurations that do not come from a local file (``check --config-url``, the bot's
    reload from ``bot.config_repo``); :func:`load_config` is this plus reading the file.
    """
    try:
        parsed = parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "unreadable"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        raise ConfigError([MSG_NOT_YAML.format(where=where, problem=problem)]) from None
    except yaml.reader.ReaderError as exc:  # a control character: no mark, and a two-line str()
        line, column, problem = describe_reader_error(exc, text)
        raise ConfigError([MSG_NOT_YAML.format(where=f"{source}:{line}:{column}", problem=problem)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([MSG_NOT_YAML.format(where=source, problem=exc)]) from None
    except ValueError as exc:
        # PyYAML's constructors raise plain ValueError for values that look typed but are not
        # (a date 2001-13-01, an int 0x_).
        problem = f"a value cannot be read: {exc}"
        raise ConfigError([MSG_NOT_YAML.format(where=source, problem=problem)]) from None
    except RecursionError:
        raise ConfigError([MSG_NOT_YAML.format(where=source, problem=MSG_TOO_DEEP)]) from None
    if parsed.data is None and not parsed.problems:
        raise ConfigError([MSG_EMPTY.format(path=source)])
    if not isinstance(parsed.data, dict):
        if parsed.problems:
            raise ConfigError(_sorted_unique(parsed.problems, source))
        raise ConfigError([MSG_NOT_MAPPING.format(where=f"{source}:1:1", what=describe_value(parsed.data))])

    problems = [*parsed.problems, *_credential_problems(parsed)]
    config: Config | None = None
    try:
        config = Config.model_validate(parsed.data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems.extend(_validation_problems(exc, parsed))
    if problems or config is None:
        raise ConfigError(_sorted_unique(problems, source))
    return config


def load_config(path: Path) -> Config:
    """Read and validate ``path``; raises :class:`ConfigError` listing every problem found."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([MSG_NOT_FOUND.format(path=path)]) from None
    except IsADirectoryError:
        raise ConfigError([MSG_IS_DIRECTORY.format(path=path)]) from None
    except PermissionError:
        raise ConfigError([MSG_PERMISSION.format(path=path)]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([MSG_NOT_UTF8.format(path=path, offset=exc.start)]) from None
    except OSError as exc:
        raise ConfigError([MSG_UNREADABLE.format(path=path, reason=exc.strerror or exc)]) from None
    return parse_config(text, str(path), path.absolute().parent)
