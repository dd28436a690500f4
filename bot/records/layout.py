"""Where a build record lives in each store (pure): deterministic, collision-free, readable.

One record per image tag, keyed by ``registry/repository:tag`` in normal form.

Generic packages (GitLab and Gitea/Forgejo): package **name** = the image repository, package
**version** = the tag, **file** = ``build-record.json``::

    registry.example.com/apps/myservice:1.2.0
    -> package "registry.example.com___apps___myservice", version "1.2.0", file "build-record.json"
    registry:5000/team/app:v2  -> package "registry_5000___team___app", version "v2"

Package names may only use ``[A-Za-z0-9._-]`` on both forges, so ``/`` becomes ``___`` and the
port's ``:`` becomes ``_``. The mapping is reversible, hence collision-free: a repository path
component can hold ``_`` or ``__`` but never three in a row (its separators are ``.``, ``_``,
``__`` or dashes, between letters or digits), and a host name never holds ``_``.

Versions are the tag, except that Gitea compares names and versions case-insensitively while
tags are case-sensitive (``V1`` is not ``v1``): an upper-case letter is written as ``+`` and the
letter in lower case (``V1.2`` → ``+v1.2``). ``+`` never occurs in a tag, and both forges allow
it in versions, so this too is reversible; lower-case tags, the usual kind, read as themselves.

S3 (under the optional ``prefix``) and the local directory keep the reference's own shape, which
needs no escaping: ``[prefix/]records/<registry>/<repository>/<tag>.json``.
"""

from __future__ import annotations

import re
from pathlib import Path

from bot.errors import InvalidReference
from bot.oci.reference import ImageReference, parse_repository

RECORD_FILE = "build-record.json"
# A file written under a staging name first, then put in place (stores that cannot overwrite):
# build-record.json -> build-record.pending-<nonce>.json.
STAGING_MARK = ".pending-"
# Documents (eol-data.yaml) live beside the records: one generic package, or one folder.
DOCUMENT_PACKAGE = "imglife"
DOCUMENT_VERSION = "data"
DOCUMENTS_DIR = "imglife"
PATH_SEPARATOR = "___"
PORT_SEPARATOR = "_"
RECORDS_DIR = "records"
RECORD_SUFFIX = ".json"
MAX_PACKAGE_NAME = 255
UPPER_ESCAPE = "+"
_UPPER_RE = re.compile(r"[A-Z]")
_ESCAPED_RE = re.compile(r"\+([a-z])")


def package_name(ref: ImageReference) -> str:
    """The generic-package name holding the records of ``ref``'s repository."""
    host = ref.registry.replace(":", PORT_SEPARATOR)
    name = PATH_SEPARATOR.join([host, *ref.repository.split("/")])
    if len(name) > MAX_PACKAGE_NAME:
        raise InvalidReference(f"{ref.name} is too long to name a package ({len(name)} > {MAX_PACKAGE_NAME})")
    return name


def repository_of_package(name: str) -> ImageReference | None:
    """The repository a package name stands for, or None for packages that are not records."""
    host, sep, rest = name.partition(PATH_SEPARATOR)
    if not sep or not rest:
        return None
    text = host.replace(PORT_SEPARATOR, ":") + "/" + rest.replace(PATH_SEPARATOR, "/")
    try:
        ref = parse_repository(text)
    except InvalidReference:
        return None
    return ref if package_name(ref) == name else None


def package_version(ref: ImageReference) -> str:
    """The package version holding the record of ``ref``'s tag."""
    return _UPPER_RE.sub(lambda m: UPPER_ESCAPE + m.group(0).lower(), str(ref.tag))


def record_reference(package: str, version: str) -> ImageReference | None:
    """The image reference of the record stored as ``package``/``version``."""
    repo = repository_of_package(package)
    if repo is None:
        return None
    tag = _ESCAPED_RE.sub(lambda m: m.group(1).upper(), version)
    try:
        ref = repo.with_tag(tag)
    except InvalidReference:
        return None
    return ref if package_version(ref) == version else None


def staging_file(file: str, nonce: str) -> str:
    stem, dot, suffix = file.rpartition(".")
    return f"{stem}{STAGING_MARK}{nonce}.{suffix}" if dot else f"{file}{STAGING_MARK}{nonce}"


def is_staging_file(candidate: str, file: str) -> bool:
    """Whether ``candidate`` is a staging name of ``file``."""
    stem, dot, suffix = file.rpartition(".")
    head, tail = (f"{stem}{STAGING_MARK}", f".{suffix}") if dot else (f"{file}{STAGING_MARK}", "")
    return candidate.startswith(head) and candidate.endswith(tail) and len(candidate) > len(head) + len(tail)


def document_key(prefix: str | None, name: str) -> str:
    base = (prefix or "").strip("/")
    return f"{base}/{DOCUMENTS_DIR}/{name}" if base else f"{DOCUMENTS_DIR}/{name}"


def local_document(root: Path, name: str) -> Path:
    return root / DOCUMENTS_DIR / name


def records_prefix(prefix: str | None) -> str:
    """The key prefix every record object starts with, ending in ``/``."""
    base = (prefix or "").strip("/")
    return f"{base}/{RECORDS_DIR}/" if base else f"{RECORDS_DIR}/"


def object_key(prefix: str | None, ref: ImageReference) -> str:
    return f"{records_prefix(prefix)}{ref.registry}/{ref.repository}/{ref.tag}{RECORD_SUFFIX}"


def reference_of_key(prefix: str | None, key: str) -> ImageReference | None:
    """The image reference an object key stands for, or None for other objects."""
    head = records_prefix(prefix)
    if not key.startswith(head) or not key.endswith(RECORD_SUFFIX):
        return None
    path = key[len(head) : -len(RECORD_SUFFIX)]
    name, _, tag = path.rpartition("/")
    try:
        return parse_repository(name).with_tag(tag)
    except InvalidReference:
        return None


def local_file(root: Path, ref: ImageReference) -> Path:
    return root / RECORDS_DIR / ref.registry / ref.repository / f"{ref.tag}{RECORD_SUFFIX}"


def reference_of_file(root: Path, path: Path) -> ImageReference | None:
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        return None
    return reference_of_key(None, relative)
