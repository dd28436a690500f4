"""skopeo as an independent registry client for tests (push layouts, read manifests back).

``registry`` is a :class:`~tests.helpers.registry.RunningRegistry` or a bare ``HOST:PORT``.
``creds=None`` means "the registry's own credentials" for a RunningRegistry; pass
``anonymous=True`` to send none. Every call uses plain HTTP (``--tls-verify=false``), a
private HOME/XDG dirs/auth file, so skopeo never reads the user's ``~/.docker/config.json`` or
containers auth, and ``--insecure-policy`` so no ``/etc/containers/policy.json`` is needed.

These functions block; inside an async test whose event loop also runs a ``FaultProxy``, call
them through ``await asyncio.to_thread(...)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .images import OCI_INDEX, OCI_MANIFEST, TestImage, TestIndex, write_dir_layout, write_oci_layout
from .registry import RunningRegistry

__all__ = [
    "SkopeoError",
    "push_image",
    "run_skopeo",
    "skopeo_copy",
    "skopeo_delete",
    "skopeo_digest",
    "skopeo_inspect",
    "skopeo_inspect_raw",
    "skopeo_list_tags",
    "skopeo_push_dir",
    "skopeo_push_layout",
]

RegistryLike = RunningRegistry | str
DEFAULT_TIMEOUT = 60.0


class SkopeoError(AssertionError):
    """skopeo exited non-zero; the message carries the command line (no secrets) and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"skopeo failed (exit {returncode}): {' '.join(argv)}\n{stderr.strip()}")


def _host(registry: RegistryLike) -> str:
    # duck-typed: a RunningRegistry imported under another module name still works
    return registry if isinstance(registry, str) else str(registry.host)


def _creds(registry: RegistryLike, creds: tuple[str, str] | None, anonymous: bool) -> tuple[str, str] | None:
    if anonymous:
        return None
    if creds is not None:
        return creds
    return None if isinstance(registry, str) else registry.creds


def _redact(argv: Sequence[str]) -> list[str]:
    out, hide = [], False
    for a in argv:
        out.append("***" if hide else a)
        hide = a in ("--creds", "--src-creds", "--dest-creds")
    return out


def run_skopeo(
    args: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """Run ``skopeo ARGS`` in a private environment; raise :class:`SkopeoError` on failure."""
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise SkopeoError(["skopeo"], 127, "skopeo not found: apt-get install -y skopeo")
    with tempfile.TemporaryDirectory(prefix="imglife-skopeo-") as home:
        auth_file = Path(home) / "auth.json"
        auth_file.write_text('{"auths": {}}')
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": home,
            "XDG_RUNTIME_DIR": home,
            "XDG_CONFIG_HOME": str(Path(home) / "config"),
            "XDG_DATA_HOME": str(Path(home) / "data"),
            "REGISTRY_AUTH_FILE": str(auth_file),
            "DOCKER_CONFIG": str(Path(home) / "docker"),
            "TMPDIR": home,
        }
        argv = [skopeo, *args]
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise SkopeoError(_redact(argv), -1, f"timed out after {timeout}s") from exc
    if proc.returncode != 0:
        raise SkopeoError(_redact(argv), proc.returncode, proc.stderr.decode(errors="replace"))
    return proc


def _cred_args(flag: str, creds: tuple[str, str] | None) -> list[str]:
    return [flag, f"{creds[0]}:{creds[1]}"] if creds else []


