"""Fuzzing the readers of untrusted input: only the documented errors, cheap invariants, no hang.

Each target, what it may raise, and where else it is fuzzed:

- image references (``bot/oci/reference.py``): an ``ImageReference`` or ``InvalidReference``;
- chat-ops commands (``bot/chatops.py``): ``parse_commands``/``validate`` never raise (more
  properties in ``test_chatops.py``);
- base images of Dockerfiles and CI files (``bot/basefind.py``): never raise, and
  ``bases_in_registry`` keeps only references under the prefix (``test_basefind.py`` fuzzes text
  pieces; here the files are built from real instructions);
- ``imglife.yaml`` (``bot/config/loader.py`` ``parse_config`` with the cron and duration parsing of
  ``bot/config/schema.py``): a ``Config`` or ``ConfigError``;
- ``.imglife.yml`` (``bot/repoconfig.py``): a ``RepoConfig`` or ``RepoConfigError``;
- build records read back from a store (``bot/records/codec.py``): a ``BuildRecord`` or
  ``RecordFormatError``;
- queued jobs read back from Redis (``bot/server/jobs.py`` ``JobSpec.decode``): ``ValueError``;
- webhook deliveries: ``test_webhook_fuzz.py``; here only bodies built to be slow.

"No hang" is checked twice: every property has a hypothesis ``deadline`` (a slow example fails
rather than passes), and :func:`bounded` interrupts a call after a hard limit with SIGALRM (the
regex engine polls for signals), which the ``SLOW_*`` inputs rely on: long runs of one character,
nested quotes and substitutions, and the largest input each reader accepts. Inputs that once
failed are pinned with ``@example``, so they are tried first on every run.

atheris: 3.0.0 installs here from a cp311 manylinux wheel, but it is no dependency and pytest never
runs it: it pays off in long open-ended runs, not in a suite kept under a minute. :func:`main`
runs it on demand (``pip install atheris; python -m tests.test_fuzz TARGET``); a 90-second trial
per reader found one case the generators here had missed (a control character), now covered.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import signal
import string
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import croniter  # imported here: bot.config.schema imports it on first use, which would eat a deadline
import orjson
import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from bot.basefind import (
    MAX_CI_CHARS,
    MAX_DOCKERFILE_CHARS,
    FoundBase,
    bases_in_registry,
    find_bases_in_ci,
    find_bases_in_dockerfile,
)
from bot.chatops import (
    MAX_ARG_CHARS,
    MAX_ARGS,
    MAX_BODY_CHARS,
    MAX_COMMAND_LINES,
    MAX_LINE_CHARS,
    SHELL_METACHARACTERS,
    USAGE,
    ChatCommand,
    CommandError,
    parse_commands,
    validate,
)
from bot.config.loader import parse_config
from bot.config.schema import BotConfig, Config, parse_duration
from bot.errors import ConfigError, InvalidReference, RecordFormatError
from bot.events import Actor, ChangeAction, CommentAction, EventKind, Forge, ForgeEvent, Repo
from bot.forges.webhooks import WebhookRejected
from bot.oci.reference import (
    DOCKER_HUB,
    DOCKER_HUB_ALIASES,
    MAX_NAME_LENGTH,
    ImageReference,
    parse_reference,
    parse_repository,
)
from bot.records.codec import MAX_RECORD_BYTES, BuildRecord, decode_record, record_key
from bot.repoconfig import (
    MAX_CONFIG_CHARS,
    MAX_DOCKERFILES,
    MAX_IMAGES,
    RepoConfig,
    RepoConfigError,
    parse_repo_config,
)
from bot.server.jobs import JobSpec
from tests.test_webhook_parsing import PARSERS, SECRET, delivery, load, sign

T = TypeVar("T")
EXAMPLES = Path(__file__).parent.parent / "examples"

# --- time bounds -----------------------------------------------------------------------------

HARD_LIMIT = 5.0  # seconds: any one call of a reader on a generated input
PATHOLOGICAL_LIMIT = 2.0  # seconds: one call on an input built to be slow (linear code: < 0.3 s)


class Hang(BaseException):
    """A reader was still running when its time was up."""


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with :class:`Hang` (only where signals can be used)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def alarm(_signum: int, _frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def fuzz(examples: int, deadline_ms: int = 1000) -> settings:
    return settings(
        max_examples=examples,
        deadline=dt.timedelta(milliseconds=deadline_ms),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        # No explain phase: on a large failing input it costs more than the whole search.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    )


def examples(*cases: Any, unpack: bool = False) -> Callable[[T], T]:
    """``@example`` for each case: inputs that once failed are tried first, every run."""

    def apply(test: T) -> T:
        for case in reversed(cases):
            test = (example(*case) if unpack else example(case))(test)  # type: ignore[assignment]
        return test

    return apply


def timed(call: Callable[[], T], limit: float = PATHOLOGICAL_LIMIT) -> T:
    """``call()`` under a hard time limit, failing with the time it took when over the limit."""
    started = time.perf_counter()
    try:
        with bounded(limit):
            return call()
    except Hang:
        pytest.fail(f"no answer after {time.perf_counter() - started:.1f} s (limit {limit} s)", pytrace=False)


# --- the OCI reference grammar, as an oracle independent of bot/oci/reference.py -------------

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-z0-9]|[a-z0-9][a-z0-9-]*[a-z0-9])"
GRAMMAR_HOST = re.compile(rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-f:.]+\])(?::[0-9]{{1,5}})?")
GRAMMAR_COMPONENT = re.compile(_COMPONENT)
GRAMMAR_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
GRAMMAR_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
REFERENCE_CHARS = frozenset(string.ascii_letters + string.digits + "._-:/@[]=+")


def assert_canonical(ref: ImageReference) -> None:
    """Every part of a parsed reference follows the grammar, whole (not just up to a line break)."""
    assert GRAMMAR_HOST.fullmatch(ref.registry), ref
    assert all(GRAMMAR_COMPONENT.fullmatch(part) for part in ref.repository.split("/")), ref
    assert ref.tag is None or GRAMMAR_TAG.fullmatch(ref.tag), ref
    if ref.digest is not None:
        assert GRAMMAR_DIGEST.fullmatch(ref.digest), ref
        algorithm, _, hex_part = ref.digest.partition(":")
        if algorithm in ("sha256", "sha512"):
            assert re.fullmatch(r"[0-9a-f]+", hex_part), ref
    assert len(ref.name) <= MAX_NAME_LENGTH
    text = str(ref)
    assert set(text) <= REFERENCE_CHARS, text
    assert parse_reference(text, allow_tag=True, allow_digest=True) == (
        ref if ref.tag or ref.digest else ImageReference(ref.registry, ref.repository, "latest")
    )


def assert_canonical_text(text: str) -> ImageReference:
    """``text`` is a reference in normal form: it parses, and prints back as itself."""
    ref = parse_reference(text)
    assert str(ref) == text
    assert_canonical(ref)
    return ref


# Inserted into otherwise grammatical text: separators, line breaks, quoting, look-alikes
# (fullwidth solidus, Kelvin sign, dotless i, long s), invisible and bidi characters.
HOSTILE = [
    "\n", "\r", "\r\n", "\t", " ", "\x00", "\x7f", "\x85", "\u2028", "\u200b", "\u202e", "\ufeff", "\xa0",
    "@", ":", "/", "//", ".", "..", "_", "__", "-", "~", "$", "`", "'", '"', "\\", "{", "}", "[", "]",
    "%2F", "#", "?", "&", "*", "+", "!", ",", ";", "=", "A", "Z", "\u0130", "\u212a", "\u017f", "\uff0f",
    "\uff1a", "\u0663", "https://", "@sha256:", ":latest", "${X}", "$(id)", "<!--", "```", "@all",
]  # fmt: skip

HOSTILE_EDITS = st.sampled_from(HOSTILE)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """``one_of`` with weights (``one_of`` flattens: in ``a | b`` with a wide ``b``, ``a`` is rare)."""
    total = sum(weight for weight, _ in choices)

    @st.composite
    def pick(draw: st.DrawFn) -> Any:
        number = draw(st.integers(0, total - 1))
        for weight, strategy in choices:
            if number < weight:
                return draw(strategy)
            number -= weight
        raise AssertionError(number)

    return pick()


@st.composite
def mutated(
    draw: st.DrawFn, base: st.SearchStrategy[str], hostile: st.SearchStrategy[str] = HOSTILE_EDITS
) -> str:
    """``base`` text with one to three hostile edits (insert, replace, delete, duplicate)."""
    text = draw(base)
    for _ in range(draw(st.integers(1, 3))):
        # Half of the edits go next to a separator, where a grammar's pieces begin and end.
        boundaries = [index for index, char in enumerate(text) if char in "/:@."] + [len(text)]
        if draw(st.booleans()):
            at = boundaries[draw(st.integers(0, len(boundaries) - 1))]
        else:
            at = draw(st.integers(0, len(text)))
        edit = draw(st.sampled_from(("insert", "insert", "replace", "delete", "duplicate")))
        if edit == "insert":
            text = text[:at] + draw(hostile) + text[at:]
        elif edit == "replace":
            text = text[:at] + draw(hostile) + text[at + 1 :]
        elif edit == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at] + text[at : at + 4] + text[at:]
    return text


# --- strategies: image references -----------------------------------------------------------

_alnum = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=6)
_domain_part = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,5}[a-zA-Z0-9])?", fullmatch=True)


@st.composite
def path_component(draw: st.DrawFn, dots: bool = True) -> str:
    separators = (".", "_", "__", "-", "---") if dots else ("_", "__", "-", "--")
    text = draw(_alnum)
    for _ in range(draw(st.integers(0, 2))):
        text += draw(st.sampled_from(separators)) + draw(_alnum)
    return text


_hosts = st.one_of(
    st.lists(_domain_part, min_size=2, max_size=3).map(".".join),
    st.sampled_from(("localhost", *sorted(DOCKER_HUB_ALIASES), "Registry.Example.COM")),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda parts: ".".join(map(str, parts))),
    st.sampled_from(("[::1]", "[2001:db8::1]", "[::ffff:10.0.0.1]")),
)
hosts = st.tuples(_hosts, st.none() | st.integers(0, 99999)).map(
    lambda pair: pair[0] if pair[1] is None else f"{pair[0]}:{pair[1]}"
)
tags = st.one_of(
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,15}", fullmatch=True),
    st.sampled_from(("latest", "3.21.3-core1.0.0", "v1.2.3", "_", "A" * 128)),
)
digests = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    st.text("0123456789abcdef", min_size=128, max_size=128).map("sha512:".__add__),
    st.tuples(
        st.from_regex(r"[a-z0-9]+(?:[.+_-][a-z0-9]+){0,2}", fullmatch=True),
        st.text(string.ascii_letters + string.digits + "=_-", min_size=1, max_size=20),
    ).map(":".join),
)


@st.composite
def grammatical_reference(draw: st.DrawFn) -> tuple[str, ImageReference | None]:
    """A reference from the grammar and what it must parse to (``None``: the name is too long)."""
    host = draw(st.none() | hosts)
    first = draw(path_component(dots=host is not None).filter(lambda c: c != "localhost"))
    components = [first, *draw(st.lists(path_component(), max_size=3))]
    tag = draw(st.none() | tags)
    digest = draw(st.none() | digests)
    path = "/".join(components)
    text = (f"{host}/" if host else "") + path + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    registry = DOCKER_HUB if host is None or host.lower() in DOCKER_HUB_ALIASES else host.lower()
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > MAX_NAME_LENGTH:
        return text, None
    return text, ImageReference(registry, path, tag if tag or digest else "latest", digest)


reference_texts = st.one_of(
    grammatical_reference().map(lambda pair: pair[0]),
    mutated(grammatical_reference().map(lambda pair: pair[0])),
    st.text(string.ascii_letters + string.digits + "._-:/@[]\n\t ", max_size=60),
    st.text(max_size=40),
    # A first component is a host when it has a capital: one-label hosts that have only that.
    st.tuples(st.from_regex(r"[a-z0-9]{0,3}[A-Z][a-zA-Z0-9]{0,3}", fullmatch=True), path_component()).map(
        "/".join
    ),
)

REGISTRY_PREFIX = "registry.example.com/bases"


under_prefix = st.tuples(path_component(), tags).map(lambda pair: f"{REGISTRY_PREFIX}/{pair[0]}:{pair[1]}")


# --- 1. image references --------------------------------------------------------------------


# Found by these properties: `$` in the grammar's regexes also matches before a final "\n", and a
# one-label host written in capitals ("Registry/x") is lower-cased into a Docker Hub path.
REFERENCE_BUGS = (
    "registry.example.com/bases/alpine\n:3",
    "library\n/alpine",
    "registry.local\n/x/y",
    "Registry/alpine",
)


@fuzz(300)
@examples(*((text, True, True) for text in REFERENCE_BUGS), unpack=True)
@given(reference_texts, st.booleans(), st.booleans())
def test_reference_parser_answers_a_reference_or_invalid_reference(
    text: str, allow_tag: bool, allow_digest: bool
) -> None:
    try:
        with bounded(HARD_LIMIT):
            ref = parse_reference(text, allow_tag=allow_tag, allow_digest=allow_digest)
    except InvalidReference:
        return
    assert allow_tag or ref.tag is None
    assert allow_digest or ref.digest is None
    assert_canonical(ref)


@fuzz(200)
@given(grammatical_reference())
def test_grammatical_references_parse_to_their_parts(case: tuple[str, ImageReference | None]) -> None:
    text, expected = case
    if expected is None:
        with pytest.raises(InvalidReference):
            parse_reference(text)
        return
    assert parse_reference(text) == expected
    assert_canonical(expected)


@fuzz(200)
@examples(*((text, "v1", "sha256:" + "a" * 64) for text in REFERENCE_BUGS), unpack=True)
@given(reference_texts, st.one_of(tags, st.text(max_size=10)), st.one_of(digests, st.text(max_size=10)))
def test_repository_tag_and_digest_setters_only_raise_invalid_reference(
    text: str, tag: str, digest: str
) -> None:
    try:
        repository = parse_repository(text)
    except InvalidReference:
        return
    assert repository.tag is None
    assert repository.digest is None
    for change in (repository.with_tag, repository.with_digest):
        for value in (tag, digest):
            try:
                changed = change(value)
            except InvalidReference:
                continue
            assert_canonical(changed)


# --- 2. chat-ops commands -------------------------------------------------------------------

CHAT_REGISTRIES = ("registry.example.com", "mirror.example.com:5000/mirror")
CHAT_SOURCES = (
    "docker.io/library/alpine",
    "registry.example.com/mirror/alpine",
    "quay.io/prometheus/prometheus",
)
ALLOWED_HOSTS = {"registry.example.com", "mirror.example.com:5000"}

# fmt: off
_chat_valid_args = st.sampled_from(
    [
        "--dry-run", "alpine", "registry.example.com/bases/alpine:3.21", "registry.example.com/mirror/alpine",
        "mirror.example.com:5000/mirror/x@sha256:" + "a" * 64, "docker.io/library/alpine", "v1.0", "3",
        "quay.io/prometheus/prometheus",
    ]
)
_chat_hostile_args = st.sampled_from(
    [
        "--dry-run=1", "-x", "mirror.example.com:5000/other/x", "evil.example.com/x", "$(id)", "`id`", "a;b",
        "a|b", "a&&b", "'a b'", '"a b"', "'", '"', "a\\ b", "\\", "~root", "@all", "http://x", "//x",
        "file:/etc/passwd", "x" * (MAX_ARG_CHARS + 1), "\u202eevil", "é",
        "registry.example.com/bases/alpine\n:3", "registry.example.com/bases/al\u200bpine",
    ]
)
# fmt: on
chat_args = weighted(
    (4, _chat_valid_args), (2, _chat_hostile_args), (1, mutated(_chat_valid_args)), (1, st.text(max_size=20))
)
chat_commands = weighted(
    (4, st.sampled_from(tuple(USAGE))),
    (1, st.sampled_from(("CHECK", "Sync", "", "x", "rm")) | st.text(max_size=8)),
)


GAPS = st.sampled_from((" ", "\t", "  ", " \t "))


@st.composite
def command_line(draw: st.DrawFn) -> str:
    indent = " " * draw(st.integers(0, 4))
    words = [draw(chat_commands), *draw(st.lists(chat_args, max_size=5))]
    text = indent + "/imglife"
    for word in words:
        text += draw(GAPS) + word
    return text + draw(st.sampled_from(("", " ", "\t", " \\")))


FENCES = st.sampled_from(("```", "~~~", "````", "``", " ```", "    ```"))
INFO_STRINGS = st.sampled_from(("", "sh", " bash", "`x`", "~"))
MARKDOWN_NOISE = st.sampled_from(
    ("<!--", "-->", "<!-->", "```", "~~~", ">", "\\`", "`` ` ``", "\ufeff", "\u2028")
)


@st.composite
def comment_block(draw: st.DrawFn) -> str:
    """One markdown block: a command, or a command hidden in code, a quote or an HTML comment, or noise."""
    kind = draw(st.integers(0, 8))
    if kind == 0:
        closing = draw(st.sampled_from(("", "```", "~~~~")))
        return f"{draw(FENCES)}{draw(INFO_STRINGS)}\n{draw(command_line())}\n{closing}"
    if kind == 1:
        return "> " * draw(st.integers(1, 3)) + draw(command_line()) + "\n" + draw(command_line())
    if kind == 2:
        closing = draw(st.sampled_from(("", "\n-->", "-->")))
        return "<!--" + draw(st.sampled_from(("", "\n", " x "))) + draw(command_line()) + closing
    if kind == 3:
        return "    " + draw(command_line())
    if kind == 4:
        return (
            "`" * draw(st.integers(1, 3))
            + "x\n"
            + draw(command_line())
            + "\n"
            + "`" * draw(st.integers(0, 3))
        )
    if kind == 5:
        return draw(st.text(max_size=60))
    if kind == 6:
        return draw(MARKDOWN_NOISE)
    return draw(command_line())


comment_bodies = st.lists(comment_block(), max_size=8).flatmap(
    lambda blocks: st.sampled_from(("\n", "\n\n", "\r\n", "\r")).map(lambda sep: sep.join(blocks))
)


def check_chat_result(result: ChatCommand | CommandError, args: tuple[str, ...], raw: str) -> None:
    if isinstance(result, CommandError):
        message = result.message
        assert "\n" not in message
        assert "\r" not in message
        assert message.count("`") % 2 == 0, message
        assert "@" not in message.replace("@\u200b", ""), message
        assert not any(char in message for char in "\u202e\u2066\u2067\u2068\x00")
        return
    assert isinstance(result, ChatCommand)
    assert result.name in USAGE
    assert len(raw) <= MAX_LINE_CHARS
    assert len(args) <= MAX_ARGS
    for arg in args:
        assert len(arg) <= MAX_ARG_CHARS
        assert arg.isascii(), arg
        assert arg.isprintable(), arg
        assert not set(arg) & SHELL_METACHARACTERS, arg
    for base in result.bases:
        assert base.registry in ALLOWED_HOSTS
        assert_canonical(base)
    assert set(result.sources) <= set(CHAT_SOURCES)
    assert result.tag is None or GRAMMAR_TAG.fullmatch(result.tag)


@fuzz(250)
@given(comment_bodies)
def test_comment_bodies_give_command_lines_that_validate_without_raising(body: str) -> None:
    with bounded(HARD_LIMIT):
        lines = parse_commands(body)
    assert len(lines) <= MAX_COMMAND_LINES
    for line in lines:
        assert line.raw.startswith("/imglife")
        assert not set(line.raw) & {"\n", "\r"}
        assert line.raw in body
        with bounded(HARD_LIMIT):
            result = validate(line, registries=CHAT_REGISTRIES, sync_sources=CHAT_SOURCES)
        check_chat_result(result, line.args, line.raw)


# --- 3. base images: Dockerfiles and CI files -----------------------------------------------

# fmt: off
PREFIXES = [
    REGISTRY_PREFIX, "registry.example.com", "Registry.Example.com/bases/", "localhost:5000/b", "docker.io",
]
# fmt: on
YAML_LINE_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
MARKER = "heredoc-marker"  # only ever inside heredoc bodies: must never be found

# fmt: off
_from_images = st.one_of(
    st.sampled_from(
        [
            f"{REGISTRY_PREFIX}/alpine:3.21", f"{REGISTRY_PREFIX}/alpine",
            f"{REGISTRY_PREFIX}/go/lang:1@sha256:{'a' * 64}", "REGISTRY.example.com/bases/alpine:3",
            "registry.example.com/Bases/x", f"{REGISTRY_PREFIX}/x:", "alpine:3.21", "quay.io/x/y:1",
            "scratch", "SCRATCH", "build", "Build", "${BASE}", "$BASE", "${BASE:-x}",
            f"${{BASE:-{REGISTRY_PREFIX}/alpine:3}}", f"{REGISTRY_PREFIX}/${{NAME}}:${{TAG}}",
            "${REGISTRY}/bases/x", f'"{REGISTRY_PREFIX}/quoted:1"', f"'{REGISTRY_PREFIX}/single:1'",
            f"{REGISTRY_PREFIX}/al\\pine:1", "${TARGETARCH}", "${BASE:+x}", "${BASE+x}", "${BASE-x}",
            "${BASE/x/y}", "${", "${A:-${B:-${C}}}", "$$", "$", "${1}",
        ]
    ),
    under_prefix,
    mutated(under_prefix),
)
_arg_values = st.one_of(
    st.sampled_from(
        [
            f"{REGISTRY_PREFIX}/alpine:3.21", REGISTRY_PREFIX, "registry.example.com", "alpine", "3.21", "",
            '"a b"', "'x'", "${BASE}", "${BASE:-x}", "${NAME}${NAME}", "$TARGETARCH", "a\\ b",
            "${X:-${Y:-z}}",
        ]
    ),
    st.text(string.printable.replace("\n", "").replace("\r", ""), max_size=20),
)
# fmt: on
_arg_names = st.sampled_from(("BASE", "NAME", "TAG", "REGISTRY", "X", "Y", "TARGETARCH", "base", "1A", "A-B"))


# fmt: off
HEREDOC_LINES = st.sampled_from(
    [
        f"FROM {REGISTRY_PREFIX}/{MARKER}:1", f"  FROM {REGISTRY_PREFIX}/{MARKER}:2",
        f"ARG BASE={REGISTRY_PREFIX}/{MARKER}:3", "echo hi", " EOF", "EOFX", "# escape=`", "",
    ]
)
# fmt: on


@st.composite
def instruction(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A Dockerfile instruction and the lines of its heredoc bodies (with terminators)."""
    kind = draw(st.integers(0, 7))
    if kind == 0:
        pairs = draw(st.lists(st.tuples(_arg_names, st.none() | _arg_values), min_size=1, max_size=3))
        return "ARG " + " ".join(name if value is None else f"{name}={value}" for name, value in pairs), []
    if kind in (1, 2):
        flags = draw(
            st.lists(
                st.sampled_from(("--platform=$BUILDPLATFORM", "--platform=linux/amd64", "--x")), max_size=2
            )
        )
        stage = draw(st.sampled_from(("", " AS build", " as Build", " AS", " AS a b")))
        return " ".join(["FROM", *flags, draw(_from_images)]) + stage, []
    if kind == 3:  # heredocs: their bodies hold lines that look like instructions
        bodies: list[str] = []
        words = []
        for terminator in draw(
            st.lists(st.sampled_from(("EOF", "END", "SCRIPT")), min_size=1, max_size=2, unique=True)
        ):
            dash = draw(st.sampled_from(("", "-")))
            quote = draw(st.sampled_from(("", '"', "'")))
            words.append(f"<<{dash}{quote}{terminator}{quote}")
            body = draw(st.lists(HEREDOC_LINES, max_size=4))
            bodies += [*body, ("\t" if dash else "") + terminator]
        keyword = draw(st.sampled_from(("RUN", "COPY", "ADD", "run")))
        return f"{keyword} {' '.join(words)} /dst", bodies
    if kind == 4:
        return draw(st.sampled_from(("# FROM commented:1", "#", "", "   ", "# syntax=x"))), []
    if kind == 5:
        return draw(
            st.sampled_from(("RUN echo 'it''s' \"quoted\"", 'ENV A=1 B="2 3"', "LABEL x=y", "WORKDIR /"))
        ), []
    if kind == 6:
        return draw(
            st.sampled_from(("FROM", "FROM --platform=x", "FROM a b c d", "FROM a AS", "from\talpine:3"))
        ), []
    return draw(st.text(string.printable.replace("\n", "").replace("\r", ""), max_size=30)), []


