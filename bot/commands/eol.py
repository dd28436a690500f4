"""``imglife eol update`` and ``imglife eol notify``."""

from __future__ import annotations

import argparse
import json
from contextlib import AsyncExitStack

from bot.commands.base import Command, Invocation
from bot.commands.status import report_for
from bot.errors import EXIT_OK, ImglifeError
from bot.lifecycle.endoflife import EndOfLifeClient
from bot.wiring import record_store
from handlers.eol import eol_notice, notify_targets, post_notice, refresh_eol_data

MSG_LOCAL_PROVIDER = (
    "eol_provider is local: nothing fetched ({path} is maintained by hand; {products} products, valid)"
)


# -- update --------------------------------------------------------------------------------------


def _update_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="fetch and print the EOL data, write nothing")
    parser.add_argument(
        "--data-file", metavar="PATH", help="where to write (default: lifecycle.eol_data_file)"
    )


async def _update(invocation: Invocation) -> int:
    args = invocation.args
    config = invocation.config()
    lifecycle = config.lifecycle
    path = invocation.cwd / args.data_file if args.data_file else lifecycle.eol_data_file
    to_registry = lifecycle.eol_target == "pkgregistry" and lifecycle.eol_provider != "local"
    async with AsyncExitStack() as stack:
        client = EndOfLifeClient(str(lifecycle.endoflife_url))
        stack.push_async_callback(client.aclose)
        store = record_store(config, invocation.environ, "eol update") if to_registry else None
        if store is not None:
            stack.push_async_callback(store.aclose)
        refresh = await refresh_eol_data(
            config,
            path=path,
            store=store,
            fetch=client.fetch,
            config_source=invocation.config_path().read_bytes,
            dry_run=args.dry_run,
        )
    if refresh.update is None:
        invocation.say(MSG_LOCAL_PROVIDER.format(path=path, products=refresh.local_products))
        return EXIT_OK
    if args.dry_run:
        invocation.stdout.write(refresh.update.data.dump())
        invocation.say(f"[dry-run] fetched {refresh.fetched or 'nothing'}; nothing written")
        return EXIT_OK
    state = "updated" if refresh.update.changed else "unchanged"
    fetched = refresh.fetched or "nothing (no sync entry has a lifecycle)"
    invocation.say(f"fetched {fetched}; {state}: {refresh.where}")
    return EXIT_OK


# -- notify --------------------------------------------------------------------------------------


def _notify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the messages instead of sending them")


async def _notify(invocation: Invocation) -> int:
    args = invocation.args
    config = invocation.config()
    min_status = config.lifecycle.notify.min_status
    targets = notify_targets(config, invocation.environ, required=not args.dry_run)
    report = await report_for(invocation, "eol notify")
    notice = eol_notice(report, min_status=min_status, now=invocation.now())
    if notice is None:
        invocation.say(f"nothing at {min_status} or worse: no message sent")
        return EXIT_OK
    if args.dry_run:
        invocation.say("[dry-run] Slack message:")
        invocation.say(notice.slack["text"])
        invocation.say("[dry-run] webhook payload:")
        invocation.say(json.dumps(notice.payload, indent=2))
        return EXIT_OK
    failures = await post_notice(notice, targets)
    sent = targets.count - len(failures)
    invocation.say(f"{len(notice.alerts)} alert(s) sent to {sent} of {targets.count} receiver(s)")
    if failures:
        raise ImglifeError("\n".join(failures))
    return EXIT_OK


COMMAND = Command(
    name="eol",
    help="end-of-life data: refresh it, and alert on base images at or near end of life",
    children=(
        Command(
            name="update",
            help="fetch EOL data from endoflife.date into eol-data.yaml",
            add_arguments=_update_arguments,
            run=_update,
        ),
        Command(
            name="notify",
            help="post one Slack / webhook message listing bases at warning or eol",
            add_arguments=_notify_arguments,
            run=_notify,
        ),
    ),
)
