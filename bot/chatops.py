"""Chat-ops commands in forge comments: find ``/imglife <command> [args]`` lines and validate them (pure).

Two steps, so the bot can log what was asked before deciding what runs::

    lines = parse_commands(note_body)            # every command line outside code and quotes
    if lines:
        result = validate(lines[0], registries=..., sync_sources=...)
        if isinstance(result, CommandError):
            reply(result.message + "\\n\\n" + HELP_TEXT)
        else:
            run(result)                          # a ChatCommand; .name is bot.config's Command

**One command per comment: the first.** A comment is one request, answered by one reply comment
edited in place (SPEC §6.4); running several would mean several replies, ordering questions and
a bigger blast radius for a pasted block of commands. :func:`parse_commands` still returns every
command line it found (up to :data:`MAX_COMMAND_LINES`), so the reply can say the others were
ignored; :func:`first_command` is the one-call form.

**What counts as a command line** (CommonMark block structure, simplified on the safe side): a
line that starts with ``/imglife`` after at most 3 spaces, followed by whitespace or the end of
the line, and that is not inside

- a fenced code block (````` and ``~~~``, any length >= 3, info string, indented by up to 3
  spaces; an unclosed fence runs to the end of the comment, as in CommonMark);
- an indented code block (4+ columns of indentation; such a line can never start a command);
- a block quote: a line starting with ``>`` (any nesting), and the lazy continuation lines that
  follow a quoted line without a blank line in between — the renderer shows those inside the
  quote, and a quoted reply must never re-run the command it quotes;
- an HTML comment ``<!-- ... -->`` (which may span lines and blank lines; an unclosed one hides
  the rest of the comment — CommonMark would show an unclosed *inline* ``<!--`` as text, but
  hiding too much only means a command is not run, never that a hidden one is);
- an inline code span that started on an earlier line of the same paragraph.

Arguments are split with :func:`shlex.split` (POSIX rules, no punctuation splitting, no
comments) and never reach a shell: splitting only decides where one argument ends. Everything a
comment says is then checked by :func:`validate` against the command grammar of SPEC §6.3, the
OCI reference grammar and the operator's configuration (registries, sync entries), so nothing
from a comment names a host the operator did not configure (no SSRF).

Error messages are markdown for a reply comment: the offending text is quoted in a code span,
cut to :data:`MAX_ECHO_CHARS`, without backticks, line breaks or other control characters, and
with every ``@`` followed by a zero-width space so that no one is mentioned.
"""

from __future__ import annotations

import bisect
import re
import shlex
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Final

from bot.config import DEFAULT_PERMISSIONS, Role
from bot.config import Command as CommandName
from bot.errors import InvalidReference
from bot.oci.reference import ImageReference, normalize_host, parse_reference, parse_repository

# --- limits ---------------------------------------------------------------------------------
COMMAND_PREFIX: Final = "/imglife"
MAX_BODY_CHARS: Final = 64 * 1024  # only this much of a comment is read; the rest is ignored
MAX_COMMAND_LINES: Final = 20  # command lines reported per comment (only the first runs anyway)
MAX_LINE_CHARS: Final = 2048  # one command line
MAX_ARGS: Final = 16  # arguments of one command line
MAX_LIST_ARGS: Final = 10  # BASEs of check, SOURCEs of sync
# A reference is at most a 255-character name, a 128-character tag and a sha512 digest.
MAX_ARG_CHARS: Final = 640
MAX_ECHO_CHARS: Final = 80  # of an argument quoted back in a reply
MAX_REASON_CHARS: Final = 240  # of a grammar explanation quoted back in a reply

DRY_RUN: Final = "--dry-run"
# Characters a shell would interpret. No argument of any command needs one, so one of them means
# the comment was written for a shell (or against one): refuse with that reason.
SHELL_METACHARACTERS: Final = frozenset(";&|$`<>(){}*?!\\'\"~")
# Only these schemes are singled out with a URL message; `name:tag` must not look like a URL.
_URL_RE = re.compile(r"://|^//|^(?:https?|file|ftp|gopher|data|javascript|dict|ldap|tftp|s3|ssh|git):", re.I)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")  # OCI distribution-spec tag grammar

