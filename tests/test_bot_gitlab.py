"""`imglife serve` end to end with GitLab: the fake GitLab, a real registry, a real record store.

The bot runs as a subprocess and is driven only over HTTP, with deliveries built from GitLab's
documented example payloads. What a user would see is asserted: records written, commit
statuses, the one MR comment, chat-ops replies and reactions.
"""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.oci.sansio import MANIFEST_ACCEPT
from tests.fakes import DEVELOPER, GUEST, MAINTAINER, REPORTER, FakeGitLab, GitLabToken
from tests.helpers.bot import GITLAB_SECRET, MARKER, AppWorld, RunningBot, bot_config, fixture, run_bot, sha
from tests.helpers.images import build_image
from tests.helpers.lifecycle import ALPINE_EOL, ALPINE_LATEST, ALPINE_OLD_CORE
from tests.helpers.skopeo import push_image

BOT_TOKEN = "glpat-imglife-bot-e2e"
PROJECT = "team/app"
CONFIG_REPO = "platform/base-images"


@dataclass
class World(AppWorld):
    fake: FakeGitLab
    bot: RunningBot
    project_id: int
    bot_user_id: int

    def statuses(self, commit: str, name: str) -> list[Any]:
        return [s for s in self.fake.statuses(self.project_id, commit) if s.name == name and not s.retried]

    def bot_notes(self, kind: str, iid: int) -> list[Any]:
        return [n for n in self.fake.notes(self.project_id, kind, iid) if n.author.id == self.bot_user_id]  # type: ignore[arg-type]

    def project_payload(self) -> dict[str, Any]:
        return {
            "id": self.project_id,
            "name": "app",
            "path_with_namespace": PROJECT,
            "default_branch": "main",
            "web_url": f"{self.fake.url}/{PROJECT}",
        }


@contextmanager
def make_world(
    tmp_path: Path,
    registry: Any,
    *,
    register_wait: str = "20s",
    strict: bool = False,
    config_repo: str | None = None,
    names: dict[str, str] | None = None,
) -> Iterator[World]:
    fake = FakeGitLab(tokens={BOT_TOKEN: GitLabToken("imglife-bot")})
    with fake:
        project = fake.add_project(
            PROJECT, members={"imglife-bot": DEVELOPER, "rita": REPORTER, "dev": DEVELOPER, "gus": GUEST}
        )
        bot_user = fake.add_user("imglife-bot", bot=True)
        names = names or AppWorld.names(registry)
        image_repo = names["image_repo"]
        settings = f"images:\n  - {image_repo}\ncheck:\n  strict: {str(strict).lower()}\n"
        fake.add_file(PROJECT, "main", ".imglife.yml", settings)
        config = bot_config(
            tmp_path,
            registry,
            names,
            f"  gitlab: {{url: '{fake.url}'}}\n  register_wait: {register_wait}\n  workers: 4\n"
            + (f"  config_repo: {config_repo}\n" if config_repo else ""),
        )
        environ = {"IMGLIFE_GITLAB_WEBHOOK_SECRET": GITLAB_SECRET, "GITLAB_TOKEN": BOT_TOKEN}
        with run_bot(config, environ, log_dir=tmp_path) as bot:
            yield World(
                registry=registry,
                records=tmp_path / "records",
                image_repo=image_repo,
                upstream=names["upstream"],
                mirrors=names["mirrors"],
                fake=fake,
                bot=bot,
                project_id=project.id,
                bot_user_id=bot_user.id,
            )


@pytest.fixture
def world(tmp_path: Path, anon_registry: Any) -> Iterator[World]:
    with make_world(tmp_path, anon_registry) as w:
        yield w


# --- payloads (GitLab's documented examples, re-pointed at this project) ------------------------


def tag_push(w: World, tag: str, commit: str) -> dict[str, Any]:
    payload = fixture("gitlab", "tag_push__create")
    payload.update(ref=f"refs/tags/{tag}", after=commit, checkout_sha=commit, project_id=w.project_id)
    payload["project"] = w.project_payload()
    return payload


