"""`imglife serve` end to end with Gitea/Forgejo: the fake Gitea, a real registry, a real record store.

The bot runs as a subprocess and is driven only over HTTP, with signed deliveries built from the
Gitea payload fixtures (re-pointed at the fake's repository, users and comments). What a user
would see is asserted: records written, commit statuses, the one PR comment, chat-ops replies and
reactions. The bot's user is a repository **admin**: Gitea answers "what permission does this
commenter have?" only for repository admins (one test shows what happens with mere write access).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.fakes import FakeGitea, GiteaToken
from tests.fakes.gitea import GiteaComment, GiteaStatus
from tests.helpers.bot import GITEA_SECRET, MARKER, AppWorld, RunningBot, bot_config, fixture, run_bot, sha
from tests.helpers.lifecycle import ALPINE_EOL, ALPINE_LATEST, ALPINE_OLD_CORE

BOT = "imglife-bot"
BOT_TOKEN = "gitea-imglife-bot-e2e-token"
OWNER, REPO = "team", "app"
FULL_NAME = f"{OWNER}/{REPO}"
REGISTER = "imglife/register"
CHECK = "imglife/check"


@dataclass
class World(AppWorld):
    fake: FakeGitea
    bot: RunningBot
    repo_id: int
    bot_user_id: int

    def statuses(self, commit: str, context: str) -> list[GiteaStatus]:
        """The rows posted for ``commit`` under ``context``, oldest first (Gitea keeps every POST)."""
        return [s for s in self.fake.statuses(OWNER, REPO, commit) if s.context == context]

    def states(self, commit: str, context: str) -> list[str]:
        return [s.state for s in self.statuses(commit, context)]

    def bot_comments(self, index: int) -> list[GiteaComment]:
        return [c for c in self.fake.comments(OWNER, REPO, index) if c.poster_id == self.bot_user_id]

    def comment_by(self, index: int, login: str) -> GiteaComment:
        user_id = self.fake.add_user(login).id
        return next(c for c in self.fake.comments(OWNER, REPO, index) if c.poster_id == user_id)

    def user(self, login: str) -> dict[str, Any]:
        """A webhook ``User`` object for a user of the fake (same id and login)."""
        account = self.fake.add_user(login)
        payload = fixture("gitea", "push__tag")["sender"]
        payload.update(
            id=account.id,
            login=account.login,
            username=account.login,
            full_name=account.full_name,
            email=account.email,
            avatar_url=f"{self.fake.url}/avatars/{account.id}",
        )
        return payload

    def repository(self) -> dict[str, Any]:
        payload = fixture("gitea", "push__tag")["repository"]
        payload.update(
            id=self.repo_id,
            owner=self.user(OWNER),
            name=REPO,
            full_name=FULL_NAME,
            private=True,
            html_url=f"{self.fake.url}/{FULL_NAME}",
            clone_url=f"{self.fake.url}/{FULL_NAME}.git",
            ssh_url=f"ssh://git@127.0.0.1/{FULL_NAME}.git",
            default_branch="main",
        )
        return payload


@contextmanager
def make_world(
    tmp_path: Path,
    registry: Any,
    *,
    register_wait: str = "20s",
    strict: bool = False,
    bot_permission: Literal["write", "admin"] = "admin",
    flavor: Literal["gitea", "forgejo"] = "gitea",
) -> Iterator[World]:
    fake = FakeGitea(tokens={BOT_TOKEN: GiteaToken(BOT)}, flavor=flavor)
    with fake:
        repo = fake.add_repo(
            OWNER,
            REPO,
            collaborators={BOT: bot_permission, "rita": "read", "dev": "write"},
            private=True,
        )
        names = AppWorld.names(registry)
        image_repo = names["image_repo"]
        settings = f"images:\n  - {image_repo}\ncheck:\n  strict: {str(strict).lower()}\n"
        fake.add_file(OWNER, REPO, "main", ".imglife.yml", settings)
        forge_block = f"  gitea: {{url: '{fake.url}'}}\n  register_wait: {register_wait}\n  workers: 4\n"
        config = bot_config(tmp_path, registry, names, forge_block)
        environ = {"IMGLIFE_GITEA_WEBHOOK_SECRET": GITEA_SECRET, "GITEA_TOKEN": BOT_TOKEN}
        with run_bot(config, environ, log_dir=tmp_path) as bot:
            yield World(
                registry=registry,
                records=tmp_path / "records",
                **names,
                fake=fake,
                bot=bot,
                repo_id=repo.id,
                bot_user_id=fake.add_user(BOT).id,
            )


@pytest.fixture
def world(tmp_path: Path, anon_registry: Any) -> Iterator[World]:
    with make_world(tmp_path, anon_registry) as w:
        yield w


# --- payloads (the Gitea fixtures, re-pointed at this repository) -------------------------------


def push_tag(w: World, tag: str, commit: str, *, pusher: str = "dev") -> dict[str, Any]:
    payload = fixture("gitea", "push__tag")
    payload.update(ref=f"refs/tags/{tag}", after=commit, repository=w.repository())
    payload["pusher"] = payload["sender"] = w.user(pusher)
    return payload


def create_tag(w: World, tag: str, commit: str, *, full_ref: bool = False) -> dict[str, Any]:
    """Gitea sends the short tag name; a Forgejo-type hook sends ``refs/tags/...``."""
    payload = fixture("gitea", "create__tag")
    ref = f"refs/tags/{tag}" if full_ref else tag
    payload.update(ref=ref, sha=commit, repository=w.repository(), sender=w.user("dev"))
    return payload


def pull_request(w: World, name: str, number: int, head: str, *, author: str = "dev") -> dict[str, Any]:
    payload = fixture("gitea", name)
    repository = w.repository()
    payload.update(number=number, repository=repository, sender=w.user(author))
    pull = payload["pull_request"]
    html = f"{w.fake.url}/{FULL_NAME}/pulls/{number}"
    pull.update(id=number, number=number, user=w.user(author), url=html, html_url=html)
    for side, branch in (("base", "main"), ("head", "feature")):
        pull[side].update(label=branch, ref=branch, repo_id=w.repo_id, repo=repository)
    pull["head"]["sha"] = head
    return payload


def comment(
    w: World, body: str, *, author: str, number: int, on_pull: bool, edited: bool = False
) -> dict[str, Any]:
    """A comment made in the fake (so it can be reacted to) and its ``issue_comment`` payload."""
    created = w.fake.add_comment(OWNER, REPO, number, body, author=author)
    return comment_payload(w, created, author=author, on_pull=on_pull, edited=edited)


def comment_payload(
    w: World, created: GiteaComment, *, author: str, on_pull: bool, edited: bool = False
) -> dict[str, Any]:
    """The ``issue_comment`` delivery for a comment that exists in the fake."""
    body, number = created.body, created.issue_index
    name = (
        "issue_comment__edited" if edited else f"issue_comment__created_on_{'pull' if on_pull else 'issue'}"
    )
    payload = fixture("gitea", name)
    payload.update(repository=w.repository(), sender=w.user(author), is_pull=on_pull)
    kind = "pulls" if on_pull else "issues"
    issue = payload["issue"]
    issue.update(
        number=number,
        url=f"{w.fake.url}/api/v1/repos/{FULL_NAME}/issues/{number}",
        html_url=f"{w.fake.url}/{FULL_NAME}/{kind}/{number}",
        repository={"id": w.repo_id, "name": REPO, "owner": OWNER, "full_name": FULL_NAME},
    )
    issue["pull_request"] = (
        {"merged": False, "merged_at": None, "draft": False, "html_url": issue["html_url"]}
        if on_pull
        else None
    )
    payload["comment"].update(
        id=created.id,
        body=body,
        user=w.user(author),
        html_url=f"{issue['html_url']}#issuecomment-{created.id}",
        pull_request_url=issue["html_url"] if on_pull else "",
        issue_url="" if on_pull else issue["html_url"],
    )
    return payload


def add_dockerfile(w: World, ref: str, base: str) -> None:
    w.fake.add_file(OWNER, REPO, ref, "Dockerfile", f"ARG BASE={base}\nFROM $BASE\nRUN true\n")


# --- tag push -------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [("push", "create"), ("create", "push")])
def test_a_tag_registers_once_though_gitea_sends_push_and_create(
    world: World, order: tuple[str, str]
) -> None:
    world.push_app_image("v1.2.0")
    payloads = {"push": push_tag(world, "v1.2.0", sha(10)), "create": create_tag(world, "v1.2.0", sha(10))}
    first, second = (world.bot.deliver_gitea(event, payloads[event]) for event in order)
    assert (first.status_code, first.text.strip()) == (202, "accepted")
    assert (second.status_code, second.text.strip()) == (200, "duplicate")
    assert world.bot.wait_for_jobs("register", 1) == {"registered": 1}

    (record,) = world.stored_records()
    assert record["image"] == f"{world.image_repo}:v1.2.0"
    assert record["base"] == ALPINE_LATEST
    assert record["revision"] == sha(10)
    assert record["project"] == FULL_NAME
    assert record["platforms"] == ["linux/amd64"]
    (status,) = world.statuses(sha(10), REGISTER)
    assert status.state == "success"
    assert status.creator_id == world.bot_user_id
    assert f"{world.image_repo}:v1.2.0" in status.description
    assert world.bot.jobs() == {("register", "registered"): 1}


def test_an_annotated_tag_is_recorded_with_its_commit_not_the_tag_object(world: World) -> None:
    tag_object, commit = sha(0xA7), sha(0xC0)
    world.fake.add_tag(OWNER, REPO, "v1.3.0", commit, message="release 1.3.0")
    world.push_app_image("v1.3.0")
    world.bot.deliver_gitea("push", push_tag(world, "v1.3.0", tag_object))
    assert world.bot.wait_for_jobs("register", 1) == {"registered": 1}
    (record,) = world.stored_records()
    assert record["revision"] == commit
    assert world.states(commit, REGISTER) == ["success"]
    assert world.statuses(tag_object, REGISTER) == []


def test_an_image_pushed_after_the_tag_is_registered_within_the_wait(world: World) -> None:
    world.bot.deliver_gitea("push", push_tag(world, "v2.0.0", sha(20)))
    world.bot.wait_for(
        lambda: "pending" in world.states(sha(20), REGISTER),
        "a pending imglife/register status while the image is missing",
    )
    assert world.stored_records() == []
    (waiting, *_) = world.statuses(sha(20), REGISTER)
    assert "waiting for" in waiting.description
    world.push_app_image("v2.0.0")
    world.bot.wait_for(
        lambda: world.states(sha(20), REGISTER)[-1:] == ["success"],
        "imglife/register success once the image is there",
    )
    states = world.states(sha(20), REGISTER)
    assert states[0] == "pending"
    assert states.count("success") == 1
    (record,) = world.stored_records()
    assert record["image"] == f"{world.image_repo}:v2.0.0"
    outcomes = world.bot.jobs()
    assert outcomes[("register", "waiting")] >= 1
    assert outcomes[("register", "registered")] == 1


def test_an_image_that_never_appears_fails_the_status_after_the_wait(
    tmp_path: Path, anon_registry: Any
) -> None:
    with make_world(tmp_path, anon_registry, register_wait="2s") as w:
        w.bot.deliver_gitea("create", create_tag(w, "v3.0.0", sha(30)))
        w.bot.wait_for(
            lambda: w.states(sha(30), REGISTER)[-1:] == ["failure"],
            "imglife/register failure after the wait",
        )
        assert "did not appear in the registry within 2s" in w.statuses(sha(30), REGISTER)[-1].description
        assert w.stored_records() == []


# --- pull requests --------------------------------------------------------------------------------


def test_pull_request_gets_a_status_and_one_comment_that_new_commits_edit(world: World) -> None:
    pull = world.fake.add_pull(OWNER, REPO, head="feature", head_sha=sha(1), poster="dev")
    add_dockerfile(world, sha(1), ALPINE_OLD_CORE)
    opened = pull_request(world, "pull_request__opened", pull.index, sha(1))
    assert world.bot.deliver_gitea("pull_request", opened).status_code == 202
    world.bot.wait_for_jobs("check", 1)

    (status,) = world.statuses(sha(1), CHECK)
    assert status.state == "success"  # not strict: an outdated base is reported, not failed
    assert status.description == "1 base image: 1 outdated"
    assert status.creator_id == world.bot_user_id
    (first,) = world.bot_comments(pull.index)
    assert first.body.startswith(MARKER)
    assert f"`{ALPINE_OLD_CORE}`" in first.body
    assert "`registry.example.com/bases/alpine:3.22.1-core1.2.0`" in first.body  # the latest
    assert "⚠️ no" in first.body

    with world.fake.lock:
        pull.head_sha = sha(2)
    add_dockerfile(world, sha(2), ALPINE_LATEST)
    synchronized = pull_request(world, "pull_request__synchronized", pull.index, sha(2))
    assert world.bot.deliver_gitea("pull_request", synchronized).status_code == 202
    world.bot.wait_for_jobs("check", 2)

    (edited,) = world.bot_comments(pull.index)
    assert edited.id == first.id
    assert "✅ yes" in edited.body
    assert f"`{ALPINE_OLD_CORE}`" not in edited.body
    (status,) = world.statuses(sha(2), CHECK)
    assert (status.state, status.description) == ("success", "1 base image up to date and supported")
    assert len(world.statuses(sha(1), CHECK)) == 1  # the old head keeps its own status


def test_strict_repositories_fail_the_status_for_a_base_at_end_of_life(
    tmp_path: Path, anon_registry: Any
) -> None:
    with make_world(tmp_path, anon_registry, strict=True) as w:
        pull = w.fake.add_pull(OWNER, REPO, head_sha=sha(3))
        add_dockerfile(w, sha(3), ALPINE_EOL)
        w.bot.deliver_gitea("pull_request", pull_request(w, "pull_request__opened", pull.index, sha(3)))
        w.bot.wait_for_jobs("check", 1)
        (status,) = w.statuses(sha(3), CHECK)
        assert status.state == "failure"
        assert "at end of life" in status.description
        (note,) = w.bot_comments(pull.index)
        assert "❌ ended" in note.body
        assert "strict" in note.body


def test_bases_named_in_gitea_and_forgejo_workflows_are_checked(world: World) -> None:
    pull = world.fake.add_pull(OWNER, REPO, head_sha=sha(4))  # no Dockerfile at this commit
    world.fake.add_file(
        OWNER,
        REPO,
        sha(4),
        ".gitea/workflows/build.yml",
        "on: [push]\n"
        f"env:\n  BASE_IMAGE: {ALPINE_OLD_CORE}\n"
        "jobs:\n  build:\n    runs-on: docker\n    steps:\n"
        "      - run: docker build --build-arg BASE=$BASE_IMAGE .\n",
    )
    world.fake.add_file(
        OWNER,
        REPO,
        sha(4),
        ".forgejo/workflows/release.yaml",
        f"on: [push]\njobs:\n  release:\n    runs-on: docker\n    env:\n      BASE_IMAGE: {ALPINE_LATEST}\n",
    )
    world.fake.add_file(OWNER, REPO, sha(4), ".gitea/workflows/README.md", f"BASE_IMAGE: {ALPINE_EOL}\n")
    world.bot.deliver_gitea("pull_request", pull_request(world, "pull_request__opened", pull.index, sha(4)))
    assert world.bot.wait_for_jobs("check", 1) == {"success": 1}

    (status,) = world.statuses(sha(4), CHECK)
    assert status.description == "2 base images: 1 outdated"
    (note,) = world.bot_comments(pull.index)
    assert "`.gitea/workflows/build.yml env.BASE_IMAGE`" in note.body
    assert "`.forgejo/workflows/release.yaml jobs.release.env.BASE_IMAGE`" in note.body
    assert f"`{ALPINE_OLD_CORE}`" in note.body
    assert ALPINE_EOL not in note.body  # README.md is not a workflow


def test_label_and_title_edits_do_nothing(world: World) -> None:
    # Two pull requests: both edits map to the "edited" action, and on one pull request at one
    # head the second would be answered as a content duplicate instead.
    for name, action, head in (
        ("pull_request__label_updated", "label_updated", sha(5)),
        ("pull_request__opened", "edited", sha(15)),  # a title or description edit
    ):
        pull = world.fake.add_pull(OWNER, REPO, head_sha=head)
        add_dockerfile(world, head, ALPINE_OLD_CORE)
        payload = pull_request(world, name, pull.index, head)
        payload["action"] = action
        answer = world.bot.deliver_gitea("pull_request", payload)
        assert (answer.status_code, answer.text.strip()) == (202, "ignored"), action
        assert world.fake.comments(OWNER, REPO, pull.index) == []
        assert world.fake.statuses(OWNER, REPO, head) == []
    assert world.bot.jobs() == {}


def test_a_duplicate_delivery_runs_one_job(world: World) -> None:
    pull = world.fake.add_pull(OWNER, REPO, head_sha=sha(6))
    add_dockerfile(world, sha(6), ALPINE_LATEST)
    opened = pull_request(world, "pull_request__opened", pull.index, sha(6))
    first = world.bot.deliver_gitea("pull_request", opened)
    again = world.bot.deliver_gitea("pull_request", opened)  # a redelivery: new X-Gitea-Delivery
    assert [first.status_code, again.status_code] == [202, 200]
    assert again.text.strip() == "duplicate"
    # A later job on the same pull request runs after the first; then exactly two have run.
    with world.fake.lock:
        pull.head_sha = sha(7)
    add_dockerfile(world, sha(7), ALPINE_LATEST)
    world.bot.deliver_gitea(
        "pull_request", pull_request(world, "pull_request__synchronized", pull.index, sha(7))
    )
    world.bot.wait_for_jobs("check", 2)
    assert sum(n for (handler, _), n in world.bot.jobs().items() if handler == "check") == 2
    assert len(world.bot_comments(pull.index)) == 1
    assert len(world.statuses(sha(6), CHECK)) == 1


def test_the_bot_never_edits_a_comment_it_did_not_write(world: World) -> None:
    # On Gitea anyone with write access may edit others' comments: only the author check stops the bot.
    pull = world.fake.add_pull(OWNER, REPO, head_sha=sha(9))
    add_dockerfile(world, sha(9), ALPINE_LATEST)
    forged = world.fake.add_comment(OWNER, REPO, pull.index, f"{MARKER}\nplease edit me", author="rita")
    world.bot.deliver_gitea("pull_request", pull_request(world, "pull_request__opened", pull.index, sha(9)))
    world.bot.wait_for_jobs("check", 1)
    assert world.comment_by(pull.index, "rita").body == forged.body == f"{MARKER}\nplease edit me"
    assert len(world.bot_comments(pull.index)) == 1


# --- webhook authentication and format -------------------------------------------------------------


def test_wrong_or_missing_signature_and_form_bodies_are_refused(world: World) -> None:
    payload = push_tag(world, "v9.0.0", sha(90))
    assert world.bot.deliver_gitea("push", payload, secret="wrong").status_code == 401
    assert world.bot.deliver_gitea("push", payload, secret="wrong", family="Forgejo").status_code == 401
    unsigned = world.bot.http.post(
        "/webhooks/gitea",
        content=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "X-Gitea-Event": "push"},
    )
    assert unsigned.status_code == 401
    form = world.bot.deliver_gitea("push", payload, form=True)  # authentic, but form-encoded
    assert form.status_code == 415
    assert "application/json" in form.text
    assert world.bot.http.post("/webhooks/gitlab", content=b"{}").status_code == 401  # no GitLab secret set
    assert world.bot.jobs() == {}
    assert world.fake.statuses(OWNER, REPO, sha(90)) == []
    assert world.bot.http.get("/healthz").status_code == 200


def test_forgejo_headers_work_the_same(tmp_path: Path, anon_registry: Any) -> None:
    with make_world(tmp_path, anon_registry, flavor="forgejo") as w:
        w.push_app_image("v5.0.0")
        # A Forgejo-type hook names the tag by its full ref in `create`.
        created = w.bot.deliver_gitea(
            "create", create_tag(w, "v5.0.0", sha(50), full_ref=True), family="Forgejo"
        )
        assert (created.status_code, created.text.strip()) == (202, "accepted")
        pushed = w.bot.deliver_gitea("push", push_tag(w, "v5.0.0", sha(50)), family="Forgejo")
        assert (pushed.status_code, pushed.text.strip()) == (200, "duplicate")
        assert w.bot.wait_for_jobs("register", 1) == {"registered": 1}
        (record,) = w.stored_records()
        assert (record["image"], record["revision"]) == (f"{w.image_repo}:v5.0.0", sha(50))
        assert w.states(sha(50), REGISTER) == ["success"]

        pull = w.fake.add_pull(OWNER, REPO, head_sha=sha(51))
        add_dockerfile(w, sha(51), ALPINE_OLD_CORE)
        opened = pull_request(w, "pull_request__opened", pull.index, sha(51))
        assert w.bot.deliver_gitea("pull_request", opened, family="Forgejo").status_code == 202
        w.bot.wait_for_jobs("check", 1)
        assert [s.description for s in w.statuses(sha(51), CHECK)] == ["1 base image: 1 outdated"]
        assert len(w.bot_comments(pull.index)) == 1


# --- chat-ops -------------------------------------------------------------------------------------


def test_a_reader_may_ask_for_the_status_report(world: World) -> None:
    issue = world.fake.add_issue(OWNER, REPO, poster="rita")
    payload = comment(
        world, "Where are we?\n\n/imglife status", author="rita", number=issue.index, on_pull=False
    )
    assert world.bot.deliver_gitea("issue_comment", payload).status_code == 202
    assert world.bot.wait_for_jobs("chatops", 1) == {"done": 1}
    (reply,) = world.bot_comments(issue.index)
    assert "## Base images" in reply.body
    assert "`registry.example.com/bases/alpine`" in reply.body
    command = world.comment_by(issue.index, "rita")
    assert [(r.content, r.user_id) for r in command.reactions] == [("eyes", world.bot_user_id)]


def test_register_is_refused_to_a_reader_and_runs_for_a_writer(world: World) -> None:
    pull = world.fake.add_pull(OWNER, REPO, head_sha=sha(1))
    world.fake.add_tag(OWNER, REPO, "v1.0.0", sha(14))
    world.push_app_image("v1.0.0")

    refused = comment(world, "/imglife register v1.0.0", author="rita", number=pull.index, on_pull=True)
    world.bot.deliver_gitea("issue_comment", refused)
    assert world.bot.wait_for_jobs("chatops", 1) == {"refused": 1}
    (refusal,) = world.bot_comments(pull.index)
    assert "needs the write role" in refusal.body  # Gitea's role names on a Gitea repository
    assert "you have read" in refusal.body
    assert world.stored_records() == []
    assert world.comment_by(pull.index, "rita").reactions == []
    assert world.fake.statuses(OWNER, REPO, sha(14)) == []

    allowed = comment(world, "/imglife register v1.0.0", author="dev", number=pull.index, on_pull=True)
    world.bot.deliver_gitea("issue_comment", allowed)
    assert world.bot.wait_for_jobs("chatops", 2) == {"refused": 1, "done": 1}
    (record,) = world.stored_records()
    assert (record["image"], record["revision"]) == (f"{world.image_repo}:v1.0.0", sha(14))
    replies = world.bot_comments(pull.index)
    assert len(replies) == 2  # one reply per command
    assert "✅ registered" in replies[1].body
    assert world.states(sha(14), REGISTER) == ["success"]
    assert [r.content for r in world.comment_by(pull.index, "dev").reactions] == ["eyes"]


def test_check_command_in_a_pull_request_asks_gitea_for_the_head(world: World) -> None:
    pull = world.fake.add_pull(OWNER, REPO, head_sha=sha(8))
    add_dockerfile(world, sha(8), ALPINE_OLD_CORE)
    payload = comment(world, "/imglife check", author="rita", number=pull.index, on_pull=True)
    assert "sha" not in json.dumps(payload["issue"])  # Gitea's comment payload has no head commit
    world.bot.deliver_gitea("issue_comment", payload)
    assert world.bot.wait_for_jobs("chatops", 1) == {"done": 1}
    assert world.fake.request_count("GET", rf"/repos/{FULL_NAME}/pulls/{pull.index}$") >= 1
    bodies = [c.body for c in world.bot_comments(pull.index)]
    assert len(bodies) == 2  # the check comment and the reply to the command
    assert sum(body.startswith(MARKER) for body in bodies) == 1
    (status,) = world.statuses(sha(8), CHECK)
    assert status.description == "1 base image: 1 outdated"


def test_a_bot_with_only_write_access_says_it_needs_admin_and_runs_nothing(
    tmp_path: Path, anon_registry: Any
) -> None:
    with make_world(tmp_path, anon_registry, bot_permission="write") as w:
        issue = w.fake.add_issue(OWNER, REPO)
        w.bot.deliver_gitea(
            "issue_comment", comment(w, "/imglife status", author="rita", number=issue.index, on_pull=False)
        )
        assert w.bot.wait_for_jobs("chatops", 1) == {"refused": 1}
        (reply,) = w.bot_comments(issue.index)
        assert "`/imglife status` was not run" in reply.body
        assert "admin access" in reply.body
        assert "## Base images" not in reply.body
        assert w.comment_by(issue.index, "rita").reactions == []


def test_commands_in_code_or_quotes_and_edited_comments_run_nothing(world: World) -> None:
    issue = world.fake.add_issue(OWNER, REPO)
    for body in (
        "```\n/imglife status\n```",
        "> /imglife status",
        "    /imglife status",
        "see `/imglife status`",
    ):
        payload = comment(world, body, author="dev", number=issue.index, on_pull=False)
        answer = world.bot.deliver_gitea("issue_comment", payload)
        assert (answer.status_code, answer.text.strip()) == (202, "ignored"), body
    edited = comment(world, "/imglife status", author="dev", number=issue.index, on_pull=False, edited=True)
    assert edited["action"] == "edited"
    answer = world.bot.deliver_gitea("issue_comment", edited)
    assert (answer.status_code, answer.text.strip()) == (202, "ignored")
    assert world.bot.jobs() == {}
    assert world.bot_comments(issue.index) == []


def test_the_bot_never_answers_its_own_comments(world: World) -> None:
    # Gitea sends issue_comment hooks for the bot's own comments too.
    issue = world.fake.add_issue(OWNER, REPO)
    world.bot.deliver_gitea(
        "issue_comment", comment(world, "/imglife help", author="dev", number=issue.index, on_pull=False)
    )
    assert world.bot.wait_for_jobs("chatops", 1) == {"done": 1}
    (reply,) = world.bot_comments(issue.index)
    echo = world.bot.deliver_gitea("issue_comment", comment_payload(world, reply, author=BOT, on_pull=False))
    assert (echo.status_code, echo.text.strip()) == (202, "ignored")  # the help text holds no command line
    # Even a command line written by the bot's own user is not answered.
    own = comment(world, "/imglife status", author=BOT, number=issue.index, on_pull=False)
    world.bot.deliver_gitea("issue_comment", own)
    assert world.bot.wait_for_jobs("chatops", 2) == {"done": 1, "own_comment": 1}
    assert [c.body for c in world.bot_comments(issue.index)] == [reply.body, "/imglife status"]
    (own_comment,) = [c for c in world.bot_comments(issue.index) if c.id == own["comment"]["id"]]
    assert own_comment.reactions == []


def test_every_delivery_and_job_is_logged_as_json_without_secrets(world: World) -> None:
    issue = world.fake.add_issue(OWNER, REPO)
    world.bot.deliver_gitea(
        "issue_comment", comment(world, "/imglife help", author="dev", number=issue.index, on_pull=False)
    )
    assert world.bot.wait_for_jobs("chatops", 1) == {"done": 1}
    (reply,) = world.bot_comments(issue.index)
    assert "**imglife commands**" in reply.body
    lines = world.bot.log()
    received = [line for line in lines if line["event"] == "webhook_received"]
    assert (received[-1]["outcome"], received[-1]["forge"]) == ("accepted", "gitea")
    assert (received[-1]["webhook_event"], received[-1]["project"]) == ("comment", FULL_NAME)
    (job,) = [line for line in lines if line["event"] == "job_finished"]
    assert {"delivery_id", "forge", "project", "webhook_event", "handler", "duration_ms", "outcome"} <= set(
        job
    )
    text = world.bot.proc.log_path.read_text()
    assert BOT_TOKEN not in text
    assert GITEA_SECRET not in text