# --- messages -------------------------------------------------------------------------------
MSG_NO_COMMAND = "no command after `/imglife`"
MSG_UNKNOWN_COMMAND = "unknown command {command}"
MSG_UNSPLITTABLE = "cannot split the arguments: {reason} (check the quotes and backslashes)"
MSG_LINE_TOO_LONG = f"the command line is longer than {MAX_LINE_CHARS} characters"
MSG_TOO_MANY_ARGS = f"too many arguments (at most {MAX_ARGS})"
MSG_ARG_TOO_LONG = f"argument {{arg}} is longer than {MAX_ARG_CHARS} characters"
MSG_CONTROL = "argument {arg} contains a control or invisible formatting character"
MSG_NON_ASCII = "argument {arg} contains a non-ASCII character; image references and tags are ASCII"
MSG_URL = (
    "argument {arg} looks like a URL; give an image reference such as "
    "`registry.example.com/bases/alpine:3.21` instead"
)
MSG_SHELL = (
    "argument {arg} contains the shell metacharacter {char}; arguments are image references, "
    "tags or repository names and never reach a shell"
)
MSG_UNKNOWN_OPTION = "`{command}` has no option {option}; usage: {usage}"
MSG_NO_ARGUMENTS = "`{command}` takes no arguments; usage: {usage}"
MSG_TOO_MANY_POSITIONAL = "`{command}` takes at most {limit} {what}; usage: {usage}"
MSG_BAD_REFERENCE = "{arg} is not a valid image reference: {reason}"
MSG_REGISTRY_NOT_ALLOWED = (
    "{arg} is on {registry}, which is not one of the registries this bot is configured for"
)
MSG_SOURCE_HAS_TAG = "{arg} has a tag or digest; `sync` takes repository names, e.g. `{name}`"
MSG_UNKNOWN_SOURCE = "{arg} is not the source or target of a configured sync entry"
MSG_BAD_TAG = (
    "{arg} is not a valid image tag: 1-128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
)

# --- the command set (SPEC §6.3) --------------------------------------------------------------
USAGE: Final[Mapping[CommandName, str]] = {
    "help": "`/imglife help`",
    "check": "`/imglife check [BASE...]`",
    "status": "`/imglife status`",
    "eol": "`/imglife eol`",
    "register": "`/imglife register [TAG]`",
    "sync": "`/imglife sync [--dry-run] [SOURCE...]`",
    "cleanup": "`/imglife cleanup [--dry-run]`",
}
DRY_RUN_COMMANDS: Final[frozenset[CommandName]] = frozenset({"sync", "cleanup"})
_OPTIONS: Final[Mapping[CommandName, frozenset[str]]] = {
    name: frozenset({DRY_RUN}) for name in DRY_RUN_COMMANDS
}
# How many positional arguments each command takes, and what they are called in messages.
_POSITIONAL: Final[Mapping[CommandName, tuple[int, str]]] = {
    "check": (MAX_LIST_ARGS, "base images"),
    "sync": (MAX_LIST_ARGS, "sources"),
    "register": (1, "tag"),
}
_DESCRIPTIONS: Final[Mapping[CommandName, str]] = {
    "help": "this list",
    "check": "check base images for a newer tag and end of life; in a merge request, without BASE, "
    "the bases its Dockerfiles and CI variables use",
    "status": "the status report: every base image, its latest tag and EOL date, and the "
    "applications built on it",
    "eol": "end-of-life summary of the base images",
    "register": "register the build record of the project's images for TAG again (default: the latest tag)",
    "sync": "mirror all sync entries, or those whose source or target is SOURCE",
    "cleanup": "apply the retention policy to the base images and their mirrors",
}
# Gitea/Forgejo name the same levels differently (SPEC §6.3).
_GITEA_ROLE: Final[Mapping[Role, str]] = {
    "guest": "read",
    "reporter": "read",
    "developer": "write",
    "maintainer": "admin",
    "owner": "owner",
}


