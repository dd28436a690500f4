"""``imglife eol update`` and ``imglife eol notify``."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

from bot.commands.base import Command, Invocation
from bot.commands.status import report_for
from bot.errors import EXIT_OK, ConfigError, ImglifeError
from bot.http import HttpClient, TransportError
from bot.lifecycle.endoflife import EndOfLifeClient
from bot.lifecycle.eoldata import EolData, parse_eol_data
from bot.redaction import register_secret
from bot.wiring import record_store
from handlers.eol import alerts, slack_message, update_eol_data, webhook_payload
from handlers.sources import CONFIG_DOCUMENT, EOL_DOCUMENT

SLACK_VARIABLE = "IMGLIFE_SLACK_WEBHOOK_URL"
WEBHOOK_VARIABLE = "IMGLIFE_NOTIFY_WEBHOOK_URL"
MSG_LOCAL_PROVIDER = (
    "eol_provider is local: nothing fetched ({path} is maintained by hand; {products} products, valid)"
)
MSG_NO_TARGETS = (
    f"eol notify has nowhere to post: set {SLACK_VARIABLE} or {WEBHOOK_VARIABLE}, "
    "or lifecycle.notify.slack_webhook_url / webhook_urls"
)


# -- update --------------------------------------------------------------------------------------


def _update_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="fetch and print the EOL data, write nothing")
    parser.add_argument(
        "--data-file", metavar="PATH", help="where to write (default: lifecycle.eol_data_file)"
    )


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def _update(invocation: Invocation) -> int:
    args = invocation.args
    config = invocation.config()
    lifecycle = config.lifecycle
    path = invocation.cwd / args.data_file if args.data_file else lifecycle.eol_data_file
    if lifecycle.eol_provider == "local":
        # No network at all: the file is the source; make sure it is usable.
        data = parse_eol_data(path.read_bytes(), source=str(path)) if path.exists() else EolData()
        invocation.say(MSG_LOCAL_PROVIDER.format(path=path, products=len(data.products)))
        return EXIT_OK
    to_registry = lifecycle.eol_target == "pkgregistry"
    async with AsyncExitStack() as stack:
        client = EndOfLifeClient(str(lifecycle.endoflife_url))
        stack.push_async_callback(client.aclose)
        store = record_store(config, invocation.environ, "eol update") if to_registry else None
        if store is not None:
            stack.push_async_callback(store.aclose)
            current = await store.read_document(EOL_DOCUMENT)
            existing = parse_eol_data(current, source=EOL_DOCUMENT) if current else EolData()
        else:
            existing = parse_eol_data(path.read_bytes(), source=str(path)) if path.exists() else EolData()
        update = await update_eol_data(config, existing, client.fetch)
        text = update.data.dump()
        fetched = ", ".join(f"{name} ({count} cycles)" for name, count in sorted(update.counts.items()))
        if args.dry_run:
            invocation.stdout.write(text)
            invocation.say(f"[dry-run] fetched {fetched or 'nothing'}; nothing written")
            return EXIT_OK
        if store is not None:
            await store.write_document(EOL_DOCUMENT, text.encode())
            # Application pipelines run `check` without this config: publish it beside the data.
            await store.write_document(CONFIG_DOCUMENT, invocation.config_path().read_bytes())
            where = f"{store.description} ({EOL_DOCUMENT}, {CONFIG_DOCUMENT})"
        else:
            _write_atomically(path, text)
            where = str(path)
    state = "updated" if update.changed else "unchanged"
    invocation.say(f"fetched {fetched or 'nothing (no sync entry has a lifecycle)'}; {state}: {where}")
    return EXIT_OK


# -- notify --------------------------------------------------------------------------------------


def _notify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the messages instead of sending them")


async def _notify(invocation: Invocation) -> int:
    args = invocation.args
    config = invocation.config()
    notify = config.lifecycle.notify
    slack_urls = [u for u in (invocation.environ.get(SLACK_VARIABLE), notify.slack_webhook_url) if u]
    hook_urls = [u for u in (invocation.environ.get(WEBHOOK_VARIABLE), *notify.webhook_urls) if u]
    for url in (*slack_urls, *hook_urls):
        register_secret(url)  # a Slack webhook URL is its own credential
    if not (slack_urls or hook_urls or args.dry_run):
        raise ConfigError([MSG_NO_TARGETS])
    report = await report_for(invocation, "eol notify")
    found = alerts(report, min_status=notify.min_status)
    if not found:
        invocation.say(f"nothing at {notify.min_status} or worse: no message sent")
        return EXIT_OK
    slack = slack_message(found, critical=report.critical_days)
    payload = webhook_payload(found, now=invocation.now(), critical=report.critical_days)
    if args.dry_run:
        invocation.say("[dry-run] Slack message:")
        invocation.say(slack["text"])
        invocation.say("[dry-run] webhook payload:")
        invocation.say(json.dumps(payload, indent=2))
        return EXIT_OK
    failures: list[str] = []
    client = HttpClient(service="notify", max_connections=4)
    try:
        for urls, body in ((slack_urls, slack), (hook_urls, payload)):
            for url in urls:
                try:
                    response = await client.request(
                        "POST",
                        url,
                        content=json.dumps(body).encode(),
                        headers={"Content-Type": "application/json"},
                    )
                except TransportError as exc:
                    failures.append(f"cannot reach {url}: {exc}")
                    continue
                if not 200 <= response.status_code < 300:
                    failures.append(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
    finally:
        await client.aclose()
    sent = len(slack_urls) + len(hook_urls) - len(failures)
    invocation.say(f"{len(found)} alert(s) sent to {sent} of {len(slack_urls) + len(hook_urls)} receiver(s)")
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
