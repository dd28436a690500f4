"""The ``imglife`` command line: global flags, commands, exit codes.

Exit codes: 0 success, 1 the work failed, 2 bad usage or invalid configuration (``--check``
answers 0 or 1). A person-facing result goes to stdout, logs to stderr, and an error is one
line on stderr, never a traceback (the traceback is logged at debug level).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

import structlog

from bot import __version__
from bot.commands import COMMANDS, Command, Invocation
from bot.config import load_config
from bot.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ConfigError, ImglifeError
from bot.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from bot.redaction import redact_text

PROG = "imglife"
DESCRIPTION = (
    "Container image lifecycle: mirror, record, check and purge images; a GitLab/Gitea bot and a CLI."
)
EPILOG = "Exit codes: 0 success, 1 the work failed, 2 bad usage or invalid configuration."
INTERNAL_ERROR = "{prog}: internal error: {kind}: {message} (run with --log-level debug for the traceback)"

log = structlog.get_logger(__name__)


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # On sub-commands the defaults are suppressed so a flag given before the command survives.
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="config file (default: $IMGLIFE_CONFIG, else ./imglife.yaml)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default,
        help="log format on stderr (default: $IMGLIFE_LOG_FORMAT, else text)",
    )
    parser.add_argument(
        "--log-level", choices=LOG_LEVELS, default=default, help="minimum log level (default: info)"
    )


def _add_commands(parser: argparse.ArgumentParser, commands: tuple[Command, ...], path: str = "") -> None:
    sub = parser.add_subparsers(metavar="COMMAND", title="commands")
    for command in commands:
        full_name = f"{path} {command.name}".strip()
        child = sub.add_parser(command.name, help=command.help, description=command.help, epilog=EPILOG)
        _add_global_options(child, suppress=True)
        command.add_arguments(child)
        if command.children:
            _add_commands(child, command.children, full_name)
            child.set_defaults(_group=child)
        else:
            child.set_defaults(_command=command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    _add_global_options(parser, suppress=False)
    parser.add_argument(
        "--check", action="store_true", help="validate the configuration and exit (0 valid, 1 invalid)"
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_commands(parser, COMMANDS)
    parser.set_defaults(_group=parser)
    return parser


def _check_config(invocation: Invocation) -> int:
    path = invocation.config_path()
    try:
        load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            invocation.stdout.write(f"{problem}\n")
        count = len(exc.problems)
        invocation.stdout.write(f"{path}: {count} problem{'s' if count != 1 else ''}\n")
        return EXIT_FAILURE
    invocation.stdout.write(f"{path}: configuration is valid\n")
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    env = os.environ if environ is None else environ
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed help, the version, or usage and the error
        return int(exc.code or 0)
    command: Command | None = getattr(args, "_command", None)
    default_format = command.default_log_format if command is not None else "text"
    log_format = args.log_format or env.get("IMGLIFE_LOG_FORMAT") or default_format
    if log_format not in LOG_FORMATS:
        err.write(f"{PROG}: error: IMGLIFE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}\n")
        return EXIT_USAGE
    configure_logging(fmt=log_format, level=args.log_level or "info", stream=err)
    invocation = Invocation(args=args, environ=env, cwd=Path.cwd(), stdout=out, stderr=err)
    try:
        if args.check:
            return _check_config(invocation)
        if command is None or command.run is None:
            args._group.print_help(out)
            return EXIT_USAGE
        return asyncio.run(command.run(invocation))
    except ImglifeError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            err.write(f"{PROG}: error: {redact_text(line)}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:
        log.debug("internal_error", exc_info=True)
        err.write(
            INTERNAL_ERROR.format(prog=PROG, kind=type(exc).__name__, message=redact_text(str(exc))) + "\n"
        )
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
