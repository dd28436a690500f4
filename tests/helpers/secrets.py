"""The suite-wide secret scan: no test secret may show up in any log output of any test.

Helpers register every secret they make (webhook secrets, forge tokens handed to the bot, registry
and token-server passwords, S3 keys, Redis passwords) with :func:`register_test_secret`. After each
test phase (setup, call, teardown) the scan reads:

* the phase's captured stdout, stderr and log records (pytest's report sections);
* what every :class:`~tests.helpers.procs.ManagedProcess` (the bot, registries, token servers,
  SeaweedFS, Redis) wrote to its log since the last scan, and the rest when it is stopped;
* the stdout and stderr of in-process CLI runs (``bot.cli.main(..., stdout=StringIO(), ...)``),
  which never reach pytest's capture (see :func:`tee_cli`).

A secret found fails the phase it was found in, naming the file and a masked hint (first three
characters, length, where the secret was made), never the secret itself. Leaks found after the
last test (a process stopped at interpreter exit) fail the session.

Cost: a log is only read from where the last scan stopped (plus a small overlap, so a secret
split between two writes is still found), and a scan is one ``bytes.find`` per secret over the
new bytes. Values shorter than :data:`MIN_LENGTH`, or plain words, are not registered: they
would match ordinary text.

This module is also a pytest plugin (``-p tests.helpers.secrets``); ``tests/conftest.py``
registers it for the suite.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy  # not pytest: the token server subprocess imports this module too, and stays light

if TYPE_CHECKING:
    import pytest

hookimpl = pluggy.HookimplMarker("pytest")

__all__ = [
    "SCANNER",
    "Leak",
    "SecretScanner",
    "register_basic_credentials",
    "register_secret_env",
    "register_test_secret",
    "tee_cli",
]

MIN_LENGTH = 8
# Environment variables whose values are secrets (IMGLIFE_<HOST>_PASSWORD, GITLAB_TOKEN,
# IMGLIFE_GITLAB_WEBHOOK_SECRET, AWS_SECRET_ACCESS_KEY, IMGLIFE_REDIS_PASSWORD, CI_JOB_TOKEN, ...).
SECRET_ENV_RE = re.compile(r"(TOKEN|SECRET|PASSWORD|SECRET_ACCESS_KEY)$")
_PLAIN_WORD = re.compile(r"[A-Za-z]+")
EXCERPT_CHARS = 160

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Leak:
    """One registered secret found in one place; ``str()`` never shows the secret."""

    where: str  # a file path, or "captured stdout call" and the like
    line: int  # 1-based, within what was scanned (0 when unknown)
    hint: str  # masked: "gl-…(18 chars, tests/helpers/bot.py GITLAB_SECRET)"
    excerpt: str  # the line, with the secret replaced by «SECRET»

    def __str__(self) -> str:
        where = f"{self.where}:{self.line}" if self.line else self.where
        return f"{where}: test secret {self.hint} leaked: {self.excerpt}"


def mask(value: str, label: str) -> str:
    return f"{value[:3]}…({len(value)} chars, {label})"


class SecretScanner:
    """Registered secrets, watched log files, and the leaks found but not yet reported."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[bytes, str] = {}  # value -> label
        self._longest = 0
        self._logs: dict[Path, tuple[Any, int]] = {}  # path -> (process or None, bytes scanned)
        self._pending: list[Leak] = []
        self.bytes_scanned = 0
        self.files_seen = 0
        self.seconds = 0.0  # spent scanning, for the summary line

    # -- registering -------------------------------------------------------------------------

    def register(self, value: str | None, label: str = "") -> str | None:
        """Remember ``value`` as a secret; returns it, so it can wrap an expression."""
        if not value or len(value) < MIN_LENGTH or _PLAIN_WORD.fullmatch(value):
            return value
        raw = value.encode()
        with self._lock:
            if raw not in self._secrets:
                self._secrets[raw] = label or "registered by a test"
                self._longest = max(self._longest, len(raw))
        return value

    def register_env(self, environ: Mapping[str, str], label: str = "environment") -> None:
        for name, value in environ.items():
            if SECRET_ENV_RE.search(name):
                self.register(value, f"{label} {name}")

    def register_basic(self, username: str | None, password: str | None, label: str) -> None:
        """A password, and the ``Authorization: Basic`` value it makes with its user."""
        if password is None:
            return
        self.register(password, f"{label} password")
        if username is not None:
            basic = base64.b64encode(f"{username}:{password}".encode()).decode()
            self.register(basic, f"{label} Basic header")

    @property
    def secret_count(self) -> int:
        return len(self._secrets)

    # -- scanning ----------------------------------------------------------------------------

    def scan(self, data: bytes | str, where: str, *, seen: int = 0) -> list[Leak]:
        """Leaks of any registered secret in ``data`` (not recorded: the caller decides).

        ``seen``: the first bytes of ``data`` were scanned before (an overlap kept so that a
        secret split between two reads is found); a secret that lies wholly in them is not
        reported again.
        """
        raw = data.encode(errors="replace") if isinstance(data, str) else data
        if not raw:
            return []
        with self._lock:
            secrets = list(self._secrets.items())
            self.bytes_scanned += len(raw) - seen
        leaks: list[Leak] = []
        for secret, label in secrets:
            start = raw.find(secret, max(seen - len(secret) + 1, 0))
            if start < 0:
                continue
            line_start = raw.rfind(b"\n", 0, start) + 1
            line_end = raw.find(b"\n", start)
            line = raw[line_start : line_end if line_end >= 0 else len(raw)]
            excerpt = line.replace(secret, b"\xc2\xabSECRET\xc2\xbb").decode(errors="replace")
            if len(excerpt) > EXCERPT_CHARS:
                excerpt = excerpt[:EXCERPT_CHARS] + "…"
            leaks.append(
                Leak(
                    where=where,
                    line=raw.count(b"\n", 0, start) + 1,
                    hint=mask(secret.decode(errors="replace"), label),
                    excerpt=excerpt.strip(),
                )
            )
        return leaks

    def report(self, leaks: Iterable[Leak]) -> None:
        with self._lock:
            self._pending.extend(leaks)

    def drain(self) -> list[Leak]:
        """The leaks found since the last drain (and forget them)."""
        with self._lock:
            leaks, self._pending = self._pending, []
        return leaks

    # -- process logs ------------------------------------------------------------------------

    def watch(self, path: Path, process: Any = None) -> None:
        """Scan ``path`` from its start at the next scan, then only what it gains."""
        with self._lock:
            if path not in self._logs:
                self.files_seen += 1
                self._logs[path] = (process, 0)

    def process_log(self, process: Any, stopped: bool) -> None:
        """The hook :mod:`tests.helpers.procs` calls when a process starts and when it is stopped."""
        path = Path(process.log_path)
        if not stopped:
            self.watch(path, process)
            return
        if path not in self._logs:
            return  # its process had ended and its log was scanned to the end already
        started = time.perf_counter()
        self.report(self._scan_file(path))
        self.seconds += time.perf_counter() - started
        with self._lock:
            self._logs.pop(path, None)

    def scan_logs(self) -> list[Leak]:
        """Scan what every watched log gained since the last scan; record and return the leaks."""
        with self._lock:
            paths = list(self._logs.items())
        leaks: list[Leak] = []
        for path, (process, _) in paths:
            leaks += self._scan_file(path)
            gone = not path.exists() or (process is not None and not process.alive())
            if gone:
                with self._lock:
                    self._logs.pop(path, None)
        self.report(leaks)
        return leaks

    def _scan_file(self, path: Path) -> list[Leak]:
        with self._lock:
            process, done = self._logs.get(path, (None, 0))
            overlap = max(self._longest - 1, 0)
        try:
            size = path.stat().st_size
            if size < done:  # truncated or replaced (a registry retried on another port)
                done = 0
            if size == done:
                return []
            start = max(done - overlap, 0)
            with path.open("rb") as f:
                f.seek(start)
                data = f.read(size - start)
        except FileNotFoundError:
            return []
        with self._lock:
            if path in self._logs:
                self._logs[path] = (process, start + len(data))
        leaks = self.scan(data, str(path), seen=done - start)
        if start and leaks:
            # Line numbers count from where this scan started; say so rather than mislead.
            where = f"{path} (lines counted from byte {start})"
            leaks = [Leak(where, leak.line, leak.hint, leak.excerpt) for leak in leaks]
        return leaks


