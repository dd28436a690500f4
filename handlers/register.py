"""Register a build: record which base image and platforms an application image was built from.

The base comes from ``--base``, else from the image itself (manifest annotations, then config
labels: ``org.opencontainers.image.base.name``); the platforms from ``--platform``, else from the
index or the image config. The registry is only read when something has to be detected.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.errors import ImglifeError, NotFoundError, UsageError
from bot.oci.reference import ImageReference, parse_reference
from bot.records import BuildRecord, RecordStore, record_key
from handlers.inspect import BASE_NAME_KEY, ImageSource, describe_image

FIELD_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9]+)?$")
MAX_FIELD_VALUE = 4096

MSG_NO_TAG = "--image {image!r} needs a tag: registry/repository:tag"
MSG_BAD_FIELD = "--field {item!r}: expected key=value with a key of letters, digits, '_', '.' or '-'"
MSG_BAD_PLATFORM = "--platform {platform!r}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm/v7"
MSG_NO_BASE = (
    "{image} has no {label} annotation or label, and no --base was given: pass --base REF "
    "(the base image the application was built FROM)"
)
MSG_IMAGE_MISSING = "{image} is not in its registry (push it before registering it): {detail}"


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    image: str
    revision: str
    project: str
    base: str | None = None
    platforms: tuple[str, ...] | None = None
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Registration:
    record: BuildRecord
    previous: BuildRecord | None
    detected: tuple[str, ...]  # what was read from the image, e.g. "base (config label)"


def parse_fields(items: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}``; the value may contain ``=``."""
    fields: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not FIELD_KEY_RE.match(key) or len(value) > MAX_FIELD_VALUE:
            raise UsageError(MSG_BAD_FIELD.format(item=item))
        fields[key] = value
    return fields


def parse_platforms(text: str) -> tuple[str, ...]:
    """``"linux/amd64 linux/arm64"`` (spaces or commas) → a tuple, validated."""
    platforms = tuple(p for p in re.split(r"[\s,]+", text.strip()) if p)
    for platform in platforms:
        if not PLATFORM_RE.match(platform):
            raise UsageError(MSG_BAD_PLATFORM.format(platform=platform))
    return platforms


def image_reference(text: str) -> ImageReference:
    """The image to register: any valid reference with an explicit tag (a digest may follow)."""
    ref = parse_reference(text)
    name_part = text.split("@", 1)[0]
    if ":" not in name_part.rsplit("/", 1)[-1]:
        raise UsageError(MSG_NO_TAG.format(image=text))
    return ref


def needs_registry(request: RegisterRequest) -> bool:
    return request.base is None or request.platforms is None


async def register_build(
    request: RegisterRequest,
    *,
    store: RecordStore,
    images: ImageSource | None,
    now: dt.datetime,
    dry_run: bool = False,
) -> Registration:
    """Build the record (detecting what was not given) and store it unless ``dry_run``."""
    ref = image_reference(request.image)
    base = str(parse_reference(request.base)) if request.base else None
    platforms = request.platforms
    detected: list[str] = []
    if base is None or platforms is None:
        if images is None:
            raise ImglifeError(
                "the base or the platforms must be read from the image, and no registry is available"
            )
        try:
            description = await describe_image(images, ref)
        except NotFoundError as exc:
            raise ImglifeError(MSG_IMAGE_MISSING.format(image=ref, detail=exc)) from exc
        if base is None:
            if not description.base_name:
                raise ImglifeError(MSG_NO_BASE.format(image=ref, label=BASE_NAME_KEY))
            base = str(parse_reference(description.base_name))
            detected.append(f"base ({description.base_source})")
        if platforms is None:
            platforms = tuple(description.platforms)
            detected.append("platforms (index)" if len(platforms) > 1 else "platforms (image config)")
    record = BuildRecord(
        image=str(record_key(ref)),
        base=base,
        revision=request.revision,
        project=request.project,
        platforms=platforms,
        built_at=now,
        custom_fields=dict(request.fields),
    )
    previous = await store.get(record_key(ref))
    if not dry_run:
        await store.put(record)
    return Registration(record=record, previous=previous, detected=tuple(detected))
