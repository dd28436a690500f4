"""Deterministic container images built in pure Python, and OCI image layouts for skopeo.

* :func:`make_layer` / :func:`random_layer`: gzip tar layers (mtime 0 in tar and gzip).
* :func:`build_image`: config + OCI manifest (or Docker schema2 with ``docker=True``).
* :func:`build_index`: OCI image index of N platforms (or a Docker manifest list).
* :func:`write_oci_layout`: an OCI image layout directory that ``skopeo copy oci:DIR:TAG`` reads.
* :func:`write_dir_layout`: a skopeo ``dir:`` directory (the way to push Docker-format images:
  skopeo's ``oci:`` transport only finds OCI media types in ``index.json``).

Same inputs give byte-identical blobs and manifests, hence identical digests. OCI manifests are
serialized compactly (like BuildKit), Docker ones with 3-space indentation (like Docker), so a
client that re-serializes a manifest instead of copying its bytes changes the digest.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "DEFAULT_CREATED",
    "DEFAULT_PLATFORMS",
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZ",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER_GZ",
    "OCI_MANIFEST",
    "REF_NAME_ANNOTATION",
    "Blob",
    "TestImage",
    "TestIndex",
    "build_image",
    "build_index",
    "make_config",
    "make_layer",
    "parse_platform",
    "random_layer",
    "sha256_digest",
    "write_dir_layout",
    "write_oci_layout",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZ = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"

DEFAULT_CREATED = "2024-01-01T00:00:00Z"
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """Bytes with their digest and media type. Layers also carry the uncompressed ``diff_id``."""

    data: bytes
    digest: str
    media_type: str
    diff_id: str | None = None

    @classmethod
    def of(cls, data: bytes, media_type: str, diff_id: str | None = None) -> Blob:
        return cls(data=data, digest=sha256_digest(data), media_type=media_type, diff_id=diff_id)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def __repr__(self) -> str:  # keep pytest output readable with multi-MB blobs
        return f"Blob({self.digest[:19]}..., {self.media_type}, {self.size} bytes)"


@dataclass(frozen=True)
class TestImage:
    """A single-platform image: manifest bytes plus its config and layer blobs."""

    __test__: ClassVar[bool] = False  # not a pytest test class

    manifest: bytes
    media_type: str
    digest: str
    config: Blob
    layers: list[Blob]
    platform: str = "linux/amd64"

    @property
    def size(self) -> int:
        return len(self.manifest)

    @property
    def blobs(self) -> list[Blob]:
        """Config then layers (what must be uploaded before the manifest)."""
        return [self.config, *self.layers]

    @property
    def manifests(self) -> dict[str, tuple[str, bytes]]:
        """digest -> (media type, bytes) for every manifest (here just one)."""
        return {self.digest: (self.media_type, self.manifest)}

    def descriptor(self, *, with_platform: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if with_platform:
            d["platform"] = parse_platform(self.platform)
        return d

    def config_json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.config.data)
        return result

    def manifest_json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.manifest)
        return result

    def __repr__(self) -> str:
        return f"TestImage({self.digest[:19]}..., {self.platform}, {self.media_type})"


@dataclass(frozen=True)
class TestIndex:
    """A multi-platform image: index (or manifest list) bytes plus its child images."""

    __test__: ClassVar[bool] = False

    manifest: bytes
    media_type: str
    digest: str
    images: list[TestImage]

    @property
    def size(self) -> int:
        return len(self.manifest)

    @property
    def blobs(self) -> list[Blob]:
        """Every config and layer blob of every child, without duplicates, in upload order."""
        seen: dict[str, Blob] = {}
        for img in self.images:
            for b in img.blobs:
                seen.setdefault(b.digest, b)
        return list(seen.values())

    @property
    def manifests(self) -> dict[str, tuple[str, bytes]]:
        """digest -> (media type, bytes): children first, then the index itself."""
        out: dict[str, tuple[str, bytes]] = {}
        for img in self.images:
            out.update(img.manifests)
        out[self.digest] = (self.media_type, self.manifest)
        return out

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def manifest_json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.manifest)
        return result

    def image_for(self, platform: str) -> TestImage:
        for img in self.images:
            if img.platform == platform:
                return img
        raise KeyError(platform)

    def __repr__(self) -> str:
        return f"TestIndex({self.digest[:19]}..., {[i.platform for i in self.images]}, {self.media_type})"


def parse_platform(platform: str) -> dict[str, str]:
    """``linux/arm64/v8`` -> ``{"architecture": "arm64", "os": "linux", "variant": "v8"}``."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform must be os/arch[/variant], got {platform!r}")
    out = {"architecture": parts[1], "os": parts[0]}
    if len(parts) == 3:
        out["variant"] = parts[2]
    return out


