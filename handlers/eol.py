"""``imglife eol update`` and ``imglife eol notify``.

Update fetches the cycles of every ``sync.entries[].lifecycle.product`` and merges them into the
EOL data (products nobody fetched, such as hand-maintained custom runtimes, are kept). Notify
finds every base image tag in use (and every latest tag) at ``warning`` or ``eol`` and posts one
message per run listing them with the applications affected.

Both ``imglife eol …`` and the bot's scheduled jobs call :func:`refresh_eol_data`,
:func:`notify_targets`, :func:`eol_notice` and :func:`post_notice`; the callers only build the
clients and say what happened.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Config
from bot.errors import ConfigError
from bot.http import HttpClient, TransportError
from bot.lifecycle.eoldata import EolData, EolStatus, parse_eol_data
from bot.records import BuildRecord, RecordStore, format_timestamp
from bot.redaction import register_secret
from handlers.bases import TagVerdict
from handlers.sources import CONFIG_DOCUMENT, EOL_DOCUMENT
from handlers.status import StatusReport

SLACK_VARIABLE = "IMGLIFE_SLACK_WEBHOOK_URL"
WEBHOOK_VARIABLE = "IMGLIFE_NOTIFY_WEBHOOK_URL"
MSG_NO_TARGETS = (
    f"eol notify has nowhere to post: set {SLACK_VARIABLE} or {WEBHOOK_VARIABLE}, "
    "or lifecycle.notify.slack_webhook_url / webhook_urls"
)
NOTIFY_MAX_CONNECTIONS = 4
FAILURE_BODY_CHARS = 200  # enough of a receiver's error page to see why, not the whole page
NOTIFY_LEVELS = {"warning": (EolStatus.WARNING, EolStatus.EOL), "eol": (EolStatus.EOL,)}
SLACK_ICONS = {EolStatus.WARNING: ":warning:", EolStatus.EOL: ":x:"}


def lifecycle_products(config: Config) -> list[str]:
    return sorted({e.lifecycle.product for e in config.sync.entries if e.lifecycle is not None})


@dataclass(frozen=True, slots=True)
class EolUpdate:
    data: EolData
    counts: dict[str, int]  # product -> cycles fetched
    changed: bool


async def update_eol_data(
    config: Config, existing: EolData, fetch: Callable[[list[str]], Awaitable[EolData]]
) -> EolUpdate:
    products = lifecycle_products(config)
    fetched = await fetch(products) if products else EolData()
    merged = {**existing.products, **fetched.products}
    data = EolData(merged)
    counts = {name: len(cycles) for name, cycles in fetched.products.items()}
    return EolUpdate(data=data, counts=counts, changed=data.dump() != existing.dump())


@dataclass(frozen=True, slots=True)
class EolRefresh:
    """One ``eol update`` run; ``update`` is None with ``eol_provider: local`` (nothing fetched)."""

    update: EolUpdate | None
    where: str  # the file or the store (with the documents) the data lives in
    written: bool
    local_products: int = 0  # with ``eol_provider: local``: products in the hand-maintained file

    @property
    def fetched(self) -> str:
        """``"python (12 cycles), node (20 cycles)"``, empty when nothing was fetched."""
        counts = self.update.counts if self.update is not None else {}
        return ", ".join(f"{name} ({count} cycles)" for name, count in sorted(counts.items()))


def _read_local(path: Path) -> EolData:
    return parse_eol_data(path.read_bytes(), source=str(path)) if path.exists() else EolData()


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one step, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


async def refresh_eol_data(
    config: Config,
    *,
    path: Path,
    store: RecordStore | None,
    fetch: Callable[[list[str]], Awaitable[EolData]],
    config_source: Callable[[], bytes],
    dry_run: bool,
) -> EolRefresh:
    """Fetch, merge and save the EOL data: to ``store`` (``eol_target: pkgregistry``), else ``path``.

    With ``eol_provider: local`` nothing is fetched; the file is only checked to be usable. Beside
    data written to the store goes ``config_source()``, because application pipelines run
    ``check`` without this configuration.
    """
    if config.lifecycle.eol_provider == "local":
        return EolRefresh(None, str(path), written=False, local_products=len(_read_local(path).products))
    if store is not None:
        current = await store.read_document(EOL_DOCUMENT)
        existing = parse_eol_data(current, source=EOL_DOCUMENT) if current else EolData()
    else:
        existing = _read_local(path)
    update = await update_eol_data(config, existing, fetch)
    if dry_run:
        return EolRefresh(update, "", written=False)
    text = update.data.dump()
    if store is not None:
        await store.write_document(EOL_DOCUMENT, text.encode())
        await store.write_document(CONFIG_DOCUMENT, config_source())
        return EolRefresh(update, f"{store.description} ({EOL_DOCUMENT}, {CONFIG_DOCUMENT})", written=True)
    write_atomically(path, text)
    return EolRefresh(update, str(path), written=True)


# -- notify --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alert:
    """One base image tag at warning or eol, and who builds on it."""

    reference: str
    latest: str
    verdict: TagVerdict
    applications: list[BuildRecord] = field(default_factory=list)


def alerts(report: StatusReport, *, min_status: str) -> list[Alert]:
    wanted = NOTIFY_LEVELS[min_status]
    found: list[Alert] = []
    for base in report.bases:
        verdicts = {base.latest.tag: base.latest, **base.tags}
        for tag, verdict in verdicts.items():
            if verdict.eol_status not in wanted:
                continue
            users = [app.record for app in base.apps if app.tag == tag]
            found.append(Alert(f"{base.base.repository}:{tag}", base.base.latest, verdict, users))
    return found


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn: these three are the only characters that must be escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(verdict: TagVerdict) -> str:
    return verdict.eol_date.isoformat() if verdict.eol_date else "date unknown"


def slack_message(found: list[Alert], *, critical: int) -> dict[str, Any]:
    lines = [f"*imglife: {len(found)} base image tag(s) at or near end of life* (window: {critical} days)"]
    for alert in found:
        verdict = alert.verdict
        apps = ", ".join(_slack_escape(r.image) for r in alert.applications) or "no registered application"
        lines.append(
            f"{SLACK_ICONS[verdict.eol_status]} `{_slack_escape(alert.reference)}` — {verdict.eol_status} "
            f"({_when(verdict)}); latest `{_slack_escape(alert.latest)}`; used by: {apps}"
        )
    return {"text": "\n".join(lines)}


@dataclass(frozen=True, slots=True)
class NotifyTargets:
    slack_urls: list[str]
    hook_urls: list[str]

    @property
    def count(self) -> int:
        return len(self.slack_urls) + len(self.hook_urls)


def notify_targets(config: Config, environ: Mapping[str, str], *, required: bool) -> NotifyTargets:
    """Where ``eol notify`` posts: the environment first, then ``lifecycle.notify``.

    Raises :class:`ConfigError` when ``required`` and there is nowhere to post.
    """
    notify = config.lifecycle.notify
    slack_urls = [u for u in (environ.get(SLACK_VARIABLE), notify.slack_webhook_url) if u]
    hook_urls = [u for u in (environ.get(WEBHOOK_VARIABLE), *notify.webhook_urls) if u]
    for url in (*slack_urls, *hook_urls):
        register_secret(url)  # a Slack webhook URL is its own credential
    if required and not (slack_urls or hook_urls):
        raise ConfigError([MSG_NO_TARGETS])
    return NotifyTargets(slack_urls, hook_urls)


@dataclass(frozen=True, slots=True)
class EolNotice:
    """The one message of a notify run, in both shapes."""

    alerts: list[Alert]
    slack: dict[str, Any]
    payload: dict[str, Any]


def eol_notice(report: StatusReport, *, min_status: str, now: dt.datetime) -> EolNotice | None:
    """The message for ``report``; None when no tag is at ``min_status`` or worse."""
    found = alerts(report, min_status=min_status)
    if not found:
        return None
    return EolNotice(
        found,
        slack_message(found, critical=report.critical_days),
        webhook_payload(found, now=now, critical=report.critical_days),
    )


async def post_notice(notice: EolNotice, targets: NotifyTargets) -> list[str]:
    """POST the Slack message and the webhook payload to every target; the failures, one line each."""
    failures: list[str] = []
    client = HttpClient(service="notify", max_connections=NOTIFY_MAX_CONNECTIONS)
    try:
        for urls, body in ((targets.slack_urls, notice.slack), (targets.hook_urls, notice.payload)):
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
                    failures.append(
                        f"{url} answered HTTP {response.status_code}: {response.text[:FAILURE_BODY_CHARS]}"
                    )
    finally:
        await client.aclose()
    return failures


def webhook_payload(found: list[Alert], *, now: dt.datetime, critical: int) -> dict[str, Any]:
    return {
        "source": "imglife",
        "event": "eol",
        "generated_at": format_timestamp(now),
        "alert_critical_days": critical,
        "alerts": [
            {
                "base": alert.reference,
                "latest": alert.latest,
                "cycle": alert.verdict.cycle,
                "eol_date": alert.verdict.eol_date.isoformat() if alert.verdict.eol_date else None,
                "eol_status": str(alert.verdict.eol_status),
                "applications": [
                    {"image": r.image, "project": r.project, "revision": r.revision}
                    for r in alert.applications
                ],
            }
            for alert in found
        ],
    }