def merge_request(w: World, name: str, iid: int, head: str, *, oldrev: str | None = None) -> dict[str, Any]:
    payload = fixture("gitlab", name)
    payload["project"] = w.project_payload()
    attrs = payload["object_attributes"]
    attrs.update(iid=iid, source_branch="feature", target_branch="main", target_project_id=w.project_id)
    attrs["last_commit"]["id"] = head
    if oldrev is not None:
        attrs["oldrev"] = oldrev
    return payload


def note(w: World, body: str, *, author: str, iid: int, on_mr: bool, head: str = sha(1)) -> dict[str, Any]:
    kind = "merge_requests" if on_mr else "issues"
    created = w.fake.add_note(w.project_id, kind, iid, body, author=author)
    payload = fixture("gitlab", "note__merge_request" if on_mr else "note__issue")
    payload["project"] = w.project_payload()
    payload["project_id"] = w.project_id
    payload["user"].update(id=created.author.id, username=author, name=author)
    attrs = payload["object_attributes"]
    attrs.update(id=created.id, note=body, author_id=created.author.id, project_id=w.project_id)
    target = payload["merge_request" if on_mr else "issue"]
    target["iid"] = iid
    if on_mr:
        target["last_commit"]["id"] = head
        target["source_branch"] = "feature"
    return payload


def add_dockerfile(w: World, ref: str, base: str) -> None:
    w.fake.add_file(PROJECT, ref, "Dockerfile", f"ARG BASE={base}\nFROM $BASE\nRUN true\n")


# --- tag push -------------------------------------------------------------------------------------


def test_tag_push_registers_the_image_and_posts_success(world: World) -> None:
    world.push_app_image("v1.2.0")
    answer = world.bot.deliver_gitlab(tag_push(world, "v1.2.0", sha(10)))
    assert answer.status_code == 202
    assert world.bot.wait_for_jobs("register", 1) == {"registered": 1}
    (record,) = world.stored_records()
    assert record["image"] == f"{world.image_repo}:v1.2.0"
    assert record["base"] == ALPINE_LATEST
    assert record["revision"] == sha(10)
    assert record["project"] == PROJECT
    assert record["platforms"] == ["linux/amd64"]
    (status,) = world.statuses(sha(10), "imglife/register")
    assert status.status == "success"
    assert status.ref == "v1.2.0"
    assert f"{world.image_repo}:v1.2.0" in (status.description or "")


def test_an_image_pushed_after_the_tag_is_registered_within_the_wait(world: World) -> None:
    world.bot.deliver_gitlab(tag_push(world, "v2.0.0", sha(20)))
    world.bot.wait_for(
        lambda: any(s.status == "pending" for s in world.statuses(sha(20), "imglife/register")),
        "a pending imglife/register status while the image is missing",
    )
    assert world.stored_records() == []
    world.push_app_image("v2.0.0")
    world.bot.wait_for(
        lambda: [s.status for s in world.statuses(sha(20), "imglife/register")] == ["success"],
        "imglife/register success once the image is there",
    )
    (record,) = world.stored_records()
    assert record["image"] == f"{world.image_repo}:v2.0.0"
    outcomes = world.bot.jobs()
    assert outcomes[("register", "waiting")] >= 1
    assert outcomes[("register", "registered")] == 1


def test_a_tag_pipeline_success_retries_a_waiting_registration_at_once(world: World) -> None:
    world.bot.deliver_gitlab(tag_push(world, "v2.1.0", sha(21)))
    world.bot.wait_for_jobs("register", 3)  # attempts at 0 s, 1 s, 3 s: the next is 4 s away
    world.push_app_image("v2.1.0")
    pipeline = fixture("gitlab", "pipeline__tag_success")
    pipeline["project"] = world.project_payload()
    pipeline["object_attributes"].update(ref="v2.1.0", tag=True, sha=sha(21), status="success")
    assert world.bot.deliver_gitlab(pipeline).status_code == 202
    world.bot.wait_for(lambda: world.stored_records() != [], "the record after the pipeline succeeded")
    woken = [line for line in world.bot.log() if line["event"] == "retry_woken"]
    assert [line["key"] for line in woken] == [f"gitlab:{world.project_id}:tag:v2.1.0"]


