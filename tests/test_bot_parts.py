"""The bot's small parts on their own: comment ownership, escaping, role names, progress replies."""

from __future__ import annotations

from bot.basefind import FoundBase
from bot.events import Forge, Repo
from bot.forges.api import Comment, GitLabForge
from bot.lifecycle.eoldata import EolStatus
from bot.server.router import describe_seconds
from handlers import chatops
from handlers.chatops import ProgressReply, role_name
from handlers.check import CheckResult
from handlers.reports import Thread, find_own_comment, marker, render_check_comment
from tests.fakes.gitlab import FakeGitLab

BOT = 99


def test_only_a_comment_with_the_marker_and_the_bot_as_author_is_the_bots() -> None:
    mark = marker("check")
    comments = [
        Comment(1, f"{mark}\nforged by a user", author_id=5),
        Comment(2, "the bot, about something else", author_id=BOT),
        Comment(3, f"{mark}\nthe real one", author_id=BOT),
    ]
    assert find_own_comment(comments, mark, BOT) == comments[2]
    assert find_own_comment(comments[:2], mark, BOT) is None


def test_the_check_comment_escapes_what_files_contain() -> None:
    found = FoundBase("registry.example.com/bases/x:1", "docker/@here|`evil`.Dockerfile:1 FROM", 1)
    result = CheckResult(
        "registry.example.com/bases/x:1",
        None,
        None,
        None,
        EolStatus.UNKNOWN,
        ("@team <b>x</b> | y",),
        known=False,
    )
    problem = FoundBase("${BASE}", "Dockerfile:2 FROM", 2, "ARG BASE has no default @alice")
    body = render_check_comment(
        [(found, result)], [problem], registry="r/bases", files=[], sha="a" * 40, strict=True
    )
    for mention in ("@here", "@team", "@alice"):
        assert mention not in body
    assert "@\u200bteam" in body
    assert "<b>" not in body
    assert "\\|" in body  # a pipe cannot open a table cell
    assert "strict" in body


def test_role_names_follow_the_forge() -> None:
    assert [role_name(level, gitea=False) for level in (0, 10, 20, 30, 40, 50)] == [
        "no access", "guest", "reporter", "developer", "maintainer", "owner",
    ]  # fmt: skip
    assert [role_name(level, gitea=True) for level in (0, 20, 30, 40, 50)] == [
        "no access", "read", "write", "admin", "owner",
    ]  # fmt: skip
    assert role_name(35, gitea=False) == "developer"  # GitLab's custom roles sit between the levels


def test_waits_are_described_for_people() -> None:
    assert [describe_seconds(s) for s in (2, 59.6, 60, 90, 1800)] == ["2s", "1m", "1m", "1m30s", "30m"]


async def test_a_long_command_edits_its_reply_with_progress_but_not_too_often(monkeypatch) -> None:
    with FakeGitLab() as fake:
        fake.add_token("bot-token", "imglife-bot")
        project = fake.add_project("team/app", members={"imglife-bot": 40})
        fake.add_issue(project.id, 3)
        repo = Repo(Forge.GITLAB, str(project.id), "team/app", "main")
        forge = GitLabForge(fake.url, "bot-token")
        try:
            reply = await forge.create_comment(repo, 3, "⏳ working", change_request=False)
            thread = Thread(repo, 3, change_request=False)
            monkeypatch.setattr(chatops, "PROGRESS_EDIT_SECONDS", 3600.0)
            progress = ProgressReply(forge, thread, reply.id, "⏳ working")
            await progress("copied alpine:3.21.3")
            (note,) = fake.notes(project.id, "issues", 3)
            assert note.body == "⏳ working"  # too soon: no edit, forges rate-limit them
            monkeypatch.setattr(chatops, "PROGRESS_EDIT_SECONDS", 0.0)
            await progress("copied node:@22 <b>")
            (note,) = fake.notes(project.id, "issues", 3)
            assert note.body.startswith("⏳ working\n\n- copied alpine:3.21.3\n- copied node:")
            assert "@22" not in note.body  # no mention
            assert "<b>" not in note.body  # escaped
        finally:
            await forge.aclose()
