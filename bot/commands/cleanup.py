"""``imglife cleanup [--dry-run] [--list] [--force]``: apply ``retention`` to base images and mirrors."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TextIO

from bot.commands.base import Command, Invocation
from bot.errors import EXIT_FAILURE, EXIT_OK
from bot.oci.copy import ImageCopier
from bot.wiring import record_store, registry_client
from handlers.cleanup import cleanup_registry, plan_cleanup
from handlers.sync import sync_parallelism

COMMAND_NAME = "cleanup"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="show the summary of a run, delete nothing")
    parser.add_argument(
        "--list",
        action="store_true",
        help="print every tag with what cleanup would do to it (delete, archive, keep) and why, then exit",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="run even when the safety guard finds unreadable build records or none using a base image",
    )


def use_color(environ: Mapping[str, str], stream: TextIO) -> bool:
    """Colours only on a terminal, and never with ``NO_COLOR`` (any value) or ``TERM=dumb``."""
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


async def _run(invocation: Invocation) -> int:
    args = invocation.args
    config = invocation.config()
    parallelism = sync_parallelism(invocation.environ)
    async with AsyncExitStack() as stack:
        store = record_store(config, invocation.environ, COMMAND_NAME)
        stack.push_async_callback(store.aclose)
        client = await stack.enter_async_context(registry_client(config, invocation.environ, COMMAND_NAME))
        if args.list:
            plan = await plan_cleanup(
                config,
                client=client,
                store=store,
                now=invocation.now(),
                guard=False,
                forced=args.force,
                on_progress=invocation.terminal_progress(),
            )
            invocation.say(plan.listing())
            return EXIT_OK
        summary = await cleanup_registry(
            config,
            client=client,
            copier=ImageCopier(client, parallelism=parallelism),
            store=store,
            now=invocation.now(),
            dry_run=args.dry_run,
            force=args.force,
            on_progress=invocation.terminal_progress(),
        )
    invocation.say(summary.text(color=use_color(invocation.environ, invocation.stdout)))
    for warning in summary.warnings:
        invocation.warn(warning)
    for error in summary.errors:
        invocation.warn(error)
    return EXIT_FAILURE if summary.failed else EXIT_OK


COMMAND = Command(
    name=COMMAND_NAME,
    help="delete (or archive) old tags of the base images and their mirrors, as retention says",
    add_arguments=_arguments,
    run=_run,
)