def test_an_image_that_never_appears_fails_the_status_after_the_wait(
    tmp_path: Path, anon_registry: Any
) -> None:
    with make_world(tmp_path, anon_registry, register_wait="2s") as w:
        w.bot.deliver_gitlab(tag_push(w, "v3.0.0", sha(30)))
        w.bot.wait_for(
            lambda: [s.status for s in w.statuses(sha(30), "imglife/register")] == ["failed"],
            "imglife/register failed after the wait",
        )
        (status,) = w.statuses(sha(30), "imglife/register")
        assert "did not appear in the registry within 2s" in (status.description or "")
        assert w.stored_records() == []


def test_a_project_without_images_gets_no_status_and_no_record(world: World) -> None:
    world.fake.add_file(PROJECT, "main", ".imglife.yml", "check: {strict: true}\n")
    world.bot.deliver_gitlab(tag_push(world, "v1.0.0", sha(40)))
    assert world.bot.wait_for_jobs("register", 1) == {"no_images": 1}
    assert world.fake.statuses(world.project_id, sha(40)) == []
    assert world.stored_records() == []


# --- merge requests -------------------------------------------------------------------------------


def test_merge_request_gets_a_status_and_one_comment_that_new_commits_edit(world: World) -> None:
    world.fake.add_merge_request(PROJECT, 7, "feature", sha(1))
    add_dockerfile(world, sha(1), ALPINE_OLD_CORE)
    assert world.bot.deliver_gitlab(merge_request(world, "merge_request__open", 7, sha(1))).status_code == 202
    world.bot.wait_for_jobs("check", 1)

    (status,) = world.statuses(sha(1), "imglife/check")
    assert status.status == "success"  # not strict: an outdated base is reported, not failed
    assert status.ref == "feature"
    assert status.description == "1 base image: 1 outdated"
    (comment,) = world.bot_notes("merge_requests", 7)
    assert comment.body.startswith(MARKER)
    assert f"`{ALPINE_OLD_CORE}`" in comment.body
    assert "`registry.example.com/bases/alpine:3.22.1-core1.2.0`" in comment.body  # the latest
    assert "⚠️ no" in comment.body

    add_dockerfile(world, sha(2), ALPINE_LATEST)
    update = merge_request(world, "merge_request__update_oldrev", 7, sha(2), oldrev=sha(1))
    assert world.bot.deliver_gitlab(update).status_code == 202
    world.bot.wait_for_jobs("check", 2)

    (edited,) = world.bot_notes("merge_requests", 7)
    assert edited.id == comment.id
    assert "✅ yes" in edited.body
    assert f"`{ALPINE_OLD_CORE}`" not in edited.body
    (status,) = world.statuses(sha(2), "imglife/check")
    assert (status.status, status.description) == ("success", "1 base image up to date and supported")


def test_an_invalid_imglife_yml_is_reported_on_the_merge_request(world: World) -> None:
    world.fake.add_file(PROJECT, "main", ".imglife.yml", "imgaes: [x]\ncheck: {strict: maybe}\n")
    world.fake.add_merge_request(PROJECT, 18, "feature", sha(18))
    add_dockerfile(world, sha(18), ALPINE_LATEST)
    world.bot.deliver_gitlab(merge_request(world, "merge_request__open", 18, sha(18)))
    assert world.bot.wait_for_jobs("check", 1) == {"failure": 1}
    (status,) = world.statuses(sha(18), "imglife/check")
    assert status.status == "failed"
    assert (status.description or "").startswith("invalid .imglife.yml: team/app:.imglife.yml:1:1")
    (comment,) = world.bot_notes("merge_requests", 18)
    assert "is invalid, so this change was not checked" in comment.body
    assert "did you mean 'images'" in comment.body
    assert "strict" in comment.body


