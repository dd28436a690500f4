"""Which base images a repository builds on: ``FROM`` lines and CI ``BASE_IMAGE`` variables (pure).

The merge-request check (SPEC §6.3) reads the repository's Dockerfiles and CI files at the head
commit and needs the base references inside ``build.registry``::

    found = find_bases_in_dockerfile(text, filename="Dockerfile")
    found += find_bases_in_ci(ci_text, ".gitlab-ci.yml")
    bases, problems = bases_in_registry(found, config.build.registry)
    # bases: normalised, de-duplicated references to check
    # problems: what could not be resolved or parsed, each with .source ("Dockerfile:3 FROM")
    #           and .problem ("could not resolve ${BASE}: ARG BASE has no default ...")

Everything here reads text from an untrusted branch: nothing raises on any input, nothing is
executed or fetched, and :class:`FoundBase` fields (references, job names, problems) must be
escaped before they appear in a comment.

**Dockerfiles.** Instructions are case-insensitive; physical lines ending in the escape
character (``\\`` by default) continue the instruction, and comment or empty lines inside a
continued instruction are skipped, as BuildKit does. The ``# escape=`` parser directive (before
any instruction, comment or blank line) is honoured: after ``# escape=`` followed by a backtick,
the backtick continues lines and escapes ``$``, and a trailing backslash is an ordinary character
(Windows paths); any other value keeps the backslash, as BuildKit only accepts these two. The
bodies of heredocs (``RUN <<EOF`` ... ``EOF``, also for ``COPY``/``ADD``) are skipped, so a
``FROM`` written inside a script is not mistaken for an instruction. ``FROM [--flag=...]
IMAGE [AS NAME]``: flags are ignored; a ``FROM`` naming an earlier stage is not a base; ``scratch``
is not an image.

Variables in ``FROM`` come from the ``ARG`` instructions before the first ``FROM`` (the only ones
``FROM`` can see), with the value a build gets **without** ``--build-arg``: ``$NAME``,
``${NAME}``, ``${NAME:-word}``, ``${NAME-word}``, ``${NAME:+word}`` and ``${NAME+word}`` are
expanded; an ``ARG`` without default, an undeclared name, the platform ``ARG``s BuildKit
predefines (``TARGETARCH`` ...) and other substitution forms are *unresolved*: the base is
reported with a problem rather than guessed.

**CI files.** ``.gitlab-ci.yml`` (and files it includes): the top-level ``variables`` and each
job's ``variables``, a value written plainly or as ``{value: ..., description: ...}``; ``$NAME``
and ``${NAME}`` are expanded from the file's own variables (the job's over the top level's) unless
``expand: false``; ``$$`` is a literal ``$``. Gitea/Forgejo/GitHub workflows (a path under
``.gitea/workflows/``, ``.forgejo/workflows/`` or ``.github/workflows/``): ``env`` at workflow,
job and step level; values with ``$`` or ``${{ ... }}`` are expressions evaluated by the runner
and are reported as unresolved. Only variables named in :data:`CI_BASE_VARIABLES` are read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, NamedTuple

import yaml

from bot.config.loader import ParsedYaml, parse_yaml
from bot.config.schema import KeyPath, format_key_path
from bot.errors import InvalidReference
from bot.oci.reference import DOCKER_HUB, looks_like_registry_host, normalize_host, parse_reference

CI_BASE_VARIABLES: Final = ("BASE_IMAGE",)
DEFAULT_DOCKERFILE: Final = "Dockerfile"
# Larger files are not scanned: a Dockerfile is a few KiB, a big .gitlab-ci.yml a few hundred.
MAX_DOCKERFILE_CHARS: Final = 256 * 1024
MAX_CI_CHARS: Final = 256 * 1024
MAX_CI_DOCUMENTS: Final = 16  # GitLab uses two (a `spec:` header and the configuration)
# An expanded value longer than this is refused: `ARG A=${A}${A}` doubles per line ("billion laughs").
MAX_EXPANDED_CHARS: Final = 4096
MAX_PROBLEM_TEXT: Final = 200  # of a FROM line or value quoted in a problem
# `${A:-${B:-...}}` is expanded recursively; real files nest once or twice.
MAX_SUBSTITUTION_DEPTH: Final = 16
DEFAULT_ESCAPE: Final = "\\"
SCRATCH: Final = "scratch"
WORKFLOW_DIRS: Final = (".gitea/workflows/", ".forgejo/workflows/", ".github/workflows/")
# ARGs BuildKit defines for every FROM; their value depends on the platform being built.
PLATFORM_ARGS: Final = frozenset(
    {
        "BUILDPLATFORM",
        "BUILDOS",
        "BUILDARCH",
        "BUILDVARIANT",
        "TARGETPLATFORM",
        "TARGETOS",
        "TARGETARCH",
        "TARGETVARIANT",
    }
)
_HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})

MSG_COULD_NOT_RESOLVE = "could not resolve {text}: {reasons}"
MSG_NO_DEFAULT = "ARG {name} has no default (it is only set with --build-arg)"
MSG_UNDECLARED = "{name} is not declared by an ARG before the first FROM"
MSG_PLATFORM = "{name} depends on the platform being built"
MSG_UNSUPPORTED = "unsupported substitution ${{{expr}}}"
MSG_UNTERMINATED = "unterminated ${"
MSG_TOO_DEEP = f"substitutions nested more than {MAX_SUBSTITUTION_DEPTH} deep"
MSG_CI_UNDEFINED = "{name} is not defined in this file (a CI/CD or predefined variable)"
MSG_EXPRESSION = "the value is an expression evaluated by the runner"
MSG_FROM_WITHOUT_IMAGE = "FROM without an image"
MSG_MALFORMED_FROM = "malformed FROM: expected FROM [--platform=...] IMAGE [AS NAME]"
MSG_NOT_A_STRING = "expected a string, got {what}"
MSG_NOT_YAML = "not valid YAML: {problem}"
MSG_TOO_LARGE = "larger than {limit} KiB; not scanned"
MSG_TOO_LONG = f"longer than {MAX_EXPANDED_CHARS} characters"
MSG_INVALID_REFERENCE = "not a valid image reference: {reason}"

# Matched against a stripped line, so the value needs no `\s*$` after it (a lazy `(.*?)\s*$` is
# quadratic in the blanks inside the value).
_DIRECTIVE_RE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*)\Z")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEREDOC_RE = re.compile(r"^[0-9]*<<(-?)([\"']?)([^<\"'\s]+)\2$")
_DOCUMENT_SEPARATOR_RE = re.compile(r"^---[ \t]*(?:#.*)?$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class FoundBase:
    """A base image reference found in a repository file.

    ``reference`` is as written after variable expansion (normalised by
    :func:`bases_in_registry`); ``source`` names the file and how it was found
    (``Dockerfile:3 FROM``, ``.gitlab-ci.yml build.variables.BASE_IMAGE``); ``line`` is 1-based.
    When ``problem`` is set this is not a usable base but the reason one could not be read:
    ``reference`` then holds the text as written (``${BASE}``), or ``""`` for a whole-file problem.
    """

    reference: str
    source: str
    line: int | None
    problem: str | None = None


class RegistryBases(NamedTuple):
    """:func:`bases_in_registry`'s answer: usable bases, and those that could not be resolved."""

    bases: list[FoundBase]
    problems: list[FoundBase]


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM_TEXT else text[: MAX_PROBLEM_TEXT - 1] + "…"


