"""What the base-images configuration says about a base image (pure): latest tag, cycle, EOL.

Shared by ``check``, ``status`` and ``eol notify``. A base image is a ``build.images`` entry; its
lifecycle comes from the sync entry that mirrors its ``mirror_image`` (``lifecycle.product`` and
``track``/``extract``), and its cycle from the upstream part of a tag (``3.21.3`` of
``3.21.3-core1.2.0``). ``spe-dev`` images are not EOL-checked and never appear in reports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from bot.config import BuildConfig, BuildImage, Config, Lifecycle
from bot.errors import InvalidReference
from bot.lifecycle.eoldata import Cycle, EolData, EolStatus, eol_status
from bot.oci.reference import parse_reference, parse_repository
from bot.versions import compare, cycle_of, split_core_tag

UNTRACKED_TYPE = "spe-dev"

MSG_OUTDATED = "base image is outdated: latest is {latest}"
MSG_EOL = "{product} {cycle} reached end of life on {date}"
MSG_EOL_UNDATED = "{product} {cycle} has reached end of life"
MSG_WARNING = "{product} {cycle} reaches end of life on {date} (in {days} days)"
MSG_NO_LIFECYCLE = "no EOL tracking for {name}: no sync entry with a lifecycle mirrors {mirror}"
MSG_NO_CYCLE = "no EOL data for {product} cycle {cycle}"
MSG_NO_VERSION = "cannot derive a {track} cycle from tag {tag!r}"
MSG_UNTRACKED = "EOL is not tracked for spe-dev images"


@dataclass(frozen=True, slots=True)
class BaseImage:
    """One declared base image and where its EOL data comes from."""

    image: BuildImage
    repository: str  # normalised, e.g. registry.example.com/bases/alpine
    latest_tag: str
    lifecycle: Lifecycle | None

    @property
    def latest(self) -> str:
        return f"{self.repository}:{self.latest_tag}"

    @property
    def tracked(self) -> bool:
        return self.image.type != UNTRACKED_TYPE


@dataclass(frozen=True, slots=True)
class TagVerdict:
    """What one tag of a base image is worth: current or not, and its EOL state."""

    tag: str
    up_to_date: bool
    cycle: str | None
    eol: Cycle | None
    eol_status: EolStatus
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def eol_date(self) -> dt.date | None:
        return self.eol.eol_date if self.eol is not None else None


def lifecycle_of(config: Config, image: BuildImage) -> Lifecycle | None:
    """The lifecycle of the sync entry whose target is the image's ``mirror_image``."""
    if image.mirror_image is None:
        return None
    mirror = parse_repository(image.mirror_image).name
    for entry in config.sync.entries:
        if entry.lifecycle is not None and entry.target_ref.name == mirror:
            return entry.lifecycle
    return None


def base_images(config: Config, *, include_untracked: bool = False) -> Iterator[BaseImage]:
    build: BuildConfig | None = config.build
    if build is None:
        return
    for image in build.images:
        if image.type == UNTRACKED_TYPE and not include_untracked:
            continue
        yield BaseImage(
            image=image,
            repository=parse_repository(build.repository_of(image)).name,
            latest_tag=build.latest_tag(image),
            lifecycle=lifecycle_of(config, image),
        )


def find_base(config: Config, reference: str) -> BaseImage | None:
    """The declared base image whose repository is ``reference``'s (spe-dev included)."""
    try:
        name = parse_reference(reference).name
    except InvalidReference:
        return None
    return next((b for b in base_images(config, include_untracked=True) if b.repository == name), None)


def upstream_version(tag: str) -> str:
    """The upstream part of an org base tag: ``3.21.3`` of ``3.21.3-core1.2.0``."""
    split = split_core_tag(tag)
    return split[0] if split is not None else tag


def judge_tag(base: BaseImage, tag: str, eol: EolData, *, today: dt.date, critical: int) -> TagVerdict:
    """Is ``tag`` of ``base`` the latest, and where is its cycle in its lifecycle?"""
    up_to_date = compare(tag, base.latest_tag) >= 0
    warnings: list[str] = [] if up_to_date else [MSG_OUTDATED.format(latest=base.latest_tag)]
    if not base.tracked:
        return TagVerdict(tag, up_to_date, None, None, EolStatus.UNKNOWN, (*warnings, MSG_UNTRACKED))
    lifecycle = base.lifecycle
    if lifecycle is None:
        mirror = base.image.mirror_image or "(no mirror_image)"
        warnings.append(MSG_NO_LIFECYCLE.format(name=base.image.name, mirror=mirror))
        return TagVerdict(tag, up_to_date, None, None, EolStatus.UNKNOWN, tuple(warnings))
    cycle_name = cycle_of(upstream_version(tag), lifecycle.track)
    if cycle_name is None:
        warnings.append(MSG_NO_VERSION.format(track=lifecycle.track, tag=tag))
        return TagVerdict(tag, up_to_date, None, None, EolStatus.UNKNOWN, tuple(warnings))
    cycle = eol.find(lifecycle.product, cycle_name)
    status = eol_status(cycle, today=today, critical=critical)
    names = {"product": lifecycle.product, "cycle": cycle_name}
    if cycle is None:
        warnings.append(MSG_NO_CYCLE.format(**names))
    elif status is EolStatus.EOL:
        date = cycle.eol_date
        warnings.append(MSG_EOL.format(**names, date=date) if date else MSG_EOL_UNDATED.format(**names))
    elif status is EolStatus.WARNING and cycle.eol_date is not None:
        days = (cycle.eol_date - today).days
        warnings.append(MSG_WARNING.format(**names, date=cycle.eol_date, days=days))
    return TagVerdict(tag, up_to_date, cycle_name, cycle, status, tuple(warnings))
