"""``imglife inspect IMAGE``: describe an image as its registry serves it."""

from __future__ import annotations

import argparse
import json

from bot.commands.base import Command, Invocation
from bot.errors import EXIT_OK
from bot.oci.reference import parse_reference
from bot.wiring import registry_client
from handlers.inspect import describe_image


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "reference", metavar="IMAGE", help="image reference, e.g. registry.example.com/apps/api:1.2.0"
    )
    parser.add_argument(
        "--output", choices=("text", "json"), default="text", help="output format (default: text)"
    )
    parser.add_argument(
        "--raw", action="store_true", help="print the manifest exactly as the registry serves it"
    )


async def _run(invocation: Invocation) -> int:
    args = invocation.args
    ref = parse_reference(args.reference)
    config = invocation.optional_config()
    async with registry_client(config, invocation.environ, "inspect") as registry:
        if args.raw:
            manifest = await registry.get_manifest(ref)
            invocation.say(manifest.raw.decode("utf-8", errors="replace"))
            return EXIT_OK
        description = await describe_image(registry, ref)
    if args.output == "json":
        invocation.say(json.dumps(description.as_json(), indent=2))
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
        invocation.say(f"{key:<{width}}  {value}")
    return EXIT_OK


COMMAND = Command(
    name="inspect",
    help="describe an image: digest, platforms, labels and its base image (checks registry access)",
    add_arguments=_arguments,
    run=_run,
)