@st.composite
def dockerfile(draw: st.DrawFn) -> str:
    directive = draw(
        st.sampled_from(("", "# escape=`\n", "# escape=\\\n", "#escape = `\n", "# syntax=x\n# escape=`\n"))
    )
    escape = "`" if "escape=`" in directive.replace(" ", "") else "\\"
    lines: list[str] = []
    for text, bodies in draw(st.lists(instruction(), max_size=12)):
        # No instruction ends in an escape character, which would continue it into the next one
        # (a heredoc opener swallowed that way is no heredoc, and its body becomes instructions).
        text = text.replace("\n", " ").rstrip(" \t\\`\r")
        words = text.split(" ")
        if len(words) > 2 and draw(st.booleans()):  # continued over several physical lines
            cut = draw(st.integers(1, len(words) - 1))
            between = draw(st.sampled_from(("", "# comment", "   ")))
            marks = [escape, escape + "  "] + ([] if bodies else ["\\" if escape == "`" else "`"])
            mark = draw(st.sampled_from(marks))
            first, rest = " ".join(words[:cut]), " ".join(words[cut:])
            lines += [f"{first} {mark}", *([between] if between else []), f"  {rest}"]
        else:
            lines.append(text)
        lines += bodies
    newline = draw(st.sampled_from(("\n", "\r\n")))
    bom = draw(st.sampled_from(("", "\ufeff")))
    return bom + directive.replace("\n", newline) + newline.join(lines) + draw(st.sampled_from(("", newline)))