def help_text(available: Collection[CommandName] = tuple(USAGE)) -> str:
    """The command list for a reply, limited to the commands this bot runs."""
    lines = [
        "**imglife commands** — one per comment, on a line of its own:",
        "",
    ]
    for name, usage in USAGE.items():
        if name not in available:
            continue
        role = DEFAULT_PERMISSIONS[name]
        lines.append(
            f"- {usage} — {_DESCRIPTIONS[name]} (GitLab {role} / Gitea {_GITEA_ROLE.get(role, role)})"
        )
    lines += ["", "Roles are the defaults; the operator may change them (`bot.permissions`)."]
    if DRY_RUN_COMMANDS & set(available):
        lines[-1] += " Use `--dry-run` to see what a command would change without changing anything."
    return "\n".join(lines)


HELP_TEXT: Final = help_text()


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandLine:
    """A ``/imglife`` line as written: ``command`` is the first word (may be empty or unknown).

    ``error`` is set when the arguments could not be split (an unbalanced quote); ``args`` is
    then empty and :func:`validate` reports the error.
    """

    command: str
    args: tuple[str, ...]
    raw: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ChatCommand:
    """A validated command, ready to run (after the permission check for ``name``).

    ``bases`` (check) are parsed references on a configured registry; ``sources`` (sync) are
    the configured sync sources/targets exactly as the configuration spells them, so the handler
    can select entries by equality; ``tag`` (register) is a valid OCI tag or ``None`` for the
    handler's default.
    """

    name: CommandName
    dry_run: bool = False
    bases: tuple[ImageReference, ...] = ()
    sources: tuple[str, ...] = ()
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class CommandError:
    """Why a command line is refused; ``message`` is markdown, safe to post as is."""

    message: str


# --- echoing untrusted text -------------------------------------------------------------------