# --- variable expansion ------------------------------------------------------------------------


class _Unset:
    """A variable without a value, and why (an ARG without default, an unresolved default)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


Lookup = Callable[[str], "str | _Unset"]


@dataclass
class _Expander:
    """Shell-style ``$NAME``/``${NAME...}`` expansion as Dockerfiles and GitLab CI do it.

    The Dockerfile dialect removes quotes and takes the character after ``escape`` literally;
    GitLab's has no quoting and reads ``$$`` as ``$``. Problems are collected, never raised.
    """

    lookup: Lookup
    dialect: Literal["dockerfile", "gitlab"]
    escape: str = DEFAULT_ESCAPE
    problems: list[str] = field(default_factory=list)

    def expand(self, text: str) -> tuple[str, list[str]]:
        self.problems = []
        if len(text) > MAX_EXPANDED_CHARS:  # also bounds the rescans of nested `${...}`
            return text, [MSG_TOO_LONG]
        return self._word(text, 0), self.problems

    def _problem(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    def _word(self, text: str, depth: int) -> str:
        if depth > MAX_SUBSTITUTION_DEPTH:
            self._problem(MSG_TOO_DEEP)
            return text
        out: list[str] = []
        size = 0
        index, quote = 0, ""
        while index < len(text):
            if size > MAX_EXPANDED_CHARS:
                self._problem(MSG_TOO_LONG)
                break
            char = text[index]
            piece = ""
            if quote == "'":  # single quotes: everything literal
                quote, piece = ("", "") if char == "'" else (quote, char)
                index += 1
            elif self.dialect == "dockerfile" and char == self.escape and index + 1 < len(text):
                piece = text[index + 1]
                index += 2
            elif self.dialect == "dockerfile" and char in "'\"" and (not quote or char == quote):
                quote = "" if quote else char
                index += 1
            elif char == "$":
                piece, index = self._dollar(text, index, depth)
            else:
                piece = char
                index += 1
            out.append(piece)
            size += len(piece)
        return "".join(out)

    def _dollar(self, text: str, index: int, depth: int) -> tuple[str, int]:
        """Expand the ``$`` at ``index``; return the value and the index after the expression."""
        after = index + 1  # positions, not slices: a line may hold thousands of `$`
        if self.dialect == "gitlab" and text.startswith("$", after):
            return "$", after + 1
        name = _NAME_RE.match(text, after)
        if name:
            return self._value(name[0]), name.end()
        if not text.startswith("{", after):
            return "$", after
        end = _closing_brace(text, index + 2)
        if end < 0:
            self._problem(MSG_UNTERMINATED)
            return text[index:], len(text)
        expr = text[index + 2 : end]
        name = _NAME_RE.match(expr)
        if not name:
            self._problem(MSG_UNSUPPORTED.format(expr=_shorten(expr)))
            return text[index : end + 1], end + 1
        tail = expr[name.end() :]
        if not tail:
            return self._value(name[0]), end + 1
        operator = tail[:1] if tail[:1] in ("-", "+") else tail[:2]
        word = tail[len(operator) :]
        if operator not in (":-", "-", ":+", "+"):
            self._problem(MSG_UNSUPPORTED.format(expr=_shorten(expr)))
            return text[index : end + 1], end + 1
        # Without --build-arg, a variable without value is unset: the operators decide from that.
        value = self.lookup(name[0])
        is_set = not isinstance(value, _Unset)
        is_non_empty = is_set and bool(value)
        use_word = {":-": not is_non_empty, "-": not is_set, ":+": is_non_empty, "+": is_set}[operator]
        if use_word:
            return self._word(word, depth + 1), end + 1
        if operator in (":+", "+"):
            return "", end + 1
        return str(value), end + 1

    def _value(self, name: str) -> str:
        value = self.lookup(name)
        if isinstance(value, _Unset):
            self._problem(value.reason)
            return "${" + name + "}"
        return value


def _closing_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing a ``${`` whose expression starts at ``start`` (nesting aware)."""
    depth = 1
    index = start
    while index < len(text):
        if text.startswith("${", index):
            depth += 1
            index += 2
            continue
        if text[index] == "}":
            depth -= 1
            if not depth:
                return index
        index += 1
    return -1


