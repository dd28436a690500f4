"""``imglife check``: is this base image the latest, and is its cycle still supported?

Never contacts an OCI registry: everything comes from the base-images config and the EOL data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from bot.config import Config
from bot.errors import InvalidReference
from bot.lifecycle.eoldata import EolData, EolStatus
from bot.oci.reference import parse_reference
from handlers.bases import base_images, find_base, judge_tag

MSG_UNKNOWN_BASE = "{base} is not a base image declared in build.images; known bases: {known}"
MSG_NO_TAG = "{base} has no tag to compare with the latest"


@dataclass(frozen=True, slots=True)
class CheckResult:
    base: str
    latest: str | None
    up_to_date: bool | None  # None when the base is not a declared base image
    eol_date: dt.date | None
    eol_status: EolStatus
    warnings: tuple[str, ...]
    known: bool

    def as_json(self) -> dict[str, Any]:
        """The upstream JSON output, field for field."""
        return {
            "base": self.base,
            "latest": self.latest,
            "up_to_date": self.up_to_date,
            "eol_date": self.eol_date.isoformat() if self.eol_date else None,
            "eol_status": str(self.eol_status),
            "warnings": list(self.warnings),
        }

    def fails_strict(self) -> bool:
        return not self.known or self.up_to_date is False or self.eol_status is EolStatus.EOL


def known_bases(config: Config) -> str:
    names = [b.repository for b in base_images(config, include_untracked=True)]
    return ", ".join(names) or "(none: build.images is empty)"


def check_base(
    base: str,
    config: Config,
    eol: EolData,
    *,
    today: dt.date,
    critical: int,
    eol_note: str | None = None,
) -> CheckResult:
    """Judge ``base`` against the base-images ``config``; ``eol_note`` says why EOL data is missing."""
    ref = parse_reference(base)
    shown = str(ref)
    declared = find_base(config, base)
    if declared is None:
        warning = MSG_UNKNOWN_BASE.format(base=ref.name, known=known_bases(config))
        return CheckResult(shown, None, None, None, EolStatus.UNKNOWN, (warning,), known=False)
    if not ref.tag:
        raise InvalidReference(MSG_NO_TAG.format(base=shown))
    verdict = judge_tag(declared, ref.tag, eol, today=today, critical=critical)
    warnings = verdict.warnings + (
        (eol_note,) if eol_note and verdict.eol_status is EolStatus.UNKNOWN else ()
    )
    return CheckResult(
        base=shown,
        latest=declared.latest,
        up_to_date=verdict.up_to_date,
        eol_date=verdict.eol_date,
        eol_status=verdict.eol_status,
        warnings=warnings,
        known=True,
    )
