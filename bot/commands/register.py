"""``imglife register``: publish the build record of an application image (upstream's flags)."""

from __future__ import annotations

import argparse
import json
from contextlib import AsyncExitStack

from bot.commands.base import Command, Invocation
from bot.errors import EXIT_OK
from bot.oci.client import RegistryClient
from bot.records import format_timestamp
from bot.wiring import record_store, registry_client
from handlers.register import RegisterRequest, needs_registry, parse_fields, parse_platforms, register_build

COMMAND_NAME = "register"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image", required=True, help="the application image, with its tag: registry/repo:tag"
    )
    parser.add_argument("--base", help="the base image it was built FROM (default: read from the image)")
    parser.add_argument("--revision", required=True, help="git revision (SHA) of the application")
    parser.add_argument("--project", required=True, help="project path, e.g. myteam/myservice")
    parser.add_argument(
        "--platform",
        metavar="PLATFORMS",
        help='space-separated platforms, e.g. "linux/amd64 linux/arm64" (default: read from the image)',
    )
    parser.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="custom field for the record (repeatable)",
    )
    parser.add_argument("--dry-run", action="store_true", help="show the record, write nothing")
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="output format (default: text)"
    )


async def _run(invocation: Invocation) -> int:
    args = invocation.args
    request = RegisterRequest(
        image=args.image,
        revision=args.revision,
        project=args.project,
        base=args.base,
        platforms=parse_platforms(args.platform) if args.platform is not None else None,
        fields=parse_fields(args.field),
    )
    config = invocation.config()
    async with AsyncExitStack() as stack:
        store = record_store(config, invocation.environ, COMMAND_NAME)
        stack.push_async_callback(store.aclose)
        images: RegistryClient | None = None
        if needs_registry(request):
            images = await stack.enter_async_context(
                registry_client(config, invocation.environ, COMMAND_NAME)
            )
        registration = await register_build(
            request, store=store, images=images, now=invocation.now(), dry_run=args.dry_run
        )
    record = registration.record
    if args.output == "json":
        invocation.say(json.dumps(record.to_json(), indent=2))
        return EXIT_OK
    verb = "[dry-run] would register" if args.dry_run else "registered"
    invocation.say(f"{verb} {record.image} in {store.description}")
    detected = {part.split(" ", 1)[0]: part.split(" ", 1)[1] for part in registration.detected}
    rows = [
        ("base", f"{record.base} {detected.get('base', '')}".rstrip()),
        ("platforms", f"{' '.join(record.platforms) or '-'} {detected.get('platforms', '')}".rstrip()),
        ("revision", record.revision),
        ("project", record.project),
        ("built_at", format_timestamp(record.built_at)),
    ]
    rows += [(f"field {k}", v) for k, v in sorted(record.custom_fields.items())]
    if registration.previous is not None:
        rows.append(("replaces", f"the record built at {format_timestamp(registration.previous.built_at)}"))
    for key, value in rows:
        invocation.say(f"  {key:<10} {value}")
    return EXIT_OK


COMMAND = Command(
    name=COMMAND_NAME,
    help="publish the build record of an application image (which base, which platforms, which revision)",
    add_arguments=_arguments,
    run=_run,
)