def check_found(found: list[FoundBase], text: str, filename: str, prefix: str) -> None:
    lines = len(YAML_LINE_BREAK.split(text))  # YAML also breaks lines at NEL, LS and PS
    for item in found:
        assert isinstance(item, FoundBase)
        assert isinstance(item.reference, str)
        assert item.source.startswith(filename)
        assert item.line is None or 1 <= item.line <= lines, (item, lines)
    bases, problems = bases_in_registry(found, prefix)
    host, _, path = prefix.strip().rstrip("/").partition("/")
    host = DOCKER_HUB if host.lower() in DOCKER_HUB_ALIASES else host.lower()
    seen: set[str] = set()
    for base in bases:
        assert base.problem is None
        ref = assert_canonical_text(base.reference)
        assert ref.registry == host, (ref, prefix)
        assert not path or ref.repository.startswith(f"{path}/"), (ref, prefix)
        assert base.reference not in seen
        seen.add(base.reference)
    assert all(problem.problem for problem in problems)
    assert len(bases) + len(problems) <= len(found)


@fuzz(250)
@given(dockerfile(), st.sampled_from(PREFIXES))
def test_dockerfiles_give_bases_under_the_prefix_only(text: str, prefix: str) -> None:
    with bounded(HARD_LIMIT):
        found = find_bases_in_dockerfile(text, filename="docker/app.Dockerfile")
    check_found(found, text, "docker/app.Dockerfile", prefix)
    # A heredoc body is the script's, not the Dockerfile's.
    assert not any(MARKER in item.reference for item in found if item.problem is None), found


