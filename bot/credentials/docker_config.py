"""Credentials from the Docker CLI configuration and docker credential helpers.

This is the layer ``docker login`` writes to; imglife reads it the way the Docker CLI does, so a
prior login works without any ``IMGLIFE_*`` variable. Decisions:

- The file is ``$DOCKER_CONFIG/config.json`` when ``DOCKER_CONFIG`` is set (and non-empty), else
  ``<home>/.docker/config.json``; ``home`` defaults to the environment's ``HOME``, then to
  :meth:`Path.home`. A missing file means "no Docker login". The legacy ``~/.dockercfg`` is not read.
- A file that is not JSON, whose top level is not an object, or whose ``auths``/``credHelpers``/
  ``credsStore`` have the wrong shape is a :class:`CredentialError` naming the file. An empty file is
  an empty configuration, as for the Docker CLI.
- ``auths`` keys are matched on the normalised host (:func:`registry_host`): ``host``,
  ``host:port``, ``https://host``, ``http://host:5000/v2/`` and ``https://index.docker.io/v1/``
  (Docker Hub) all name their host. When several keys name the same host, a key written exactly as
  the host wins, then file order; an entry without usable credentials is skipped.
- Entry forms: ``auth`` (base64 of ``user:password``, strict base64, split at the first ``:`` so the
  password may contain ``:``; it overrides ``username``/``password`` like in the Docker CLI),
  ``username``/``password``, ``identitytoken`` (an OAuth2 refresh token) and ``registrytoken`` (a
  bearer token presented as is). An ``auth`` that is not base64, not UTF-8, has no ``:`` or an empty
  user is a :class:`CredentialError` naming the file and the host, never the value. An entry with a
  username but no secret is not usable and is skipped.
- Helpers: ``credHelpers[host]`` (keys normalised like ``auths`` keys) is used for its host, else
  ``credsStore`` for every host. Only one helper is asked per host. When the helper answers
  "credentials not found" (or returns an empty secret), the ``auths`` entry is used, then anonymous.
- The helper protocol is the real one: the executable ``docker-credential-<name>`` looked up on the
  ``PATH`` of the environment imglife was given, argument ``get``, the server URL on stdin (the host;
  ``https://index.docker.io/v1/`` for Docker Hub, which is what ``docker login`` stores), and
  ``{"ServerURL", "Username", "Secret"}`` JSON on stdout. ``Username == "<token>"`` means ``Secret``
  is an identity token. A non-zero exit whose output says "credentials not found" means none.
- The helper name is checked against ``[A-Za-z0-9._-]+`` before anything runs; the helper is run
  without a shell, with the given environment (helpers such as ``pass`` need ``HOME`` and their
  agents), under a timeout after which it is killed. A missing executable, a timeout, another
  failure or output that is not a credentials object is a :class:`CredentialError` naming the
  helper. Helper output is never quoted when it may hold a secret (unparseable output); a failing
  helper's own message is quoted redacted and shortened, because that is what a user needs to fix it.
- Every secret value read (passwords, tokens, ``auth`` strings and their decoded form, helper
  secrets) is passed to :func:`register_secret` so logs mask it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import re
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.errors import CredentialError
from bot.oci.reference import DOCKER_HUB, normalize_host
from bot.redaction import redact_text, register_secret

CONFIG_FILE_NAME = "config.json"
HELPER_PREFIX = "docker-credential-"
HELPER_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
# What ``docker login`` stores Docker Hub credentials under; helpers are asked with this URL.
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"
# docker-credential-helpers' standard answer; matched case-insensitively and as a substring
# because some helpers wrap it in their own error text.
NOT_FOUND_MARKER = "credentials not found"
# The helper protocol's marker for "Secret is an identity (refresh) token, not a password".
TOKEN_USERNAME = "<token>"  # noqa: S105 (a protocol marker, not a secret)
HELPER_MESSAGE_LIMIT = 200
KILL_GRACE_SECONDS = 2.0

MSG_NOT_JSON = "docker config {path} is not valid JSON (line {line}, column {column}); fix or remove it"
MSG_BAD_SHAPE = "docker config {path}: {what}"
MSG_BAD_AUTH = (
    "docker config {path}: the 'auth' entry for {host} is not base64 of 'username:password'; "
    "run `docker login {host}` again or fix the entry"
)
MSG_BAD_FIELD = "docker config {path}: the {field!r} entry for {host} must be a string"
MSG_UNREADABLE = "docker config {path} cannot be read: {reason}"
MSG_BAD_HELPER_NAME = (
    "docker config {path}: credential helper name {name!r} ({where}) is invalid; "
    "expected letters, digits, '.', '_' or '-'"
)
MSG_HELPER_MISSING = "credential helper {program} ({where} in {path}) was not found on PATH"
MSG_HELPER_START = "credential helper {program} ({where} in {path}) could not be started: {reason}"
MSG_HELPER_TIMEOUT = "credential helper {program} did not answer for {host} within {timeout:g}s"
MSG_HELPER_FAILED = "credential helper {program} failed for {host} (exit status {status}){detail}"
MSG_HELPER_GARBAGE = (
    "credential helper {program} returned output for {host} that is not a credentials object "
    '({{"ServerURL", "Username", "Secret"}} JSON)'
)


def registry_host(value: str) -> str:
    """The normalised registry host named by a host, ``host:port`` or URL (as docker config keys are).

    The scheme, any user-info and the path are dropped, the host is lower-cased and Docker Hub's
    aliases fold into ``docker.io``: ``https://index.docker.io/v1/`` -> ``docker.io``,
    ``http://Registry:5000/v2/`` -> ``registry:5000``.
    """
    text = value.strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    text = text.split("/", 1)[0]
    # user-info never belongs in a host name; dropping it also keeps it out of variable names.
    text = text.rsplit("@", 1)[-1]
    return normalize_host(text)


def helper_server_url(host: str) -> str:
    """The server URL a credential helper is asked about for ``host`` (normalised)."""
    return DOCKER_HUB_SERVER_URL if host == DOCKER_HUB else host


def docker_config_path(environ: Mapping[str, str], home: Path | None = None) -> Path:
    """``$DOCKER_CONFIG/config.json``, else ``<home>/.docker/config.json``."""
    config_dir = environ.get("DOCKER_CONFIG")
    if config_dir:
        return Path(config_dir) / CONFIG_FILE_NAME
    if home is None:
        env_home = environ.get("HOME")
        home = Path(env_home) if env_home else Path.home()
    return home / ".docker" / CONFIG_FILE_NAME


@dataclass(frozen=True, slots=True, repr=False)
class DockerAuth:
    """Credentials found in the Docker configuration; ``source`` says where, never what."""

    source: str
    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    registry_token: str | None = None

    def __repr__(self) -> str:
        return f"DockerAuth(source={self.source!r}, username={self.username!r}, secrets=<hidden>)"


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """A parsed Docker CLI ``config.json`` (only what authentication needs)."""

    path: Path
    auths: Mapping[str, Mapping[str, Any]]
    cred_helpers: Mapping[str, str]  # normalised host -> helper name
    creds_store: str | None

    @classmethod
    def load(cls, path: Path) -> DockerConfig | None:
        """Read ``path``; ``None`` when it does not exist."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise CredentialError(MSG_UNREADABLE.format(path=path, reason=reason)) from None
        return cls.parse(path, text)

    @classmethod
    def parse(cls, path: Path, text: str) -> DockerConfig:
        """Parse the text of a config file; ``path`` is only used in messages."""
        if not text.strip():
            return cls(path=path, auths={}, cred_helpers={}, creds_store=None)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            # The position helps; the message (which may quote a value) is left out.
            raise CredentialError(MSG_NOT_JSON.format(path=path, line=exc.lineno, column=exc.colno)) from None
        if not isinstance(data, dict):
            raise CredentialError(MSG_BAD_SHAPE.format(path=path, what="the top level must be an object"))

        auths = data.get("auths")
        if auths is None:
            auths = {}
        if not isinstance(auths, dict):
            raise CredentialError(MSG_BAD_SHAPE.format(path=path, what="'auths' must be an object"))
        for key, entry in auths.items():
            if not isinstance(entry, dict):
                raise CredentialError(
                    MSG_BAD_SHAPE.format(path=path, what=f"'auths' entry {key!r} must be an object")
                )

        raw_helpers = data.get("credHelpers")
        if raw_helpers is None:
            raw_helpers = {}
        if not isinstance(raw_helpers, dict) or not all(isinstance(v, str) for v in raw_helpers.values()):
            raise CredentialError(
                MSG_BAD_SHAPE.format(path=path, what="'credHelpers' must map registry hosts to helper names")
            )
        cred_helpers = {registry_host(key): name for key, name in raw_helpers.items() if name}

        creds_store = data.get("credsStore")
        if creds_store is not None and not isinstance(creds_store, str):
            raise CredentialError(MSG_BAD_SHAPE.format(path=path, what="'credsStore' must be a helper name"))
        return cls(path=path, auths=auths, cred_helpers=cred_helpers, creds_store=creds_store or None)

    async def lookup(
        self, host: str, *, environ: Mapping[str, str], helper_timeout: float
    ) -> DockerAuth | None:
        """Credentials for the normalised ``host``: its helper first, then its ``auths`` entry."""
        helper_name, where = self._helper_for(host)
        if helper_name is not None:
            found = await run_credential_helper(
                helper_name,
                host,
                environ=environ,
                helper_timeout=helper_timeout,
                where=where,
                config_path=self.path,
            )
            if found is not None:
                return found
        return self._from_auths(host)

    def _helper_for(self, host: str) -> tuple[str | None, str]:
        if host in self.cred_helpers:
            return self.cred_helpers[host], "credHelpers"
        return self.creds_store, "credsStore"

    def _from_auths(self, host: str) -> DockerAuth | None:
        matches = [(key, entry) for key, entry in self.auths.items() if registry_host(key) == host]
        # Stable sort: a key spelled exactly as the host first, then the file's order.
        matches.sort(key=lambda item: item[0] != host)
        for _key, entry in matches:
            found = self._parse_entry(host, entry)
            if found is not None:
                return found
        return None

    def _parse_entry(self, host: str, entry: Mapping[str, Any]) -> DockerAuth | None:
        fields: dict[str, str | None] = {}
        for name in ("auth", "username", "password", "identitytoken", "registrytoken"):
            value = entry.get(name)
            if value is not None and not isinstance(value, str):
                raise CredentialError(MSG_BAD_FIELD.format(path=self.path, field=name, host=host))
            fields[name] = value or None
            if name != "username":
                register_secret(value)

        username, password = fields["username"], fields["password"]
        if fields["auth"] is not None:
            username, password = self._decode_auth(host, fields["auth"])
        identity_token, registry_token = fields["identitytoken"], fields["registrytoken"]
        if password is None and identity_token is None and registry_token is None:
            return None
        return DockerAuth(
            source=f"docker config {self.path} (auths)",
            username=username,
            password=password,
            identity_token=identity_token,
            registry_token=registry_token,
        )

    def _decode_auth(self, host: str, auth: str) -> tuple[str, str | None]:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise CredentialError(MSG_BAD_AUTH.format(path=self.path, host=host)) from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise CredentialError(MSG_BAD_AUTH.format(path=self.path, host=host))
        register_secret(decoded)
        register_secret(password)
        return username, password or None


