"""A Docker/distribution token-auth server for tests, run as a subprocess.

    python -m tests.helpers.token_server --dir D --port P --user U --password PW \
        --service S --issuer I [--expires-in 300]

It writes ``D/cert.pem`` (the registry's ``rootcertbundle``) and, once listening, ``D/port``
(useful with ``--port 0``). Endpoints:

``GET /token?service=..&scope=..[&scope=..][&offline_token=true&client_id=..]``
    The distribution token spec. Several ``scope`` params and space-separated scopes are
    accepted. Right Basic credentials get every requested action, anonymous callers get only
    ``pull`` on repositories, wrong credentials (or any other scheme) get 401.
``POST /token`` (``application/x-www-form-urlencoded``)
    The OAuth2 form: ``grant_type=password`` (``username``, ``password``) or
    ``grant_type=refresh_token`` (``refresh_token``); ``client_id`` is required; ``scope`` is
    space-separated; ``access_type=offline`` adds a ``refresh_token`` to the answer.
``GET /stats``, ``POST /stats/reset``
    ``{"token_requests": N, "requests": [{"method", "scope": [...], "authorized",
    "grant_type", "service", "account", "status", "offline"}, ...]}``.
``GET /config``, ``POST /config`` (JSON), ``POST /config/reset``
    Runtime knobs: ``expires_in`` (seconds, may be negative to mint expired tokens), ``deny``
    (fnmatch patterns on ``type:name:action`` that are never granted), ``oauth_post`` (false:
    ``POST /token`` answers 404 like GitLab's ``/jwt/auth``), ``fail_next``/``fail_status``
    (answer the next N token requests with that status).

Tokens are RS256 JWTs whose header ``kid`` is the libtrust key id of the certificate's public
key, with claims ``iss``, ``sub``, ``aud``, ``exp``, ``nbf``, ``iat``, ``jti`` and ``access``.

The in-process side (:func:`start_token_server`, :class:`RunningTokenServer`) starts the
subprocess and talks to its ``/stats`` and ``/config`` endpoints.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import datetime as dt
import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from .procs import ManagedProcess, http_status, scratch_dir, wait_until
from .secrets import register_basic_credentials

__all__ = [
    "DEFAULT_CONFIG",
    "RunningTokenServer",
    "libtrust_kid",
    "main",
    "parse_scope",
    "start_token_server",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_CONFIG: dict[str, Any] = {
    "expires_in": 300,
    "deny": [],
    "oauth_post": True,
    "fail_next": 0,
    "fail_status": 503,
}


# --------------------------------------------------------------------------- token minting


def libtrust_kid(public_key: PublicKeyTypes) -> str:
    """libtrust key id: base32(sha256(SPKI DER)[:30]) in 12 colon-separated groups of 4."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i : i + 4] for i in range(0, 48, 4))


def _make_key_and_cert(directory: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "imglife-test-token-issuer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / "cert.pem.tmp"
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.replace(directory / "cert.pem")
    return key


def parse_scope(scope: str) -> dict[str, Any]:
    """``repository:team/app:pull,push`` -> ``{"type", "name", "actions"}`` (ValueError if malformed)."""
    typ, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2 and typ and name and actions):
        raise ValueError(f"invalid scope {scope!r}")
    return {"type": typ, "name": name, "actions": [a for a in actions.split(",") if a]}


def _split_scopes(values: Sequence[str]) -> list[str]:
    return [s for v in values for s in v.split(" ") if s]