@fuzz(100)
@given(st.lists(st.tuples(under_prefix, st.booleans()), min_size=1, max_size=6))
def test_dockerfile_bases_are_found_in_the_order_of_first_use(entries: list[tuple[str, bool]]) -> None:
    args: list[str] = []
    froms: list[str] = []
    expected: list[str] = []
    for index, (ref, through_arg) in enumerate(entries):
        if through_arg:
            args.append(f"ARG B{index}={ref}")
            froms.append(f"FROM ${{B{index}}} AS stage{index}")
        else:
            froms.append(f"FROM --platform=$BUILDPLATFORM {ref}")
        normal = str(parse_reference(ref))
        if normal not in expected:
            expected.append(normal)
    found = find_bases_in_dockerfile("\n".join([*args, *froms]) + "\n")
    bases, problems = bases_in_registry(found, REGISTRY_PREFIX)
    assert problems == []
    assert [base.reference for base in bases] == expected


# fmt: off
_ci_written = st.sampled_from(
    [
        f"{REGISTRY_PREFIX}/alpine:3.21", "$REGISTRY/bases/alpine:$TAG", "${REGISTRY}/bases/alpine:${TAG}",
        "$CI_REGISTRY/bases/x:1", "$$REGISTRY/x", "registry.example.com/$NAME", "${{ env.BASE }}", "alpine:3",
        "", "$", "${", "${REGISTRY", f"{REGISTRY_PREFIX}/x:${{TAG:-1}}",
    ]
)
_ci_values = weighted((2, under_prefix), (1, mutated(under_prefix)), (2, _ci_written | st.text(max_size=20)))
# fmt: on
_yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=10),
    st.sampled_from(("yes", "0x1F", "~")),
)
_ci_variable = weighted(
    (4, _ci_values),
    (
        2,
        st.fixed_dictionaries(
            {"value": _ci_values},
            optional={"description": st.text(max_size=10), "expand": st.booleans() | _yaml_scalars},
        ),
    ),
    (1, _yaml_scalars | st.lists(_ci_values, max_size=2)),
)
_ci_variables = st.dictionaries(
    st.sampled_from(("BASE_IMAGE", "REGISTRY", "TAG", "NAME", "OTHER")) | st.text(max_size=5),
    _ci_variable,
    max_size=4,
)
_base_variables = st.fixed_dictionaries({"BASE_IMAGE": _ci_variable}, optional={"REGISTRY": _ci_values})
_any_variables = weighted((4, _base_variables), (2, _ci_variables), (1, _yaml_scalars))
gitlab_ci = st.fixed_dictionaries(
    {},
    optional={
        "variables": _any_variables,
        "build": st.fixed_dictionaries({"script": st.just(["make"])}, optional={"variables": _any_variables}),
        "test": st.fixed_dictionaries({}, optional={"variables": _ci_variables}) | _yaml_scalars,
        "include": st.just([{"local": "x.yml"}]),
    },
)
_env_names = st.sampled_from(("BASE_IMAGE", "OTHER")) | st.text(max_size=5)
_env = weighted(
    (3, st.fixed_dictionaries({"BASE_IMAGE": _ci_values})),
    (1, st.dictionaries(_env_names, _ci_values | _yaml_scalars)),
)
_steps = st.lists(st.fixed_dictionaries({}, optional={"env": _env, "run": st.just("x")}), max_size=2)
_job = st.fixed_dictionaries({}, optional={"env": _env, "steps": weighted((4, _steps), (1, _yaml_scalars))})
workflow = st.fixed_dictionaries(
    {},
    optional={
        "env": weighted((4, _env), (1, _yaml_scalars)),
        "jobs": weighted(
            (4, st.dictionaries(st.sampled_from(("build", "test")), weighted((4, _job), (1, _yaml_scalars)))),
            (1, _yaml_scalars),
        ),
    },
)
YAML_NOISE = [
    "&a ", "*a", "<<: *a\n", "!!binary ", "!!python/object/apply:os.system ['id']", "!!timestamp 2001-13-01",
    "!!int 0x_", "? [a]\n", "{", "[", "---\n", "...\n", "%YAML 1.1\n---\n", "\t", "- ", ": ", "'", '"', "|\n",
    ">-\n", "#", "2001-13-01", "0x_", "1:2:3", "\n", "  ", "key: value\n", "\ufeff", "\x85", "\u2028", "\x08",
    "\x1b",
]  # fmt: skip


EDITS = st.sampled_from((0, 0, 0, 1, 2))  # how many edits a document gets: none half of the time


@st.composite
def yaml_text(draw: st.DrawFn, documents: st.SearchStrategy[Any], header: bool = False) -> str:
    """A generated document dumped as YAML, sometimes with noise (and behind a header document)."""
    text = yaml.safe_dump(
        draw(documents),
        default_flow_style=draw(st.sampled_from((None, False, True))),
        allow_unicode=draw(st.booleans()),
        sort_keys=False,
        width=draw(st.sampled_from((80, 10**6))),
    )
    if header and draw(st.booleans()):  # GitLab CI: `spec:` inputs, then the configuration
        text = draw(st.sampled_from(("spec:\n  inputs: {}\n---\n", "---\n", "--- # config\n"))) + text
    for _ in range(draw(EDITS)):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(YAML_NOISE)) + text[at:]
    return text


GITLAB_CI_FILES = (".gitlab-ci.yml", "ci/templates/build.yml")
WORKFLOW_FILES = (".gitea/workflows/ci.yml", ".forgejo/workflows/b.yaml", ".github/workflows/c.yml")
# Found by these properties: a base with a line break in it passes (see REFERENCE_BUGS), and
# PyYAML's constructors raise AttributeError/KeyError/IndexError for a tag on the wrong scalar.
YAML_TAG_BUGS = ("!!timestamp x", "!!bool maybe", "!!int ''", "!!float ''")


@fuzz(200, deadline_ms=3000)
@examples(
    (
        ('variables:\n  BASE_IMAGE: "registry.example.com/bases/alpine\\n:3"\n', ".gitlab-ci.yml"),
        REGISTRY_PREFIX,
    ),
    (
        ('env:\n  BASE_IMAGE: "registry.example.com/bases/alpine\\n:3"\n', ".gitea/workflows/ci.yml"),
        REGISTRY_PREFIX,
    ),
    *(((f"variables:\n  BASE_IMAGE: {tag}\n", ".gitlab-ci.yml"), REGISTRY_PREFIX) for tag in YAML_TAG_BUGS),
    unpack=True,
)
@given(
    st.one_of(
        st.tuples(yaml_text(gitlab_ci, header=True), st.sampled_from(GITLAB_CI_FILES)),
        st.tuples(yaml_text(workflow), st.sampled_from(WORKFLOW_FILES)),
    ),
    st.sampled_from(PREFIXES),
)
def test_ci_files_give_bases_under_the_prefix_only(case: tuple[str, str], prefix: str) -> None:
    text, filename = case
    with bounded(HARD_LIMIT):
        found = find_bases_in_ci(text, filename)
    check_found(found, text, filename, prefix)


