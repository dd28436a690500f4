"""The commands of the CLI; the order here is the order of ``imglife --help``."""

from bot.commands import app, check, cleanup, eol, inspect, register, serve, status, sync
from bot.commands.base import Command, Invocation

COMMANDS: tuple[Command, ...] = (
    check.COMMAND,
    register.COMMAND,
    sync.COMMAND,
    cleanup.COMMAND,
    status.COMMAND,
    eol.COMMAND,
    app.COMMAND,
    inspect.COMMAND,
    serve.COMMAND,
)

__all__ = ["COMMANDS", "Command", "Invocation"]
