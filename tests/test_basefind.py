"""Base image detection in Dockerfiles and CI files (pure)."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.basefind import (
    FoundBase,
    bases_in_registry,
    find_bases_in_ci,
    find_bases_in_dockerfile,
    is_workflow_file,
)

PREFIX = "registry.example.com/bases"
PROPERTY_SETTINGS = settings(max_examples=250, deadline=None)


def dockerfile(text: str, filename: str = "Dockerfile") -> list[FoundBase]:
    return find_bases_in_dockerfile(textwrap.dedent(text), filename=filename)


def references(found: list[FoundBase]) -> list[str]:
    assert all(item.problem is None for item in found), found
    return [item.reference for item in found]


# --- Dockerfiles ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("FROM alpine:3.21\n", ["alpine:3.21"], id="plain"),
        pytest.param("from alpine:3.21\n", ["alpine:3.21"], id="lowercase"),
        pytest.param("From alpine:3.21 As build\n", ["alpine:3.21"], id="mixed-case-as"),
        pytest.param("FROM --platform=linux/amd64 alpine:3.21\n", ["alpine:3.21"], id="platform"),
        pytest.param("FROM --platform=$BUILDPLATFORM golang:1.22 AS b\n", ["golang:1.22"], id="platform-arg"),
        pytest.param("FROM scratch\n", [], id="scratch"),
        pytest.param("   FROM\talpine:3.21   \n", ["alpine:3.21"], id="whitespace"),
        pytest.param("\ufeffFROM alpine:3.21\n", ["alpine:3.21"], id="bom"),
        pytest.param("FROM alpine:3.21\r\nFROM debian:12\r\n", ["alpine:3.21", "debian:12"], id="crlf"),
        pytest.param("# FROM commented:1\nFROM alpine:3.21\n", ["alpine:3.21"], id="comment"),
        pytest.param("FROM \\\n  alpine:3.21 \\\n  AS build\n", ["alpine:3.21"], id="continuation"),
        pytest.param("FROM \\  \n  alpine:3.21\n", ["alpine:3.21"], id="continuation-trailing-space"),
        pytest.param(
            "FROM \\\n# a comment inside\n\n  alpine:3.21\n",
            ["alpine:3.21"],
            id="comment-inside-continuation",
        ),
        pytest.param("RUN echo \\\nFROM fake:1\nFROM alpine:3.21\n", ["alpine:3.21"], id="continued-run"),
        pytest.param('FROM "alpine:3.21"\n', ["alpine:3.21"], id="quoted"),
        pytest.param("FROM alpine@sha256:" + "a" * 64 + "\n", ["alpine@sha256:" + "a" * 64], id="digest"),
    ],
)
def test_from_lines(text, expected):
    assert references(find_bases_in_dockerfile(text)) == expected


def test_multi_stage_builds_skip_references_to_earlier_stages():
    found = dockerfile(
        """\
        FROM registry.example.com/bases/golang:1.22 AS Build
        RUN make
        FROM build AS test
        FROM BUILD
        FROM registry.example.com/bases/alpine:3.21
        COPY --from=build /app /app
        """
    )
    assert references(found) == [
        "registry.example.com/bases/golang:1.22",
        "registry.example.com/bases/alpine:3.21",
    ]
    assert [item.source for item in found] == ["Dockerfile:1 FROM", "Dockerfile:5 FROM"]
    assert [item.line for item in found] == [1, 5]


def test_a_stage_named_like_a_later_image_is_only_a_stage_once_defined():
    found = dockerfile(
        """\
        FROM alpine:3.21
        FROM debian:12 AS alpine
        FROM alpine
        """
    )
    assert references(found) == ["alpine:3.21", "debian:12"]


def test_arg_defaults_are_substituted():
    found = dockerfile(
        """\
        # syntax=docker/dockerfile:1
        ARG REGISTRY=registry.example.com
        ARG BASE_TAG="3.21.3-core1.0.0"
        ARG FLAVOUR=alpine VARIANT=slim
        ARG IMAGE=${REGISTRY}/bases/${FLAVOUR}
        FROM ${IMAGE}:${BASE_TAG}
        FROM $REGISTRY/bases/$FLAVOUR-$VARIANT:1
        FROM ${MISSING:-registry.example.com/bases/debian:12}
        FROM ${REGISTRY:+registry.example.com}/bases/x:${MISSING-1}
        FROM registry.example.com/bases/y:${EMPTY:-2}${MISSING:+nope}
        """
    )
    assert references(found) == [
        "registry.example.com/bases/alpine:3.21.3-core1.0.0",
        "registry.example.com/bases/alpine-slim:1",
        "registry.example.com/bases/debian:12",
        "registry.example.com/bases/x:1",
        "registry.example.com/bases/y:2",
    ]


def test_args_after_the_first_from_are_not_seen_by_from():
    found = dockerfile(
        """\
        FROM alpine:3.21
        ARG LATER=registry.example.com/bases/x:1
        FROM ${LATER}
        """
    )
    assert (
        found[1].problem
        == "could not resolve ${LATER}: LATER is not declared by an ARG before the first FROM"
    )


def test_empty_arg_default_is_a_value():
    found = dockerfile("ARG SUFFIX=\nFROM registry.example.com/bases/x${SUFFIX}:1\n")
    assert references(found) == ["registry.example.com/bases/x:1"]


@pytest.mark.parametrize(
    ("text", "reference", "reason"),
    [
        pytest.param(
            "ARG BASE\nFROM ${BASE}\n",
            "${BASE}",
            "ARG BASE has no default (it is only set with --build-arg)",
            id="no-default",
        ),
        pytest.param(
            "ARG REG\nARG IMG=${REG}/bases/x:1\nFROM $IMG\n",
            "$IMG",
            "ARG REG has no default (it is only set with --build-arg)",
            id="default-uses-unresolved",
        ),
        pytest.param(
            "FROM registry.example.com/bases/${NOPE}:1\n",
            "registry.example.com/bases/${NOPE}:1",
            "NOPE is not declared by an ARG before the first FROM",
            id="undeclared",
        ),
        pytest.param(
            "FROM registry.example.com/bases/x-${TARGETARCH}:1\n",
            "registry.example.com/bases/x-${TARGETARCH}:1",
            "TARGETARCH depends on the platform being built",
            id="platform-arg",
        ),
        pytest.param(
            "ARG V=1.2\nFROM registry.example.com/bases/x:${V%.*}\n",
            "registry.example.com/bases/x:${V%.*}",
            "unsupported substitution ${V%.*}",
            id="unsupported-operator",
        ),
        pytest.param(
            "FROM registry.example.com/bases/x:${V\n",
            "registry.example.com/bases/x:${V",
            "unterminated ${",
            id="unterminated",
        ),
    ],
)
def test_unresolvable_variables_are_reported_not_guessed(text, reference, reason):
    (found,) = find_bases_in_dockerfile(text)
    assert found.reference == reference
    assert found.problem == f"could not resolve {reference}: {reason}"


def test_escape_directive_backtick():
    found = dockerfile(
        """\
        # escape=`
        ARG REG=registry.example.com
        FROM `
          ${REG}/bases/windows:ltsc2022
        FROM registry.example.com/bases/x:1 AS path
        RUN copy C:\\src\\ `
            C:\\dst
        FROM registry.example.com/bases/lit:`$NOT_A_VAR
        """
    )
    assert [item.reference for item in found[:2]] == [
        "registry.example.com/bases/windows:ltsc2022",
        "registry.example.com/bases/x:1",
    ]
    assert found[2] == FoundBase("registry.example.com/bases/lit:$NOT_A_VAR", "Dockerfile:8 FROM", 8)


def test_with_backtick_escape_a_trailing_backslash_is_not_a_continuation():
    found = dockerfile("# escape=`\nRUN dir C:\\\nFROM alpine:3.21\n")
    assert references(found) == ["alpine:3.21"]