def test_strict_projects_fail_the_status_for_a_base_at_end_of_life(
    tmp_path: Path, anon_registry: Any
) -> None:
    with make_world(tmp_path, anon_registry, strict=True) as w:
        w.fake.add_merge_request(PROJECT, 3, "feature", sha(3))
        add_dockerfile(w, sha(3), ALPINE_EOL)
        w.bot.deliver_gitlab(merge_request(w, "merge_request__open", 3, sha(3)))
        w.bot.wait_for_jobs("check", 1)
        (status,) = w.statuses(sha(3), "imglife/check")
        assert status.status == "failed"
        assert "at end of life" in (status.description or "")
        (comment,) = w.bot_notes("merge_requests", 3)
        assert "❌ ended" in comment.body
        assert "strict" in comment.body


def test_a_label_edit_does_nothing(world: World) -> None:
    world.fake.add_merge_request(PROJECT, 8, "feature", sha(4))
    add_dockerfile(world, sha(4), ALPINE_OLD_CORE)
    answer = world.bot.deliver_gitlab(merge_request(world, "merge_request__update_labels", 8, sha(4)))
    assert (answer.status_code, answer.text.strip()) == (202, "ignored")
    assert world.bot.jobs() == {}
    assert world.fake.notes(world.project_id, "merge_requests", 8) == []
    assert world.fake.statuses(world.project_id, sha(4)) == []


def test_a_repository_without_bases_of_the_registry_gets_no_comment(world: World) -> None:
    world.fake.add_merge_request(PROJECT, 9, "feature", sha(5))
    world.fake.add_file(PROJECT, sha(5), "Dockerfile", "FROM docker.io/library/python:3.12\n")
    world.bot.deliver_gitlab(merge_request(world, "merge_request__open", 9, sha(5)))
    assert world.bot.wait_for_jobs("check", 1) == {"nothing_found": 1}
    assert world.fake.notes(world.project_id, "merge_requests", 9) == []
    assert world.fake.statuses(world.project_id, sha(5)) == []


def test_a_duplicate_delivery_runs_one_job(world: World) -> None:
    world.fake.add_merge_request(PROJECT, 11, "feature", sha(6))
    add_dockerfile(world, sha(6), ALPINE_LATEST)
    opened = merge_request(world, "merge_request__open", 11, sha(6))
    first = world.bot.deliver_gitlab(opened, idempotency_key="key-1")
    again = world.bot.deliver_gitlab(opened, idempotency_key="key-1")  # a GitLab retry
    resent = world.bot.deliver_gitlab(opened)  # the same content without the key
    assert [first.status_code, again.status_code, resent.status_code] == [202, 200, 200]
    assert again.text.strip() == resent.text.strip() == "duplicate"
    # A later job on the same merge request runs after the first; then exactly two have run.
    add_dockerfile(world, sha(7), ALPINE_LATEST)
    world.bot.deliver_gitlab(merge_request(world, "merge_request__update_oldrev", 11, sha(7), oldrev=sha(6)))
    world.bot.wait_for_jobs("check", 2)
    assert sum(n for (handler, _), n in world.bot.jobs().items() if handler == "check") == 2
    assert len(world.bot_notes("merge_requests", 11)) == 1


def test_wrong_or_missing_secret_is_refused_and_nothing_runs(world: World) -> None:
    payload = tag_push(world, "v9.0.0", sha(90))
    assert world.bot.deliver_gitlab(payload, secret="wrong").status_code == 401
    answer = world.bot.http.post("/webhooks/gitlab", content=b"{}", headers={"X-Gitlab-Event": "Push Hook"})
    assert answer.status_code == 401
    assert world.bot.http.post("/webhooks/gitea", content=b"{}").status_code == 401  # no Gitea secret set
    assert world.bot.jobs() == {}
    assert world.bot.http.get("/healthz").status_code == 200


# --- chat-ops -------------------------------------------------------------------------------------