def skopeo_inspect_raw(
    registry: RegistryLike,
    ref: str,
    creds: tuple[str, str] | None = None,
    *,
    anonymous: bool = False,
    config: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes:
    """The manifest (or, with ``config=True``, the config blob) exactly as the registry serves it.

    ``ref`` is ``repo:tag`` or ``repo@sha256:...``.
    """
    args = ["inspect", "--tls-verify=false", "--raw"]
    if config:
        args.append("--config")
    args += _cred_args("--creds", _creds(registry, creds, anonymous))
    args.append(f"docker://{_host(registry)}/{ref}")
    return run_skopeo(args, timeout=timeout).stdout


def skopeo_inspect(
    registry: RegistryLike,
    ref: str,
    creds: tuple[str, str] | None = None,
    *,
    anonymous: bool = False,
    override_arch: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> dict[str, Any]:
    """``skopeo inspect`` (resolved to one platform: the host's, or ``override_arch``)."""
    args = ["inspect", "--tls-verify=false"]
    if override_arch:
        args = ["--override-arch", override_arch, *args]
    args += _cred_args("--creds", _creds(registry, creds, anonymous))
    args.append(f"docker://{_host(registry)}/{ref}")
    result: dict[str, Any] = json.loads(run_skopeo(args, timeout=timeout).stdout)
    return result


def skopeo_digest(
    registry: RegistryLike,
    ref: str,
    creds: tuple[str, str] | None = None,
    *,
    anonymous: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """sha256 of the raw manifest bytes (the digest of the tag, index included)."""
    raw = skopeo_inspect_raw(registry, ref, creds, anonymous=anonymous, timeout=timeout)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def skopeo_list_tags(
    registry: RegistryLike,
    repo: str,
    creds: tuple[str, str] | None = None,
    *,
    anonymous: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[str]:
    """Tags of ``repo`` (an empty list when the repository has none left)."""
    args = ["list-tags", "--tls-verify=false"]
    args += _cred_args("--creds", _creds(registry, creds, anonymous))
    args.append(f"docker://{_host(registry)}/{repo}")
    tags = json.loads(run_skopeo(args, timeout=timeout).stdout).get("Tags") or []
    return [str(t) for t in tags]


def skopeo_delete(
    registry: RegistryLike,
    ref: str,
    creds: tuple[str, str] | None = None,
    *,
    anonymous: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Delete the manifest ``ref`` points to (a tag is resolved: every tag on that digest goes)."""
    args = ["delete", "--tls-verify=false"]
    args += _cred_args("--creds", _creds(registry, creds, anonymous))
    args.append(f"docker://{_host(registry)}/{ref}")
    run_skopeo(args, timeout=timeout)


def _copy(src: str, dst: str, extra: list[str], *, all_platforms: bool, timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="imglife-skopeo-digest-") as d:
        digest_file = Path(d) / "digest"
        args = ["--insecure-policy", "copy", "--preserve-digests", "--digestfile", str(digest_file)]
        if all_platforms:
            args.append("--all")
        run_skopeo([*args, *extra, src, dst], timeout=timeout)
        return digest_file.read_text().strip()


def skopeo_push_layout(
    layout_dir: Path | str,
    tag: str,
    registry: RegistryLike,
    repo_tag: str,
    creds: tuple[str, str] | None = None,
    *,
    anonymous: bool = False,
    all_platforms: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """``skopeo copy --all --preserve-digests oci:DIR:TAG docker://HOST/REPO:TAG``; returns the digest
    skopeo wrote (equal to the layout's manifest digest: the bytes are not rewritten)."""
    extra = ["--dest-tls-verify=false", *_cred_args("--dest-creds", _creds(registry, creds, anonymous))]
    return _copy(
        f"oci:{layout_dir}:{tag}",
        f"docker://{_host(registry)}/{repo_tag}",
        extra,
        all_platforms=all_platforms,
        timeout=timeout,
    )


def skopeo_push_dir(
    dir_path: Path | str,
    registry: RegistryLike,
    repo_tag: str,
    creds: tuple[str, str] | None = None,
    *,
    anonymous: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """``skopeo copy --all --preserve-digests dir:DIR docker://HOST/REPO:TAG``; returns the digest."""
    extra = ["--dest-tls-verify=false", *_cred_args("--dest-creds", _creds(registry, creds, anonymous))]
    return _copy(
        f"dir:{dir_path}",
        f"docker://{_host(registry)}/{repo_tag}",
        extra,
        all_platforms=True,
        timeout=timeout,
    )


def skopeo_copy(
    src: RegistryLike,
    src_ref: str,
    dst: RegistryLike,
    dst_ref: str,
    *,
    src_creds: tuple[str, str] | None = None,
    dst_creds: tuple[str, str] | None = None,
    all_platforms: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Registry-to-registry ``skopeo copy --all --preserve-digests``; returns the digest."""
    extra = [
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        *_cred_args("--src-creds", _creds(src, src_creds, False)),
        *_cred_args("--dest-creds", _creds(dst, dst_creds, False)),
    ]
    return _copy(
        f"docker://{_host(src)}/{src_ref}",
        f"docker://{_host(dst)}/{dst_ref}",
        extra,
        all_platforms=all_platforms,
        timeout=timeout,
    )


def push_image(
    registry: RegistryLike,
    repo_tag: str,
    image: TestImage | TestIndex,
    creds: tuple[str, str] | None = None,
    *,
    anonymous: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Push ``image`` with skopeo (via an OCI layout, or a ``dir:`` directory for Docker media
    types); returns the digest. Asserts that the digest was preserved.
    """
    with tempfile.TemporaryDirectory(prefix="imglife-layout-") as d:
        if image.media_type in (OCI_MANIFEST, OCI_INDEX):
            write_oci_layout(d, "push", image)
            digest = skopeo_push_layout(
                d, "push", registry, repo_tag, creds, anonymous=anonymous, timeout=timeout
            )
        else:
            write_dir_layout(d, image)
            digest = skopeo_push_dir(d, registry, repo_tag, creds, anonymous=anonymous, timeout=timeout)
    assert digest == image.digest, f"skopeo changed the manifest digest: {image.digest} -> {digest}"
    return digest