def test_directives_only_count_at_the_top():
    # After a blank line `# escape=` is a comment: the backtick does not continue the RUN line.
    found = dockerfile("\n# escape=`\nFROM alpine:3.21\nRUN x `\nFROM debian:12\n")
    assert references(found) == ["alpine:3.21", "debian:12"]
    found = dockerfile("# a comment\n# escape=`\nFROM \\\n  alpine:3.21\n")
    assert references(found) == ["alpine:3.21"]


def test_heredoc_bodies_are_not_instructions():
    found = dockerfile(
        """\
        FROM alpine:3.21
        RUN <<EOF
        FROM fake:1
        EOF
        COPY <<-"A" <<B /dst/
        \tFROM fake:2
        \tA
        FROM fake:3
        B
        RUN echo $((1<<2))
        FROM debian:12
        """
    )
    assert references(found) == ["alpine:3.21", "debian:12"]


def test_malformed_from_lines_are_problems():
    found = find_bases_in_dockerfile("FROM\nFROM a b c d\nFROM --platform=linux/amd64\n")
    assert [item.problem for item in found] == [
        "FROM without an image",
        "malformed FROM: expected FROM [--platform=...] IMAGE [AS NAME]",
        "FROM without an image",
    ]


def test_filename_names_the_source():
    (found,) = dockerfile("\n\nFROM alpine:3.21\n", filename="docker/worker.Dockerfile")
    assert found.source == "docker/worker.Dockerfile:3 FROM"


