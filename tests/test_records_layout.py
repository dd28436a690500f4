"""The record format and where records live: pure functions, checked exhaustively where it matters."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
from pathlib import Path

import pytest

from bot.errors import RecordFormatError
from bot.oci.reference import parse_reference, parse_repository
from bot.records import BuildRecord, decode_record, format_timestamp, parse_timestamp, record_key
from bot.records.layout import (
    RECORD_FILE,
    is_staging_file,
    local_file,
    object_key,
    package_name,
    package_version,
    record_reference,
    reference_of_file,
    reference_of_key,
    repository_of_package,
    staging_file,
)

# Both forges accept these in package names (forge-protocols.md §1.4: the intersection).
PACKAGE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
# GitLab's documented generic package version rule; Gitea accepts any non-blank string.
GITLAB_VERSION_RE = re.compile(r"^(\.?[\w+-]+\.?)+$")

REPOSITORIES = [
    "registry.example.com/apps/myservice",
    "registry.example.com/apps.myservice",
    "registry.example.com.apps/myservice",
    "registry.example.com/apps/my_service",
    "registry.example.com/apps/my__service",
    "registry.example.com/apps/my--service",
    "registry.example.com/apps/my/service",
    "registry:5000/team/app",
    "registry-5000/team/app",
    "localhost/app",
    "localhost:5000/app",
    "127.0.0.1:5000/a/b/c",
    "docker.io/library/alpine",
    "docker.io/library_alpine/x",
    "ghcr.io/org/img",
]
TAGS = ["1.2.0", "3.21.3-core1.0.0", "latest", "v1_2", "A.b-c", "x" * 128]


def test_package_layout_is_valid_on_both_forges_and_reversible():
    names = set()
    for repository in REPOSITORIES:
        repo = parse_repository(repository)
        name = package_name(repo)
        assert PACKAGE_NAME_RE.match(name), name
        assert repository_of_package(name) == repo
        names.add(name)
    assert len(names) == len(REPOSITORIES)  # collision-free on inputs built to collide


@pytest.mark.parametrize(("repository", "tag"), list(itertools.product(REPOSITORIES[:4], TAGS)))
def test_every_tag_is_a_valid_package_version_and_maps_back(repository, tag):
    ref = parse_repository(repository).with_tag(tag)
    version = package_version(ref)
    assert GITLAB_VERSION_RE.match(version)
    assert record_reference(package_name(ref), version) == ref


def test_tags_that_differ_only_in_case_get_different_versions():
    # Gitea compares versions case-insensitively; Docker tags are case-sensitive.
    repo = parse_repository("r.io/a")
    versions = {package_version(repo.with_tag(tag)) for tag in ("v1", "V1", "v1_A", "v1_a", "Latest")}
    assert len({v.lower() for v in versions}) == 5
    assert package_version(repo.with_tag("1.2.0")) == "1.2.0"
    assert package_version(repo.with_tag("V1.2")) == "+v1.2"
    assert record_reference("r.io___a", "+v1.2") == repo.with_tag("V1.2")
    assert record_reference("r.io___a", "+V1") is None


def test_readable_examples_from_the_readme():
    ref = parse_reference("registry.example.com/apps/myservice:1.2.0")
    assert package_name(ref) == "registry.example.com___apps___myservice"
    assert package_name(parse_reference("registry:5000/team/app:v2")) == "registry_5000___team___app"
    assert object_key("builds", ref) == "builds/records/registry.example.com/apps/myservice/1.2.0.json"
    assert object_key(None, ref) == "records/registry.example.com/apps/myservice/1.2.0.json"
    assert local_file(Path("/r"), ref) == Path("/r/records/registry.example.com/apps/myservice/1.2.0.json")


def test_foreign_packages_and_objects_are_not_records():
    assert repository_of_package("eol-data") is None
    assert repository_of_package("my___Weird") is None
    assert repository_of_package("registry.example.com___apps_____x") is None
    assert reference_of_key("builds", "builds/eol-data.yaml") is None
    assert reference_of_key("builds", "other/records/r.io/a/1.json") is None
    assert reference_of_file(Path("/r"), Path("/elsewhere/records/r.io/a/1.json")) is None


@pytest.mark.parametrize("prefix", [None, "", "builds", "/builds/", "a/b"])
def test_object_keys_round_trip(prefix):
    for repository, tag in itertools.product(REPOSITORIES, TAGS[:3]):
        ref = parse_repository(repository).with_tag(tag)
        assert reference_of_key(prefix, object_key(prefix, ref)) == ref


def test_staging_files_never_take_the_real_name():
    assert staging_file(RECORD_FILE, "abc") == "build-record.pending-abc.json"
    assert PACKAGE_NAME_RE.match(staging_file(RECORD_FILE, "0123abcd"))
    assert is_staging_file(staging_file("eol-data.yaml", "9f"), "eol-data.yaml")
    assert not is_staging_file(staging_file("eol-data.yaml", "9f"), RECORD_FILE)
    assert not is_staging_file(RECORD_FILE, RECORD_FILE)


# -- the record format ---------------------------------------------------------------------------

UPSTREAM_EXAMPLE = {
    "image": "registry.example.com/apps/myservice:1.2.0",
    "base": "registry.example.com/bases/alpine:3.21.3-core1.0.0",
    "revision": "a3f8b1c",
    "project": "myteam/myservice",
    "platforms": ["linux/amd64", "linux/arm64"],
    "built_at": "2026-04-01T10:00:00Z",
    "custom_fields": {},
}


def test_upstream_record_round_trips_byte_for_field():
    record = decode_record(json.dumps(UPSTREAM_EXAMPLE).encode(), where="x")
    assert record.built_at == dt.datetime(2026, 4, 1, 10, 0, tzinfo=dt.UTC)
    assert record.to_json() == UPSTREAM_EXAMPLE
    assert json.loads(record.encode()) == UPSTREAM_EXAMPLE


def test_images_are_stored_in_normal_form():
    record = decode_record(json.dumps({**UPSTREAM_EXAMPLE, "image": "alpine:3.19"}).encode(), where="x")
    assert record.image == "docker.io/library/alpine:3.19"
    assert str(record_key("r.io/a:1@sha256:" + "a" * 64)) == "r.io/a:1"


def test_timestamps_are_rfc3339_utc():
    when = dt.datetime(2026, 4, 1, 12, 0, 30, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert format_timestamp(when) == "2026-04-01T10:00:30Z"
    assert parse_timestamp("2026-04-01T12:00:30+02:00") == parse_timestamp("2026-04-01T10:00:30Z")
    assert parse_timestamp("2026-04-01T10:00:30").tzinfo == dt.UTC


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (json.dumps({**UPSTREAM_EXAMPLE, "base": 3}).encode(), "base"),
        (json.dumps({k: v for k, v in UPSTREAM_EXAMPLE.items() if k != "revision"}).encode(), "revision"),
        (json.dumps({**UPSTREAM_EXAMPLE, "platforms": "linux/amd64"}).encode(), "platforms"),
        (json.dumps({**UPSTREAM_EXAMPLE, "built_at": "yesterday"}).encode(), "yesterday"),
        (json.dumps({**UPSTREAM_EXAMPLE, "image": "Not A Ref"}).encode(), "invalid image reference"),
        (b"{" + b" " * (1024 * 1024) + b"}", "too large"),
    ],
)
def test_malformed_records_are_named_errors(data, fragment):
    with pytest.raises(RecordFormatError, match=re.escape(fragment)) as info:
        decode_record(data, where="store: key")
    assert str(info.value).startswith("store: key")


def test_build_record_defaults():
    record = BuildRecord(
        image="r.io/a:1",
        base="r.io/b:2",
        revision="r",
        project="p",
        platforms=(),
        built_at=dt.datetime.now(dt.UTC),
    )
    assert record.to_json()["custom_fields"] == {}
