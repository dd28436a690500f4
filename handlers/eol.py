"""``imglife eol update`` and ``imglife eol notify``.

Update fetches the cycles of every ``sync.entries[].lifecycle.product`` and merges them into the
EOL data (products nobody fetched, such as hand-maintained custom runtimes, are kept). Notify
finds every base image tag in use (and every latest tag) at ``warning`` or ``eol`` and posts one
message per run listing them with the applications affected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.config import Config
from bot.lifecycle.eoldata import EolData, EolStatus
from bot.records import BuildRecord, format_timestamp
from handlers.bases import TagVerdict
from handlers.status import StatusReport

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
