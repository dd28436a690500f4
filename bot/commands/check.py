"""``imglife check --base REF``: for application pipelines (upstream's flags and JSON)."""

from __future__ import annotations

import argparse
import json
from contextlib import AsyncExitStack

from bot.commands.base import Command, Invocation
from bot.errors import EXIT_FAILURE, EXIT_OK
from bot.lifecycle.eoldata import critical_days
from bot.wiring import lifecycle_sources
from handlers import sources
from handlers.check import CheckResult, check_base

COMMAND_NAME = "check"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base",
        required=True,
        help="the base image to check, e.g. registry.example.com/bases/alpine:3.21.3-core1.0.0",
    )
    parser.add_argument(
        "--config-url",
        metavar="URL",
        help="URL of the base-images imglife.yaml (default: the package registry, else --config)",
    )
    parser.add_argument(
        "--eol-data-url",
        metavar="URL",
        help="URL of the EOL data file (default: the package registry or lifecycle.eol_data_file)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--strict", action="store_true", help="exit 1 when the base is outdated, at end of life, or unknown"
    )
    mode.add_argument("--warn", action="store_true", help="print warnings, always exit 0")
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="output format (default: text)"
    )


def _text(result: CheckResult) -> list[str]:
    latest = result.latest or "-"
    if result.up_to_date is False:
        latest += "  (outdated)"
    eol = result.eol_date.isoformat() if result.eol_date else "-"
    lines = [f"base     {result.base}", f"latest   {latest}", f"eol      {eol}  ({result.eol_status})"]
    return lines + [f"warning: {warning}" for warning in result.warnings]


async def _run(invocation: Invocation) -> int:
    args = invocation.args
    local = invocation.config()
    async with AsyncExitStack() as stack:
        store, fetch = lifecycle_sources(stack, local, invocation.environ, COMMAND_NAME)
        config, _ = await sources.base_images_config(
            local, invocation.config_path(), config_url=args.config_url, fetch=fetch, store=store
        )
        eol, loaded = await sources.eol_data(config, eol_url=args.eol_data_url, fetch=fetch, store=store)
    result = check_base(
        args.base,
        config,
        eol,
        today=invocation.now().date(),
        critical=critical_days(invocation.environ),
        eol_note=loaded.missing,
    )
    if args.output == "json":
        invocation.say(json.dumps(result.as_json(), indent=2))
    else:
        for line in _text(result):
            invocation.say(line)
    if args.strict and result.fails_strict():
        if not result.known:
            invocation.stderr.write(f"imglife: error: {result.warnings[0]}\n")
        return EXIT_FAILURE
    return EXIT_OK


COMMAND = Command(
    name=COMMAND_NAME,
    help="check that a base image is the latest and not at end of life (exit 1 under --strict)",
    add_arguments=_arguments,
    run=_run,
)