def test_a_reporter_may_ask_for_the_status_report(world: World) -> None:
    world.fake.add_issue(PROJECT, 3)
    payload = note(world, "Where are we?\n\n/imglife status", author="rita", iid=3, on_mr=False)
    assert world.bot.deliver_gitlab(payload).status_code == 202
    assert world.bot.wait_for_jobs("chatops", 1) == {"done": 1}
    (reply,) = world.bot_notes("issues", 3)
    assert "## Base images" in reply.body
    assert "`registry.example.com/bases/alpine`" in reply.body
    command_note = next(
        n for n in world.fake.notes(world.project_id, "issues", 3) if n.author.username == "rita"
    )
    assert [a.name for a in command_note.awards] == ["eyes"]


def test_register_is_refused_to_a_reporter_and_runs_for_a_developer(world: World) -> None:
    world.fake.add_merge_request(PROJECT, 5, "feature", sha(1))
    world.fake.add_tag(PROJECT, "v1.4.0", sha(14))
    world.push_app_image("v1.4.0")

    world.bot.deliver_gitlab(note(world, "/imglife register v1.4.0", author="rita", iid=5, on_mr=True))
    assert world.bot.wait_for_jobs("chatops", 1) == {"refused": 1}
    (refusal,) = world.bot_notes("merge_requests", 5)
    assert "needs the developer role" in refusal.body
    assert "you have reporter" in refusal.body
    assert world.stored_records() == []
    rita_note = next(
        n for n in world.fake.notes(world.project_id, "merge_requests", 5) if n.author.username == "rita"
    )
    assert rita_note.awards == []

    world.bot.deliver_gitlab(note(world, "/imglife register v1.4.0", author="dev", iid=5, on_mr=True))
    assert world.bot.wait_for_jobs("chatops", 2) == {"refused": 1, "done": 1}
    (record,) = world.stored_records()
    assert (record["image"], record["revision"]) == (f"{world.image_repo}:v1.4.0", sha(14))
    replies = world.bot_notes("merge_requests", 5)
    assert len(replies) == 2  # one reply per command
    assert "✅ registered" in replies[1].body
    (status,) = world.statuses(sha(14), "imglife/register")
    assert status.status == "success"


def test_a_guest_is_refused_even_help(world: World) -> None:
    world.fake.add_issue(PROJECT, 4)
    world.bot.deliver_gitlab(note(world, "/imglife help", author="gus", iid=4, on_mr=False))
    assert world.bot.wait_for_jobs("chatops", 1) == {"refused": 1}
    (reply,) = world.bot_notes("issues", 4)
    assert "needs the reporter role" in reply.body
    assert "you have guest" in reply.body


def test_commands_in_code_or_quotes_and_edited_comments_run_nothing(world: World) -> None:
    world.fake.add_issue(PROJECT, 6)
    for body in (
        "```\n/imglife status\n```",
        "> /imglife status",
        "    /imglife status",
        "see `/imglife status`",
    ):
        answer = world.bot.deliver_gitlab(note(world, body, author="dev", iid=6, on_mr=False))
        assert (answer.status_code, answer.text.strip()) == (202, "ignored"), body
    edited = note(world, "/imglife status", author="dev", iid=6, on_mr=False)
    edited["object_attributes"]["action"] = "update"
    assert world.bot.deliver_gitlab(edited).text.strip() == "ignored"
    assert world.bot.jobs() == {}
    assert world.bot_notes("issues", 6) == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("/imglife check registry.example.com/bases/alpine:3.22; rm -rf /", "shell metacharacter"),
        ("/imglife check evil.example.net/bases/alpine:3.22", "not one of the registries"),
        ("/imglife check http://169.254.169.254/latest/meta-data", "looks like a URL"),
        ("/imglife frobnicate", "unknown command"),
        ("/imglife sync docker.io/library/ubuntu", "not the source or target of a configured sync entry"),
    ],
)
def test_hostile_or_unknown_commands_get_a_polite_refusal_with_help(
    world: World, body: str, reason: str
) -> None:
    world.fake.add_issue(PROJECT, 12)
    world.bot.deliver_gitlab(note(world, body, author="dev", iid=12, on_mr=False))
    assert world.bot.wait_for_jobs("chatops", 1) == {"invalid": 1}
    (reply,) = world.bot_notes("issues", 12)
    assert reason in reply.body
    assert "**imglife commands**" in reply.body
    assert "`/imglife sync [--dry-run] [SOURCE...]`" in reply.body