def test_too_large_dockerfile_is_a_problem():
    (found,) = find_bases_in_dockerfile("#" * (1024 * 1024 + 1))
    assert found.problem is not None
    assert "not scanned" in found.problem


def test_deeply_nested_defaults_are_bounded():
    (found,) = find_bases_in_dockerfile("FROM " + "${A:-" * 100 + "x" + "}" * 100 + "\n")
    assert found.problem is not None
    assert found.problem.endswith(": substitutions nested more than 16 deep")


def test_huge_from_lines_are_not_expanded():
    (found,) = find_bases_in_dockerfile("FROM " + "${A:-" * 5000 + "x" + "}" * 5000 + "\n")
    assert found.problem is not None
    assert found.problem.endswith(": longer than 4096 characters")
    assert len(found.reference) <= 200


def test_doubling_args_are_bounded():
    text = "ARG A=registry.example.com\n" + "ARG A=${A}${A}\n" * 40 + "FROM $A/bases/x:1\n"
    (found,) = find_bases_in_dockerfile(text)
    assert found.problem == "could not resolve $A/bases/x:1: longer than 4096 characters"


# --- CI files ---------------------------------------------------------------------------------

GITLAB_CI = """\
variables:
  REGISTRY: registry.example.com
  BASE_IMAGE: $REGISTRY/bases/alpine:3.21
build:
  variables:
    BASE_IMAGE:
      value: ${REGISTRY}/bases/debian:12
      description: the base image
  script: [make]
.template:
  variables:
    BASE_IMAGE: {value: registry.example.com/bases/python:3.12, expand: false}
test:
  script: !reference [.template, script]
  variables:
    BASE_IMAGE: $CI_REGISTRY/bases/x:1
literal:
  variables:
    BASE_IMAGE: {value: "registry.example.com/bases/$$x:1", expand: false}
dollars:
  variables:
    BASE_IMAGE: registry.example.com/bases/x:$${TAG}
number:
  variables:
    BASE_IMAGE: 12
empty:
  variables:
    BASE_IMAGE: ""
other:
  variables:
    NOT_BASE: registry.example.com/bases/ignored:1
"""


def test_gitlab_ci_variables_top_level_and_job_level():
    found = find_bases_in_ci(GITLAB_CI, ".gitlab-ci.yml")
    assert [(item.reference, item.source, item.line, item.problem) for item in found] == [
        ("registry.example.com/bases/alpine:3.21", ".gitlab-ci.yml variables.BASE_IMAGE", 3, None),
        (
            "registry.example.com/bases/debian:12",
            ".gitlab-ci.yml build.variables.BASE_IMAGE.value",
            7,
            None,
        ),
        (
            "registry.example.com/bases/python:3.12",
            ".gitlab-ci.yml ['.template'].variables.BASE_IMAGE.value",
            12,
            None,
        ),
        (
            "$CI_REGISTRY/bases/x:1",
            ".gitlab-ci.yml test.variables.BASE_IMAGE",
            16,
            "could not resolve $CI_REGISTRY/bases/x:1: CI_REGISTRY is not defined in this file "
            "(a CI/CD or predefined variable)",
        ),
        ("registry.example.com/bases/$$x:1", ".gitlab-ci.yml literal.variables.BASE_IMAGE.value", 19, None),
        ("registry.example.com/bases/x:${TAG}", ".gitlab-ci.yml dollars.variables.BASE_IMAGE", 22, None),
        ("", ".gitlab-ci.yml number.variables.BASE_IMAGE", 25, "expected a string, got a number"),
    ]


def test_gitlab_job_variables_override_the_top_level_ones_for_expansion():
    text = """\
    variables: {REGISTRY: other.example.com}
    build:
      variables:
        REGISTRY: registry.example.com
        BASE_IMAGE: ${REGISTRY}/bases/alpine:3.21
    """
    (found,) = find_bases_in_ci(textwrap.dedent(text), "ci/build.gitlab-ci.yml")
    assert found.reference == "registry.example.com/bases/alpine:3.21"