_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def sanitize(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """Untrusted text made safe for a comment: cut to ``limit``, no backticks, no line breaks,
    no control/bidi/zero-width characters (they can hide or reorder text), no ``@`` mentions."""
    cut = text[:limit]
    chars = [
        "\ufffd" if unicodedata.category(char) in _INVISIBLE_CATEGORIES else char
        for char in cut
        if char != "`"
    ]
    # After the filter above, so that the zero-width space (a Cf character) survives.
    result = "".join(chars).replace("@", "@\u200b")
    return result + ("…" if len(text) > limit else "")


def quote(text: str) -> str:
    """``text`` sanitised and shown as a code span (markdown and HTML inside it are inert)."""
    shown = sanitize(text)
    return f"`{shown}`" if shown.strip() else "(empty)"


# --- finding command lines --------------------------------------------------------------------

_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")  # CommonMark's line endings, and nothing else
_FENCE_RE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_QUOTE_RE = re.compile(r"^ {0,3}>")
# Linear: a lazy `(?P<rest>.*?)` before `[ \t]*$` retries the trailing blanks at every position, which
# takes a minute on a 64 KiB line of spaces; `_split` strips them instead.
_COMMAND_LINE_RE = re.compile(rf"^ {{0,3}}{re.escape(COMMAND_PREFIX)}(?:[ \t]+(?P<rest>.*))?\Z")
_BACKTICKS_RE = re.compile(r"(\\*)(`+)")  # a backtick run and the backslashes before it
_INDENTED_CODE_COLUMNS = 4


@dataclass(frozen=True, slots=True)
class _Fence:
    char: str
    length: int

    def closed_by(self, line: str) -> bool:
        match = _FENCE_RE.match(line)
        return bool(
            match
            and match["fence"][0] == self.char
            and len(match["fence"]) >= self.length
            and not match["info"].strip()
        )


def _open_fence(line: str) -> _Fence | None:
    match = _FENCE_RE.match(line)
    if not match:
        return None
    fence = match["fence"]
    # A backtick fence's info string cannot contain a backtick (that line is inline code).
    if fence[0] == "`" and "`" in match["info"]:
        return None
    return _Fence(fence[0], len(fence))


def _indent_columns(line: str) -> int:
    columns = 0
    for char in line:
        if char == " ":
            columns += 1
        elif char == "\t":
            columns += 4 - columns % 4
        else:
            break
    return columns


def _code_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of CommonMark inline code spans in one paragraph's text.

    A run of N backticks opens a span closed by the next run of exactly N backticks; without
    one it is literal. A backslash escapes the first backtick of an opening run (backslashes are
    literal inside spans, so closers are never escaped).
    """
    runs = [(match.start(2), len(match[2]), len(match[1]) % 2 == 1) for match in _BACKTICKS_RE.finditer(text)]
    starts_by_length: dict[int, list[int]] = {}
    for start, length, _ in runs:
        starts_by_length.setdefault(length, []).append(start)
    spans: list[tuple[int, int]] = []
    covered = 0
    for start, length, escaped in runs:
        if start < covered:
            continue
        if escaped:
            start, length = start + 1, length - 1
        if not length:
            continue
        candidates = starts_by_length.get(length, [])
        index = bisect.bisect_left(candidates, start + length)
        if index < len(candidates):
            end = candidates[index] + length
            spans.append((start, end))
            covered = end
    return spans


def _ends_inside_html_comment(line: str, inside: bool) -> bool:
    """Whether an HTML comment is still open after ``line`` (code spans on the line excluded)."""
    pieces: list[str] = []
    last = 0
    for start, end in _code_spans(line):
        pieces += [line[last:start], " " * (end - start)]
        last = end
    line = "".join([*pieces, line[last:]])
    position = 0
    while True:
        if inside:
            close = line.find("-->", position)
            if close < 0:
                return True
            inside, position = False, close + 3
        else:
            opening = line.find("<!--", position)
            if opening < 0:
                return False
            # `<!-->` and `<!--->` are complete (empty) comments in CommonMark 0.31.
            inside, position = True, opening + 2


def _candidate_lines(body: str) -> list[str]:
    """The lines of ``body`` that start with the command prefix and are rendered as plain text."""
    fence: _Fence | None = None
    in_comment = False
    in_paragraph = False  # the previous line was paragraph text
    in_quote = False  # the previous line belongs to a block quote's paragraph
    paragraph: list[tuple[str, bool]] = []  # (line, starts with the prefix) of the current paragraph
    found: list[str] = []

    def end_paragraph() -> None:
        if any(candidate for _, candidate in paragraph):
            text = "\n".join(line for line, _ in paragraph)
            spans = _code_spans(text)  # sorted and disjoint
            span_starts = [start for start, _ in spans]
            offset = 0
            for line, candidate in paragraph:
                first = offset + len(line) - len(line.lstrip(" "))
                index = bisect.bisect_right(span_starts, first) - 1
                if candidate and not (index >= 0 and first < spans[index][1]):
                    found.append(line)
                offset += len(line) + 1
        paragraph.clear()

    for line in _LINE_BREAK_RE.split(body):
        if fence is not None:
            if fence.closed_by(line):
                fence = None
            continue
        if in_comment:
            in_comment = _ends_inside_html_comment(line, inside=True)
            continue
        if not line.strip(" \t"):  # only spaces and tabs make a blank line (not NBSP)
            end_paragraph()
            in_paragraph = in_quote = False
            continue
        opened = _open_fence(line)
        if opened is not None:  # a fence interrupts paragraphs and ends a quote's lazy lines
            end_paragraph()
            fence, in_paragraph, in_quote = opened, False, False
            continue
        if _QUOTE_RE.match(line):
            end_paragraph()
            # Lazy continuation needs an open paragraph in the quote: not after an empty quote
            # line or a quoted fence opener (a fence cannot be continued lazily).
            content = line.lstrip(" >\t")
            in_paragraph, in_quote = False, bool(content) and _open_fence(content) is None
            continue
        if in_quote:  # lazy continuation: rendered inside the quote
            in_comment = _ends_inside_html_comment(line, inside=False)
            continue
        if not in_paragraph and _indent_columns(line) >= _INDENTED_CODE_COLUMNS:
            continue  # indented code block
        paragraph.append((line, bool(_COMMAND_LINE_RE.match(line))))
        in_paragraph = True
        in_comment = _ends_inside_html_comment(line, inside=False)
        if in_comment:  # the paragraph's visible text ends where the comment starts
            end_paragraph()
            in_paragraph = False
    end_paragraph()
    return found


def _limit_body(body: str) -> str:
    if len(body) <= MAX_BODY_CHARS:
        return body
    # Drop the line the cut falls in: a command cut in half must not run as a shorter one.
    cut = body[:MAX_BODY_CHARS]
    last_break = max(cut.rfind("\n"), cut.rfind("\r"))
    return cut[:last_break] if last_break >= 0 else ""


def _split(line: str) -> CommandLine:
    raw = line.strip()
    match = _COMMAND_LINE_RE.match(line)
    rest = ((match["rest"] if match else None) or "").rstrip(" \t")
    try:
        words = shlex.split(rest, comments=False, posix=True)
    except ValueError as exc:
        first = rest.split(maxsplit=1)
        return CommandLine(
            command=first[0] if first else "",
            args=(),
            raw=raw,
            error=MSG_UNSPLITTABLE.format(reason=str(exc).lower()),
        )
    if not words:
        return CommandLine(command="", args=(), raw=raw)
    return CommandLine(command=words[0], args=tuple(words[1:]), raw=raw)


def parse_commands(body: str) -> list[CommandLine]:
    """Every ``/imglife`` command line of a comment body, in order (at most :data:`MAX_COMMAND_LINES`).

    Never raises. Only the first is meant to run (see the module docstring).
    """
    lines = _candidate_lines(_limit_body(body))
    return [_split(line) for line in lines[:MAX_COMMAND_LINES]]


def first_command(body: str) -> CommandLine | None:
    """The command line that runs for this comment: the first one, or ``None``."""
    lines = parse_commands(body)
    return lines[0] if lines else None


# --- validating -------------------------------------------------------------------------------


def _screen(arg: str) -> str | None:
    """Why ``arg`` cannot be an argument of any command, before the per-command grammar."""
    if len(arg) > MAX_ARG_CHARS:
        return MSG_ARG_TOO_LONG.format(arg=quote(arg))
    if any(unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in arg):
        return MSG_CONTROL.format(arg=quote(arg))
    if not arg.isascii():
        return MSG_NON_ASCII.format(arg=quote(arg))
    if _URL_RE.search(arg):
        return MSG_URL.format(arg=quote(arg))
    metacharacter = next((char for char in arg if char in SHELL_METACHARACTERS), None)
    if metacharacter is not None:
        shown = "a backtick" if metacharacter == "`" else f"`{metacharacter}`"
        return MSG_SHELL.format(arg=quote(arg), char=shown)
    return None


def _on_allowed_registry(reference: ImageReference, registries: Collection[str]) -> bool:
    """Whether ``reference`` lies on one of ``registries`` (``host[:port]`` or ``host[:port]/path``)."""
    for entry in registries:
        host, _, path = entry.strip().rstrip("/").partition("/")
        if normalize_host(host) != reference.registry:
            continue
        if not path or reference.repository == path or reference.repository.startswith(f"{path}/"):
            return True
    return False


def _check_bases(
    args: list[str], registries: Collection[str]
) -> tuple[tuple[ImageReference, ...], CommandError | None]:
    bases: list[ImageReference] = []
    for arg in args:
        try:
            reference = parse_reference(arg)
        except InvalidReference as exc:
            reason = sanitize(str(exc), MAX_REASON_CHARS)
            return (), CommandError(MSG_BAD_REFERENCE.format(arg=quote(arg), reason=reason))
        if not _on_allowed_registry(reference, registries):
            message = MSG_REGISTRY_NOT_ALLOWED.format(arg=quote(arg), registry=quote(reference.registry))
            return (), CommandError(message)
        if reference not in bases:
            bases.append(reference)
    return tuple(bases), None


def _repository_name(text: str) -> str | None:
    try:
        return parse_repository(text).name
    except InvalidReference:
        return None


def _sync_sources(
    args: list[str], sync_sources: Collection[str]
) -> tuple[tuple[str, ...], CommandError | None]:
    """Each argument mapped to the configured source/target it names (exactly or by repository)."""
    by_name: dict[str, str] = {}
    for configured in sync_sources:
        name = _repository_name(configured)
        if name is not None:
            by_name.setdefault(name, configured)
    chosen: list[str] = []
    for arg in args:
        match = arg if arg in sync_sources else by_name.get(_repository_name(arg) or "")
        if match is None:
            try:
                reference = parse_reference(arg)
            except InvalidReference:
                reference = None
            if reference is not None and (reference.digest or ":" in arg.rpartition("/")[2]):
                message = MSG_SOURCE_HAS_TAG.format(arg=quote(arg), name=sanitize(reference.name))
                return (), CommandError(message)
            return (), CommandError(MSG_UNKNOWN_SOURCE.format(arg=quote(arg)))
        if match not in chosen:
            chosen.append(match)
    return tuple(chosen), None


def _command_name(word: str) -> CommandName | None:
    lowered = word.lower()
    for name in USAGE:
        if name == lowered:
            return name
    return None


def validate(
    line: CommandLine,
    *,
    registries: Collection[str],
    sync_sources: Collection[str],
    available: Collection[CommandName] = tuple(USAGE),
) -> ChatCommand | CommandError:
    """Check a command line against SPEC §6.3 and the configuration; never raises.

    ``registries`` are the OCI registries ``check`` may name (``host[:port]``, or
    ``host[:port]/path`` to allow only that part of a registry); ``sync_sources`` are the
    ``source`` and ``target`` of every configured sync entry; ``available`` the commands this
    bot runs (any other is an unknown command).
    """
    if line.error is not None:
        return CommandError(line.error)
    if len(line.raw) > MAX_LINE_CHARS:
        return CommandError(MSG_LINE_TOO_LONG)
    if not line.command:
        return CommandError(MSG_NO_COMMAND)
    name = _command_name(line.command)
    if name is None or name not in available:
        return CommandError(MSG_UNKNOWN_COMMAND.format(command=quote(line.command)))
    if len(line.args) > MAX_ARGS:
        return CommandError(MSG_TOO_MANY_ARGS)
    for arg in line.args:
        problem = _screen(arg)
        if problem is not None:
            return CommandError(problem)

    usage = USAGE[name]
    options = [arg for arg in line.args if arg.startswith("-")]
    positional = [arg for arg in line.args if not arg.startswith("-")]
    for option in options:
        if option not in _OPTIONS.get(name, frozenset()):
            return CommandError(MSG_UNKNOWN_OPTION.format(command=name, option=quote(option), usage=usage))
    limit, what = _POSITIONAL.get(name, (0, ""))
    if len(positional) > limit:
        if not limit:
            return CommandError(MSG_NO_ARGUMENTS.format(command=name, usage=usage))
        return CommandError(MSG_TOO_MANY_POSITIONAL.format(command=name, limit=limit, what=what, usage=usage))

    dry_run = DRY_RUN in options
    if name == "check":
        bases, error = _check_bases(positional, registries)
        return error or ChatCommand(name=name, bases=bases)
    if name == "sync":
        sources, error = _sync_sources(positional, sync_sources)
        return error or ChatCommand(name=name, dry_run=dry_run, sources=sources)
    if name == "register":
        tag = positional[0] if positional else None
        if tag is not None and not _TAG_RE.match(tag):
            return CommandError(MSG_BAD_TAG.format(arg=quote(tag)))
        return ChatCommand(name=name, tag=tag)
    return ChatCommand(name=name, dry_run=dry_run)
