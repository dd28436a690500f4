"""The commands of the CLI; the order here is the order of ``imglife --help``."""

from bot.commands import app, check, eol, inspect, register, serve, status
from bot.commands.base import Command, Invocation

COMMANDS: tuple[Command, ...] = (
    check.COMMAND,
    register.COMMAND,
    status.COMMAND,
    eol.COMMAND,
    app.COMMAND,
    inspect.COMMAND,
    serve.COMMAND,
)

__all__ = ["COMMANDS", "Command", "Invocation"]