async def run_credential_helper(
    name: str,
    host: str,
    *,
    environ: Mapping[str, str],
    helper_timeout: float,
    where: str = "credsStore",
    config_path: Path | None = None,
) -> DockerAuth | None:
    """Ask ``docker-credential-<name>`` for the credentials of ``host``; ``None`` when it has none."""
    path_text = str(config_path) if config_path is not None else "docker config"
    if not HELPER_NAME_RE.fullmatch(name):
        raise CredentialError(MSG_BAD_HELPER_NAME.format(path=path_text, name=name, where=where))
    program = f"{HELPER_PREFIX}{name}"
    executable = shutil.which(program, path=environ.get("PATH") or os.defpath)
    if executable is None:
        raise CredentialError(MSG_HELPER_MISSING.format(program=program, where=where, path=path_text))

    try:
        process = await asyncio.create_subprocess_exec(
            executable,
            "get",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(environ),
            # Its own process group, so that a timeout also kills whatever the helper started.
            start_new_session=True,
        )
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CredentialError(
            MSG_HELPER_START.format(program=program, where=where, path=path_text, reason=reason)
        ) from None
    try:
        stdout, stderr = await asyncio.wait_for(
            process.communicate(helper_server_url(host).encode("utf-8")), helper_timeout
        )
    except TimeoutError:
        raise CredentialError(
            MSG_HELPER_TIMEOUT.format(program=program, host=host, timeout=helper_timeout)
        ) from None
    finally:
        if process.returncode is None:
            await _kill(process)

    out_text = stdout.decode("utf-8", errors="replace").strip()
    if process.returncode != 0:
        if NOT_FOUND_MARKER in out_text.lower():
            return None
        raise CredentialError(
            MSG_HELPER_FAILED.format(
                program=program,
                host=host,
                status=process.returncode,
                detail=_helper_detail(out_text or stderr.decode("utf-8", errors="replace").strip()),
            )
        )
    return _parse_helper_output(stdout, program=program, host=host)


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill a helper (and its process group) that timed out or whose lookup was cancelled."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    # Drain and reap it so that no pipe or zombie is left behind; bounded, in case a descendant
    # escaped the process group and still holds the pipes.
    with contextlib.suppress(TimeoutError, OSError):
        await asyncio.wait_for(process.communicate(), KILL_GRACE_SECONDS)


def _helper_detail(message: str) -> str:
    """A failing helper's own message, first line only, redacted and shortened."""
    first_line = message.splitlines()[0] if message else ""
    if not first_line:
        return ""
    first_line = redact_text(first_line)
    if len(first_line) > HELPER_MESSAGE_LIMIT:
        first_line = first_line[:HELPER_MESSAGE_LIMIT] + "..."
    return f": {first_line}"


def _parse_helper_output(stdout: bytes, *, program: str, host: str) -> DockerAuth | None:
    garbage = CredentialError(MSG_HELPER_GARBAGE.format(program=program, host=host))
    try:
        data = json.loads(stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise garbage from None
    if not isinstance(data, dict):
        raise garbage
    username, secret = data.get("Username"), data.get("Secret")
    if not isinstance(secret, str) or not isinstance(username, str | None):
        raise garbage
    register_secret(secret)
    if not secret:
        return None
    source = program
    if username == TOKEN_USERNAME:
        return DockerAuth(source=source, identity_token=secret)
    return DockerAuth(source=source, username=username or None, password=secret)
