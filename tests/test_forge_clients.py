"""The forge API clients the bot uses, against the GitLab and Gitea fakes (kept honest elsewhere)."""

from __future__ import annotations

import pytest

from bot.events import Actor, Forge, Repo
from bot.forges.api import (
    DEVELOPER,
    MAINTAINER,
    NO_ACCESS,
    REPORTER,
    CommitState,
    CommitStatus,
    ForgeError,
    GiteaForge,
    GitLabForge,
    PermissionUnknown,
)
from bot.retry import RetryPolicy
from tests.fakes.gitea import FakeGitea
from tests.fakes.gitlab import FakeGitLab

SHA = "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7"
FAST = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.02)


@pytest.fixture
def gitlab():
    with FakeGitLab() as fake:
        fake.add_token("bot-token", "imglife-bot")
        fake.add_token("dev-token", "dev")
        project = fake.add_project("team/app", members={"imglife-bot": 40, "dev": 30, "viewer": 20})
        fake.add_merge_request(project.id, 7, "feature", SHA)
        fake.add_issue(project.id, 3)
        fake.add_file(project.id, "main", ".imglife.yml", "images: [registry.example.com/apps/app]\n")
        yield fake, Repo(Forge.GITLAB, str(project.id), "team/app", "main")


@pytest.fixture
def gitea():
    with FakeGitea() as fake:
        fake.add_token("bot-token", "imglife-bot")
        fake.add_repo("team", "app", collaborators={"imglife-bot": "admin", "dev": "write", "viewer": "read"})
        pull = fake.add_pull("team", "app")
        fake.add_file("team", "app", "main", ".imglife.yml", "images: []\n")
        yield fake, Repo(Forge.GITEA, "team/app", "team/app", "main"), pull.index


async def test_gitlab_status_state_machine_is_absorbed(gitlab):
    fake, repo = gitlab
    forge = GitLabForge(fake.url, "bot-token", retry=FAST)
    try:
        pending = CommitStatus("imglife/check", CommitState.PENDING, "checking the base image")
        await forge.set_status(repo, SHA, pending, ref="refs/heads/feature")
        await forge.set_status(repo, SHA, pending, ref="refs/heads/feature")  # GitLab: 400 Cannot transition
        done = CommitStatus("imglife/check", CommitState.FAILURE, "base image is outdated " * 20)
        await forge.set_status(repo, SHA, done, ref="refs/heads/feature")
    finally:
        await forge.aclose()
    rows = fake.statuses(repo.id, SHA)
    assert [(r.status, r.ref, r.name) for r in rows if not r.retried][-1] == (
        "failed",
        "feature",
        "imglife/check",
    )
    assert len(rows[-1].description or "") <= 140


async def test_gitlab_comments_reactions_permissions_files(gitlab):
    fake, repo = gitlab
    fake.add_note(repo.id, "merge_requests", 7, "/imglife status", author="dev")
    forge = GitLabForge(fake.url, "bot-token", retry=FAST)
    try:
        me = await forge.current_user_id()
        created = await forge.create_comment(repo, 7, "<!-- imglife:check -->\nfirst", change_request=True)
        await forge.edit_comment(repo, 7, created.id, "<!-- imglife:check -->\nsecond", change_request=True)
        comments = await forge.comments(repo, 7, change_request=True)
        assert [(c.body.splitlines()[-1], c.author_id == me) for c in comments] == [
            ("/imglife status", False),
            ("second", True),
        ]
        user_note = comments[0]
        await forge.react(repo, 7, user_note.id, change_request=True)
        await forge.react(repo, 7, user_note.id, change_request=True)  # already there: fine
        with pytest.raises(ForgeError, match="403"):
            await forge.edit_comment(repo, 7, user_note.id, "hijacked", change_request=True)
        await forge.create_comment(repo, 3, "on an issue", change_request=False)
        levels = [
            await forge.access_level(repo, Actor(fake.add_user(u).id, u)) for u in ("dev", "viewer", "nobody")
        ]
        assert levels == [DEVELOPER, REPORTER, NO_ACCESS]
        assert (
            await forge.read_file(repo, ".imglife.yml", ref="main")
            == b"images: [registry.example.com/apps/app]\n"
        )
        assert await forge.read_file(repo, "missing.yml", ref="main") is None
    finally:
        await forge.aclose()
    assert fake.notes(repo.id, "merge_requests", 7)[0].body == "/imglife status"


async def test_gitea_statuses_comments_reactions_permissions_files(gitea):
    fake, repo, number = gitea
    fake.add_comment("team", "app", number, "/imglife check", author="dev")
    forge = GiteaForge(fake.url, "bot-token", retry=FAST)
    try:
        await forge.set_status(repo, SHA, CommitStatus("imglife/check", CommitState.RUNNING, "checking"))
        await forge.set_status(repo, SHA, CommitStatus("imglife/check", CommitState.SUCCESS, "up to date"))
        me = await forge.current_user_id()
        created = await forge.create_comment(repo, number, "report", change_request=True)
        await forge.edit_comment(repo, number, created.id, "report, edited", change_request=True)
        comments = await forge.comments(repo, number, change_request=True)
        assert [(c.body, c.author_id == me) for c in comments] == [
            ("/imglife check", False),
            ("report, edited", True),
        ]
        await forge.react(repo, number, comments[0].id, change_request=True)
        await forge.react(repo, number, comments[0].id, change_request=True)
        levels = [await forge.access_level(repo, Actor(None, u)) for u in ("dev", "viewer", "stranger")]
        assert levels == [DEVELOPER, REPORTER, NO_ACCESS]
        assert await forge.access_level(repo, Actor(None, "imglife-bot")) == MAINTAINER
        fake.fail_next("GET", r"/collaborators/dev/permission$", 403)
        with pytest.raises(PermissionUnknown, match="admin access to the repository"):
            await forge.access_level(repo, Actor(None, "dev"))
        assert await forge.read_file(repo, ".imglife.yml", ref="main") == b"images: []\n"
        assert await forge.read_file(repo, "nope", ref="main") is None
    finally:
        await forge.aclose()
    assert [s.state for s in fake.statuses("team", "app", SHA)] == ["pending", "success"]