# --- Dockerfiles ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Instruction:
    line: int
    keyword: str  # upper case
    arguments: str


def _escape_directive(lines: list[str]) -> str:
    """The escape character set by a ``# escape=`` parser directive, else the default."""
    escape = DEFAULT_ESCAPE
    for line in lines:
        match = _DIRECTIVE_RE.match(line.strip())
        if not match:
            break  # directives only come before anything else
        if match[1].lower() == "escape" and match[2] in ("\\", "`"):
            escape = match[2]
    return escape


def _heredoc_ends(arguments: str) -> list[tuple[str, bool]]:
    """The terminators of the heredocs an instruction opens, with whether tabs are stripped."""
    ends: list[tuple[str, bool]] = []
    for word in arguments.split():
        match = _HEREDOC_RE.match(word)
        if match:
            ends.append((match[3], bool(match[1])))
    return ends


def _instructions(text: str) -> tuple[list[_Instruction], str]:
    """The logical instructions of a Dockerfile (continuations joined) and its escape character."""
    lines = [line.rstrip("\r") for line in text.removeprefix("\ufeff").split("\n")]
    escape = _escape_directive(lines)
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")
    instructions: list[_Instruction] = []
    index = 0
    while index < len(lines):
        start = index
        stripped = lines[index].strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts: list[str] = []
        line = lines[start]
        while True:
            match = continuation.search(line)
            if match is None:
                parts.append(line)
                break
            parts.append(line[: match.start()])
            # Empty and comment lines inside a continued instruction are skipped (BuildKit).
            while index < len(lines) and (not lines[index].strip() or lines[index].lstrip().startswith("#")):
                index += 1
            if index == len(lines):
                break
            line = lines[index]
            index += 1
        words = " ".join(part.strip() for part in parts).split(maxsplit=1)
        keyword = words[0].upper() if words else ""
        arguments = words[1] if len(words) > 1 else ""
        instructions.append(_Instruction(start + 1, keyword, arguments))
        if keyword in _HEREDOC_INSTRUCTIONS:
            for terminator, strip_tabs in _heredoc_ends(arguments):
                while index < len(lines):
                    body_line = lines[index].lstrip("\t") if strip_tabs else lines[index]
                    index += 1
                    if body_line == terminator:
                        break
    return instructions, escape