def test_gitlab_header_document_with_spec_inputs():
    text = """\
    spec:
      inputs:
        base:
          default: registry.example.com/bases/alpine:3.21
    ---  # the configuration
    variables:
      BASE_IMAGE: registry.example.com/bases/debian:12
    """
    (found,) = find_bases_in_ci(textwrap.dedent(text), ".gitlab-ci.yml")
    assert (found.reference, found.line) == ("registry.example.com/bases/debian:12", 7)


def test_yaml_errors_in_a_later_document_have_file_lines():
    (found,) = find_bases_in_ci("a: 1\n---\nb: [\n", ".gitlab-ci.yml")
    assert found.line == 4
    assert found.problem is not None
    assert found.problem.startswith("not valid YAML")


WORKFLOW = """\
name: build
on: [push]
env:
  BASE_IMAGE: registry.example.com/bases/alpine:3.21
jobs:
  build:
    runs-on: ubuntu-latest
    env:
      BASE_IMAGE: "registry.example.com/bases/debian:12"
    steps:
      - uses: actions/checkout@v4
      - name: build
        env:
          BASE_IMAGE: ${{ vars.BASE }}
      - env: {BASE_IMAGE: registry.example.com/bases/python:3.12}
  "odd job":
    env: [not, a, mapping]
"""


@pytest.mark.parametrize(
    "filename", [".gitea/workflows/build.yml", ".forgejo/workflows/b.yaml", ".github/workflows/x.yml"]
)
def test_workflow_env_at_every_level(filename):
    found = find_bases_in_ci(WORKFLOW, filename)
    assert [
        (item.reference, item.source.removeprefix(filename), item.line, item.problem) for item in found
    ] == [
        ("registry.example.com/bases/alpine:3.21", " env.BASE_IMAGE", 4, None),
        ("registry.example.com/bases/debian:12", " jobs.build.env.BASE_IMAGE", 9, None),
        (
            "${{ vars.BASE }}",
            " jobs.build.steps[1].env.BASE_IMAGE",
            14,
            "could not resolve ${{ vars.BASE }}: the value is an expression evaluated by the runner",
        ),
        ("registry.example.com/bases/python:3.12", " jobs.build.steps[2].env.BASE_IMAGE", 15, None),
    ]


def test_workflow_detection():
    assert is_workflow_file(".gitea/workflows/build.yml")
    assert is_workflow_file("./.gitea/workflows/build.yml")
    assert not is_workflow_file(".gitlab-ci.yml")
    assert not is_workflow_file("gitea/workflows/build.yml")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("variables: [", "not valid YAML", id="unclosed"),
        pytest.param("a: b\n  c: d\n", "not valid YAML", id="bad-indent"),
        pytest.param("a: 2024-13-01\n", "not valid YAML", id="impossible-date"),
        pytest.param("[" * 1100, "not valid YAML", id="deep"),
        pytest.param("a: \x00", "not valid YAML", id="nul"),
        pytest.param("a: &a [*a, *a]\nb: &b [*a, *a]\n" + "c: [*b, *b, *b, *b]\n" * 3, None, id="aliases"),
    ],
)
def test_broken_yaml_gives_a_problem_not_an_exception(text, fragment):
    found = find_bases_in_ci(text, ".gitlab-ci.yml")
    if fragment is None:
        assert found == []
        return
    (problem,) = found
    assert problem.reference == ""
    assert problem.problem is not None
    assert fragment in problem.problem


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a list\n", "just text", "variables: 3"])
def test_ci_files_without_variables(text):
    assert find_bases_in_ci(text, ".gitlab-ci.yml") == []


# --- filtering to the configured registry -----------------------------------------------------


def test_bases_in_registry_keeps_normalises_and_deduplicates():
    found = [
        FoundBase("registry.example.com/bases/alpine:3.21", "Dockerfile:1 FROM", 1),
        FoundBase("Registry.Example.com/bases/alpine:3.21", "Dockerfile:5 FROM", 5),
        FoundBase("registry.example.com/bases/debian", "ci", 2),
        FoundBase("registry.example.com/bases/core/x:1", "ci", 3),
        FoundBase("registry.example.com/basement/x:1", "Dockerfile:7 FROM", 7),
        FoundBase("registry.example.com/other/x:1", "Dockerfile:8 FROM", 8),
        FoundBase("registry.example.com/bases:1", "Dockerfile:9 FROM", 9),
        FoundBase("alpine:3.21", "Dockerfile:10 FROM", 10),
        FoundBase("other.example.com/bases/x:1", "Dockerfile:11 FROM", 11),
    ]
    bases, problems = bases_in_registry(found, "registry.example.com/bases/")
    assert [(base.reference, base.line) for base in bases] == [
        ("registry.example.com/bases/alpine:3.21", 1),
        ("registry.example.com/bases/debian:latest", 2),
        ("registry.example.com/bases/core/x:1", 3),
    ]
    assert problems == []