class _State:
    def __init__(self, args: argparse.Namespace, key: rsa.RSAPrivateKey) -> None:
        self.user: str = args.user
        self.password: str = args.password
        self.service: str = args.service
        self.issuer: str = args.issuer
        self.key = key
        self.kid = libtrust_kid(key.public_key())
        self.lock = threading.Lock()
        self.config: dict[str, Any] = copy.deepcopy(DEFAULT_CONFIG)
        self.config["expires_in"] = args.expires_in
        self.initial_config = copy.deepcopy(self.config)
        self.requests: list[dict[str, Any]] = []
        self.refresh_tokens: dict[str, str] = {}

    def check_password(self, user: str, password: str) -> bool:
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_pw = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_pw

    def grant(self, scopes: list[str], authorized: bool) -> list[dict[str, Any]]:
        deny: list[str] = self.config["deny"]
        access = []
        for s in scopes:
            entry = parse_scope(s)
            actions = entry["actions"]
            if not authorized:
                actions = [a for a in actions if a == "pull"] if entry["type"] == "repository" else []
            actions = [
                a
                for a in actions
                if not any(fnmatch.fnmatchcase(f"{entry['type']}:{entry['name']}:{a}", p) for p in deny)
            ]
            access.append({"type": entry["type"], "name": entry["name"], "actions": actions})
        return access

    def mint(self, subject: str, access: list[dict[str, Any]]) -> tuple[str, int, str]:
        now = int(time.time())
        expires_in = int(self.config["expires_in"])
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})
        issued_at = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return token, expires_in, issued_at


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep the log for real errors
        pass

    # -- plumbing

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json", headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _record(self, **entry: Any) -> None:
        with self.server.state.lock:
            self.server.state.requests.append(entry)

    def _take_failure(self) -> int | None:
        st = self.server.state
        with st.lock:
            if st.config["fail_next"] > 0:
                st.config["fail_next"] -= 1
                return int(st.config["fail_status"])
        return None

    # -- routes

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/token":
            self._token_get(parse_qs(url.query, keep_blank_values=True))
        elif url.path == "/stats":
            st = self.server.state
            with st.lock:
                self._json(200, {"token_requests": len(st.requests), "requests": st.requests})
        elif url.path == "/config":
            with self.server.state.lock:
                self._json(200, self.server.state.config)
        else:
            self._json(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._body()
        st = self.server.state
        if url.path == "/token":
            self._token_post(parse_qs(body.decode(), keep_blank_values=True))
        elif url.path == "/stats/reset":
            with st.lock:
                st.requests.clear()
            self._json(200, {"token_requests": 0, "requests": []})
        elif url.path == "/config":
            try:
                changes = json.loads(body or b"{}")
                unknown = set(changes) - set(DEFAULT_CONFIG)
                if unknown:
                    raise ValueError(f"unknown config keys {sorted(unknown)}")
            except ValueError as exc:
                self._json(400, {"error": str(exc)})
                return
            with st.lock:
                st.config.update(changes)
                self._json(200, st.config)
        elif url.path == "/config/reset":
            with st.lock:
                st.config = copy.deepcopy(st.initial_config)
                self._json(200, st.config)
        else:
            self._json(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})

    def _basic_credentials(self) -> tuple[str, str] | bool | None:
        """None: anonymous; (user, password): Basic credentials; False: unusable header."""
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except ValueError:
            return False
        return (user, password) if sep else False

    def _token_get(self, q: dict[str, list[str]]) -> None:
        st = self.server.state
        scopes = _split_scopes(q.get("scope", []))
        service = q.get("service", [""])[0]
        offline = q.get("offline_token", ["false"])[0].lower() == "true"
        creds = self._basic_credentials()
        authorized = isinstance(creds, tuple) and st.check_password(*creds)
        account = creds[0] if isinstance(creds, tuple) else q.get("account", [""])[0]
        rec = {
            "method": "GET",
            "scope": scopes,
            "authorized": authorized,
            "grant_type": None,
            "service": service,
            "account": account,
            "offline": offline,
        }
        failure = self._take_failure()
        if failure is not None:
            self._record(**rec, status=failure)
            self._json(failure, {"errors": [{"code": "UNAVAILABLE", "message": "injected failure"}]})
            return
        if creds is not None and not authorized:
            self._record(**rec, status=401)
            self._json(
                401,
                {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]},
                {"WWW-Authenticate": 'Basic realm="imglife-test-token-server"'},
            )
            return
        if service and service != st.service:
            self._record(**rec, status=400)
            self._json(400, {"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]})
            return
        try:
            access = st.grant(scopes, authorized)
        except ValueError as exc:
            self._record(**rec, status=400)
            self._json(400, {"errors": [{"code": "INVALID_SCOPE", "message": str(exc)}]})
            return
        token, expires_in, issued_at = st.mint(st.user if authorized else "", access)
        answer: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": issued_at,
        }
        if offline and authorized:
            answer["refresh_token"] = self._new_refresh_token()
        self._record(**rec, status=200)
        self._json(200, answer)

    def _token_post(self, form: dict[str, list[str]]) -> None:
        st = self.server.state

        def one(name: str) -> str:
            return form.get(name, [""])[0]

        grant_type = one("grant_type")
        scopes = _split_scopes(form.get("scope", []))
        offline = one("access_type") == "offline"
        rec = {
            "method": "POST",
            "scope": scopes,
            "authorized": False,
            "grant_type": grant_type,
            "service": one("service"),
            "account": one("username"),
            "offline": offline,
        }

        def fail(status: int, error: str, description: str) -> None:
            self._record(**rec, status=status)
            self._json(status, {"error": error, "error_description": description})

        if not st.config["oauth_post"]:
            fail(404, "not_found", "POST /token is disabled")
            return
        failure = self._take_failure()
        if failure is not None:
            fail(failure, "temporarily_unavailable", "injected failure")
            return
        if not one("client_id"):
            fail(400, "invalid_request", "client_id is required")
            return
        if grant_type == "password":
            if not st.check_password(one("username"), one("password")):
                fail(401, "invalid_grant", "invalid username or password")
                return
        elif grant_type == "refresh_token":
            with st.lock:
                owner = st.refresh_tokens.get(one("refresh_token"))
            if owner is None:
                fail(401, "invalid_grant", "unknown refresh token")
                return
            rec["account"] = owner
        else:
            fail(400, "unsupported_grant_type", f"unsupported grant_type {grant_type!r}")
            return
        if one("service") and one("service") != st.service:
            fail(400, "invalid_request", f"unknown service {one('service')!r}")
            return
        rec["authorized"] = True
        try:
            access = st.grant(scopes, True)
        except ValueError as exc:
            fail(400, "invalid_scope", str(exc))
            return
        token, expires_in, issued_at = st.mint(st.user, access)
        answer: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "issued_at": issued_at,
            "scope": " ".join(scopes),
        }
        if offline:
            answer["refresh_token"] = self._new_refresh_token()
        self._record(**rec, status=200)
        self._json(200, answer)

    def _new_refresh_token(self) -> str:
        st = self.server.state
        tok = "rt-" + secrets.token_hex(16)
        with st.lock:
            st.refresh_tokens[tok] = st.user
        return tok


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.helpers.token_server", description=__doc__)
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: pick one and write it to DIR/port")
    ap.add_argument("--user", default="token-user")
    ap.add_argument("--password", required=True)
    ap.add_argument("--service", default="imglife-test-registry")
    ap.add_argument("--issuer", default="imglife-test-issuer")
    ap.add_argument("--expires-in", type=int, default=300)
    args = ap.parse_args(argv)
    key = _make_key_and_cert(args.dir)
    server = _Server((args.host, args.port), _Handler)
    server.state = _State(args, key)
    port_file = args.dir / "port"
    tmp = args.dir / "port.tmp"
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(port_file)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --------------------------------------------------------------------------- in-process side