SCANNER = SecretScanner()


def register_test_secret(value: str | None, label: str = "") -> str | None:
    """Register a secret a test made; returns ``value`` (``PW = register_test_secret("...")``)."""
    return SCANNER.register(value, label)


def register_secret_env(environ: Mapping[str, str], label: str = "environment") -> None:
    """Register the values of ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``, ``*_SECRET_ACCESS_KEY``."""
    SCANNER.register_env(environ, label)


def register_basic_credentials(username: str | None, password: str | None, label: str) -> None:
    SCANNER.register_basic(username, password, label)


def tee_cli(main: F, scanner: SecretScanner | None = None) -> F:
    """Wrap ``bot.cli.main``: register the secrets in its ``environ``, scan what it wrote.

    Tests run the CLI in-process with ``StringIO`` streams, so its logs (stderr) and reports
    (stdout) never reach pytest's capture; without this they would escape the scan.
    """
    owner = scanner or SCANNER

    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        environ = kwargs.get("environ")
        if isinstance(environ, Mapping):
            owner.register_env(environ, "CLI environ")
        try:
            return main(*args, **kwargs)
        finally:
            started = time.perf_counter()
            for name in ("stdout", "stderr"):
                stream = kwargs.get(name)
                if isinstance(stream, io.StringIO):
                    owner.report(owner.scan(stream.getvalue(), f"in-process imglife CLI {name}"))
            owner.seconds += time.perf_counter() - started

    wrapper.__wrapped_by_secret_scan__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


# --------------------------------------------------------------------------- the pytest plugin


def _failure_text(leaks: list[Leak]) -> str:
    lines = [f"{len(leaks)} test secret(s) leaked into log output:"]
    lines += [f"  {leak}" for leak in leaks[:20]]
    if len(leaks) > 20:
        lines.append(f"  … and {len(leaks) - 20} more")
    return "\n".join(lines)


@hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    started = time.perf_counter()
    suffix = f" {report.when}"
    for title, content in report.sections:
        if title.endswith(suffix):
            SCANNER.report(SCANNER.scan(content, title.lower()))
    SCANNER.scan_logs()
    leaks = SCANNER.drain()
    SCANNER.seconds += time.perf_counter() - started
    if leaks:
        text = _failure_text(leaks)
        keep = report.failed and report.longrepr is not None
        report.outcome = "failed"
        report.longrepr = f"{report.longrepr}\n\n{text}" if keep else text


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    SCANNER.scan_logs()
    leaks = SCANNER.drain()
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(_failure_text(leaks), red=True)
        session.exitstatus = 1  # pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    s = SCANNER
    if os.environ.get("IMGLIFE_SECRET_SCAN_QUIET"):
        return
    terminalreporter.write_line(
        f"secret scan: {s.secret_count} test secrets, {s.files_seen} process logs, "
        f"{s.bytes_scanned / 1e6:.1f} MB scanned in {s.seconds:.2f}s"
    )
