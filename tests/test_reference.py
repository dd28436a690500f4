"""Image reference parsing and normalisation (pure)."""

import pytest

from bot.errors import InvalidReference
from bot.oci.reference import parse_reference, parse_repository

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
        ("library/alpine", "docker.io", "library/alpine", "latest", None),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
        ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
        ("index.docker.io/library/alpine:3", "docker.io", "library/alpine", "3", None),
        ("registry-1.docker.io/grafana/grafana", "docker.io", "grafana/grafana", "latest", None),
        ("registry:5000/team/app:1.2.0", "registry:5000", "team/app", "1.2.0", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app", "localhost:5000", "app", "latest", None),
        ("127.0.0.1:5000/a/b/c:v1", "127.0.0.1:5000", "a/b/c", "v1", None),
        (
            "Registry.Example.COM/bases/alpine:3.21.3-core1.0.0",
            "registry.example.com",
            "bases/alpine",
            "3.21.3-core1.0.0",
            None,
        ),
        (f"ghcr.io/org/img@{DIGEST}", "ghcr.io", "org/img", None, DIGEST),
        (f"ghcr.io/org/img:v2@{DIGEST}", "ghcr.io", "org/img", "v2", DIGEST),
        ("quay.io/prometheus/prometheus:v2.53.0", "quay.io", "prometheus/prometheus", "v2.53.0", None),
        ("a.b/x__y/z-1.w_2", "a.b", "x__y/z-1.w_2", "latest", None),
    ],
)
def test_references_parse_and_normalise(text, registry, repository, tag, digest):
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_reference_string_round_trips_in_normal_form():
    assert str(parse_reference("alpine")) == "docker.io/library/alpine:latest"
    assert str(parse_reference(f"r.io/a:1@{DIGEST}")) == f"r.io/a:1@{DIGEST}"
    assert parse_reference("alpine").api_host == "registry-1.docker.io"
    assert parse_reference("r.io:443/a").api_host == "r.io:443"


def test_digest_wins_over_tag_for_the_manifest_reference():
    assert parse_reference(f"r.io/a:1@{DIGEST}").reference == DIGEST
    assert parse_reference("r.io/a:1").reference == "1"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (" alpine", "spaces"),
        ("Alpine", "must be lower-case"),
        ("r.io/Team/app", "must be lower-case"),
        ("r.io/app:-bad", "invalid tag"),
        ("r.io/app:" + "x" * 129, "invalid tag"),
        ("r.io/app@sha256:abc", "64 lower-case hex"),
        ("r.io/app@md5", "invalid digest"),
        ("https://r.io/app", "drop the URL scheme"),
        ("r.io/app//x", "repository path component ''"),
        ("r.io/a--b_-c", "repository path component"),
        ("bad_host.io:x/app", "bad registry host"),
        ("r.io/" + "a" * 260, "longer than 255"),
    ],
)
def test_malformed_references_are_refused_with_a_reason(text, fragment):
    with pytest.raises(InvalidReference, match=None) as info:
        parse_reference(text)
    assert fragment in str(info.value)
    assert info.value.exit_code == 2


def test_repository_names_refuse_tags_and_digests():
    assert parse_repository("docker.io/library/alpine").tag is None
    with pytest.raises(InvalidReference, match="without tag"):
        parse_repository("alpine:3")
    with pytest.raises(InvalidReference, match="without digest"):
        parse_repository(f"alpine@{DIGEST}")


def test_tags_are_ascii_only():
    with pytest.raises(InvalidReference, match="invalid tag"):
        parse_reference("r.io/app:\uff11")  # a fullwidth digit matches \w, not the OCI grammar
