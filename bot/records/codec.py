"""The build record and its JSON form (pure), exactly as the upstream tool writes it.

```json
{"image": "registry.example.com/apps/myservice:1.2.0",
 "base": "registry.example.com/bases/alpine:3.21.3-core1.0.0",
 "revision": "a3f8b1c", "project": "myteam/myservice",
 "platforms": ["linux/amd64", "linux/arm64"],
 "built_at": "2026-04-01T10:00:00Z", "custom_fields": {}}
```

``image`` is stored in normal form (``docker.io/library/alpine:3`` rather than ``alpine:3``), so
one image always maps to one record. Unknown fields written by other tools are ignored on read.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.errors import InvalidReference, RecordFormatError
from bot.oci.reference import ImageReference, parse_reference

REQUIRED_FIELDS = ("image", "base", "revision", "project", "built_at")
MAX_RECORD_BYTES = 1024 * 1024


def format_timestamp(when: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, to the second: ``2026-04-01T10:00:00Z``."""
    # Not strftime("%Y"): glibc does not pad years before 1000, and "999-01-01" is no RFC 3339 date.
    return when.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def parse_timestamp(text: str) -> dt.datetime:
    """Parse RFC 3339 (``Z`` or an offset); a time without a zone is taken as UTC."""
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


@dataclass(frozen=True, slots=True)
class BuildRecord:
    """Which application image was built on which base, from which revision, when."""

    image: str
    base: str
    revision: str
    project: str
    platforms: tuple[str, ...]
    built_at: dt.datetime
    custom_fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> ImageReference:
        return parse_reference(self.image)

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "base": self.base,
            "revision": self.revision,
            "project": self.project,
            "platforms": list(self.platforms),
            "built_at": format_timestamp(self.built_at),
            "custom_fields": dict(self.custom_fields),
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), indent=2, sort_keys=False).encode() + b"\n"


def decode_record(data: bytes, *, where: str) -> BuildRecord:
    """Parse a stored record; ``where`` names it in errors (a key, a path, a package)."""
    if len(data) > MAX_RECORD_BYTES:
        raise RecordFormatError(f"{where}: {len(data)} bytes is too large for a build record")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"{where}: not JSON ({exc})") from None
    except RecursionError:  # json.loads recurses once per nested array or object
        raise RecordFormatError(f"{where}: not JSON (nested too deeply)") from None
    if not isinstance(raw, dict):
        raise RecordFormatError(f"{where}: a build record is a JSON object")
    return record_from_json(raw, where=where)


def record_from_json(raw: Mapping[str, Any], *, where: str) -> BuildRecord:
    missing = [name for name in REQUIRED_FIELDS if not isinstance(raw.get(name), str) or not raw.get(name)]
    if missing:
        raise RecordFormatError(f"{where}: missing or non-string field(s): {', '.join(missing)}")
    platforms = raw.get("platforms") or []
    custom = raw.get("custom_fields") or {}
    if not isinstance(platforms, list) or not all(isinstance(p, str) for p in platforms):
        raise RecordFormatError(f"{where}: 'platforms' must be a list of strings")
    if not isinstance(custom, dict):
        raise RecordFormatError(f"{where}: 'custom_fields' must be an object")
    try:
        image = str(record_key(raw["image"]))
        built_at = parse_timestamp(raw["built_at"])
    except (InvalidReference, ValueError, OverflowError) as exc:  # OverflowError: 0001-01-01T00:00+01:00
        raise RecordFormatError(f"{where}: {exc}") from None
    return BuildRecord(
        image=image,
        base=raw["base"],
        revision=raw["revision"],
        project=raw["project"],
        platforms=tuple(platforms),
        built_at=built_at,
        custom_fields={str(k): str(v) for k, v in custom.items()},
    )


def record_key(image: str | ImageReference) -> ImageReference:
    """The reference a record is keyed by: normalised ``registry/repository:tag``, no digest."""
    ref = parse_reference(image) if isinstance(image, str) else image
    if not ref.tag:
        raise InvalidReference(f"a build record is keyed by a tag, and {ref} has none")
    return ImageReference(registry=ref.registry, repository=ref.repository, tag=ref.tag)
