"""``imglife sync [--dry-run] [--list] [SOURCE...]``: mirror upstream images (SPEC §5.4)."""

from __future__ import annotations

import argparse
from contextlib import AsyncExitStack

from bot.commands.base import Command, Invocation
from bot.errors import EXIT_FAILURE, EXIT_OK
from bot.oci.copy import ImageCopier
from bot.oci.hub import DockerHubTags
from bot.wiring import registry_client
from handlers.sync import list_mirrors, render_list, sync_mirrors, sync_parallelism

COMMAND_NAME = "sync"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="plan and report, push nothing")
    parser.add_argument("--list", action="store_true", help="print the tags that would be synced and exit")
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="only the entries with this source or target, as written in the config (default: all)",
    )


async def _run(invocation: Invocation) -> int:
    args = invocation.args
    # Checked before anything else: a bad value is a usage error, whatever the config says.
    parallelism = sync_parallelism(invocation.environ)
    config = invocation.config()
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(registry_client(config, invocation.environ, COMMAND_NAME))
        hub = DockerHubTags(config.sync.dockerhub_api_url)
        stack.push_async_callback(hub.aclose)
        if args.list:
            listing = await list_mirrors(
                config, client=client, hub=hub, only=args.sources, parallelism=parallelism
            )
            invocation.stdout.write(render_list(listing))
            return EXIT_FAILURE if any(entry.error for entry in listing) else EXIT_OK
        summary = await sync_mirrors(
            config,
            client=client,
            copier=ImageCopier(client, parallelism=parallelism),
            hub=hub,
            only=args.sources,
            dry_run=args.dry_run,
            on_progress=invocation.terminal_progress(),
            parallelism=parallelism,
            environ=invocation.environ,
        )
    invocation.stdout.write(summary.text())
    return EXIT_OK if summary.ok else EXIT_FAILURE


COMMAND = Command(
    name=COMMAND_NAME,
    help="mirror the images of sync.entries into the target registry (--dry-run, --list)",
    add_arguments=_arguments,
    run=_run,
)