@fuzz(100)
@given(under_prefix, st.sampled_from(("top", "job", "value")))
def test_a_plain_gitlab_base_image_is_found(ref: str, where: str) -> None:
    document: dict[str, Any] = {"variables": {"BASE_IMAGE": ref}}
    if where == "job":
        document = {"build": {"script": ["make"], **document}}
    elif where == "value":
        document = {"variables": {"BASE_IMAGE": {"value": ref, "description": "the base"}}}
    bases, problems = bases_in_registry(
        find_bases_in_ci(yaml.safe_dump(document), ".gitlab-ci.yml"), REGISTRY_PREFIX
    )
    assert problems == []
    assert [base.reference for base in bases] == [str(parse_reference(ref))]


# --- 4. .imglife.yml ------------------------------------------------------------------------

# fmt: off
_paths = st.one_of(
    st.sampled_from(
        [
            "Dockerfile", "./Dockerfile", "docker/./worker.Dockerfile", "a/b/c", "../x", "a/../b",
            "/etc/passwd", "a//b", "a/", ".", "./", "a\\b", "C:\\x", "a\nb", "a\x00b", "", "  ", "~/x",
            "x" * 1025, "a/\u2028/b",
        ]
    ),
    mutated(st.just("docker/app.Dockerfile")),
    st.text(max_size=15),
)
# fmt: on
_image_names = st.one_of(
    st.tuples(path_component(), path_component()).map(lambda p: f"registry.example.com/{p[0]}/{p[1]}"),
    mutated(st.just("registry.example.com/apps/myservice")),
    reference_texts,
)
_repositories_under_prefix = under_prefix.map(lambda ref: ref.rpartition(":")[0])
_valid_paths = st.lists(path_component(), min_size=1, max_size=3).map("/".join)
_repo_documents = st.fixed_dictionaries(
    {},
    optional={
        "images": weighted(
            (4, st.lists(weighted((4, _repositories_under_prefix), (1, _image_names)))),
            (1, st.lists(_image_names | _yaml_scalars, max_size=MAX_IMAGES + 1)),
            (1, _yaml_scalars),
        ),
        "dockerfiles": weighted(
            (4, st.lists(weighted((4, _valid_paths), (1, _paths)), max_size=4)),
            (1, st.lists(_paths | _yaml_scalars, max_size=MAX_DOCKERFILES + 1)),
            (1, _yaml_scalars),
        ),
        "check": weighted(
            (4, st.fixed_dictionaries({}, optional={"strict": st.booleans()})),
            (1, st.fixed_dictionaries({}, optional={"strict": _yaml_scalars, "strikt": st.booleans()})),
            (1, _yaml_scalars),
        ),
    },
)
repo_configs = weighted(
    (8, _repo_documents),
    (1, st.fixed_dictionaries({"imagess": st.just([])})),
    (1, _yaml_scalars | st.lists(_yaml_scalars, max_size=2)),
)
REPO_SOURCE = "group/app:.imglife.yml"


def check_problems(error: ConfigError, source: str) -> None:
    assert error.problems
    for problem in error.problems:
        assert problem.startswith(source), problem
        assert "\n" not in problem, problem  # one problem, one line


@fuzz(250, deadline_ms=3000)
@examples(
    'images: ["registry.example.com/apps\\n/myservice"]\n',
    *(f"images: [{tag}]\n" for tag in YAML_TAG_BUGS),
    "check: {? !!bool maybe : true}\n",
    "images: []\x08\n",  # found by atheris: PyYAML's ReaderError reads as two lines
)
@given(yaml_text(repo_configs))
def test_repo_config_is_a_repo_config_or_repo_config_error(text: str) -> None:
    try:
        with bounded(HARD_LIMIT):
            config = parse_repo_config(text, source=REPO_SOURCE)
    except RepoConfigError as exc:
        check_problems(exc, REPO_SOURCE)
        return
    assert isinstance(config, RepoConfig)
    assert len(config.images) <= MAX_IMAGES
    assert len(set(config.images)) == len(config.images)
    for name in config.images:
        ref = parse_repository(name)
        assert ref.name == name
        assert_canonical(ref)
    assert 1 <= len(config.dockerfiles) <= MAX_DOCKERFILES or config.dockerfiles == ()
    for path in config.dockerfiles:
        parts = path.split("/")
        assert not any(unicodedata.category(char) == "Cc" for char in path), path
        assert "\\" not in path, path
        assert not path.startswith("/"), path
        assert all(part not in ("", ".", "..") for part in parts), path
    assert isinstance(config.check.strict, bool)


# --- 5. imglife.yaml: values from the real schema, cron and durations -----------------------

