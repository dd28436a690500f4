"""The ``imglife`` command line: global flags, commands, exit codes.

Exit codes: 0 success, 1 the work failed, 2 bad usage or invalid configuration (``--check``
answers 0 or 1). A person-facing result goes to stdout, logs to stderr, and an error is one
line on stderr, never a traceback (the traceback is logged at debug level).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import structlog

from bot import __version__
from bot.config import Config, load_config, resolve_config_path
from bot.errors import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ConfigError, ImglifeError
from bot.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from bot.oci.reference import parse_reference
from bot.redaction import redact_text
from bot.wiring import registry_client
from handlers.inspect import describe_image

PROG = "imglife"
DESCRIPTION = (
    "Container image lifecycle: mirror, record, check and purge images; a GitLab/Gitea bot and a CLI."
)
EPILOG = "Exit codes: 0 success, 1 the work failed, 2 bad usage or invalid configuration."
INTERNAL_ERROR = "{prog}: internal error: {kind}: {message} (run with --log-level debug for the traceback)"

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a command runs with: parsed arguments, environment, output stream, config loader."""

    args: argparse.Namespace
    environ: Mapping[str, str]
    cwd: Path
    stdout: TextIO

    def config_path(self) -> Path:
        return resolve_config_path(self.args.config, self.environ, self.cwd)

    def config(self) -> Config:
        return load_config(self.config_path())

    def optional_config(self) -> Config | None:
        """The config when one is named or present; commands that work without one use this."""
        path = self.config_path()
        explicit = self.args.config is not None or bool(self.environ.get("IMGLIFE_CONFIG", "").strip())
        if not explicit and not path.exists():
            return None
        return load_config(path)


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Invocation], Coroutine[Any, Any, int]]


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


# -- inspect ---------------------------------------------------------------------------------


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "reference", metavar="IMAGE", help="image reference, e.g. registry.example.com/apps/api:1.2.0"
    )
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    parser.add_argument(
        "--raw", action="store_true", help="print the manifest exactly as the registry serves it"
    )


async def _inspect(invocation: Invocation) -> int:
    args = invocation.args
    ref = parse_reference(args.reference)
    config = invocation.optional_config()
    async with registry_client(config, invocation.environ, "inspect") as registry:
        if args.raw:
            manifest = await registry.get_manifest(ref)
            invocation.stdout.write(manifest.raw.decode("utf-8", errors="replace") + "\n")
            return EXIT_OK
        description = await describe_image(registry, ref)
    out = invocation.stdout
    if args.output == "json":
        json.dump(description.as_json(), out, indent=2)
        out.write("\n")
        return EXIT_OK
    base = description.base_name or "(not recorded in the image)"
    if description.base_source:
        base += f"  [{description.base_source}]"
    rows = [
        ("Image", description.reference),
        ("Digest", description.digest),
        ("Media type", description.media_type),
        ("Platforms", " ".join(description.platforms) or "-"),
        ("Created", description.created or "-"),
        ("Base", base),
    ]
    rows += [(f"Label {k}", v) for k, v in sorted(description.labels.items())]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.write(f"{key:<{width}}  {value}\n")
    return EXIT_OK


COMMANDS: tuple[Command, ...] = (
    Command(
        name="inspect",
        help="describe an image: digest, platforms, labels and its base image (checks registry access)",
        add_arguments=_inspect_arguments,
        run=_inspect,
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG)
    _add_global_options(parser, suppress=False)
    parser.add_argument(
        "--check", action="store_true", help="validate the configuration and exit (0 valid, 1 invalid)"
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help, epilog=EPILOG)
        _add_global_options(sub, suppress=True)
        command.add_arguments(sub)
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
    log_format = args.log_format or env.get("IMGLIFE_LOG_FORMAT") or "text"
    if log_format not in LOG_FORMATS:
        err.write(f"{PROG}: error: IMGLIFE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}\n")
        return EXIT_USAGE
    configure_logging(fmt=log_format, level=args.log_level or "info", stream=err)
    invocation = Invocation(args=args, environ=env, cwd=Path.cwd(), stdout=out)
    try:
        if args.check:
            return _check_config(invocation)
        command = next((c for c in COMMANDS if c.name == args.command), None)
        if command is None:
            parser.print_help(out)
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
