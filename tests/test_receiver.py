"""The webhook receiver over HTTP: status codes, de-duplication, answering before the work is done."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.events import EventKind, ForgeEvent
from bot.server.app import NO_WORK, QUEUE, ReceiverSettings, Work, build_app
from bot.server.jobs import JobSpec, MemoryQueue

GITLAB_SECRET = "gl-hook-secret-8c1f2e"
GITEA_SECRET = "gt-hook-secret-5a9d0b"

TAG_PUSH = {
    "object_kind": "tag_push",
    "event_name": "tag_push",
    "before": "0" * 40,
    "after": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
    "ref": "refs/tags/v1.0.0",
    "checkout_sha": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
    "user_id": 1,
    "user_name": "John Smith",
    "user_username": "jsmith",
    "project_id": 1,
    "project": {
        "id": 1,
        "name": "Example",
        "web_url": "http://example.com/jsmith/example",
        "path_with_namespace": "jsmith/example",
        "default_branch": "master",
    },
    "commits": [],
    "total_commits_count": 0,
}
GITEA_PUSH_TAG = {
    "ref": "refs/tags/v1.0.0",
    "before": "0" * 40,
    "after": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
    "commits": [],
    "repository": {"id": 1, "name": "example", "full_name": "jsmith/example", "default_branch": "main"},
    "pusher": {"id": 1, "login": "jsmith"},
    "sender": {"id": 1, "login": "jsmith"},
}


def gitlab_headers(
    event: str = "Tag Push Hook", *, token: str = GITLAB_SECRET, key: str | None = None
) -> dict:
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event, "X-Gitlab-Token": token}
    if key:
        headers["Idempotency-Key"] = key
    return headers


def gitea_headers(
    body: bytes, event: str = "push", *, family: str = "Gitea", secret: str = GITEA_SECRET
) -> dict:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        f"X-{family}-Event": event,
        f"X-{family}-Delivery": "d-1",
        f"X-{family}-Signature": signature,
    }


class Recorder:
    """A dispatcher that queues one job per event and remembers what ran."""

    def __init__(self) -> None:
        self.events: list[ForgeEvent] = []
        self.ran: list[str] = []
        self.release = asyncio.Event()
        self.release.set()

    def __call__(self, event: ForgeEvent) -> Work:
        self.events.append(event)
        if event.kind is not EventKind.TAG_PUSH:
            return NO_WORK
        return Work([JobSpec(event.repo.id, "register", event)])

    async def run(self, job: JobSpec) -> None:
        await self.release.wait()
        assert job.event is not None
        self.ran.append(job.event.content_key)

    def app(self, settings: ReceiverSettings):
        return build_app(settings, dispatch=self, queue=MemoryQueue(self.run, workers=2))


@pytest.fixture
async def bot() -> AsyncIterator[tuple[TestClient, Recorder]]:
    recorder = Recorder()
    settings = ReceiverSettings(
        gitlab_secret=GITLAB_SECRET, gitea_secret=GITEA_SECRET, max_body_bytes=1024 * 1024
    )
    client = TestClient(TestServer(recorder.app(settings)))
    await client.start_server()
    try:
        yield client, recorder
    finally:
        await client.close()


async def test_authentic_tag_push_is_accepted_and_the_work_runs_after_the_answer(bot):
    client, recorder = bot
    recorder.release.clear()
    response = await client.post("/webhooks/gitlab", data=json.dumps(TAG_PUSH), headers=gitlab_headers())
    assert response.status == 202
    assert await response.text() == "accepted\n"
    assert recorder.ran == []  # answered before the job could run
    recorder.release.set()
    await client.app[QUEUE].join()
    assert len(recorder.ran) == 1
    assert recorder.events[0].tag == "v1.0.0"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "application/json", "X-Gitlab-Event": "Tag Push Hook"}, 401),
        (gitlab_headers(token="wrong"), 401),
    ],
)
async def test_missing_or_wrong_gitlab_secret_is_401(bot, headers, status):
    client, recorder = bot
    response = await client.post("/webhooks/gitlab", data=json.dumps(TAG_PUSH), headers=headers)
    assert response.status == status
    assert recorder.events == []


async def test_unconfigured_secret_fails_closed():
    settings = ReceiverSettings(gitlab_secret=None, gitea_secret="")
    client = TestClient(TestServer(Recorder().app(settings)))
    await client.start_server()
    try:
        body = json.dumps(GITEA_PUSH_TAG).encode()
        assert (await client.post("/webhooks/gitlab", data=body, headers=gitlab_headers())).status == 401
        assert (
            await client.post("/webhooks/gitea", data=body, headers=gitea_headers(body, secret=""))
        ).status == 401
    finally:
        await client.close()


async def test_bad_bodies_get_400_and_huge_ones_413(bot):
    client, _ = bot
    assert (await client.post("/webhooks/gitlab", data=b"{not json", headers=gitlab_headers())).status == 400
    assert (await client.post("/webhooks/gitlab", data=b"[1, 2]", headers=gitlab_headers())).status == 400
    huge = b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}'
    too_large = await client.post("/webhooks/gitlab", data=io.BytesIO(huge), headers=gitlab_headers())
    assert too_large.status == 413


async def test_unmodelled_events_are_acknowledged_and_ignored(bot):
    client, _ = bot
    issue = {"object_kind": "issue", "project": TAG_PUSH["project"], "user": {"id": 1, "username": "jsmith"}}
    response = await client.post(
        "/webhooks/gitlab", data=json.dumps(issue), headers=gitlab_headers("Issue Hook")
    )
    assert response.status == 202
    assert await response.text() == "ignored\n"


async def test_replayed_deliveries_run_once(bot):
    client, recorder = bot
    body = json.dumps(TAG_PUSH)
    first = await client.post("/webhooks/gitlab", data=body, headers=gitlab_headers(key="k-1"))
    again = await client.post("/webhooks/gitlab", data=body, headers=gitlab_headers(key="k-1"))
    content_twin = await client.post("/webhooks/gitlab", data=body, headers=gitlab_headers(key="k-2"))
    assert (first.status, again.status, content_twin.status) == (202, 200, 200)
    await client.app[QUEUE].join()
    assert len(recorder.ran) == 1


async def test_gitea_push_and_create_of_one_tag_register_once(bot):
    client, recorder = bot
    push = json.dumps(GITEA_PUSH_TAG).encode()
    create = json.dumps(
        {
            "ref": "v1.0.0",
            "ref_type": "tag",
            "sha": GITEA_PUSH_TAG["after"],
            "repository": GITEA_PUSH_TAG["repository"],
            "sender": GITEA_PUSH_TAG["sender"],
        }
    ).encode()
    assert (await client.post("/webhooks/gitea", data=push, headers=gitea_headers(push))).status == 202
    second = await client.post(
        "/webhooks/gitea", data=create, headers=gitea_headers(create, "create", family="Forgejo")
    )
    assert second.status == 200
    await client.app[QUEUE].join()
    assert len(recorder.ran) == 1


async def test_gitea_signature_must_match_the_body(bot):
    client, _ = bot
    body = json.dumps(GITEA_PUSH_TAG).encode()
    headers = gitea_headers(b"something else")
    assert (await client.post("/webhooks/gitea", data=body, headers=headers)).status == 401
    form = gitea_headers(body) | {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await client.post("/webhooks/gitea", data=body, headers=form)).status == 415


async def test_health_readiness_and_metrics(bot):
    client, _ = bot
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await client.post("/webhooks/gitlab", data=json.dumps(TAG_PUSH), headers=gitlab_headers(token="nope"))
    metrics = await (await client.get("/metrics")).text()
    assert (
        'imglife_webhook_deliveries_total{event="unknown",forge="gitlab",outcome="rejected"} 1.0' in metrics
    )
    assert "imglife_webhook_ack_seconds_bucket" in metrics
    assert "imglife_job_queue_depth" in metrics
    await client.app[QUEUE].drain(1)
    assert (await client.get("/readyz")).status == 503