def _tar(files: Mapping[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uname = info.gname = "root"
            tf.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def make_layer(files: Mapping[str, bytes], *, compresslevel: int = 6, media_type: str = OCI_LAYER_GZ) -> Blob:
    """A gzip tar layer of ``files`` (name -> content). Deterministic (mtime 0 everywhere)."""
    tar = _tar(files)
    gz = gzip.compress(tar, compresslevel=compresslevel, mtime=0)
    return Blob.of(gz, media_type, diff_id=sha256_digest(tar))


def random_layer(size_bytes: int, *, seed: int | None = None, media_type: str = OCI_LAYER_GZ) -> Blob:
    """A layer with one file of ``size_bytes`` random bytes (incompressible), gzip level 1.

    With ``seed`` the content (and so the digest) is reproducible; without it it is unique.
    """
    content = random.Random(seed).randbytes(size_bytes) if seed is not None else os.urandom(size_bytes)
    return make_layer({"random.bin": content}, compresslevel=1, media_type=media_type)


def make_config(
    *,
    platform: str = "linux/amd64",
    diff_ids: Sequence[str],
    labels: Mapping[str, str] | None = None,
    created: str = DEFAULT_CREATED,
    docker: bool = False,
) -> Blob:
    """An image config: architecture, os, optional variant, created, config.Labels, rootfs, history."""
    cfg: dict[str, Any] = {"created": created, **parse_platform(platform)}
    cfg["config"] = {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/hello.txt"],
        "Labels": dict(labels or {}),
    }
    cfg["rootfs"] = {"type": "layers", "diff_ids": list(diff_ids)}
    cfg["history"] = [
        {"created": created, "created_by": f"imglife-tests: layer {i}"} for i in range(len(diff_ids))
    ]
    data = json.dumps(cfg, separators=(",", ":")).encode()
    return Blob.of(data, DOCKER_CONFIG if docker else OCI_CONFIG)


def _dump(obj: dict[str, Any], docker: bool) -> bytes:
    if docker:
        return json.dumps(obj, indent=3).encode()
    return json.dumps(obj, separators=(",", ":")).encode()


def build_image(
    *,
    platform: str = "linux/amd64",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    files: Mapping[str, bytes] | None = None,
    layers: Sequence[Blob] | None = None,
    nonce: str | None = None,
    created: str = DEFAULT_CREATED,
    docker: bool = False,
) -> TestImage:
    """A single-platform image.

    ``layers`` (e.g. from :func:`random_layer`) replaces the default one-file layer built from
    ``files`` (default: ``hello.txt`` naming the platform). ``nonce`` goes into the layer and a
    label, making the image unique. ``docker=True`` gives a Docker schema2 manifest (no
    annotations allowed there).
    """
    if docker and annotations:
        raise ValueError("Docker schema2 manifests have no annotations")
    layer_type = DOCKER_LAYER_GZ if docker else OCI_LAYER_GZ
    if layers is None:
        content = dict(files) if files is not None else {"hello.txt": f"hello from {platform}\n".encode()}
        if nonce is not None:
            content["nonce.txt"] = nonce.encode()
        layers = [make_layer(content)]
    layers = [dataclasses.replace(b, media_type=layer_type) for b in layers]
    if any(b.diff_id is None for b in layers):
        raise ValueError("layers need a diff_id (use make_layer or random_layer)")
    all_labels = dict(labels or {})
    if nonce is not None:
        all_labels.setdefault("org.imglife.test.nonce", nonce)
    config = make_config(
        platform=platform,
        diff_ids=[b.diff_id for b in layers if b.diff_id],
        labels=all_labels,
        created=created,
        docker=docker,
    )
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    data = _dump(manifest, docker)
    return TestImage(
        manifest=data,
        media_type=manifest["mediaType"],
        digest=sha256_digest(data),
        config=config,
        layers=list(layers),
        platform=platform,
    )


def build_index(
    platforms: Sequence[str] = DEFAULT_PLATFORMS,
    *,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    image_annotations: Mapping[str, str] | None = None,
    nonce: str | None = None,
    created: str = DEFAULT_CREATED,
    docker: bool = False,
) -> TestIndex:
    """An OCI image index (or, with ``docker=True``, a Docker manifest list) of one image per platform.

    Every child has the same ``labels``; ``annotations`` go on the index, ``image_annotations``
    on each child manifest (OCI only).
    """
    if docker and (annotations or image_annotations):
        raise ValueError("Docker manifest lists have no annotations")
    images = [
        build_image(
            platform=p,
            labels=labels,
            annotations=image_annotations,
            nonce=nonce,
            created=created,
            docker=docker,
        )
        for p in platforms
    ]
    index: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST if docker else OCI_INDEX,
        "manifests": [img.descriptor(with_platform=True) for img in images],
    }
    if annotations:
        index["annotations"] = dict(annotations)
    data = _dump(index, docker)
    return TestIndex(manifest=data, media_type=index["mediaType"], digest=sha256_digest(data), images=images)


def write_oci_layout(path: Path | str, tag: str, image: TestImage | TestIndex) -> Path:
    """Write (or add ``tag`` to) an OCI image layout directory; returns its path.

    ``index.json`` gets one descriptor per tag with the ``org.opencontainers.image.ref.name``
    annotation, so ``skopeo copy oci:PATH:TAG ...`` finds it. An existing entry for the same
    tag is replaced.
    """
    if image.media_type not in (OCI_MANIFEST, OCI_INDEX):
        raise ValueError(
            "skopeo's oci: transport ignores index.json entries with Docker media types; "
            "use write_dir_layout() for Docker schema2 images and manifest lists"
        )
    root = Path(path)
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    contents = [(b.digest, b.data) for b in image.blobs]
    contents += [(digest, data) for digest, (_, data) in image.manifests.items()]
    for digest, data in contents:
        target = blob_dir / digest.removeprefix("sha256:")
        if not target.exists():
            target.write_bytes(data)
    index_path = root / "index.json"
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if index_path.exists():
        index = json.loads(index_path.read_text())
    index["manifests"] = [
        m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME_ANNOTATION) != tag
    ]
    index["manifests"].append({**image.descriptor(), "annotations": {REF_NAME_ANNOTATION: tag}})
    index_path.write_text(json.dumps(index, indent=2))
    return root


def write_dir_layout(path: Path | str, image: TestImage | TestIndex) -> Path:
    """Write a skopeo ``dir:`` transport directory (works for Docker and OCI media types).

    ``manifest.json`` is the top manifest; an index's children go to ``<hex>.manifest.json``;
    blobs are named by their hex digest. ``skopeo copy --all --preserve-digests dir:PATH ...``
    keeps the bytes, so the digests survive.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    (root / "version").write_text("Directory Transport Version: 1.1\n")
    (root / "manifest.json").write_bytes(image.manifest)
    for img in getattr(image, "images", []):
        (root / f"{img.digest.removeprefix('sha256:')}.manifest.json").write_bytes(img.manifest)
    for b in image.blobs:
        (root / b.digest.removeprefix("sha256:")).write_bytes(b.data)
    return root
