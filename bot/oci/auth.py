"""Registry authentication: Basic, and the Bearer token flow with a per-scope token cache.

The token rule (also in the README):

1. Every host is first spoken to without credentials. The registry's ``401`` challenge decides
   the scheme for that host from then on.
2. ``Basic`` challenge: send the host's username and password (or token as password).
3. ``Bearer`` challenge: ask the challenge's ``realm`` for a token with its ``service`` and the
   union of its ``scope`` and the scopes the operation needs (a cross-repository mount needs pull
   on the source too). Credentials go to the realm as Basic (``GET``), or as an OAuth2 refresh
   token (``POST grant_type=refresh_token``) for Docker ``identitytoken`` entries. A docker
   ``registrytoken`` is presented directly as the bearer, without asking a realm. When the realm
   refuses an ``IMGLIFE_<HOST>_TOKEN`` used as a password, the token itself is presented as the
   bearer.
4. Credentials are sent to a realm only when it is on the registry's host or in the same DNS
   domain (``registry.gitlab.com`` → ``gitlab.com``, ``registry-1.docker.io`` →
   ``auth.docker.io``) and over HTTPS (plain HTTP only for hosts listed as insecure). Any other
   realm gets an anonymous token request.
5. Tokens are cached per (host, scopes) until ``expires_in`` (default 60 s) minus a safety margin;
   concurrent requests for the same scopes share one token request.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import structlog

from bot.credentials import RegistryCredential
from bot.errors import AuthError, RegistryUnavailable
from bot.oci.sansio import Challenge, merge_scopes, parse_challenge
from bot.redaction import register_secret

DEFAULT_TOKEN_LIFETIME = 60.0  # seconds, from the distribution token spec
TOKEN_EXPIRY_MARGIN = 0.1  # renew after 90 % of the lifetime
BEARER_FALLBACK_LIFETIME = 300.0
OAUTH_CLIENT_ID = "imglife"

log = structlog.get_logger(__name__)


class CredentialSource(Protocol):
    """What authentication needs from the credential resolver."""

    async def resolve(self, host: str) -> RegistryCredential: ...

    def hint(self, host: str) -> str: ...


class Scheme(Enum):
    NONE = "none"
    BASIC = "basic"
    BEARER = "bearer"


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: float


def _hostname(netloc_or_url: str) -> str:
    if "://" in netloc_or_url:
        return (urlsplit(netloc_or_url).hostname or "").lower()
    return (urlsplit(f"//{netloc_or_url}").hostname or "").lower()


def _domain(hostname: str) -> str:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        labels = hostname.split(".")
        return ".".join(labels[-2:]) if len(labels) >= 2 else hostname
    return hostname


def realm_may_receive_credentials(registry_host: str, realm_url: str, insecure_hosts: frozenset[str]) -> bool:
    """Apply rule 4 of the module docstring."""
    realm = urlsplit(realm_url)
    realm_host = (realm.hostname or "").lower()
    registry_hostname = _hostname(registry_host)
    if realm_host != registry_hostname and _domain(realm_host) != _domain(registry_hostname):
        return False
    if realm.scheme == "https":
        return True
    insecure_names = {_hostname(h) for h in insecure_hosts}
    return realm.scheme == "http" and realm_host in insecure_names


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class RegistryAuth:
    """Per-client authentication state: the scheme each host asked for, and cached tokens."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: CredentialSource,
        *,
        insecure_hosts: frozenset[str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._credentials = credentials
        self._insecure = insecure_hosts
        self._clock = clock
        self._schemes: dict[str, Scheme] = {}
        self._challenges: dict[str, Challenge] = {}
        self._tokens: dict[tuple[str, tuple[str, ...]], _Token] = {}
        self._resolved: dict[str, RegistryCredential] = {}
        self._wanted: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
        self._locks: dict[tuple[str, tuple[str, ...]], asyncio.Lock] = {}
        self.token_requests = 0

    async def credential(self, host: str) -> RegistryCredential:
        credential = await self._credentials.resolve(host)
        self._resolved[host] = credential
        return credential

    def known_credential(self, host: str) -> RegistryCredential | None:
        """The credential already resolved for ``host``, if any (for error messages)."""
        return self._resolved.get(host)

    def hint(self, host: str) -> str:
        return self._credentials.hint(host)

    async def headers(self, host: str, scopes: tuple[str, ...]) -> dict[str, str]:
        """The Authorization header to send, as far as the host's past challenges tell."""
        scheme = self._schemes.get(host, Scheme.NONE)
        if scheme is Scheme.BASIC:
            cred = await self.credential(host)
            if cred.username is not None and cred.password is not None:
                return {"Authorization": basic_header(cred.username, cred.password)}
        elif scheme is Scheme.BEARER:
            key = (host, merge_scopes(scopes))
            token = self._valid_token(key)
            if token is None:
                async with self._locks.setdefault(key, asyncio.Lock()):
                    token = self._valid_token(key)
                    if token is None:
                        wanted = self._wanted.get(key, key[1])
                        token = await self._fetch_token(host, self._challenges[host], wanted)
                        self._tokens[key] = token
            return {"Authorization": f"Bearer {token.value}"}
        return {}

    async def on_challenge(
        self, host: str, response: httpx.Response, scopes: tuple[str, ...], sent: Mapping[str, str]
    ) -> bool:
        """Learn from a 401 answered to a request that carried ``sent`` headers.

        Returns True when retrying with fresh headers can succeed. The caller retries at most
        once, so a token the registry refuses twice ends in an error, not a loop.
        """
        challenge = parse_challenge(response.headers.get("www-authenticate"))
        if challenge is None:
            return False
        if challenge.scheme == "basic":
            cred = await self.credential(host)
            if "Authorization" in sent or cred.username is None or cred.password is None:
                return False
            self._schemes[host] = Scheme.BASIC
            return True
        if challenge.scheme == "bearer" and challenge.realm:
            key = (host, merge_scopes(scopes))
            self._schemes[host] = Scheme.BEARER
            self._challenges[host] = challenge
            self._wanted[key] = merge_scopes(challenge.scopes, scopes)
            cached = self._tokens.get(key)
            # Drop the token only if it is the one refused: a concurrent request may already
            # have fetched a new one.
            if cached is not None and sent.get("Authorization") == f"Bearer {cached.value}":
                del self._tokens[key]
            return True
        return False

    def _valid_token(self, key: tuple[str, tuple[str, ...]]) -> _Token | None:
        token = self._tokens.get(key)
        return token if token is not None and token.expires_at > self._clock() else None

    async def _fetch_token(self, host: str, challenge: Challenge, scopes: tuple[str, ...]) -> _Token:
        cred = await self.credential(host)
        if cred.registry_token:
            return _Token(cred.registry_token, self._clock() + BEARER_FALLBACK_LIFETIME)
        realm = challenge.realm or ""
        all_scopes = merge_scopes(challenge.scopes, scopes)
        trusted = realm_may_receive_credentials(host, realm, self._insecure)
        if not trusted and not cred.is_anonymous:
            log.warning("token_realm_untrusted", host=host, realm=realm)
        self.token_requests += 1
        try:
            if trusted and cred.identity_token:
                response = await self._http.post(
                    realm,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": cred.identity_token,
                        "service": challenge.service or "",
                        "scope": " ".join(all_scopes),
                        "client_id": OAUTH_CLIENT_ID,
                    },
                )
            else:
                params: list[tuple[str, str | int | float | bool | None]] = []
                if challenge.service:
                    params.append(("service", challenge.service))
                params.extend(("scope", scope) for scope in all_scopes)
                headers: dict[str, str] = {}
                if trusted and cred.username is not None and cred.password is not None:
                    headers["Authorization"] = basic_header(cred.username, cred.password)
                response = await self._http.get(realm, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"cannot reach the token service of {host} at {realm}: {exc}") from exc
        if response.status_code in (401, 403):
            if cred.bearer_fallback and cred.password:
                return _Token(cred.password, self._clock() + BEARER_FALLBACK_LIFETIME)
            raise AuthError(
                f"the token service of {host} refused the credentials from {cred.source} "
                f"(HTTP {response.status_code}); {self.hint(host)}",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise AuthError(
                f"the token service of {host} at {realm} answered HTTP {response.status_code}",
                status=response.status_code,
            )
        return self._parse_token(host, response)

    def _parse_token(self, host: str, response: httpx.Response) -> _Token:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            raise AuthError(f"the token service of {host} answered something that is not a token")
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthError(f"the token service of {host} answered without a token")
        register_secret(value)
        lifetime = body.get("expires_in")
        seconds = (
            float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else DEFAULT_TOKEN_LIFETIME
        )
        return _Token(value, self._clock() + seconds * (1 - TOKEN_EXPIRY_MARGIN))
