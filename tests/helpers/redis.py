"""A real Redis for tests: Debian's ``redis-server`` on a free loopback port, stopped by PID.

``start_redis()`` yields a :class:`RunningRedis` with a password (``requirepass``), no snapshots
but an append-only file (as in production: a restarted Redis still has its queue), its files in
a scratch directory. ``pause()``/``resume()``
stop and continue the process (SIGSTOP/SIGCONT) to play "Redis unreachable" without losing data;
``restart()`` stops it and starts it again on the same port.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .procs import ManagedProcess, ProcessStartError, free_port, port_in_use_error, scratch_dir, wait_until
from .secrets import register_test_secret

START_TIMEOUT = 15.0


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise ProcessStartError(
            "redis-server is not installed (Debian package redis-server; scripts/test installs it)"
        )
    return found


def _answers_ping(port: int, password: str) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
        conn.sendall(f"AUTH {password}\r\nPING\r\n".encode())
        data = b""
        while b"PONG" not in data:
            chunk = conn.recv(256)
            if not chunk:
                return False
            data += chunk
        return True
    return False


@dataclass
class RunningRedis:
    port: int
    password: str
    workdir: Path
    proc: ManagedProcess | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            redis_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--requirepass", self.password,
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        self.proc = ManagedProcess(argv, log_path=self.workdir / "redis.log")
        wait_until(
            lambda: _answers_ping(self.port, self.password),
            timeout=START_TIMEOUT,
            proc=self.proc,
            what="redis-server",
        )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=5.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        if self.proc is not None and self.proc.alive():
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.alive():
            os.kill(self.proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def start_redis() -> Iterator[RunningRedis]:
    workdir = scratch_dir("imglife-redis-")
    server: RunningRedis | None = None
    try:
        for _ in range(3):  # a free port can be taken between the probe and the bind
            server = RunningRedis(free_port(), "redis-" + secrets.token_hex(12), workdir)
            register_test_secret(server.password, "tests/helpers/redis.py Redis password")
            try:
                server.start()
                break
            except ProcessStartError:
                if server.proc is None or not port_in_use_error(server.proc):
                    raise
                server.stop()
        assert server is not None
        yield server
    finally:
        if server is not None:
            server.resume()
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