async def test_gitlab_directory_listing_head_and_tags(gitlab):
    fake, repo = gitlab
    dockerfiles = [f"docker/{i:03d}.Dockerfile" for i in range(110)]
    for path in dockerfiles:
        fake.add_file(repo.id, SHA, path, "FROM alpine:3.21\n")
    fake.add_file(repo.id, SHA, "docker/build.sh", "make\n", mode="100755")  # executable: a regular file
    fake.add_file(repo.id, SHA, "docker/latest", "000.Dockerfile", mode="120000")  # symlink: left out
    fake.add_file(repo.id, SHA, "docker/sub/Dockerfile", "FROM debian:12\n")  # not directly inside
    fake.add_tag(repo.id, "release/1.0", SHA, message="1.0")
    forge = GitLabForge(fake.url, "bot-token", retry=FAST)
    try:
        assert await forge.list_directory(repo, "docker", ref=SHA) == [*dockerfiles, "docker/build.sh"]
        assert fake.request_count("GET", r"/repository/tree") == 2  # 113 entries: two pages of 100
        assert await forge.list_directory(repo, "/docker/sub/", ref=SHA) == ["docker/sub/Dockerfile"]
        assert await forge.list_directory(repo, "", ref="main") == [".imglife.yml"]
        assert await forge.list_directory(repo, "docker", ref="release/1.0") == [
            *dockerfiles,
            "docker/build.sh",
        ]
        for path, ref in (("nope", SHA), ("docker", "no-such-branch"), ("docker/sub/Dockerfile", SHA)):
            assert await forge.list_directory(repo, path, ref=ref) == []
        assert await forge.change_request_head(repo, 7) == SHA
        assert await forge.change_request_head(repo, 8) is None
        assert await forge.tag_commit(repo, "release/1.0") == SHA
        assert fake.request_count("GET", r"/repository/tags/release%2F1\.0$") == 1
        assert await forge.tag_commit(repo, "v0") is None
        fake.fail_next("GET", r"/merge_requests/7$", 403)
        with pytest.raises(ForgeError, match="403"):
            await forge.change_request_head(repo, 7)
    finally:
        await forge.aclose()


async def test_gitea_directory_listing_head_and_tags(gitea):
    fake, repo, number = gitea
    fake.add_file("team", "app", SHA, "docker/Dockerfile", "FROM alpine:3.21\n")
    fake.add_file("team", "app", SHA, "docker/build.sh", "make\n", mode="100755")
    fake.add_file("team", "app", SHA, "docker/latest", "Dockerfile", mode="120000")
    fake.add_file("team", "app", SHA, "docker/sub/Dockerfile", "FROM debian:12\n")
    fake.add_tag("team", "app", "release/1.0", SHA, message="1.0")
    pull = fake.add_pull("team", "app", head="bump", head_sha="e" * 40)
    issue = fake.add_issue("team", "app")
    forge = GiteaForge(fake.url, "bot-token", retry=FAST)
    try:
        assert await forge.list_directory(repo, "docker", ref=SHA) == ["docker/Dockerfile", "docker/build.sh"]
        assert await forge.list_directory(repo, "docker/sub", ref=SHA) == ["docker/sub/Dockerfile"]
        assert await forge.list_directory(repo, "/", ref="main") == [".imglife.yml"]
        assert await forge.list_directory(repo, "docker", ref="release/1.0") == [
            "docker/Dockerfile",
            "docker/build.sh",
        ]
        for path, ref in (("nope", SHA), ("docker", "no-such-branch"), ("docker/Dockerfile", SHA)):
            assert await forge.list_directory(repo, path, ref=ref) == []
        assert await forge.change_request_head(repo, pull.index) == "e" * 40
        with fake.lock:
            fixture_head = fake.state.repos["team/app"].issues[number].head_sha
        assert await forge.change_request_head(repo, number) == fixture_head
        assert await forge.change_request_head(repo, issue.index) is None  # an issue, not a pull
        assert await forge.change_request_head(repo, 99) is None
        assert await forge.tag_commit(repo, "release/1.0") == SHA
        assert fake.request_count("GET", r"/tags/release/1\.0$") == 1  # the rest of the path is the name
        assert await forge.tag_commit(repo, "v0") is None
    finally:
        await forge.aclose()


async def test_forge_failures_are_one_clear_error(gitlab):
    fake, _ = gitlab
    forge = GitLabForge(fake.url, "wrong-token", retry=FAST)
    try:
        with pytest.raises(ForgeError, match="401"):
            await forge.current_user_id()
    finally:
        await forge.aclose()
    closed = GitLabForge("http://127.0.0.1:9", "t", retry=FAST)
    try:
        with pytest.raises(ForgeError, match="cannot reach GitLab"):
            await closed.current_user_id()
    finally:
        await closed.aclose()