def _split_words(text: str, escape: str) -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes for the expansion step."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        char = text[index]
        if char == escape and quote != "'" and index + 1 < len(text):
            current += [char, text[index + 1]]
            index += 2
            continue
        if quote:
            quote = "" if char == quote else quote
            current.append(char)
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char.isspace():
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
        index += 1
    if current:
        words.append("".join(current))
    return words


def _arg_lookup(args: Mapping[str, str | _Unset]) -> Lookup:
    def lookup(name: str) -> str | _Unset:
        if name in args:
            return args[name]
        if name in PLATFORM_ARGS:
            return _Unset(MSG_PLATFORM.format(name=name))
        return _Unset(MSG_UNDECLARED.format(name=name))

    return lookup


def _declare_args(arguments: str, args: dict[str, str | _Unset], escape: str) -> None:
    """Record ``ARG NAME[=default] ...`` (defaults may use earlier ARGs)."""
    for word in _split_words(arguments, escape):
        name, equals, default = word.partition("=")
        if not _NAME_RE.fullmatch(name):
            continue
        if not equals:
            args.setdefault(name, _Unset(MSG_NO_DEFAULT.format(name=name)))
            continue
        value, problems = _Expander(_arg_lookup(args), dialect="dockerfile", escape=escape).expand(default)
        args[name] = _Unset("; ".join(problems)) if problems else value


def _from_base(
    instruction: _Instruction,
    args: Mapping[str, str | _Unset],
    stages: set[str],
    escape: str,
    filename: str,
) -> FoundBase | None:
    source = f"{filename}:{instruction.line} FROM"
    words = instruction.arguments.split()
    while words and words[0].startswith("--"):
        words.pop(0)
    if len(words) == 3 and words[1].lower() == "as":
        stage: str | None = words[2].lower()
    elif len(words) == 1:
        stage = None
    else:
        problem = MSG_FROM_WITHOUT_IMAGE if not words else MSG_MALFORMED_FROM
        return FoundBase(_shorten(instruction.arguments), source, instruction.line, problem)
    written = words[0]
    image, problems = _Expander(_arg_lookup(args), dialect="dockerfile", escape=escape).expand(written)
    # Only a stage defined *earlier* can be built on (stage names are case-insensitive).
    is_stage = image.lower() in stages
    if stage is not None:
        stages.add(stage)
    if problems:
        problem = MSG_COULD_NOT_RESOLVE.format(text=_shorten(written), reasons="; ".join(problems))
        return FoundBase(_shorten(written), source, instruction.line, problem)
    if is_stage or image.lower() == SCRATCH:
        return None
    return FoundBase(image, source, instruction.line)


