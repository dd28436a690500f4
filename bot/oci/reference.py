"""Image references: parse, validate and normalise (pure).

Follows the grammar of distribution's ``reference`` package: ``[host[:port]/]path[:tag][@digest]``.
A first path component is a registry host when it contains ``.`` or ``:``, is ``localhost``, or
has an upper-case letter; otherwise the image lives on Docker Hub, whose one-component names get
the ``library/`` prefix. Docker Hub is always named ``docker.io`` (the name credentials are keyed
by), whatever alias the user wrote; its API host is ``registry-1.docker.io``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from bot.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
DEFAULT_TAG = "latest"
MAX_NAME_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])"
# `\Z`, not `$`: `$` also matches before a final line break, and "alpine\n" is no repository name.
_HOST_RE = re.compile(rf"^{_HOST}(?::[0-9]{{1,5}})?\Z")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")  # the OCI grammar: ASCII only
_DIGEST_RE = re.compile(r"^(?P<algorithm>[a-z0-9]+(?:[.+_-][a-z0-9]+)*):(?P<hex>[a-zA-Z0-9=_-]+)\Z")
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha512": 128}


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalised image reference; ``tag`` and ``digest`` may both be set (the digest wins)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host[:port] the registry API is served on."""
        return registry_api_host(self.registry)

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> ImageReference:
        return replace(self, tag=validate_tag(tag), digest=None)

    def with_digest(self, digest: str) -> ImageReference:
        return replace(self, digest=validate_digest(digest))

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def registry_api_host(registry: str) -> str:
    """The host[:port] serving a registry's API (Docker Hub's differs from its name)."""
    return DOCKER_HUB_API_HOST if registry == DOCKER_HUB else registry


def normalize_host(host: str) -> str:
    """Lower-case a registry host and fold Docker Hub's aliases into ``docker.io``."""
    host = host.lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def is_host(text: str) -> bool:
    """True for ``host[:port]`` as the reference grammar allows it (DNS name, IPv4, ``[IPv6]``)."""
    return bool(_HOST_RE.match(text))


def looks_like_registry_host(component: str) -> bool:
    """Whether the first path component of a reference names a registry (distribution's rule)."""
    return "." in component or ":" in component or component == "localhost" or component.lower() != component


def validate_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise InvalidReference(
            f"invalid tag {tag!r}: a tag is 1-128 characters of letters, digits, '_', '.' and '-', "
            "and does not start with '.' or '-'"
        )
    return tag


def validate_digest(digest: str) -> str:
    match = _DIGEST_RE.match(digest)
    if not match:
        raise InvalidReference(f"invalid digest {digest!r}: expected <algorithm>:<hex>, e.g. sha256:<64 hex>")
    expected = _DIGEST_HEX_LENGTH.get(match["algorithm"])
    hex_part = match["hex"]
    if expected is not None and (len(hex_part) != expected or not re.fullmatch(r"[0-9a-f]+", hex_part)):
        raise InvalidReference(
            f"invalid digest {digest!r}: {match['algorithm']} needs {expected} lower-case hex characters"
        )
    return digest


def parse_reference(text: str, *, allow_tag: bool = True, allow_digest: bool = True) -> ImageReference:
    """Parse an image reference; a reference with neither tag nor digest gets ``latest``.

    ``allow_tag``/``allow_digest`` are for places that want a bare repository (sync sources and
    targets): there a tag or digest is an error rather than silently ignored.
    """
    original = text
    if not text or text != text.strip():
        raise InvalidReference(f"invalid image reference {original!r}: empty or surrounded by spaces")
    if "://" in text:
        raise InvalidReference(
            f"invalid image reference {original!r}: drop the URL scheme; plain-HTTP registries are listed "
            "in registry.insecure_registries"
        )
    digest: str | None = None
    if "@" in text:
        text, _, digest = text.partition("@")
        validate_digest(digest)
    tag: str | None = None
    last_slash = text.rfind("/")
    colon = text.rfind(":")
    if colon > last_slash:
        text, tag = text[:colon], text[colon + 1 :]
        validate_tag(tag)

    first, sep, rest = text.partition("/")
    if sep and looks_like_registry_host(first):
        if not is_host(first):
            raise InvalidReference(f"invalid image reference {original!r}: bad registry host {first!r}")
        registry, path = normalize_host(first), rest
        if not looks_like_registry_host(registry):  # "Registry/x": lower-cased, it would name Docker Hub
            raise InvalidReference(
                f"invalid image reference {original!r}: registry host {first!r} is only told apart from "
                "a Docker Hub path by its capitals; give it a domain or a port"
            )
    else:
        registry, path = DOCKER_HUB, text
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"

    for component in path.split("/"):
        if not _PATH_COMPONENT_RE.match(component):
            raise InvalidReference(
                f"invalid image reference {original!r}: repository path component {component!r} must be "
                "lower-case letters and digits, separated by '.', '_', '__' or '-'"
            )
    if len(f"{registry}/{path}") > MAX_NAME_LENGTH:
        raise InvalidReference(f"invalid image reference {original!r}: name longer than {MAX_NAME_LENGTH}")
    if tag is not None and not allow_tag:
        raise InvalidReference(
            f"invalid image reference {original!r}: a repository is expected here, without tag"
        )
    if digest is not None and not allow_digest:
        raise InvalidReference(
            f"invalid image reference {original!r}: a repository is expected here, without digest"
        )
    if tag is None and digest is None and allow_tag:
        tag = DEFAULT_TAG
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest)


def parse_repository(text: str) -> ImageReference:
    """Parse a repository name (no tag, no digest), as used by sync sources and targets."""
    return parse_reference(text, allow_tag=False, allow_digest=False)
