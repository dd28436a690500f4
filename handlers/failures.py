"""When a job is given up (it failed ``bot.job_attempts`` times), tell the people who were waiting.

Where the job would have reported, the give-up is reported instead: the commit status of a check,
registration or config sync (``error``/``failure``), the MR's check comment, the reply to a
chat-ops command. The reason is the job's last error when it is one of imglife's own (written for
people), else a pointer to the bot's log — never a traceback.
"""

from __future__ import annotations

from bot.chatops import quote
from bot.events import ForgeEvent
from bot.forges.api import CommitState, CommitStatus
from handlers.context import BotContext
from handlers.reports import Thread, marker, reply_marker, upsert_comment

MSG_GAVE_UP = "imglife gave up after {attempts} attempts: {reason}"
MSG_INTERNAL = "an internal error (the bot's log has it as job_crashed, delivery {delivery})"
MAX_STATUS_DESCRIPTION = 200  # GitLab cuts descriptions at 255 bytes; keep room for UTF-8
STATUS_CONTEXTS = {"check": "imglife/check", "register": "imglife/register", "sync": "imglife/sync"}


async def report_gave_up(
    ctx: BotContext, handler: str, event: ForgeEvent, *, attempts: int, reason: str
) -> str:
    """Say where ``handler`` reports that the job was given up; what was posted (for the log)."""
    text = MSG_GAVE_UP.format(attempts=attempts, reason=reason)
    context = STATUS_CONTEXTS.get(handler)
    if context is not None and event.sha:
        state = CommitState.ERROR if handler == "check" else CommitState.FAILURE
        description = (
            text if len(text) <= MAX_STATUS_DESCRIPTION else text[: MAX_STATUS_DESCRIPTION - 1] + "…"
        )
        await ctx.forge.set_status(
            event.repo, event.sha, CommitStatus(context, state, description), ref=event.ref
        )
    if event.number is None or handler not in {"check", "chatops"}:
        return "status" if context else "log"
    bot_id = await ctx.forge.current_user_id()
    thread = Thread(event.repo, event.number, change_request=event.is_change_request or handler == "check")
    if handler == "check":
        mark = marker("check")
    elif event.comment_id is not None:
        mark = reply_marker(event.comment_id)
    else:
        return "log"
    await upsert_comment(
        ctx.forge,
        thread,
        mark,
        "❌ " + MSG_GAVE_UP.format(attempts=attempts, reason=quote(reason)),
        bot_id=bot_id,
    )
    return "comment"