def find_bases_in_dockerfile(text: str, filename: str = DEFAULT_DOCKERFILE) -> list[FoundBase]:
    """The base images of a Dockerfile's ``FROM`` lines, in order; never raises."""
    if len(text) > MAX_DOCKERFILE_CHARS:
        return [FoundBase("", filename, None, MSG_TOO_LARGE.format(limit=MAX_DOCKERFILE_CHARS // 1024))]
    instructions, escape = _instructions(text)
    args: dict[str, str | _Unset] = {}
    stages: set[str] = set()
    seen_from = False
    found: list[FoundBase] = []
    for instruction in instructions:
        if instruction.keyword == "ARG" and not seen_from:
            _declare_args(instruction.arguments, args, escape)
        elif instruction.keyword == "FROM":
            seen_from = True
            base = _from_base(instruction, args, stages, escape, filename)
            if base is not None:
                found.append(base)
    return found


# --- CI files ---------------------------------------------------------------------------------


def _what(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


@dataclass(frozen=True, slots=True)
class _Document:
    """One YAML document of a CI file; ``first_line`` is where it starts in the file (0-based)."""

    data: dict[str, Any]
    parsed: ParsedYaml
    first_line: int

    def line(self, path: KeyPath) -> int:
        return self.first_line + self.parsed.position_of(path).line


def _gitlab_value(raw: Any) -> tuple[Any, bool, KeyPath]:
    """A GitLab variable's value, whether it is expanded, and the sub-path it was read from."""
    if isinstance(raw, dict) and "value" in raw:
        return raw["value"], raw.get("expand") is not False, ("value",)
    return raw, True, ()


def _gitlab_scope(variables: Any) -> dict[str, str | _Unset]:
    scope: dict[str, str | _Unset] = {}
    if isinstance(variables, dict):
        for name, raw in variables.items():
            value, _, _ = _gitlab_value(raw)
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                scope[str(name)] = str(value)
    return scope


def _scan_gitlab(document: _Document, filename: str) -> list[FoundBase]:
    found: list[FoundBase] = []
    data = document.data
    top = data.get("variables")
    top_scope = _gitlab_scope(top)
    scopes: list[tuple[KeyPath, Any, dict[str, str | _Unset]]] = [(("variables",), top, top_scope)]
    for job, body in data.items():
        if job != "variables" and isinstance(body, dict) and isinstance(body.get("variables"), dict):
            scopes.append(
                ((job, "variables"), body["variables"], {**top_scope, **_gitlab_scope(body["variables"])})
            )

    for path, variables, scope in scopes:
        if not isinstance(variables, dict):
            continue

        def lookup(name: str, scope: Mapping[str, str | _Unset] = scope) -> str | _Unset:
            return scope[name] if name in scope else _Unset(MSG_CI_UNDEFINED.format(name=name))

        for name in CI_BASE_VARIABLES:
            if name not in variables:
                continue
            value, expand, sub_path = _gitlab_value(variables[name])
            key_path = (*path, name, *sub_path)
            source = f"{filename} {format_key_path(key_path)}"
            line = document.line(key_path)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                found.append(FoundBase("", source, line, MSG_NOT_A_STRING.format(what=_what(value))))
                continue
            if not expand:
                found.append(FoundBase(value, source, line))
                continue
            expanded, problems = _Expander(lookup, dialect="gitlab").expand(value)
            if problems:
                problem = MSG_COULD_NOT_RESOLVE.format(text=_shorten(value), reasons="; ".join(problems))
                found.append(FoundBase(_shorten(value), source, line, problem))
            else:
                found.append(FoundBase(expanded, source, line))
    return found


def _workflow_envs(data: dict[str, Any]) -> Iterable[tuple[KeyPath, Any]]:
    yield ("env",), data.get("env")
    jobs = data.get("jobs")
    if not isinstance(jobs, dict):
        return
    for job, body in jobs.items():
        if not isinstance(body, dict):
            continue
        yield ("jobs", job, "env"), body.get("env")
        steps = body.get("steps")
        if isinstance(steps, list):
            for index, step in enumerate(steps):
                if isinstance(step, dict):
                    yield ("jobs", job, "steps", index, "env"), step.get("env")


def _scan_workflow(document: _Document, filename: str) -> list[FoundBase]:
    found: list[FoundBase] = []
    for path, env in _workflow_envs(document.data):
        if not isinstance(env, dict):
            continue
        for name in CI_BASE_VARIABLES:
            if name not in env:
                continue
            value = env[name]
            key_path = (*path, name)
            source = f"{filename} {format_key_path(key_path)}"
            line = document.line(key_path)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                found.append(FoundBase("", source, line, MSG_NOT_A_STRING.format(what=_what(value))))
            elif "$" in value:
                problem = MSG_COULD_NOT_RESOLVE.format(text=_shorten(value), reasons=MSG_EXPRESSION)
                found.append(FoundBase(_shorten(value), source, line, problem))
            else:
                found.append(FoundBase(value, source, line))
    return found


def is_workflow_file(filename: str) -> bool:
    """Whether ``filename`` is a Gitea/Forgejo/GitHub Actions workflow (else GitLab CI syntax)."""
    path = "/" + filename.replace("\\", "/")
    return any(f"/{directory}" in path for directory in WORKFLOW_DIRS)


def _parse_documents(text: str, filename: str) -> list[_Document] | FoundBase:
    """The mapping documents of a CI file, or the problem that stops reading it.

    GitLab allows a header document (``spec: inputs: ...``) before ``---`` and the configuration;
    each document is parsed on its own so that such files are read rather than refused.
    """
    documents: list[_Document] = []
    separators = list(_DOCUMENT_SEPARATOR_RE.finditer(text))[:MAX_CI_DOCUMENTS]
    starts = [0] + [match.end() + 1 for match in separators]
    ends = [match.start() for match in separators] + [len(text)]
    first_line = 0
    for index, (start, end) in enumerate(zip(starts, ends, strict=True)):
        if index:
            first_line += text.count("\n", starts[index - 1], start)
        try:
            parsed = parse_yaml(text[start:end])
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = MSG_NOT_YAML.format(problem=_shorten(exc.problem or exc.context or "unreadable"))
            return FoundBase("", filename, first_line + mark.line + 1 if mark else None, problem)
        # PyYAML raises ValueError for impossible dates and numbers (`2024-13-01`), and recurses
        # once per nesting level while composing.
        except (yaml.YAMLError, ValueError, RecursionError) as exc:
            return FoundBase("", filename, None, MSG_NOT_YAML.format(problem=_shorten(str(exc))))
        if parsed.data is None and parsed.problems:  # an alias bomb or a too deeply nested document
            first = parsed.problems[0]
            line = first_line + first.position.line
            return FoundBase("", filename, line, MSG_NOT_YAML.format(problem=first.message))
        if isinstance(parsed.data, dict):
            documents.append(_Document(parsed.data, parsed, first_line))
    return documents


def find_bases_in_ci(text: str, filename: str) -> list[FoundBase]:
    """``BASE_IMAGE`` values of a GitLab CI file or an Actions workflow (by ``filename``); never raises.

    Unreadable YAML gives one :class:`FoundBase` with an empty reference and the problem.
    """
    if len(text) > MAX_CI_CHARS:
        return [FoundBase("", filename, None, MSG_TOO_LARGE.format(limit=MAX_CI_CHARS // 1024))]
    documents = _parse_documents(text, filename)
    if isinstance(documents, FoundBase):
        return [documents]
    scan = _scan_workflow if is_workflow_file(filename) else _scan_gitlab
    return [found for document in documents for found in scan(document, filename)]


# --- the bases that matter --------------------------------------------------------------------


def _split_prefix(registry_prefix: str) -> tuple[str, str]:
    host, _, path = registry_prefix.strip().rstrip("/").partition("/")
    return normalize_host(host), path


def _under(registry: str, repository: str, host: str, path: str) -> bool:
    return registry == host and (not path or repository.startswith(f"{path}/"))


def _may_be_under(text: str, host: str, path: str) -> bool:
    """Whether a reference whose text *starts with* ``text`` could lie under ``host/path``.

    Used for references that cannot be resolved or parsed: ``golang:${GO_VERSION}`` is somebody
    else's image whatever the version, so it is not worth a problem; ``${BASE}`` may be ours.
    """
    known = text.split("$", 1)[0]
    first, slash, rest = known.partition("/")
    if not slash:  # the host is not complete yet: it starts with `first`, or this is Docker Hub
        return host.startswith(first.lower()) or host == DOCKER_HUB
    if looks_like_registry_host(first):
        registry, repository = normalize_host(first), rest
    else:
        registry, repository = DOCKER_HUB, known
    if registry != host:
        return False
    wanted = f"{path}/" if path else ""
    return repository.startswith(wanted) or wanted.startswith(repository)


def bases_in_registry(found: Iterable[FoundBase], registry_prefix: str) -> RegistryBases:
    """Keep the bases under ``registry_prefix`` (``build.registry``), normalised and de-duplicated.

    ``bases``: each reference once (its first occurrence), in normal form
    (``registry.example.com/bases/alpine:3.21``), strictly below the prefix. ``problems``: found
    entries with a problem, and references that do not parse, when they could be under the
    prefix; references elsewhere (Docker Hub, other registries) are dropped without a word.
    """
    host, path = _split_prefix(registry_prefix)
    bases: list[FoundBase] = []
    problems: list[FoundBase] = []
    seen: set[str] = set()
    for item in found:
        if item.problem is not None:
            if not item.reference or _may_be_under(item.reference, host, path):
                problems.append(item)
            continue
        try:
            reference = parse_reference(item.reference)
        except InvalidReference as exc:
            if _may_be_under(item.reference, host, path):
                reason = MSG_INVALID_REFERENCE.format(reason=_shorten(str(exc)))
                problems.append(replace(item, reference=_shorten(item.reference), problem=reason))
            continue
        if not _under(reference.registry, reference.repository, host, path):
            continue
        normal = str(reference)
        if normal not in seen:
            seen.add(normal)
            bases.append(replace(item, reference=normal))
    return RegistryBases(bases, problems)