def test_check_command_in_a_merge_request_updates_the_check_comment(world: World) -> None:
    world.fake.add_merge_request(PROJECT, 13, "feature", sha(8))
    add_dockerfile(world, sha(8), ALPINE_OLD_CORE)
    world.bot.deliver_gitlab(note(world, "/imglife check", author="rita", iid=13, on_mr=True, head=sha(8)))
    assert world.bot.wait_for_jobs("chatops", 1) == {"done": 1}
    bodies = [n.body for n in world.bot_notes("merge_requests", 13)]
    assert len(bodies) == 2  # the check comment and the reply to the command
    assert sum(body.startswith(MARKER) for body in bodies) == 1
    (status,) = world.statuses(sha(8), "imglife/check")
    assert status.description == "1 base image: 1 outdated"


def test_the_bot_never_edits_a_comment_it_did_not_write(world: World) -> None:
    world.fake.add_merge_request(PROJECT, 14, "feature", sha(9))
    add_dockerfile(world, sha(9), ALPINE_LATEST)
    forged = world.fake.add_note(
        world.project_id, "merge_requests", 14, f"{MARKER}\nplease edit me", author="rita"
    )
    world.bot.deliver_gitlab(merge_request(world, "merge_request__open", 14, sha(9)))
    world.bot.wait_for_jobs("check", 1)
    notes = world.fake.notes(world.project_id, "merge_requests", 14)
    assert next(n for n in notes if n.id == forged.id).body == f"{MARKER}\nplease edit me"
    assert len(world.bot_notes("merge_requests", 14)) == 1


def test_every_delivery_and_job_is_logged_as_json_without_secrets(world: World) -> None:
    world.fake.add_issue(PROJECT, 15)
    world.bot.deliver_gitlab(note(world, "/imglife help", author="dev", iid=15, on_mr=False))
    world.bot.wait_for_jobs("chatops", 1)
    lines = world.bot.log()
    received = [line for line in lines if line["event"] == "webhook_received"]
    finished = [line for line in lines if line["event"] == "job_finished"]
    assert received[-1]["outcome"] == "accepted"
    assert received[-1]["webhook_event"] == "comment"
    assert received[-1]["project"] == PROJECT
    (job,) = finished
    assert {"delivery_id", "forge", "project", "webhook_event", "handler", "duration_ms", "outcome"} <= set(
        job
    )
    text = world.bot.proc.log_path.read_text()
    assert BOT_TOKEN not in text
    assert GITLAB_SECRET not in text


def test_sigterm_lets_the_running_job_finish_and_turns_unready(world: World) -> None:
    world.fake.add_merge_request(PROJECT, 16, "feature", sha(16))
    add_dockerfile(world, sha(16), ALPINE_LATEST)
    world.fake.latency = 0.5  # every forge call of the job takes half a second
    world.bot.deliver_gitlab(merge_request(world, "merge_request__open", 16, sha(16)))
    world.bot.wait_for(lambda: world.fake.request_count() > 0, "the check job to start")
    os.kill(world.bot.proc.pid, signal.SIGTERM)
    world.bot.wait_for(lambda: world.bot.http.get("/readyz").status_code == 503, "/readyz to turn unready")
    late = world.bot.deliver_gitlab(merge_request(world, "merge_request__open", 17, sha(17)))
    assert late.status_code == 503
    assert world.bot.proc.wait(timeout=30) == 0
    (status,) = world.statuses(sha(16), "imglife/check")
    assert status.status == "success"
    assert len(world.bot_notes("merge_requests", 16)) == 1


def push_to_config_repo(w: World, commit: str, project_id: int) -> dict[str, Any]:
    payload = fixture("gitlab", "push__branch")
    payload.update(ref="refs/heads/main", after=commit, checkout_sha=commit, project_id=project_id)
    payload["project"] = {
        "id": project_id,
        "name": "base-images",
        "path_with_namespace": CONFIG_REPO,
        "default_branch": "main",
        "web_url": f"{w.fake.url}/{CONFIG_REPO}",
    }
    return payload


