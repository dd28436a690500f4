"""``imglife status``: the base images, their EOL state, and the applications on each tag."""

from __future__ import annotations

import argparse
import json
from contextlib import AsyncExitStack

from bot.commands.base import Command, Invocation
from bot.errors import EXIT_FAILURE, EXIT_OK
from bot.lifecycle.eoldata import critical_days
from bot.wiring import lifecycle_sources
from handlers.status import StatusReport, gather_report, render_json, render_markdown, render_text

COMMAND_NAME = "status"
RENDERERS = {"markdown": render_markdown, "text": render_text}


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        choices=("markdown", "json", "text"),
        default="markdown",
        help="output format (default: markdown)",
    )


async def report_for(invocation: Invocation, command: str) -> StatusReport:
    """Config, EOL data and every build record, judged: shared with ``eol notify``."""
    config = invocation.config()
    async with AsyncExitStack() as stack:
        store, fetch = lifecycle_sources(stack, config, invocation.environ, command)
        return await gather_report(
            config,
            store=store,
            fetch=fetch,
            now=invocation.now(),
            critical=critical_days(invocation.environ),
            config_source=invocation.shown(invocation.config_path()),
            shown=invocation.shown,
        )


async def _run(invocation: Invocation) -> int:
    report = await report_for(invocation, COMMAND_NAME)
    output = invocation.args.output
    if output == "json":
        invocation.say(json.dumps(render_json(report), indent=2, ensure_ascii=False))
    else:
        invocation.stdout.write(RENDERERS[output](report))
    for problem in report.problems:
        invocation.warn(problem)
    return EXIT_FAILURE if report.problems else EXIT_OK


COMMAND = Command(
    name=COMMAND_NAME,
    help="report base images, their EOL state and the applications on each tag (markdown, json, text)",
    add_arguments=_arguments,
    run=_run,
)
