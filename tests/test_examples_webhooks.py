"""The sample deliveries in ``examples/webhooks/`` parse and are answered as README.md and docs/bot.md say.

Each file is parsed with the real parsers (headers and signature as the forge would send them) and
must map to the event documented for it; a file without an entry in ``SAMPLES`` fails. The quick
start of the README is then replayed against ``imglife serve`` on ``examples/imglife.local.yaml``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.events import ChangeAction, CommentAction, EventKind, ForgeEvent
from bot.forges.gitea_hooks import parse_gitea
from bot.forges.gitlab_hooks import parse_gitlab
from tests.helpers.procs import ManagedProcess, free_port, http_status, wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "webhooks"
CONFIG = ROOT / "examples" / "imglife.local.yaml"
IMGLIFE = Path(sys.executable).with_name("imglife")
# The secrets of the README quick start.
GITLAB_SECRET = "change-me"
GITEA_SECRET = "change-me-too"
TAG_SHA = "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"
HEAD_SHA = "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"


@dataclass(frozen=True)
class Sample:
    forge: str  # "gitlab" or "gitea"
    event: str  # X-Gitlab-Event / X-Gitea-Event
    kind: EventKind


SAMPLES: dict[str, Sample] = {
    "gitlab-tag-push.json": Sample("gitlab", "Tag Push Hook", EventKind.TAG_PUSH),
    "gitlab-merge-request.json": Sample("gitlab", "Merge Request Hook", EventKind.CHANGE_REQUEST),
    "gitlab-note.json": Sample("gitlab", "Note Hook", EventKind.COMMENT),
    "gitlab-pipeline-tag-success.json": Sample("gitlab", "Pipeline Hook", EventKind.PIPELINE),
    "gitea-push-tag.json": Sample("gitea", "push", EventKind.TAG_PUSH),
    "gitea-create-tag.json": Sample("gitea", "create", EventKind.TAG_PUSH),
    "gitea-pull-request.json": Sample("gitea", "pull_request", EventKind.CHANGE_REQUEST),
    "gitea-issue-comment.json": Sample("gitea", "issue_comment", EventKind.COMMENT),
}


def signature(body: bytes, secret: str = GITEA_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers_for(sample: Sample, body: bytes, *, family: str = "Gitea") -> dict[str, str]:
    if sample.forge == "gitlab":
        return {
            "Content-Type": "application/json",
            "X-Gitlab-Event": sample.event,
            "X-Gitlab-Token": GITLAB_SECRET,
        }
    return {
        "Content-Type": "application/json",
        f"X-{family}-Event": sample.event,
        f"X-{family}-Signature": signature(body),
    }


def parse(name: str, *, family: str = "Gitea") -> ForgeEvent | None:
    sample = SAMPLES[name]
    body = (EXAMPLES / name).read_bytes()
    if sample.forge == "gitlab":
        return parse_gitlab(headers_for(sample, body), body, secret=GITLAB_SECRET)
    return parse_gitea(headers_for(sample, body, family=family), body, secret=GITEA_SECRET)


def test_every_sample_has_an_expectation():
    assert sorted(path.name for path in EXAMPLES.glob("*.json")) == sorted(SAMPLES)
    assert [path.name for path in EXAMPLES.iterdir() if path.suffix != ".json"] == []


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_parses_to_the_documented_event(name):
    event = parse(name)
    assert event is not None
    assert event.kind is SAMPLES[name].kind
    assert event.repo.path == "team/demo"
    assert event.repo.default_branch == "main"


@pytest.mark.parametrize("name", [name for name, sample in SAMPLES.items() if sample.forge == "gitea"])
def test_gitea_samples_parse_with_forgejo_headers_too(name):
    event = parse(name, family="Forgejo")
    assert event is not None
    assert event.kind is SAMPLES[name].kind


def test_tag_samples_name_the_tag_and_its_commit():
    events = [
        parse(name) for name in ("gitlab-tag-push.json", "gitea-push-tag.json", "gitea-create-tag.json")
    ]
    assert [(e.tag, e.sha) for e in events if e] == [("1.0.0", TAG_SHA)] * 3
    # Gitea sends push and create for one tag: one key, so one registration.
    gitea_push, gitea_create = events[1], events[2]
    assert gitea_push is not None
    assert gitea_create is not None
    assert gitea_push.content_key == gitea_create.content_key


def test_change_request_samples_are_opened_with_a_head_commit():
    for name in ("gitlab-merge-request.json", "gitea-pull-request.json"):
        event = parse(name)
        assert event is not None
        assert (event.change_action, event.number, event.sha) == (ChangeAction.OPENED, 5, HEAD_SHA)


def test_comment_samples_hold_a_command_on_a_merge_request():
    expected = {"gitlab-note.json": "/imglife help", "gitea-issue-comment.json": "/imglife status"}
    for name, body in expected.items():
        event = parse(name)
        assert event is not None
        assert (event.comment_action, event.comment_body, event.is_change_request, event.system) == (
            CommentAction.CREATED,
            body,
            True,
            False,
        )


def test_pipeline_sample_is_a_successful_tag_pipeline():
    event = parse("gitlab-pipeline-tag-success.json")
    assert event is not None
    assert (event.pipeline_status, event.tag, event.sha) == ("success", "1.0.0", TAG_SHA)


def test_the_documents_name_only_existing_samples():
    for document in (ROOT / "README.md", ROOT / "docs" / "bot.md"):
        named = set(re.findall(r"examples/webhooks/([\w.-]+\.json)", document.read_text()))
        assert named, f"{document.name} names no sample"
        assert named <= set(SAMPLES), f"{document.name} names missing samples: {named - set(SAMPLES)}"


# --- the README quick start, against the real server -----------------------------------------


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def deliver(port: int, name: str, **overrides: str) -> tuple[int, str]:
    sample = SAMPLES[name]
    body = (EXAMPLES / name).read_bytes()
    return post(port, f"/webhooks/{sample.forge}", body, {**headers_for(sample, body), **overrides})


def job_counts(port: int) -> dict[tuple[str, str], float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    pattern = re.compile(r'^imglife_jobs_total\{handler="([^"]+)",outcome="([^"]+)"\} (\S+)$', re.M)
    return {(handler, outcome): float(n) for handler, outcome, n in pattern.findall(text)}


def test_readme_quick_start_answers(tmp_path):
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("IMGLIFE_") and key not in ("GITLAB_TOKEN", "GITEA_TOKEN")
    }
    env |= {"IMGLIFE_GITLAB_WEBHOOK_SECRET": GITLAB_SECRET, "IMGLIFE_GITEA_WEBHOOK_SECRET": GITEA_SECRET}
    argv = [IMGLIFE, "--config", CONFIG, "serve", "--port", str(port)]
    proc = ManagedProcess(argv, log_path=tmp_path / "serve.log", cwd=ROOT, env=env)
    try:
        wait_until(
            lambda: http_status("127.0.0.1", port, "/healthz") == 200, timeout=30, what="serve", proc=proc
        )
        assert deliver(port, "gitlab-tag-push.json") == (202, "accepted\n")
        assert deliver(port, "gitlab-tag-push.json") == (200, "duplicate\n")
        assert deliver(port, "gitlab-tag-push.json", **{"X-Gitlab-Token": "wrong"}) == (
            401,
            "invalid X-Gitlab-Token\n",
        )
        assert deliver(port, "gitlab-merge-request.json") == (202, "accepted\n")
        assert deliver(port, "gitlab-note.json") == (202, "accepted\n")
        # It only wakes a registration waiting for the tag's image (none here), so nothing runs.
        assert deliver(port, "gitlab-pipeline-tag-success.json") == (202, "accepted\n")
        assert deliver(port, "gitea-push-tag.json") == (202, "accepted\n")
        assert deliver(port, "gitea-create-tag.json") == (200, "duplicate\n")
        assert deliver(port, "gitea-pull-request.json") == (202, "accepted\n")
        assert deliver(port, "gitea-issue-comment.json") == (202, "accepted\n")
        assert deliver(port, "gitea-push-tag.json", **{"X-Gitea-Signature": signature(b"x")}) == (
            401,
            "invalid signature\n",
        )
        # No GITLAB_TOKEN / GITEA_TOKEN: every job ends as forge_not_configured.
        expected = {(job, "forge_not_configured"): 2.0 for job in ("register", "check", "chatops")}
        wait_until(lambda: job_counts(port) == expected, timeout=10, what="jobs", proc=proc)
    finally:
        assert proc.stop() == 0, proc.log_tail()
    events = [json.loads(line) for line in proc.log_path.read_text().splitlines() if line.startswith("{")]
    received = [e for e in events if e["event"] == "webhook_received"]
    finished = [e for e in events if e["event"] == "job_finished"]
    assert len(received) == 11
    assert len(finished) == 6
    assert {e["outcome"] for e in finished} == {"forge_not_configured"}
    assert all(e["project"] == "team/demo" for e in finished)