def test_a_push_to_the_config_repository_reloads_the_configuration(
    tmp_path: Path, anon_registry: Any
) -> None:
    with make_world(tmp_path, anon_registry, config_repo=CONFIG_REPO) as w:
        config_project = w.fake.add_project(CONFIG_REPO, members={"imglife-bot": DEVELOPER})
        w.fake.add_issue(PROJECT, 20)
        local = (tmp_path / "imglife.yaml").read_text()
        stricter = local.replace("  workers: 4\n", "  workers: 4\n  permissions: {status: maintainer}\n")
        w.fake.add_file(CONFIG_REPO, sha(50), "imglife.yaml", stricter)
        w.fake.add_file(CONFIG_REPO, sha(51), "imglife.yaml", "registry: {provider: nowhere}\n")

        w.bot.deliver_gitlab(push_to_config_repo(w, sha(50), config_project.id))
        assert w.bot.wait_for_jobs("reload", 1) == {"reloaded": 1}
        w.bot.deliver_gitlab(note(w, "/imglife status", author="dev", iid=20, on_mr=False))
        assert w.bot.wait_for_jobs("chatops", 1) == {"refused": 1}
        assert "needs the maintainer role" in w.bot_notes("issues", 20)[0].body

        # An invalid file is refused and the configuration in force stays.
        w.bot.deliver_gitlab(push_to_config_repo(w, sha(51), config_project.id))
        assert w.bot.wait_for_jobs("reload", 2) == {"reloaded": 1, "config_error": 1}
        failure = next(line for line in w.bot.log() if line.get("outcome") == "config_error")
        assert any("registry.provider" in problem for problem in failure["problems"])
        w.bot.deliver_gitlab(note(w, "/imglife status", author="dev", iid=20, on_mr=False))
        assert w.bot.wait_for_jobs("chatops", 2) == {"refused": 2}


def test_pushes_to_other_branches_or_repositories_do_not_reload(tmp_path: Path, anon_registry: Any) -> None:
    with make_world(tmp_path, anon_registry, config_repo=CONFIG_REPO) as w:
        other_branch = push_to_config_repo(w, sha(52), 2)
        other_branch["ref"] = "refs/heads/feature"
        other_repo = push_to_config_repo(w, sha(53), 2)
        other_repo["project"]["path_with_namespace"] = "platform/other"
        for payload in (other_branch, other_repo):
            answer = w.bot.deliver_gitlab(payload)
            assert (answer.status_code, answer.text.strip()) == (202, "ignored")


# --- sync and cleanup -----------------------------------------------------------------------------


def push_upstream(w: World, name: str, tag: str) -> str:
    """Put an upstream image at ``w.upstream/name:tag``; returns its manifest digest."""
    image = build_image(nonce=secrets.token_hex(4))
    return push_image(w.registry, f"{w.upstream.split('/', 1)[1]}/{name}:{tag}", image, w.registry.creds)


def mirrored_digest(w: World, name: str, tag: str) -> str | None:
    with w.registry.client() as client:
        answer = client.head(
            f"/v2/{w.mirrors.split('/', 1)[1]}/{name}/manifests/{tag}", headers={"Accept": MANIFEST_ACCEPT}
        )
    return answer.headers.get("docker-content-digest") if answer.status_code == 200 else None


def test_sync_is_refused_to_a_developer_and_run_for_a_maintainer(world: World) -> None:
    world.fake.set_member(PROJECT, "mia", MAINTAINER)
    digest = push_upstream(world, "golang", "1.23.4")
    world.fake.add_issue(PROJECT, 30)
    command = f"/imglife sync {world.mirrors}/golang"
    world.bot.deliver_gitlab(note(world, command, author="dev", iid=30, on_mr=False))
    assert world.bot.wait_for_jobs("chatops", 1) == {"refused": 1}
    assert "needs the maintainer role" in world.bot_notes("issues", 30)[0].body
    assert mirrored_digest(world, "golang", "1.23.4") is None

    world.bot.deliver_gitlab(note(world, command, author="mia", iid=30, on_mr=False))
    assert world.bot.wait_for_jobs("chatops", 2, timeout=60) == {"refused": 1, "done": 1}
    assert mirrored_digest(world, "golang", "1.23.4") == digest
    reply = world.bot_notes("issues", 30)[1].body
    assert "1 copied, 0 skipped, 0 failed" in reply
    assert f"`{world.upstream}/golang`" in reply


