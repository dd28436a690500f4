"""What every command is made of: its arguments, its run function, and the invocation it gets."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bot.config import ENV_CONFIG, Config, load_config, resolve_config_path


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a command runs with: parsed arguments, environment, output stream, clock, config."""

    args: argparse.Namespace
    environ: Mapping[str, str]
    cwd: Path
    stdout: TextIO
    stderr: TextIO
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))

    def config_path(self) -> Path:
        return resolve_config_path(self.args.config, self.environ, self.cwd)

    def config(self) -> Config:
        return load_config(self.config_path())

    def optional_config(self) -> Config | None:
        """The config when one is named or present; commands that work without one use this."""
        path = self.config_path()
        explicit = self.args.config is not None or bool(self.environ.get(ENV_CONFIG, "").strip())
        if not explicit and not path.exists():
            return None
        return load_config(path)

    def shown(self, location: str | Path) -> str:
        """A path as people want to read it: relative to the working directory when inside it."""
        path = Path(location)
        if path.is_absolute() and path.is_relative_to(self.cwd):
            return str(path.relative_to(self.cwd))
        return str(location)

    def say(self, text: str = "") -> None:
        """A line for people, on stdout."""
        self.stdout.write(text + "\n")

    def terminal_progress(self) -> Callable[[str], Awaitable[None]] | None:
        """Progress lines on stderr when it is a terminal; None in CI logs, files and pipes."""
        isatty = getattr(self.stderr, "isatty", None)
        if isatty is None or not isatty():
            return None
        stream = self.stderr

        async def show(line: str) -> None:
            stream.write(f"imglife: {line}\n")
            stream.flush()

        return show

    def warn(self, text: str) -> None:
        """A problem worth a person's attention that does not stop the command, on stderr."""
        self.stderr.write(f"imglife: warning: {text}\n")


@dataclass(frozen=True, slots=True)
class Command:
    """A command (``register``) or a group of sub-commands (``app`` → ``list``, ``purge``)."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda _parser: None
    run: Callable[[Invocation], Coroutine[Any, Any, int]] | None = None
    children: tuple[Command, ...] = ()
    default_log_format: str = "text"  # a long-running service logs JSON for machines
