"""Chat-ops: which comment lines are commands, and what a command may say (pure)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chatops import (
    HELP_TEXT,
    MAX_ARG_CHARS,
    MAX_BODY_CHARS,
    MAX_COMMAND_LINES,
    ChatCommand,
    CommandError,
    CommandLine,
    first_command,
    parse_commands,
    quote,
    sanitize,
    validate,
)
from bot.config import DEFAULT_PERMISSIONS

REGISTRIES = ("registry.example.com", "mirror.example.com:5000/mirror")
SYNC_SOURCES = (
    "docker.io/library/alpine",
    "registry.example.com/mirror/alpine",
    "quay.io/prometheus/prometheus",
)
PROPERTY_SETTINGS = settings(max_examples=250, deadline=None)


def commands_in(body: str) -> list[str]:
    return [line.raw for line in parse_commands(body)]


def check(raw: str) -> ChatCommand | CommandError:
    lines = parse_commands(raw)
    assert len(lines) == 1, raw
    return validate(lines[0], registries=REGISTRIES, sync_sources=SYNC_SOURCES)


def refused(raw: str) -> str:
    result = check(raw)
    assert isinstance(result, CommandError), result
    return result.message


# --- where commands are found -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("/imglife status", ["/imglife status"], id="alone"),
        pytest.param("/imglife status\n", ["/imglife status"], id="trailing-newline"),
        pytest.param("   /imglife status  ", ["/imglife status"], id="three-spaces"),
        pytest.param("/imglife\tstatus", ["/imglife\tstatus"], id="tab-separator"),
        pytest.param("/imglife", ["/imglife"], id="bare-prefix"),
        pytest.param("Thanks!\r\n/imglife eol\r\n", ["/imglife eol"], id="crlf"),
        pytest.param("Thanks!\r/imglife eol", ["/imglife eol"], id="cr"),
        pytest.param("please run\n/imglife status\nthanks", ["/imglife status"], id="inside-paragraph"),
        pytest.param("- item\n  /imglife status", ["/imglife status"], id="list-continuation"),
        pytest.param("/imglifex status", [], id="longer-word"),
        pytest.param("/imglife-status", [], id="dash-joined"),
        pytest.param("please /imglife status", [], id="mid-line"),
        pytest.param("- /imglife status", [], id="list-item"),
        pytest.param("**/imglife status**", [], id="bold"),
        pytest.param("~~/imglife sync~~ /imglife status", [], id="strikethrough"),
        pytest.param("Edit: /imglife status", [], id="edit-note"),
        pytest.param("/IMGLIFE status", [], id="prefix-is-case-sensitive"),
        pytest.param("\u00a0/imglife status", [], id="nbsp-indent"),
        pytest.param("/imglife\u00a0status", [], id="nbsp-separator"),
        pytest.param("    /imglife status", [], id="indented-code"),
        pytest.param("\t/imglife status", [], id="tab-indented-code"),
        pytest.param("text\n\n    /imglife status\n", [], id="indented-code-after-blank"),
        pytest.param("text\n    /imglife status\n", [], id="lazy-4-spaces"),
    ],
)
def test_command_lines_start_the_line(body, expected):
    assert commands_in(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("```\n/imglife status\n```", id="backticks"),
        pytest.param("~~~\n/imglife status\n~~~", id="tildes"),
        pytest.param("```shell\n/imglife status\n```", id="info-string"),
        pytest.param("~~~ {.yaml title=`x`}\n/imglife status\n~~~", id="tilde-info-with-backtick"),
        pytest.param("   ```\n/imglife status\n   ```", id="indented-fence"),
        pytest.param("````\n```\n/imglife status\n````", id="longer-fence-not-closed-by-shorter"),
        pytest.param("```\n/imglife status\n~~~\n", id="other-fence-char-does-not-close"),
        pytest.param("```\n/imglife status\n``` not a closer\n", id="closer-with-text"),
        pytest.param("```\n/imglife status", id="unclosed-runs-to-end"),
        pytest.param("text\n```\n/imglife status\n```", id="fence-interrupts-paragraph"),
        pytest.param("- item\n\n  ```\n  /imglife status\n  ```", id="fence-in-list"),
    ],
)
def test_no_commands_in_fenced_code(body):
    assert commands_in(body) == []


def test_text_after_a_fence_is_read_again():
    body = "```\n/imglife sync\n```\n/imglife status\n~~~~\n/imglife cleanup\n~~~~~\n/imglife eol"
    assert commands_in(body) == ["/imglife status", "/imglife eol"]


def test_a_backtick_line_with_backticks_in_its_info_is_not_a_fence():
    assert commands_in("```a`b\n/imglife status") == ["/imglife status"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("> /imglife status", id="quote"),
        pytest.param(">/imglife status", id="quote-no-space"),
        pytest.param("  > /imglife status", id="indented-quote"),
        pytest.param("> > /imglife status", id="nested"),
        pytest.param(">> /imglife status", id="nested-tight"),
        pytest.param("> said:\n/imglife status", id="lazy-continuation"),
        pytest.param("> > said:\n/imglife status", id="nested-lazy"),
        pytest.param("> said:\nmore\n/imglife status", id="lazy-chain"),
        pytest.param("> said:\n\u00a0\n/imglife status", id="nbsp-line-is-not-blank"),
        pytest.param("> ```\n> /imglife status\n> ```", id="fence-inside-quote"),
    ],
)
def test_no_commands_in_block_quotes(body):
    assert commands_in(body) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("> said:\n\n/imglife status", id="blank-line-ends-quote"),
        pytest.param(">\n/imglife status", id="empty-quote-line"),
        pytest.param("> ```\n/imglife status", id="fence-in-quote-ends-with-it"),
    ],
)
def test_commands_after_a_quote(body):
    assert commands_in(body) == ["/imglife status"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("<!--\n/imglife status\n-->", id="block"),
        pytest.param("<!-- /imglife status -->\n", id="one-line"),
        pytest.param("text <!-- hidden\n/imglife status\n-->", id="opened-mid-line"),
        pytest.param("<!--\n\n/imglife status\n\n-->", id="spans-blank-lines"),
        pytest.param("<!-- never closed\n\n/imglife status", id="unclosed"),
        pytest.param("<!-- a --> <!-- b\n/imglife status\n-->", id="second-comment-open"),
        pytest.param("> q\n<!--\n\n/imglife status\n-->", id="after-quote"),
    ],
)
def test_no_commands_in_html_comments(body):
    assert commands_in(body) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("<!-- bot marker -->\n/imglife status", id="after-comment"),
        pytest.param("<!-->\n/imglife status", id="empty-comment"),
        pytest.param("<!--->\n/imglife status", id="empty-comment-dash"),
        pytest.param("`<!--`\n/imglife status", id="comment-opener-in-code-span"),
    ],
)
def test_commands_after_closed_html_comments(body):
    assert commands_in(body) == ["/imglife status"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("`/imglife status`", [], id="whole-line-span"),
        pytest.param("run `x\n/imglife status` please", [], id="multi-line-span"),
        pytest.param("``a ` b\n/imglife status``", [], id="double-backtick-span"),
        pytest.param("a `x` b\n/imglife status", ["/imglife status"], id="closed-span-before"),
        pytest.param("a ` lonely\n/imglife status", ["/imglife status"], id="unmatched-backtick-is-text"),
        pytest.param("a \\`x\n/imglife status`", ["/imglife status`"], id="escaped-backtick"),
        pytest.param("a `x\n\n/imglife status`", ["/imglife status`"], id="span-ends-at-paragraph"),
    ],
)
def test_inline_code_spans(body, expected):
    assert commands_in(body) == expected


def test_every_command_line_is_reported_and_the_first_runs():
    body = "/imglife status\nsome text\n/imglife eol\n\n/imglife help"
    assert commands_in(body) == ["/imglife status", "/imglife eol", "/imglife help"]
    first = first_command(body)
    assert first is not None
    assert first.command == "status"
    assert first_command("nothing here") is None


def test_edited_looking_body_with_quoted_old_command():
    body = "> /imglife sync\n\n**Edit:** I meant\n\n~~`/imglife sync`~~\n\n/imglife sync --dry-run\n"
    assert commands_in(body) == ["/imglife sync --dry-run"]


def test_reported_command_lines_are_bounded():
    body = "\n".join(["/imglife status"] * (MAX_COMMAND_LINES + 50))
    assert len(parse_commands(body)) == MAX_COMMAND_LINES


def test_only_the_start_of_a_huge_comment_is_read():
    filler = "x" * (MAX_BODY_CHARS - 10) + "\n"
    assert commands_in(filler + "/imglife status") == []
    assert commands_in("/imglife status\n" + filler * 3) == ["/imglife status"]


def test_a_command_cut_by_the_size_limit_is_dropped():
    body = "x" * (MAX_BODY_CHARS - 20) + "\n/imglife sync alpine quay.io/prometheus/prometheus"
    assert commands_in(body) == []


# --- splitting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "command", "args"),
    [
        ("/imglife status", "status", ()),
        ("/imglife sync --dry-run alpine", "sync", ("--dry-run", "alpine")),
        ("/imglife check  'a b'  \"c\"", "check", ("a b", "c")),
        ("/imglife check a\\ b", "check", ("a b",)),
        ("/imglife check # not a comment", "check", ("#", "not", "a", "comment")),
        ("/imglife check a;b", "check", ("a;b",)),
        ("/imglife", "", ()),
    ],
)
def test_arguments_are_split_like_posix_words(raw, command, args):
    (line,) = parse_commands(raw)
    assert (line.command, line.args, line.error) == (command, args, None)


@pytest.mark.parametrize("raw", ["/imglife check 'open", '/imglife check "open', "/imglife check a\\"])
def test_unbalanced_quotes_are_a_parse_error_not_an_exception(raw):
    (line,) = parse_commands(raw)
    assert line.error is not None
    assert line.command == "check"
    result = validate(line, registries=REGISTRIES, sync_sources=SYNC_SOURCES)
    assert isinstance(result, CommandError)
    assert "cannot split the arguments" in result.message


# --- validating -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/imglife help", ChatCommand("help")),
        ("/imglife HELP", ChatCommand("help")),
        ("/imglife status", ChatCommand("status")),
        ("/imglife eol", ChatCommand("eol")),
        ("/imglife cleanup", ChatCommand("cleanup")),
        ("/imglife cleanup --dry-run", ChatCommand("cleanup", dry_run=True)),
        ("/imglife register", ChatCommand("register")),
        ("/imglife register v1.2.3", ChatCommand("register", tag="v1.2.3")),
        ("/imglife register 1.0_rc-1", ChatCommand("register", tag="1.0_rc-1")),
        ("/imglife sync", ChatCommand("sync")),
        ("/imglife sync --dry-run", ChatCommand("sync", dry_run=True)),
        ("/imglife check", ChatCommand("check")),
    ],
)
def test_valid_commands(raw, expected):
    assert check(raw) == expected


def test_check_bases_are_parsed_normalised_and_deduplicated():
    result = check(
        "/imglife check registry.example.com/bases/alpine:3.21 Registry.Example.com/bases/alpine:3.21 "
        "mirror.example.com:5000/mirror/debian"
    )
    assert isinstance(result, ChatCommand)
    assert [str(base) for base in result.bases] == [
        "registry.example.com/bases/alpine:3.21",
        "mirror.example.com:5000/mirror/debian:latest",
    ]


def test_check_accepts_digests():
    digest = "sha256:" + "a" * 64
    result = check(f"/imglife check registry.example.com/bases/alpine@{digest}")
    assert isinstance(result, ChatCommand)
    assert result.bases[0].digest == digest


@pytest.mark.parametrize(
    ("raw", "sources"),
    [
        ("/imglife sync docker.io/library/alpine", ("docker.io/library/alpine",)),
        ("/imglife sync alpine", ("docker.io/library/alpine",)),
        ("/imglife sync index.docker.io/library/alpine", ("docker.io/library/alpine",)),
        ("/imglife sync registry.example.com/mirror/alpine", ("registry.example.com/mirror/alpine",)),
        ("/imglife sync --dry-run alpine alpine", ("docker.io/library/alpine",)),
        (
            "/imglife sync alpine quay.io/prometheus/prometheus --dry-run",
            ("docker.io/library/alpine", "quay.io/prometheus/prometheus"),
        ),
    ],
)
def test_sync_sources_resolve_to_configured_entries(raw, sources):
    result = check(raw)
    assert isinstance(result, ChatCommand)
    assert result.sources == sources
    assert result.dry_run == ("--dry-run" in raw)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("/imglife", "no command"),
        ("/imglife deploy", "unknown command `deploy`"),
        ("/imglife rm -rf /", "unknown command `rm`"),
        ("/imglife $(id)", "unknown command `$(id)`"),
        ("/imglife help me", "`help` takes no arguments; usage: `/imglife help`"),
        ("/imglife status --verbose", "`status` has no option `--verbose`"),
        ("/imglife eol now", "`eol` takes no arguments"),
        ("/imglife cleanup --force", "`cleanup` has no option `--force`"),
        ("/imglife cleanup now", "`cleanup` takes no arguments"),
        ("/imglife check --dry-run", "`check` has no option `--dry-run`"),
        ("/imglife sync --dry-run=true", "has no option `--dry-run=true`"),
        ("/imglife sync -n", "has no option `-n`"),
        ("/imglife sync -- alpine", "has no option `--`"),
        ("/imglife register v1 v2", "`register` takes at most 1 tag"),
        ("/imglife register .hidden", "is not a valid image tag"),
        ("/imglife register -v1", "has no option `-v1`"),
        ("/imglife register " + "a" * 129, "is not a valid image tag"),
        ("/imglife register release/1.0", "is not a valid image tag"),
        ("/imglife sync " + " ".join(["alpine"] * 11), "at most 10 sources"),
        ("/imglife check " + " ".join(["a"] * 17), "too many arguments (at most 16)"),
        (
            "/imglife check evil.example.com/x:1",
            "is on `evil.example.com`, which is not one of the registries",
        ),
        ("/imglife check alpine:3.21", "is on `docker.io`, which is not"),
        ("/imglife check mirror.example.com:5000/other/x", "is not one of the registries"),
        ("/imglife check mirror.example.com:5000/mirrored/x", "is not one of the registries"),
        ("/imglife check registry.example.com/Bases/x", "not a valid image reference"),
        ("/imglife check registry.example.com/bases/x:-1", "not a valid image reference"),
        ("/imglife sync debian", "`debian` is not the source or target of a configured sync entry"),
        ("/imglife sync alpine:3.21", "`alpine:3.21` has a tag or digest; `sync` takes repository names"),
        ("/imglife sync registry.example.com/mirror", "is not the source or target"),
    ],
)
def test_refusals_say_why(raw, fragment):
    assert fragment in refused(raw)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param("/imglife check ; rm -rf /", "shell metacharacter `;`", id="semicolon"),
        pytest.param("/imglife check registry.example.com/a;id", "shell metacharacter `;`", id="joined"),
        pytest.param("/imglife check $(id)", "shell metacharacter `$`", id="command-substitution"),
        pytest.param("/imglife check ${HOME}", "shell metacharacter `$`", id="variable"),
        pytest.param("/imglife check `id`", "shell metacharacter a backtick", id="backticks"),
        pytest.param("/imglife check 'a`id`'", "shell metacharacter a backtick", id="quoted-backticks"),
        pytest.param("/imglife sync a|b", "shell metacharacter `|`", id="pipe"),
        pytest.param("/imglife sync a>b", "shell metacharacter `>`", id="redirect"),
        pytest.param("/imglife sync a&&b", "shell metacharacter `&`", id="and"),
        pytest.param('/imglife sync "it\'s"', "shell metacharacter `'`", id="quoted-quote"),
        pytest.param("/imglife sync *", "shell metacharacter `*`", id="glob"),
        pytest.param("/imglife sync ~root", "shell metacharacter `~`", id="tilde"),
        pytest.param("/imglife check http://169.254.169.254/latest", "looks like a URL", id="metadata-url"),
        pytest.param("/imglife check https://registry.example.com/v2/", "looks like a URL", id="https"),
        pytest.param("/imglife check file:/etc/passwd", "looks like a URL", id="file"),
        pytest.param("/imglife check file:///etc/passwd", "looks like a URL", id="file-slashes"),
        pytest.param("/imglife check //169.254.169.254/x", "looks like a URL", id="scheme-relative"),
        pytest.param("/imglife check gopher://x:70/_", "looks like a URL", id="gopher"),
        pytest.param("/imglife check registry.example.com/bases/\u0430lpine", "non-ASCII", id="homoglyph"),
        pytest.param("/imglife register \uff13", "non-ASCII", id="fullwidth-digit"),
        pytest.param("/imglife check 'a\u202eb'", "control or invisible", id="bidi-override"),
        pytest.param("/imglife check 'a\u200bb'", "control or invisible", id="zero-width"),
        pytest.param("/imglife check a\x00b", "control or invisible", id="nul"),
        pytest.param("/imglife check a\x1b[31mb", "control or invisible", id="escape-sequence"),
        pytest.param("/imglife check " + "a" * (MAX_ARG_CHARS + 1), "longer than 640", id="long-arg"),
        pytest.param("/imglife check " + "a" * 10_000, "command line is longer", id="10k-arg"),
    ],
)
def test_hostile_arguments_are_refused(raw, fragment):
    message = refused(raw)
    assert fragment in message
    assert "\n" not in message


def test_refusal_of_a_registry_never_lists_the_configured_ones():
    message = refused("/imglife check evil.example.com/x:1")
    assert "registry.example.com" not in message.replace("evil.example.com", "")


@pytest.mark.parametrize(
    "raw",
    [
        "/imglife check @all",
        "/imglife deploy@all",
        "/imglife sync @group/team",
        "/imglife check registry.example.com/x@maintainers",
    ],
)
def test_refusals_never_mention_anyone(raw):
    message = refused(raw)
    assert "@" in message
    assert all(message[index + 1] == "\u200b" for index, char in enumerate(message) if char == "@")


def test_quoted_arguments_are_cut_and_cleaned():
    message = refused("/imglife " + "x" * 200)
    assert "x" * 80 + "…" in message
    assert "x" * 81 not in message
    assert sanitize("a`b\nc\x00d@e") == "ab\ufffdc\ufffdd@\u200be"
    assert quote("```") == "(empty)"
    assert quote("\u202e") == "`\ufffd`"


def test_help_lists_every_command_with_its_default_roles():
    for name, role in DEFAULT_PERMISSIONS.items():
        (line,) = [line for line in HELP_TEXT.splitlines() if line.startswith(f"- `/imglife {name}")]
        assert f"GitLab {role}" in line
    assert "GitLab developer / Gitea write" in HELP_TEXT
    assert "GitLab maintainer / Gitea admin" in HELP_TEXT
    assert "`/imglife sync [--dry-run] [SOURCE...]`" in HELP_TEXT
    assert all(parse_commands(line) == [] for line in HELP_TEXT.splitlines())


def test_nothing_is_allowed_without_configuration():
    (line,) = parse_commands("/imglife check registry.example.com/bases/alpine:1")
    result = validate(line, registries=(), sync_sources=())
    assert isinstance(result, CommandError)
    (line,) = parse_commands("/imglife sync alpine")
    assert isinstance(validate(line, registries=(), sync_sources=()), CommandError)


def test_a_hand_built_line_is_checked_too():
    line = CommandLine(command="check", args=("a\nb",), raw="/imglife check")
    result = validate(line, registries=REGISTRIES, sync_sources=SYNC_SOURCES)
    assert isinstance(result, CommandError)
    assert "\n" not in result.message


# --- properties -------------------------------------------------------------------------------

COMMAND = "/imglife status"
# Filler text that cannot open or close any block structure, so only the wrappers decide.
SAFE_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .,:;!?-_()[]'\"", max_size=40).map(
    lambda text: text.strip()
)


@st.composite
def hidden_command(draw: st.DrawFn, *, closed: bool = False) -> str:
    """The command line wrapped in a structure that must hide it (``closed``: fences are closed)."""
    kind = draw(st.sampled_from(["fence", "quote", "lazy", "comment", "indented", "span"]))
    command = COMMAND + draw(SAFE_TEXT.map(lambda text: f" {text}" if text else ""))
    lead = " " * draw(st.integers(0, 3))
    if kind == "fence":
        char = draw(st.sampled_from("`~"))
        length = draw(st.integers(3, 6))
        info = draw(SAFE_TEXT)
        inner = draw(st.lists(SAFE_TEXT, max_size=3))
        closer = [f"{lead}{char * draw(st.integers(length, 8))}"] if closed or draw(st.booleans()) else []
        return "\n".join([f"{lead}{char * length}{info}", *inner, lead + command, *closer])
    if kind == "quote":
        depth = draw(st.integers(1, 3))
        return f"{lead}{'>' * depth} {command}"
    if kind == "lazy":
        return f"> {draw(SAFE_TEXT)}x\n{lead}{command}"
    if kind == "comment":
        inner = "\n".join(draw(st.lists(SAFE_TEXT, max_size=3)))
        return f"<!-- {inner}\n{lead}{command}\n{draw(SAFE_TEXT)} -->"
    if kind == "indented":
        return " " * draw(st.integers(4, 8)) + command
    return f"see `{draw(SAFE_TEXT)}\n{lead}{command}`"


@st.composite
def body_with_hidden_commands(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.one_of(SAFE_TEXT, hidden_command(closed=True)), min_size=1, max_size=6))
    # An unclosed fence hides everything after it, and the next fence opener would close it
    # instead: only the last part may leave its fence open.
    parts.append(draw(hidden_command()))
    separator = draw(st.sampled_from(["\n\n", "\r\n\r\n"]))
    return separator.join(parts)


@PROPERTY_SETTINGS
@given(body_with_hidden_commands())
def test_property_commands_inside_code_quotes_and_comments_are_never_found(body):
    assert parse_commands(body) == []


@PROPERTY_SETTINGS
@given(
    st.lists(st.one_of(SAFE_TEXT, hidden_command(closed=True)), max_size=4), st.lists(SAFE_TEXT, max_size=4)
)
def test_property_a_visible_command_is_found_among_hidden_ones(before, after):
    body = "\n\n".join([*before, "/imglife eol", *after])
    assert commands_in(body) == ["/imglife eol"]


@PROPERTY_SETTINGS
@given(st.text(max_size=400))
def test_property_parse_and_validate_never_raise_on_any_text(body):
    for text in (body, f"/imglife {body}", f"/imglife check {body}", f"/imglife sync {body}"):
        for line in parse_commands(text):
            result = validate(line, registries=REGISTRIES, sync_sources=SYNC_SOURCES)
            assert isinstance(result, ChatCommand | CommandError)


ARGUMENT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["--dry-run", "alpine", "registry.example.com/bases/alpine:3", "v1.0", "$(id)", "@all", "http://x"]
    ),
)


@PROPERTY_SETTINGS
@given(st.sampled_from(["check", "sync", "register", "cleanup", "help", "x"]), st.lists(ARGUMENT, max_size=5))
def test_property_validated_commands_only_carry_configured_or_grammatical_values(name, args):
    line = CommandLine(command=name, args=tuple(args), raw="/imglife " + name)
    result = validate(line, registries=REGISTRIES, sync_sources=SYNC_SOURCES)
    if isinstance(result, CommandError):
        assert "\n" not in result.message
        assert "@" not in result.message.replace("@\u200b", "")
        return
    assert all(source in SYNC_SOURCES for source in result.sources)
    assert all(base.registry in ("registry.example.com", "mirror.example.com:5000") for base in result.bases)
    assert result.tag is None or result.tag.isascii()