def test_cleanup_by_a_maintainer_reports_what_it_would_delete(tmp_path: Path, anon_registry: Any) -> None:
    names = AppWorld.names(anon_registry)
    bases = names["bases"] = names["mirrors"].replace("/mirrors-", "/bases-")
    repo = f"{bases.split('/', 1)[1]}/alpine"
    latest, old = "3.22.1-core1.2.0", "3.18.0-core1.0.0"
    push_image(anon_registry, f"{repo}:{latest}", build_image(nonce=secrets.token_hex(4)), None)
    old_image = build_image(nonce=secrets.token_hex(4), created="2020-01-01T00:00:00Z")
    push_image(anon_registry, f"{repo}:{old}", old_image, None)
    with make_world(tmp_path, anon_registry, names=names) as w:
        w.fake.set_member(PROJECT, "mia", MAINTAINER)
        w.fake.add_issue(PROJECT, 31)
        w.bot.deliver_gitlab(note(w, "/imglife cleanup --dry-run", author="mia", iid=31, on_mr=False))
        assert w.bot.wait_for_jobs("chatops", 1, timeout=60) == {"done": 1}
        reply = w.bot_notes("issues", 31)[0].body
        assert "\\[dry-run\\] Cleanup Summary" in reply
        assert "| Would delete | 1 |" in reply
        assert f"`{bases}/alpine:{old}`" in reply  # older than max_age_days, and not the latest
        assert latest not in reply
        with anon_registry.client() as client:  # a dry run deletes nothing
            answer = client.head(f"/v2/{repo}/manifests/{old}", headers={"Accept": MANIFEST_ACCEPT})
        assert answer.status_code == 200


def test_cleanup_of_an_unreachable_registry_says_why(world: World) -> None:
    world.fake.set_member(PROJECT, "mia", MAINTAINER)
    world.fake.add_issue(PROJECT, 32)
    world.bot.deliver_gitlab(note(world, "/imglife cleanup", author="mia", iid=32, on_mr=False))
    assert world.bot.wait_for_jobs("chatops", 1, timeout=60) == {"failed": 1}
    reply = world.bot_notes("issues", 32)[0].body
    assert "cannot reach registry registry.example.com" in reply


def test_a_push_to_the_config_repository_syncs_the_mirrors_with_a_status(
    tmp_path: Path, anon_registry: Any
) -> None:
    with make_world(tmp_path, anon_registry, config_repo=CONFIG_REPO) as w:
        config_project = w.fake.add_project(CONFIG_REPO, members={"imglife-bot": DEVELOPER})
        digests = {
            "alpine": push_upstream(w, "alpine", "3.22.1"),
            "node": push_upstream(w, "node", "22.11.0"),
            "golang": push_upstream(w, "golang", "1.23.4"),
        }
        w.fake.add_file(CONFIG_REPO, sha(60), "imglife.yaml", (tmp_path / "imglife.yaml").read_text())
        w.bot.deliver_gitlab(push_to_config_repo(w, sha(60), config_project.id))
        assert w.bot.wait_for_jobs("sync", 1, timeout=60) == {"synced": 1}
        assert mirrored_digest(w, "alpine", "3.22.1") == digests["alpine"]
        assert mirrored_digest(w, "node", "22.11.0") == digests["node"]
        assert mirrored_digest(w, "golang", "1.23.4") == digests["golang"]
        statuses = [
            s
            for s in w.fake.statuses(config_project.id, sha(60))
            if s.name == "imglife/sync" and not s.retried
        ]
        assert [s.status for s in statuses] == ["success"]
        assert (statuses[0].description or "").startswith("3 entries, tags: 3 copied, 0 skipped, 0 failed")