_numbers = st.sampled_from(("0", "1", "30", "1.5", "0.000001", "9" * 40, "\u0663", "1e3", "-1"))
durations = st.one_of(
    st.builds(
        "".join,
        st.lists(
            st.tuples(_numbers, st.sampled_from(("ns", "us", "µs", "ms", "s", "m", "h", "d", ""))).map(
                "".join
            ),
            min_size=1,
            max_size=3,
        ),
    ),
    st.sampled_from((" 30s", "30s\n", "1h30m", "250ms", "30", "", "s", "-1s", "1e400s", "nan", "inf")),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.integers(min_value=2**1023, max_value=2**1100),  # past the largest float
)
_cron_items = st.one_of(
    st.sampled_from(
        ("*", "*/5", "0", "59", "60", "7", "sun", "MON", "jan-dec", "1-5", "5-1", "L", "?", "#", "1#2", "W")
    ),
    st.tuples(
        st.integers(0, 70).map(str) | st.just("9" * 30),
        st.none() | st.integers(0, 12).map(str),
        st.none() | st.sampled_from(("0", "1", "7", "9" * 30)),
    ).map(lambda t: t[0] + (f"-{t[1]}" if t[1] else "") + (f"/{t[2]}" if t[2] else "")),
)
# fmt: off
crons = st.one_of(
    st.lists(st.lists(_cron_items, min_size=1, max_size=3).map(",".join), min_size=4, max_size=6).map(
        " ".join
    ),
    st.sampled_from(
        (
            "0 2 * * *", "0 0 30 2 *", "0 0 31 4 *", "@daily", "* * * * * *", "", "0 0 * * 7-0",
            "0 0 1-31/31 * *",
        )
    ),
    mutated(st.just("30 5 * * mon")),
)
urls = st.one_of(
    st.sampled_from(
        (
            "https://gitlab.example.com", "http://registry.local:5000/",
            "https://user:pass@gitlab.example.com", "https://[::1]:8080", "http://[::1", "https://x:99999",
            "https://x:0", "http://:80", "ftp://x", "https://", "redis://redis:6379/0", "rediss://u@r",
            "unix:///tmp/redis.sock", "unix://", "https://x/${TOKEN}", "https://" + "a" * 300, "//x", "x",
        )
    ),
    mutated(st.just("https://gitlab.example.com/api")),
)
regexes = st.sampled_from(
    (
        "^3\\.\\d+$", "(", "[", "a{4294967296}", "(?P<a>)(?P<a>)", "(" * 1000 + ")" * 1000, "(?<!a+)", "\\",
        ".*",
    )
)
tag_formats = st.one_of(
    st.sampled_from(
        (
            "{version}-core{core_version}", "{{.Version}}-core{{.CoreVersion}}", "{mirror_tag}", "{name}",
            "{", "}", "{{.Foo}}", "{{ .Version }}", "{nope}", "{{", "{version}{", "", "{0}", "{version!r}",
            "{version:>99999}",
        )
    ),
    mutated(st.just("{version}-core{core_version}")),
)
# fmt: on
plain_strings = st.one_of(
    st.sampled_from(("", " ", "x", "alpine", "main", "0.0.0.0", "x" * 300, "a\nb", "@all")),  # noqa: S104
    st.text(max_size=12),
)
# fmt: off
path_strings = st.sampled_from(
    (
        "records", "./x", "/var/lib/x", "", " ", "~", "~/x", "~root/x", "~imglife-no-such-user/x", "a\x00b",
        "..", "x" * 300,
    )
)
registry_paths = st.one_of(
    st.sampled_from(
        (
            "registry.example.com/bases", "registry.example.com", "registry.example.com/",
            "localhost:5000/x", "https://registry.example.com", "bases", "Registry.Example.com/Bases",
            "[::1]:5000/b",
        )
    ),
    mutated(st.just("registry.example.com/bases")),
)
# fmt: on
repositories = st.one_of(
    st.sampled_from(
        ("docker.io/library/alpine", "registry.example.com/mirrors/alpine", "alpine", "alpine:3")
    ),
    mutated(st.just("registry.example.com/mirrors/alpine")),
    reference_texts,
)
platforms = st.one_of(
    st.sampled_from(
        ("linux/amd64", "linux/arm/v7", "linux/arm64", "Linux/amd64", "linux", "linux/amd64/v8/x")
    ),
    mutated(st.just("linux/amd64")),
)
project_paths = st.one_of(
    st.sampled_from(("platform/base-images", "group/sub/project", "x", "/x", "a//b")),
    mutated(st.just("platform/base-images")),
)
hosts_and_ports = st.one_of(
    hosts, mutated(st.just("registry.local:5000")), st.sampled_from(("", "https://x", "a b"))
)
DOMAIN_STRINGS: dict[str, st.SearchStrategy[Any]] = {
    "parse_duration": durations,
    "_cron": crons,
    "_url_checker": urls,
    "_regex": regexes,
    "_normalize_tag_format": tag_formats,
    "_registry_path": registry_paths,
    "_repository": repositories,
    "_tag": st.one_of(tags, mutated(tags)),
    "_exact_tag": st.one_of(tags, mutated(tags), st.just("v*")),
    "_platform": platforms,
    "_project_path": project_paths,
    "_project_id": st.one_of(project_paths, st.integers(), st.booleans()),
    "_host_port": hosts_and_ports,
}
ANY_VALUE = st.recursive(
    _yaml_scalars | st.dates() | st.sampled_from(("2001-13-01", "0x_")),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
UNKNOWN_KEYS = st.sampled_from(("regsitry", "Registry", "password", "api_key", "tokens", "x", "", "1"))


def _validator_names(metadata: tuple[Any, ...]) -> list[str]:
    """The names of the functions validating a field (``_url_checker`` for its inner ``check``)."""
    names = []
    for item in metadata:
        func = getattr(item, "func", None)
        if func is not None:
            names.append(func.__qualname__.split(".")[0])
        names += _validator_names(tuple(getattr(item, "metadata", ()) or ()))
    return names


def value_strategy(annotation: Any, metadata: tuple[Any, ...] = ()) -> st.SearchStrategy[Any]:
    """Values for a schema field: the domain's own (hostile ones included), its type's, or anything."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        return value_strategy(base, (*metadata, *extra))
    if origin in (Union, UnionType):
        members = [arg for arg in get_args(annotation) if arg is not NoneType]
        return st.one_of(st.none(), *(value_strategy(member, metadata) for member in members))
    if origin is Literal:
        return st.one_of(
            st.sampled_from(get_args(annotation)), st.sampled_from(("", "Gitlab", "x")), ANY_VALUE
        )
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return st.one_of(model_documents(annotation), model_documents(annotation), st.none(), ANY_VALUE)
    if origin is tuple:
        return st.one_of(st.lists(value_strategy(get_args(annotation)[0]), max_size=3), ANY_VALUE)
    if origin is dict:
        key, value = get_args(annotation)
        keys = st.text(max_size=8)  # mapping keys: hashable
        if get_origin(key) is Literal:
            keys = st.one_of(st.sampled_from(get_args(key)), keys)
        return st.one_of(st.dictionaries(keys, value_strategy(value), max_size=3), ANY_VALUE)
    domains = [DOMAIN_STRINGS[name] for name in _validator_names(metadata) if name in DOMAIN_STRINGS]
    if domains:
        return st.one_of(*domains, *domains, ANY_VALUE)
    if annotation is str:
        return st.one_of(plain_strings, ANY_VALUE)
    if annotation is Path:
        return st.one_of(path_strings, ANY_VALUE)
    if annotation is bool:
        return st.one_of(st.booleans(), ANY_VALUE)
    if annotation in (int, float):
        return st.one_of(st.integers(-2, 70000), st.integers(), st.floats(), ANY_VALUE)
    return ANY_VALUE


@functools.cache
def model_documents(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Mappings for ``model``: its keys (required ones almost always) with generated values."""

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for name, info in model.model_fields.items():
            present = draw(st.integers(0, 19)) > 0 if info.is_required() else draw(st.booleans())
            if present:
                document[name] = draw(value_strategy(info.annotation, tuple(info.metadata)))
        if draw(st.integers(0, 9)) == 0:
            document[draw(UNKNOWN_KEYS)] = draw(ANY_VALUE)
        return document

    return st.deferred(build)


@functools.cache
def _example_text(name: str) -> str:
    return json.dumps(yaml.safe_load((EXAMPLES / name).read_text()))


def _example(name: str) -> dict[str, Any]:
    return json.loads(_example_text(name))  # type: ignore[no-any-return]


# fmt: off
EXAMPLE_CONFIGS = (
    "imglife.full.yaml", "imglife.gitlab.yaml", "imglife.gitea.yaml", "imglife.s3.yaml",
    "imglife.local.yaml",
)
# fmt: on


def _mutate(draw: st.DrawFn, document: Any, rounds: int, values: st.SearchStrategy[Any]) -> None:
    """Remove keys of ``document``, or give them a value from ``values``, ``rounds`` times (in place)."""
    paths = list(_key_paths(document))
    for _ in range(rounds):
        path = paths[draw(st.integers(0, len(paths) - 1))]
        parent = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.booleans()):
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(values)
        except (KeyError, IndexError, TypeError):
            pass  # an earlier round removed this path's parent: nothing to mutate


@st.composite
def mutated_example(draw: st.DrawFn) -> dict[str, Any]:
    """A shipped example with up to two keys removed or given a value meant for another key."""
    document = _example(draw(st.sampled_from(EXAMPLE_CONFIGS)))
    values = st.one_of(*DOMAIN_STRINGS.values(), ANY_VALUE, plain_strings)
    _mutate(draw, document, draw(st.integers(0, 2)), values)
    return document


def _key_paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield (*prefix, key)
        yield from _key_paths(child, (*prefix, key))


CONFIG_SOURCE = "team/config:imglife.yaml"
PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?")
PROJECT_PATH = re.compile(r"[\w.-]+(?:/[\w.-]+)+")


def check_config(text: str) -> None:
    try:
        with bounded(HARD_LIMIT):
            config = parse_config(text, CONFIG_SOURCE, Path("/srv/imglife"))
    except ConfigError as exc:
        check_problems(exc, CONFIG_SOURCE)
        return
    assert isinstance(config, Config)
    bot = config.bot
    for seconds in (bot.register_wait, bot.retry_delay, bot.visibility_timeout, bot.drain_timeout):
        assert 0 <= seconds < float("inf")
    for expression in bot.schedule.values():
        croniter.croniter(expression, dt.datetime(2030, 1, 1, tzinfo=dt.UTC)).get_next(dt.datetime)
    for host in config.registry.insecure_registries:
        assert GRAMMAR_HOST.fullmatch(host.lower()), host
    assert bot.config_repo is None or PROJECT_PATH.fullmatch(bot.config_repo), bot.config_repo
    lists = [config.sync.platforms, *(entry.platforms for entry in config.sync.entries)]
    if config.build is not None:
        lists += [config.build.platforms, *(image.platforms for image in config.build.images)]
    for platform in (platform for names in lists if names for platform in names):
        assert PLATFORM.fullmatch(platform), platform
    for entry in config.sync.entries:
        assert_canonical(entry.source_ref)
        assert_canonical(entry.target_ref)
    if config.build is not None:
        for image in config.build.images:
            assert_canonical(parse_reference(config.build.latest_reference(image)))


LOCAL = "registry: {provider: local}\n"
ENTRY = "sync:\n  entries:\n  - {source: alpine, target: registry.example.com/m/alpine, %s}\n"
# Found by these properties; each one escapes parse_config as something other than ConfigError,
# or passes with a value its grammar refuses.
CONFIG_BUGS = (
    LOCAL + "bot: {drain_timeout: 1" + "0" * 400 + "}\n",  # OverflowError (parse_duration: float(int))
    LOCAL + "lifecycle: {eol_data_file: '~imglife-no-such-user/eol.yaml'}\n",  # RuntimeError (expanduser)
    LOCAL + ENTRY % "tag_regex: 'a{4294967296}'",  # OverflowError (re.compile)
    LOCAL + ENTRY % f"tag_regex: '{'(' * 1000}{')' * 1000}'",  # RecursionError (re.compile)
    *(LOCAL + f"bot: {{port: {tag}}}\n" for tag in YAML_TAG_BUGS),  # PyYAML constructors
    LOCAL + 'bot: {config_repo: "platform/base-images\\n"}\n',  # `$` before a final line break
    LOCAL + 'sync: {platforms: ["linux/amd64\\n"]}\n',
    'registry: {provider: local, insecure_registries: ["registry.local\\n"]}\n',
    LOCAL + ENTRY.replace("source: alpine", 'source: "library\\n/alpine"') % "tag: '3'",
    LOCAL + "bot: {host: x}\x08\n",  # found by atheris: PyYAML's ReaderError reads as two lines
    LOCAL + "build: {core_version: '1', registry: r.example.com/b, tag_format: \"{\\nv}\"}\n",  # raw token
)


@fuzz(150, deadline_ms=3000)
@examples(*CONFIG_BUGS)
@given(yaml_text(model_documents(Config)))
def test_config_built_from_the_schema_is_a_config_or_config_error(text: str) -> None:
    check_config(text)


@fuzz(100, deadline_ms=3000)
@examples(*CONFIG_BUGS)
@given(yaml_text(mutated_example()))
def test_mutated_example_configs_are_a_config_or_config_error(text: str) -> None:
    check_config(text)


