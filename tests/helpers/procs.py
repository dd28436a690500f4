"""Free ports, readiness polls and subprocesses that are always stopped by PID.

Every :class:`ManagedProcess` is tracked in a module-level registry; an ``atexit`` hook stops
whatever is still running if a fixture's teardown never ran (for example after an internal
pytest error). Processes started from the main thread also get ``PR_SET_PDEATHSIG`` so they die
with the test process even when it is killed with SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "ManagedProcess",
    "ProcessStartError",
    "add_log_watcher",
    "free_port",
    "http_status",
    "port_in_use_error",
    "scratch_dir",
    "wait_until",
]

_PR_SET_PDEATHSIG = 1
_live: dict[int, ManagedProcess] = {}
_live_lock = threading.Lock()


class ProcessStartError(RuntimeError):
    """A helper process exited or did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (bind to port 0, then close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_status(host: str, port: int, path: str, *, method: str = "GET", timeout: float = 1.0) -> int:
    """Status of one plain-HTTP request (stdlib only: cheap enough for tight readiness polls)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


OWNER_FILE = ".imglife-owner-pid"
_swept: set[str] = set()


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(base: Path, prefix: str) -> None:
    """Remove scratch dirs left by test processes that were killed before their teardown ran."""
    for d in base.glob(f"{prefix}*"):
        try:
            owner = int((d / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being created
        if not _pid_running(owner):
            shutil.rmtree(d, ignore_errors=True)


def scratch_dir(prefix: str) -> Path:
    """A fresh directory in /dev/shm (tmpfs, fast) or, when that is missing, the system temp dir.

    It records the creating PID; directories whose creator is gone (a test run killed with
    SIGKILL) are removed the first time this process creates one with the same prefix family.
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else Path(tempfile.gettempdir())
    if str(base) not in _swept:
        _swept.add(str(base))
        _sweep_stale(base, "imglife-")
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    (d / OWNER_FILE).write_text(str(os.getpid()))
    return d


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: ManagedProcess | None = None,
    interval: float = 0.01,
) -> float:
    """Poll ``check`` until it returns True; return the seconds waited.

    Fails fast when ``proc`` exits; the error message carries the process's log tail.
    """
    start = time.monotonic()
    deadline = start + timeout
    last_error: BaseException | None = None
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception as exc:  # noqa: BLE001 - probes raise while the server is still starting
            last_error = exc
        if proc is not None and not proc.alive():
            raise ProcessStartError(
                f"{what}: process {proc.pid} exited with code {proc.returncode} before it was ready\n"
                f"argv: {' '.join(proc.argv)}\n--- log tail ({proc.log_path}) ---\n{proc.log_tail()}"
            )
        if time.monotonic() >= deadline:
            tail = f"\n--- log tail ({proc.log_path}) ---\n{proc.log_tail()}" if proc else ""
            raise ProcessStartError(
                f"{what}: not ready after {timeout:.1f}s (last probe error: {last_error!r}){tail}"
            )
        time.sleep(interval)


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ManagedProcess:
    """A child process with its output in a log file, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        # PDEATHSIG fires when the *thread* that forked the child exits, so only use it from the
        # main thread (fixtures run there; a worker thread may end while the child should live).
        use_pdeathsig = sys.platform == "linux" and threading.current_thread() is threading.main_thread()
        with open(log_path, "ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,  # a Ctrl-C in the terminal goes to pytest only
                preexec_fn=_set_pdeathsig if use_pdeathsig else None,
            )
        self.pid = self._popen.pid
        with _live_lock:
            _live[self.pid] = self
        _tell_log_watchers(self, stopped=False)

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def alive(self) -> bool:
        return self._popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit on its own; its exit code."""
        return self._popen.wait(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read log: {exc}>"
        return "\n".join(text.splitlines()[-lines:]) or "<empty log>"

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the PID, wait up to ``grace`` seconds, then SIGKILL. Idempotent."""
        try:
            if self._popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
                try:
                    self._popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.pid, signal.SIGKILL)
                    self._popen.wait(timeout=10)
            return self._popen.returncode
        finally:
            with _live_lock:
                _live.pop(self.pid, None)
            _tell_log_watchers(self, stopped=True)

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited({self.returncode})"
        return f"<ManagedProcess pid={self.pid} {state} {self.argv[0]}>"


def port_in_use_error(proc: ManagedProcess) -> bool:
    """Whether a process that died early did so because its port was taken meanwhile."""
    tail = proc.log_tail(200).lower()
    return "address already in use" in tail or os.strerror(errno.EADDRINUSE).lower() in tail


# --------------------------------------------------------------------------- log watchers
# Whoever wants to read what every process writes (tests/helpers/secrets.py: the suite-wide scan
# for leaked test secrets) is told of each process when it starts and again when it is stopped,
# while its log file still exists (stop() runs before a fixture deletes the process's directory).

LogWatcher = Callable[["ManagedProcess", bool], None]  # (process, stopped)
_log_watchers: list[LogWatcher] = []


def add_log_watcher(watcher: LogWatcher) -> None:
    """Call ``watcher(process, stopped)`` for every ManagedProcess started or stopped from now on."""
    if watcher not in _log_watchers:
        _log_watchers.append(watcher)


def _tell_log_watchers(proc: ManagedProcess, *, stopped: bool) -> None:
    for watcher in list(_log_watchers):
        with contextlib.suppress(Exception):  # a watcher must never break starting or stopping
            watcher(proc, stopped)


@atexit.register
def _stop_leftovers() -> None:
    with _live_lock:
        procs = list(_live.values())
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.stop(grace=2.0)
