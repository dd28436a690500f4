"""``imglife app list`` and ``imglife app purge``: the build records themselves."""

from __future__ import annotations

import argparse
import json

from bot.commands.base import Command, Invocation
from bot.errors import EXIT_FAILURE, EXIT_OK
from bot.records import format_timestamp
from bot.wiring import record_store
from handlers.records import list_records, purge_records, records_table


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="output format (default: text)"
    )


async def _list(invocation: Invocation) -> int:
    store = record_store(invocation.config(), invocation.environ, "app list")
    try:
        scan = await list_records(store)
    finally:
        await store.aclose()
    if invocation.args.output == "json":
        invocation.say(json.dumps([record.to_json() for record in scan.records], indent=2))
    elif scan.records:
        invocation.say(records_table(scan.records))
    else:
        invocation.say(f"no build records in {store.description}")
    for problem in scan.problems:
        invocation.warn(problem)
    return EXIT_FAILURE if scan.problems else EXIT_OK


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _purge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than-days", type=_non_negative, metavar="N", help="purge records built more than N days ago"
    )
    parser.add_argument(
        "--keep-last",
        type=_non_negative,
        metavar="N",
        help="always keep the newest N records of each image repository",
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be purged, delete nothing")


async def _purge(invocation: Invocation) -> int:
    args = invocation.args
    store = record_store(invocation.config(), invocation.environ, "app purge")
    try:
        result = await purge_records(
            store,
            now=invocation.now(),
            older_than_days=args.older_than_days,
            keep_last=args.keep_last,
            dry_run=args.dry_run,
        )
    finally:
        await store.aclose()
    verb = "would purge" if args.dry_run else "purged"
    for record in result.purged:
        invocation.say(f"{verb} {record.image} (built {format_timestamp(record.built_at)})")
    prefix = "[dry-run] " if args.dry_run else ""
    invocation.say(
        f"{prefix}{len(result.purged)} {verb}, {result.kept} kept, {len(result.errors)} errors "
        f"({result.examined} records in {store.description})"
    )
    for error in result.errors:
        invocation.warn(error)
    return EXIT_FAILURE if result.errors else EXIT_OK


COMMAND = Command(
    name="app",
    help="build records: list them, purge old ones",
    children=(
        Command(name="list", help="list the build records", add_arguments=_list_arguments, run=_list),
        Command(
            name="purge",
            help="delete old build records (the newest --keep-last of each repository are kept)",
            add_arguments=_purge_arguments,
            run=_purge,
        ),
    ),
)