@fuzz(300)
@example(10**400)  # found: OverflowError from float(value)
@given(durations)
def test_durations_are_finite_seconds_or_a_validation_message(value: Any) -> None:
    try:
        seconds = parse_duration(value)
    except PydanticCustomError as exc:
        message = str(exc)
    else:
        assert 0 <= seconds < float("inf")
        return
    assert "\n" not in message


@fuzz(200)
@given(crons)
def test_schedules_are_runnable_or_a_validation_error(expression: str) -> None:
    try:
        with bounded(HARD_LIMIT):
            bot = BotConfig.model_validate({"schedule": {"sync": expression}})
    except ValidationError:
        return
    croniter.croniter(bot.schedule["sync"], dt.datetime(2030, 1, 1, tzinfo=dt.UTC)).get_next(dt.datetime)


# --- 6. build records read back from a store ------------------------------------------------

timestamps = weighted(
    (
        3,
        st.datetimes(
            min_value=dt.datetime(1, 1, 1),
            max_value=dt.datetime(9999, 12, 31, 23, 59, 59),
            timezones=st.none()
            | st.integers(-1439, 1439).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
        ).map(lambda when: when.isoformat()),
    ),
    (
        1,
        st.tuples(
            st.integers(1, 9999),
            st.integers(0, 13),
            st.integers(0, 32),
            st.integers(0, 24),
            st.sampled_from(
                ("", "Z", "z", "+00:00", "+23:59", "-23:59", "+14:00", "-12:00", "+24:00", "+0530")
            ),
            st.sampled_from(("T", " ", "t")),
            st.sampled_from(("", ".5", ".123456", ".1234567")),
        ).map(lambda t: f"{t[0]:04d}-{t[1]:02d}-{t[2]:02d}{t[5]}{t[3]:02d}:00:00{t[6]}{t[4]}"),
    ),
    (
        1,
        st.sampled_from(
            ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-04-01", "2026-W14-1", "", "now")
        ),
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
record_documents = st.fixed_dictionaries(
    {
        "image": weighted(
            (3, under_prefix), (1, grammatical_reference().map(lambda pair: pair[0])), (1, reference_texts)
        ),
        "base": weighted((3, under_prefix), (1, st.text(max_size=10))),
        "revision": st.text(min_size=1, max_size=10),
        "project": st.text(min_size=1, max_size=10),
        "built_at": timestamps,
    },
    optional={
        "platforms": st.lists(platforms, max_size=2) | json_values,
        "custom_fields": st.dictionaries(st.text(max_size=5), json_values, max_size=3) | json_values,
        "unknown": json_values,
    },
)


@st.composite
def stored_records(draw: st.DrawFn) -> bytes:
    document: Any = draw(record_documents)
    for _ in range(draw(EDITS)):
        keys = sorted(document)
        key = keys[draw(st.integers(0, len(keys) - 1))]
        if draw(st.booleans()):
            del document[key]
        else:
            document[key] = draw(json_values)
    if draw(st.integers(0, 9)) == 0:
        document = draw(json_values)
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    encoding = draw(st.sampled_from(("utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-32")))
    return text.encode(encoding)


def check_record(data: bytes) -> None:
    try:
        with bounded(HARD_LIMIT):
            record = decode_record(data, where="records/x.json")
    except RecordFormatError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    if refusal:
        assert refusal.startswith("records/x.json: ")
        return
    assert isinstance(record, BuildRecord)
    ref = assert_canonical_text(record.image)
    assert record_key(record.image) == ref
    assert record.built_at.tzinfo is not None
    assert record.built_at.utcoffset() == dt.timedelta(0)
    assert all(isinstance(value, str) for value in record.custom_fields.values())
    again = decode_record(record.encode(), where="again")
    assert again == BuildRecord(**{**_fields(record), "built_at": record.built_at.replace(microsecond=0)})


def _fields(record: BuildRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in BuildRecord.__slots__}


def _record(built_at: str, image: str = "a:1") -> bytes:
    return json.dumps(
        {"image": image, "base": "b", "revision": "r", "project": "p", "built_at": built_at}
    ).encode()


@fuzz(250)
@examples(
    _record("0001-01-01T00:00:00+01:00"),  # OverflowError from astimezone
    _record("0999-01-01T00:00:00Z"),  # encoded as "999-01-01T...", which decode refuses
    _record("2026-04-01T10:00:00Z", image="alpine\n:1"),  # see REFERENCE_BUGS
    b"[" * 100_000,  # RecursionError from json.loads
)
@given(stored_records())
def test_stored_records_decode_to_a_record_or_record_format_error(data: bytes) -> None:
    check_record(data)


@fuzz(200)
@given(st.binary(max_size=300))
def test_stored_bytes_decode_to_a_record_or_record_format_error(data: bytes) -> None:
    check_record(data)


# --- 7. jobs read back from Redis -----------------------------------------------------------

_ints64 = st.integers(-(2**63), 2**63 - 1)
forge_events = st.builds(
    ForgeEvent,
    forge=st.sampled_from(Forge),
    kind=st.sampled_from(EventKind),
    delivery_id=st.text(max_size=10),
    idempotency_key=st.none() | st.text(max_size=10),
    repo=st.builds(
        Repo,
        forge=st.sampled_from(Forge),
        id=st.text(max_size=10),
        path=st.text(max_size=10),
        default_branch=st.none() | st.text(max_size=10),
        web_url=st.none() | st.text(max_size=10),
    ),
    actor=st.builds(Actor, id=st.none() | _ints64, username=st.text(max_size=10)),
    ref=st.none() | st.text(max_size=10),
    sha=st.none() | st.text("0123456789abcdef", min_size=40, max_size=40),
    number=st.none() | _ints64,
    is_change_request=st.booleans(),
    change_action=st.none() | st.sampled_from(ChangeAction),
    comment_id=st.none() | _ints64,
    comment_body=st.none() | st.text(max_size=30),
    comment_action=st.none() | st.sampled_from(CommentAction),
    system=st.booleans(),
    pipeline_status=st.none() | st.text(max_size=10),
)
orjson_values = st.recursive(
    st.none()
    | st.booleans()
    | _ints64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=10,
)
jobs = st.builds(
    JobSpec,
    key=st.text(max_size=20),
    handler=st.sampled_from(("check", "register", "chatops", "sync", "reload")) | st.text(max_size=8),
    event=st.none() | forge_events,
    state=st.dictionaries(st.text(max_size=8), orjson_values, max_size=3),
    attempt=st.integers(0, 2**63 - 1),
    id=st.uuids().map(lambda u: u.hex) | st.text(max_size=8),
)


@fuzz(200)
@given(jobs)
def test_jobs_survive_encode_and_decode(job: JobSpec) -> None:
    assert JobSpec.decode(job.encode()) == job
    assert JobSpec.decode(job.encode().decode()) == job


@st.composite
def stored_jobs(draw: st.DrawFn) -> bytes:
    document = orjson.loads(draw(jobs).encode())
    _mutate(draw, document, draw(st.integers(1, 3)), orjson_values)
    return orjson.dumps(document)


@fuzz(250)
@given(st.one_of(stored_jobs(), st.binary(max_size=100), orjson_values.map(orjson.dumps)))
def test_stored_jobs_decode_to_a_job_or_value_error(raw: bytes) -> None:
    try:
        with bounded(HARD_LIMIT):
            job = JobSpec.decode(raw)
    except ValueError as exc:
        refusal = str(exc)
    else:
        refusal = ""
    if refusal:
        assert refusal.startswith("not a job: ")
        return
    assert isinstance(job, JobSpec)
    assert isinstance(job.attempt, int)


# --- 8. inputs built to be slow -------------------------------------------------------------

N = 60_000  # a long line: a quadratic scan of it takes tens of seconds, a linear one milliseconds


def _slow_body_event(forge: str, body: str) -> ForgeEvent | None:
    name = "note__merge_request" if forge == "gitlab" else "issue_comment__created_on_pull"
    payload = load(forge, name)
    if forge == "gitlab":
        payload["object_attributes"]["note"] = body
    else:
        payload["comment"]["body"] = body
    headers, raw = delivery(forge, name, payload=payload)
    return PARSERS[forge](headers, raw, secret=SECRET)


SLOW_COMMENTS = {
    "spaces-inside-a-command": "/imglife check a" + " " * N + "b",
    "tabs-inside-a-command": "/imglife check a" + " \t" * (N // 2) + "b",
    "spaces-after-the-prefix": "/imglife" + " " * N + "b",
    "backtick-runs": ("`" * 7 + "x") * (N // 8),
    "backslash-backticks": "/imglife check " + "\\`" * (N // 2),
    "comment-openers": "/imglife help\n" + "<!--" * (N // 4),
    "nested-quotes": "> " * (N // 2) + "/imglife help",
    "fences": "```\n" * (N // 4),
    "shell-quotes": "/imglife check " + "'\"" * (N // 2),
    "many-command-lines": "/imglife help\n" * (MAX_BODY_CHARS // 14 + 10),
    "one-huge-line": "/imglife check " + "x" * (MAX_BODY_CHARS * 2),
}


@pytest.mark.parametrize("body", SLOW_COMMENTS.values(), ids=SLOW_COMMENTS.keys())
def test_comment_bodies_built_to_be_slow_are_answered_quickly(body: str) -> None:
    def run() -> None:
        for line in parse_commands(body):
            validate(line, registries=CHAT_REGISTRIES, sync_sources=CHAT_SOURCES)

    timed(run)


@pytest.mark.parametrize("forge", sorted(PARSERS))
def test_a_slow_comment_does_not_hold_up_the_webhook_request(forge: str) -> None:
    """The router looks for a command while the forge waits for its answer (``chat_request``)."""
    from bot.server.router import chat_request

    event = _slow_body_event(forge, SLOW_COMMENTS["spaces-inside-a-command"])
    assert event is not None
    timed(lambda: chat_request(event))


SLOW_DOCKERFILES = {
    "directive-with-spaces": "# escape=a" + " " * N + "b\nFROM alpine\n",
    "directive-with-tabs": "#" + "\t" * N + "x\nFROM alpine\n",
    "continuations": "FROM alpine" + " \\" * N + "\n",
    "continued-to-the-end": "FROM \\\n" + "\\\n" * N,
    "substitutions": "ARG A=" + "${A:-" * N + "\nFROM $A\n",
    "unterminated-substitutions": "FROM " + "${" * N + "\n",
    "dollars": "FROM " + "$" * N + "\n",
    "doubling-args": "ARG A=x\n" + "".join("ARG A=${A}${A}\n" for _ in range(200)) + "FROM $A\n",
    "quotes": "ARG A=" + "'\"" * N + "\nFROM $A\n",
    "heredocs": "RUN " + "<<EOF " * (N // 6) + "\nFROM alpine\n",
    "largest": ("ARG B=" + REGISTRY_PREFIX + "/x:1\nFROM $B\n") * (MAX_DOCKERFILE_CHARS // 40),
}


@pytest.mark.parametrize("text", SLOW_DOCKERFILES.values(), ids=SLOW_DOCKERFILES.keys())
def test_dockerfiles_built_to_be_slow_are_scanned_quickly(text: str) -> None:
    found = timed(lambda: find_bases_in_dockerfile(text))
    timed(lambda: bases_in_registry(found, REGISTRY_PREFIX))


SLOW_YAML = {
    "nested-flow": "variables: " + "[" * 600 + "]" * 600 + "\n",  # past the recursion limit
    "nested-block": "".join("  " * depth + "a:\n" for depth in range(2000)),
    "alias-bomb": "a: &a [x,x,x,x,x,x,x,x,x]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(8)),
    "separators": "---\n" * (MAX_CI_CHARS // 8),
    "long-variable": "variables:\n  BASE_IMAGE: " + "$A" * (N // 2) + "\n  A: x\n",
}


@pytest.mark.parametrize("text", SLOW_YAML.values(), ids=SLOW_YAML.keys())
def test_yaml_built_to_be_slow_is_read_quickly(text: str) -> None:
    with pytest.raises(ConfigError):
        timed(lambda: parse_config(text, CONFIG_SOURCE, Path("/srv")), limit=2 * PATHOLOGICAL_LIMIT)
    timed(lambda: find_bases_in_ci(text, ".gitlab-ci.yml"), limit=2 * PATHOLOGICAL_LIMIT)
    if len(text) <= MAX_CONFIG_CHARS:
        with pytest.raises(RepoConfigError):
            timed(lambda: parse_repo_config(text, source=REPO_SOURCE))


def test_a_long_value_in_imglife_yaml_is_read_quickly() -> None:
    """Every string value is searched for ``user:password@`` (``loader._URL_WITH_PASSWORD_RE``)."""
    text = f"registry:\n  provider: local\nbot:\n  host: {'a' * N}\n"
    assert timed(lambda: parse_config(text, CONFIG_SOURCE, Path("/srv"))).bot.host == "a" * N


SLOW_REFERENCES = {
    "long-component": "a" * N,
    "separators": "a-" * (N // 2) + "!",
    "dotted-host": "a." * (N // 2) + "/x",
    "hyphenated-host": "a" + "-" * N + ".x/y",
    "underscores": "a" + "_" * N + "a",
    "tag": "a:" + "a" * N,
    "digest": "a@sha256:" + "a" * N,
    "slashes": "a/" * (N // 2),
}


@pytest.mark.parametrize("text", SLOW_REFERENCES.values(), ids=SLOW_REFERENCES.keys())
def test_references_built_to_be_slow_are_parsed_quickly(text: str) -> None:
    def run() -> None:
        with pytest.raises(InvalidReference):
            parse_reference(text)

    timed(run)


SLOW_RECORDS = {
    "nested-arrays": b"[" * 100_000,
    "nested-objects": b'{"a":' * 100_000,
    "largest": json.dumps({"image": "a:1", "pad": "x" * (MAX_RECORD_BYTES - 100)}).encode(),
    "too-large": b" " * (MAX_RECORD_BYTES + 1),
}


@pytest.mark.parametrize("data", SLOW_RECORDS.values(), ids=SLOW_RECORDS.keys())
def test_records_built_to_be_slow_are_refused_quickly(data: bytes) -> None:
    def run() -> None:
        with pytest.raises(RecordFormatError):
            decode_record(data, where="records/x.json")

    timed(run)


SLOW_WEBHOOK_BODIES = {
    "nested-arrays": b"[" * 100_000,
    "nested-objects": b'{"a":' * 100_000,
    "long-string": b'{"object_kind": "' + b"x" * 5_000_000 + b'"}',
}


@pytest.mark.parametrize("forge", sorted(PARSERS))
@pytest.mark.parametrize("body", SLOW_WEBHOOK_BODIES.values(), ids=SLOW_WEBHOOK_BODIES.keys())
def test_webhook_bodies_built_to_be_slow_are_answered_quickly(forge: str, body: bytes) -> None:
    headers, _ = delivery(forge, "push__branch")
    if forge == "gitea":
        headers["X-Gitea-Signature"] = sign(SECRET, body)
        headers["X-Hub-Signature-256"] = f"sha256={sign(SECRET, body)}"

    def run() -> None:
        with pytest.raises(WebhookRejected):
            PARSERS[forge](headers, body, secret=SECRET)

    timed(run)


# --- atheris: coverage-guided runs outside pytest ---------------------------------------------


def _fuzz_text(target: str, text: str) -> None:
    """One byte-level input for ``target``, checked as the properties above check theirs."""
    if target == "reference":
        try:
            ref = parse_reference(text)
        except InvalidReference:
            return
        assert_canonical(ref)
    elif target == "chat":
        for line in parse_commands(text):
            result = validate(line, registries=CHAT_REGISTRIES, sync_sources=CHAT_SOURCES)
            check_chat_result(result, line.args, line.raw)
    elif target == "dockerfile":
        check_found(find_bases_in_dockerfile(text), text, "Dockerfile", REGISTRY_PREFIX)
    elif target == "ci":
        check_found(find_bases_in_ci(text, ".gitlab-ci.yml"), text, ".gitlab-ci.yml", REGISTRY_PREFIX)
    elif target == "config":
        check_config(text)
    elif target == "repo-config":
        try:
            parse_repo_config(text, source=REPO_SOURCE)
        except RepoConfigError as exc:
            check_problems(exc, REPO_SOURCE)
    elif target == "record":
        check_record(text.encode())
    elif target == "job":
        with suppress(ValueError):
            JobSpec.decode(text)
    else:
        raise SystemExit(f"unknown target {target!r}")


def main() -> None:  # pragma: no cover - a long-running tool, not a test
    """``pip install atheris; python -m tests.test_fuzz TARGET [libFuzzer flags]``.

    TARGET is a byte-level reader (reference, chat, dockerfile, ci, config, repo-config, record,
    job) or the name of a property above, whose generator atheris then steers by coverage, e.g.
    ``python -m tests.test_fuzz test_dockerfiles_give_bases_under_the_prefix_only
    -max_total_time=600``.
    """
    import gc
    import sys
    import types

    import atheris  # not a dependency of the project

    import bot

    # Coverage of the readers only (instrument_all would take minutes over every loaded module).
    root = str(Path(bot.__file__).parent)
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and obj.__code__.co_filename.startswith(root):
            atheris.instrument_func(obj)
    target = sys.argv.pop(1)
    test = globals().get(target)
    if test is not None:
        one_input = test.hypothesis.fuzz_one_input
    else:

        def one_input(data: bytes) -> None:
            _fuzz_text(target, atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data)))

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
