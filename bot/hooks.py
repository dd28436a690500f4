"""Operator hooks (``post_sync``): run a configured command through ``/bin/sh -c`` with a timeout.

A hook's ``cmd`` is written by the operator in ``imglife.yaml``; nothing from a webhook, a
comment or a registry is ever put into it. Values a hook may want (counts, copied images) reach
it as environment variables, which the shell does not re-parse unless the command asks it to.

Each hook runs in its own process group (``start_new_session``), so a timeout stops the whole
tree the command started, not only the shell. After the shell exits, whatever it left running in
its group is stopped too: a background process holding the output pipe would otherwise keep the
run waiting, and nothing a hook starts is meant to outlive it. Every line the hook prints
(stdout and stderr, merged) is logged as a ``hook_output`` event; the last lines are kept on the
result for reports.

:func:`run_hooks` runs a list in order. A failing hook (non-zero exit or timeout) with
``continue_on_error: false`` stops the rest of that list and makes :attr:`HookResult.fails_run`
true; with ``continue_on_error: true`` the failure is logged and the next hook runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog

from bot.config.schema import Hook

SHELL = "/bin/sh"
# After SIGTERM a timed-out hook gets this long to exit before SIGKILL.
KILL_GRACE = 2.0
# How long to keep reading output once the process group is gone (the pipe closes at once then).
DRAIN_GRACE = 2.0
OUTPUT_TAIL_LINES = 20
MAX_LINE_BYTES = 4096
LINE_TOO_LONG = "[a line longer than the reader's limit was dropped]"

MSG_TIMED_OUT = "timed out after {timeout:g}s (process group stopped)"
MSG_EXIT = "exited with code {code}"
MSG_SIGNAL = "killed by signal {signal}"
MSG_NOT_STARTED = "could not start {shell}: {error}"

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class HookResult:
    """How one hook ended: exit code (``None`` when it timed out or did not start) and its last lines."""

    cmd: str
    label: str
    exit_code: int | None
    timed_out: bool
    timeout: float
    duration: float
    output_tail: tuple[str, ...]
    continue_on_error: bool
    error: str | None = None  # set when the shell could not be started at all

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    @property
    def fails_run(self) -> bool:
        """A failure that fails the whole command (``continue_on_error: false``)."""
        return not self.ok and not self.continue_on_error

    def describe(self) -> str:
        """``ok``, ``exited with code 3``, ``timed out after 30s (...)``, ``killed by signal 9``."""
        if self.error is not None:
            return self.error
        if self.timed_out:
            return MSG_TIMED_OUT.format(timeout=self.timeout)
        if self.exit_code is not None and self.exit_code < 0:
            return MSG_SIGNAL.format(signal=-self.exit_code)
        return "ok" if self.exit_code == 0 else MSG_EXIT.format(code=self.exit_code)


async def run_hook(hook: Hook, *, env: Mapping[str, str], label: str) -> HookResult:
    """Run ``hook.cmd`` with ``env``; never raises for a failing command, only reports it."""
    started = time.monotonic()
    log.info("hook_started", hook=label, cmd=hook.cmd, timeout=hook.timeout)
    # A pipe of our own rather than asyncio's PIPE: asyncio's wait() also waits for its pipes to
    # close, which a background job of the command can hold open long after the shell exited.
    read_fd, write_fd = os.pipe()
    try:
        process = await asyncio.create_subprocess_exec(
            SHELL,
            "-c",
            hook.cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as exc:
        os.close(read_fd)
        error = MSG_NOT_STARTED.format(shell=SHELL, error=exc)
        log.error("hook_failed", hook=label, cmd=hook.cmd, error=error)
        return HookResult(
            cmd=hook.cmd,
            label=label,
            exit_code=None,
            timed_out=False,
            timeout=hook.timeout,
            duration=time.monotonic() - started,
            output_tail=(),
            continue_on_error=hook.continue_on_error,
            error=error,
        )
    finally:
        os.close(write_fd)  # the child has its copy; ours would keep the pipe open forever
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    stream = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(read_fd, "rb", buffering=0)
    )
    reader = asyncio.create_task(_read_lines(stream, tail, label))
    timed_out = False
    try:
        await asyncio.wait_for(process.wait(), timeout=hook.timeout)
    except TimeoutError:
        timed_out = True
        await _stop_group(process, label)
    finally:
        # Leftovers of the group (background jobs of the command) would hold the pipe open.
        _signal_group(process.pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(reader, timeout=DRAIN_GRACE)
        except TimeoutError:
            log.warning("hook_output_abandoned", hook=label, reason="the output pipe stayed open")
        finally:
            transport.close()
    duration = time.monotonic() - started
    exit_code = None if timed_out else process.returncode
    result = HookResult(
        cmd=hook.cmd,
        label=label,
        exit_code=exit_code,
        timed_out=timed_out,
        timeout=hook.timeout,
        duration=duration,
        output_tail=tuple(tail),
        continue_on_error=hook.continue_on_error,
    )
    if result.ok:
        log.info("hook_finished", hook=label, cmd=hook.cmd, duration_s=round(duration, 3))
    else:
        event = "hook_failed_ignored" if hook.continue_on_error else "hook_failed"
        log.warning(
            event,
            hook=label,
            cmd=hook.cmd,
            outcome=result.describe(),
            exit_code=exit_code,
            timed_out=timed_out,
            duration_s=round(duration, 3),
        )
    return result


async def run_hooks(hooks: Sequence[Hook], *, env: Mapping[str, str], label: str) -> list[HookResult]:
    """Run ``hooks`` in order; a failure without ``continue_on_error`` stops the rest of the list."""
    results: list[HookResult] = []
    for index, hook in enumerate(hooks):
        result = await run_hook(hook, env=env, label=f"{label}[{index}]")
        results.append(result)
        if result.fails_run:
            skipped = len(hooks) - index - 1
            if skipped:
                log.warning("hooks_stopped", hook=label, after=index, skipped=skipped)
            break
    return results


async def _read_lines(stream: asyncio.StreamReader, tail: deque[str], label: str) -> None:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:
            # asyncio drops a line longer than the reader's limit (64 KiB); say so and go on.
            tail.append(LINE_TOO_LONG)
            log.info("hook_output", hook=label, line=LINE_TOO_LONG)
            continue
        if not raw:
            return
        line = raw[:MAX_LINE_BYTES].decode("utf-8", errors="replace").rstrip("\r\n")
        tail.append(line)
        log.info("hook_output", hook=label, line=line)


async def _stop_group(process: asyncio.subprocess.Process, label: str) -> None:
    """SIGTERM the hook's process group, then SIGKILL it if the shell is still there."""
    log.warning("hook_timeout", hook=label, pid=process.pid)
    _signal_group(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=KILL_GRACE)
    except TimeoutError:
        _signal_group(process.pid, signal.SIGKILL)
        await process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    # The group is gone once every member exited: nothing left to stop.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