def test_a_prefix_without_path_takes_the_whole_registry():
    found = [
        FoundBase("registry.example.com:5000/a/b:1", "s", 1),
        FoundBase("registry.example.com/a:1", "s", 2),
    ]
    bases, _ = bases_in_registry(found, "registry.example.com:5000")
    assert [base.reference for base in bases] == ["registry.example.com:5000/a/b:1"]


def test_unresolvable_and_invalid_references_are_reported_when_they_could_be_ours():
    text = """\
    ARG BASE
    ARG GO_VERSION
    FROM ${BASE}
    FROM golang:${GO_VERSION}
    FROM docker.io/library/node:${GO_VERSION}
    FROM registry.example.com/bases/${BASE}:1
    FROM registry.example.com/other/${BASE}:1
    FROM registry.example.com/bases/Alpine:3
    FROM Other.example.com/bases/Alpine:3
    FROM
    """
    bases, problems = bases_in_registry(dockerfile(text), PREFIX)
    assert bases == []
    assert [(item.line, item.reference) for item in problems] == [
        (3, "${BASE}"),
        (6, "registry.example.com/bases/${BASE}:1"),
        (8, "registry.example.com/bases/Alpine:3"),
        (10, ""),
    ]
    assert problems[2].problem is not None
    assert problems[2].problem.startswith("not a valid image reference: invalid image reference")


def test_yaml_problems_are_passed_through():
    found = find_bases_in_ci("variables: [", ".gitlab-ci.yml")
    bases, problems = bases_in_registry(found, PREFIX)
    assert (bases, problems) == ([], found)


# --- properties -------------------------------------------------------------------------------

DOCKERFILE_WORDS = st.sampled_from(
    ["FROM", "from", "ARG", "AS", "RUN", "COPY", "<<EOF", "EOF", "scratch", "\\", "`", "#", "# escape=`"]
)
DOCKERFILE_PIECES = st.one_of(
    st.text(max_size=20),
    DOCKERFILE_WORDS,
    st.sampled_from(["${", "}", "$A", "${A:-", "A=", "=", ":-", "\n", "\r\n", " ", "\t", '"', "'"]),
)


@PROPERTY_SETTINGS
@given(st.lists(DOCKERFILE_PIECES, max_size=40).map("".join))
def test_property_dockerfile_scanning_never_raises(text):
    found = find_bases_in_dockerfile(text)
    assert all(isinstance(item, FoundBase) for item in found)
    bases, problems = bases_in_registry(found, PREFIX)
    assert all(base.reference.startswith(f"{PREFIX}/") for base in bases)
    assert len(bases) + len(problems) <= len(found)


YAML_PIECES = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "variables:",
            "BASE_IMAGE:",
            "env:",
            "jobs:",
            "steps:",
            "value:",
            "expand: false",
            "- ",
            "\n",
            "  ",
            "{",
            "}",
            "[",
            "]",
            "&a ",
            "*a",
            "<<: ",
            "!reference ",
            "!!binary ",
            "2024-13-01",
            "$X",
            "${{ env.X }}",
        ]
    ),
)


@PROPERTY_SETTINGS
@given(
    st.lists(YAML_PIECES, max_size=40).map("".join),
    st.sampled_from([".gitlab-ci.yml", ".gitea/workflows/ci.yml"]),
)
def test_property_ci_scanning_never_raises(text, filename):
    found = find_bases_in_ci(text, filename)
    assert all(isinstance(item, FoundBase) for item in found)
    bases_in_registry(found, PREFIX)


@PROPERTY_SETTINGS
@given(st.text(max_size=300))
def test_property_arbitrary_text_never_raises(text):
    find_bases_in_dockerfile(text)
    find_bases_in_ci(text, ".gitlab-ci.yml")
    find_bases_in_ci(text, ".github/workflows/x.yml")
