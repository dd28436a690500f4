"""Registry protocol helpers without IO: challenges, scopes, pagination, Retry-After."""

import email.utils

import pytest

from bot.oci.sansio import (
    DOCKER_MANIFEST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    media_type_of,
    merge_scopes,
    next_page_url,
    parse_challenge,
    parse_error_body,
    parse_retry_after,
)
from bot.retry import RetryPolicy


def test_bearer_challenge_parameters_are_parsed():
    challenge = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/app:pull,push repository:base/x:pull",error="insufficient_scope"'
    )
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.service == "registry.example.com"
    assert challenge.scopes == ("repository:team/app:pull,push", "repository:base/x:pull")


def test_basic_challenge_and_garbage():
    basic = parse_challenge('Basic realm="basic-realm"')
    assert basic is not None
    assert basic.scheme == "basic"
    assert basic.realm == "basic-realm"
    assert parse_challenge(None) is None
    assert parse_challenge("") is None


def test_scopes_merge_per_resource_into_a_stable_key():
    merged = merge_scopes(["repository:a:pull"], ["repository:a:push", "repository:b:pull"])
    assert merged == ("repository:a:pull,push", "repository:b:pull")
    assert merge_scopes(["repository:b:pull", "repository:a:push,pull"]) == merge_scopes(
        ["repository:a:pull,push"], ["repository:b:pull"]
    )


def test_next_page_link_is_resolved_against_the_current_url():
    link = '</v2/team/app/tags/list?last=b&n=2>; rel="next"'
    assert next_page_url(link, "http://r:5000/v2/team/app/tags/list?n=2") == (
        "http://r:5000/v2/team/app/tags/list?last=b&n=2"
    )
    assert next_page_url('<https://x/y>; rel="prev"', "https://x/") is None
    assert next_page_url(None, "https://x/") is None


def test_retry_after_in_seconds_and_as_a_date():
    assert parse_retry_after("3") == 3.0
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 10, usegmt=True), now=now) == pytest.approx(
        10, abs=1
    )
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_retry_policy_honours_and_bounds_retry_after():
    policy = RetryPolicy(attempts=3, base_delay=1, max_delay=4, max_retry_after=30)
    assert policy.delay(1, retry_after=7) == 7
    assert 0 <= policy.delay(5) <= 4
    assert policy.gives_up(3)
    assert not policy.gives_up(1, retry_after=30)
    assert policy.gives_up(1, retry_after=3600)


def test_accept_header_names_all_four_manifest_types():
    for media_type in (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ):
        assert media_type in MANIFEST_ACCEPT


def test_media_type_prefers_the_documents_own_field():
    assert media_type_of(b'{"mediaType": "%s"}' % OCI_INDEX.encode(), DOCKER_MANIFEST) == OCI_INDEX
    assert media_type_of(b"{}", f"{DOCKER_MANIFEST}; charset=utf-8") == DOCKER_MANIFEST


def test_error_bodies():
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
    error = parse_error_body(body)
    assert (error.code, error.message) == ("MANIFEST_UNKNOWN", "manifest unknown")
    assert parse_error_body(b"<html>").code is None
