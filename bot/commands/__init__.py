"""The commands of the CLI; the order here is the order of ``imglife --help``."""

from bot.commands import app, inspect, register
from bot.commands.base import Command, Invocation

COMMANDS: tuple[Command, ...] = (register.COMMAND, app.COMMAND, inspect.COMMAND)

__all__ = ["COMMANDS", "Command", "Invocation"]
