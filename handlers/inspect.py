"""Describe an image as a registry serves it: digest, platforms, labels, annotations, base image.

``register`` uses the same description to auto-detect the base and platforms; ``imglife inspect``
prints it, which is also the quickest way to check that credentials for a registry work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.errors import RegistryError
from bot.oci.client import Manifest
from bot.oci.reference import ImageReference
from bot.oci.sansio import INDEX_MEDIA_TYPES, Descriptor

BASE_NAME_KEY = "org.opencontainers.image.base.name"
BASE_DIGEST_KEY = "org.opencontainers.image.base.digest"
# The manifest's own platform entries: attestations and other artifacts are not platforms.
UNKNOWN_PLATFORM = "unknown/unknown"


class ImageSource(Protocol):
    """The registry calls describing an image needs (pull only)."""

    async def get_manifest(self, ref: ImageReference) -> Manifest: ...

    async def get_blob(self, repo: ImageReference, digest: str, *, limit: int = ...) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ImageDescription:
    reference: str
    digest: str
    media_type: str
    platforms: list[str]
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    created: str | None = None
    base_name: str | None = None
    base_digest: str | None = None
    base_source: str | None = None  # "manifest annotation", "index annotation" or "config label"

    def as_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "media_type": self.media_type,
            "platforms": self.platforms,
            "created": self.created,
            "base": {"name": self.base_name, "digest": self.base_digest, "source": self.base_source},
            "annotations": self.annotations,
            "labels": self.labels,
        }


def platform_string(platform: dict[str, Any]) -> str:
    """``os/arch[/variant]`` from an index entry's ``platform`` or an image config."""
    text = f"{platform.get('os', '')}/{platform.get('architecture', '')}"
    if platform.get("variant"):
        text += f"/{platform['variant']}"
    return text


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


async def describe_image(registry: ImageSource, ref: ImageReference) -> ImageDescription:
    """Read a manifest (and for an index, its first platform image) and describe it.

    The base comes from the manifest's annotations first, then (for an index) the index's
    annotations, then the image config's labels, as upstream ``register`` documents.
    """
    top = await registry.get_manifest(ref)
    top_doc = top.json()
    index_annotations = _string_map(top_doc.get("annotations"))
    image_manifest, image_doc = top, top_doc
    platforms: list[str] = []
    if top.media_type in INDEX_MEDIA_TYPES or "manifests" in top_doc:
        children = [c for c in top_doc.get("manifests") or [] if isinstance(c, dict)]
        images = [c for c in children if platform_string(c.get("platform") or {}) != UNKNOWN_PLATFORM]
        platforms = [platform_string(c.get("platform") or {}) for c in images]
        if not images:
            raise RegistryError(f"{ref} is an index without any platform image")
        child_digest = str(images[0].get("digest"))
        image_manifest = await registry.get_manifest(ref.with_digest(child_digest))
        image_doc = image_manifest.json()

    config_descriptor = image_doc.get("config") or {}
    config: dict[str, Any] = {}
    if isinstance(config_descriptor, dict) and config_descriptor.get("digest"):
        raw_config = await registry.get_blob(ref, str(config_descriptor["digest"]))
        try:
            loaded = json.loads(raw_config)
        except ValueError as exc:
            raise RegistryError(f"the image config of {ref} is not JSON") from exc
        config = loaded if isinstance(loaded, dict) else {}
    labels = _string_map((config.get("config") or {}).get("Labels"))
    if not platforms and config.get("os"):
        platforms = [platform_string(config)]

    is_index = image_manifest is not top
    manifest_annotations = _string_map(image_doc.get("annotations"))
    sources = [("manifest annotation", manifest_annotations), ("config label", labels)]
    if is_index:
        sources.insert(0, ("index annotation", index_annotations))
    base_name, base_digest, base_source = None, None, None
    for source, values in sources:
        if values.get(BASE_NAME_KEY):
            base_name, base_digest, base_source = values[BASE_NAME_KEY], values.get(BASE_DIGEST_KEY), source
            break
    descriptor: Descriptor = top.descriptor
    return ImageDescription(
        reference=str(ref),
        digest=descriptor.digest,
        media_type=descriptor.media_type,
        platforms=platforms,
        annotations=index_annotations if is_index else manifest_annotations,
        labels=labels,
        created=str(config["created"]) if config.get("created") else None,
        base_name=base_name,
        base_digest=base_digest,
        base_source=base_source,
    )