@dataclass(frozen=True)
class RunningTokenServer:
    """A running token server subprocess. ``realm`` is what the registry's challenge names."""

    url: str  # http://127.0.0.1:PORT
    realm: str  # url + "/token"
    service: str
    issuer: str
    username: str
    password: str
    data_dir: Path
    cert_path: Path
    pid: int
    _proc: ManagedProcess = field(repr=False, compare=False)

    @property
    def creds(self) -> tuple[str, str]:
        return (self.username, self.password)

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        # stdlib on purpose: an httpx client costs ~60 ms to create (it loads CA certificates)
        data = json.dumps(payload).encode() if payload is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method)  # noqa: S310
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - http://127.0.0.1 only
            result: dict[str, Any] = json.loads(resp.read())
        return result

    def stats(self) -> dict[str, Any]:
        """``{"token_requests": N, "requests": [...]}`` since the last :meth:`reset`."""
        return self._call("GET", "/stats")

    def token_requests(self) -> int:
        return int(self.stats()["token_requests"])

    def reset(self) -> None:
        """Clear the request counters."""
        self._call("POST", "/stats/reset")

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change runtime knobs (see module doc); returns the whole new config."""
        try:
            return self._call("POST", "/config", changes)
        except urllib.error.HTTPError as exc:
            raise ValueError(exc.read().decode(errors="replace")) from exc

    def reset_config(self) -> None:
        """Back to the config the server started with."""
        self._call("POST", "/config/reset")

    def public_key(self) -> rsa.RSAPublicKey:
        key = x509.load_pem_x509_certificate(self.cert_path.read_bytes()).public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        return key

    def decode(self, token: str) -> dict[str, Any]:
        """Verify a token the way the registry does (signature, audience, issuer) and return claims."""
        claims: dict[str, Any] = jwt.decode(
            token, self.public_key(), algorithms=["RS256"], audience=self.service, issuer=self.issuer
        )
        return claims

    def alive(self) -> bool:
        return self._proc.alive()

    def stop(self) -> None:
        self._proc.stop()


@contextlib.contextmanager
def start_token_server(
    *,
    username: str = "token-user",
    password: str | None = None,
    service: str = "imglife-test-registry",
    issuer: str = "imglife-test-issuer",
    expires_in: int = 300,
    data_dir: Path | None = None,
    timeout: float = 10.0,
) -> Iterator[RunningTokenServer]:
    """Start the token server subprocess; stop it by PID and remove its directory on exit."""
    password = password or f"token-pw-{secrets.token_hex(8)}"
    register_basic_credentials(username, password, "tests/helpers/token_server.py token server")
    own_dir = data_dir is None
    directory = scratch_dir("imglife-token-") if data_dir is None else data_dir
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "tests.helpers.token_server",
        "--dir",
        str(directory),
        "--port",
        "0",
        "--user",
        username,
        "--password",
        password,
        "--service",
        service,
        "--issuer",
        issuer,
        "--expires-in",
        str(expires_in),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = ManagedProcess(argv, log_path=directory / "token-server.log", cwd=PROJECT_ROOT, env=env)
    try:
        port_file = directory / "port"
        wait_until(port_file.exists, timeout=timeout, what="token server", proc=proc)
        url = f"http://127.0.0.1:{int(port_file.read_text())}"

        def ready() -> bool:
            return http_status("127.0.0.1", int(port_file.read_text()), "/stats", timeout=0.3) == 200

        wait_until(ready, timeout=timeout, what="token server /stats", proc=proc)
        yield RunningTokenServer(
            url=url,
            realm=f"{url}/token",
            service=service,
            issuer=issuer,
            username=username,
            password=password,
            data_dir=directory,
            cert_path=directory / "cert.pem",
            pid=proc.pid,
            _proc=proc,
        )
    finally:
        proc.stop()
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
