"""bot.hooks: operator commands through /bin/sh with a timeout, exit codes, output in the logs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog

from bot.config.schema import Hook
from bot.hooks import LINE_TOO_LONG, OUTPUT_TAIL_LINES, run_hook, run_hooks

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def hook(cmd: str, *, timeout: float = 10.0, continue_on_error: bool = False) -> Hook:
    return Hook(cmd=cmd, timeout=timeout, continue_on_error=continue_on_error)


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for its new parent to reap it counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def wait_dead(pid: int) -> bool:
    # The orphan is reaped by init asynchronously; poll briefly instead of asserting on timing.
    for _ in range(200):
        if not alive(pid):
            return True
        time.sleep(0.01)
    return False


async def test_a_successful_hook_gets_the_environment_and_its_output_is_logged():
    with structlog.testing.capture_logs() as logs:
        result = await run_hook(
            hook('echo "copied=$IMGLIFE_SYNC_COPIED"; echo to-stderr >&2'),
            env={**ENV, "IMGLIFE_SYNC_COPIED": "3"},
            label="sync.hooks.post_sync[0]",
        )
    assert result.ok
    assert not result.fails_run
    assert result.exit_code == 0
    assert result.describe() == "ok"
    assert result.output_tail == ("copied=3", "to-stderr")
    lines = [e["line"] for e in logs if e["event"] == "hook_output"]
    assert lines == ["copied=3", "to-stderr"]
    assert all(e["hook"] == "sync.hooks.post_sync[0]" for e in logs if e["event"] == "hook_output")
    assert any(e["event"] == "hook_finished" for e in logs)


async def test_the_command_goes_through_the_shell_as_written():
    result = await run_hook(
        hook('for i in 1 2; do echo n$i; done | tr n N && test -n "$PATH"'), env=ENV, label="h"
    )
    assert result.ok
    assert result.output_tail == ("N1", "N2")


async def test_a_non_zero_exit_fails_the_run_unless_continue_on_error():
    failing = await run_hook(hook("echo boom; exit 3"), env=ENV, label="h")
    assert not failing.ok
    assert failing.fails_run
    assert failing.exit_code == 3
    assert failing.describe() == "exited with code 3"
    assert failing.output_tail == ("boom",)

    tolerated = await run_hook(hook("exit 4", continue_on_error=True), env=ENV, label="h")
    assert not tolerated.ok
    assert not tolerated.fails_run
    assert tolerated.exit_code == 4


async def test_a_missing_command_is_the_shells_exit_127():
    result = await run_hook(hook("imglife-no-such-command-xyz"), env=ENV, label="h")
    assert result.exit_code == 127
    assert result.fails_run
    assert "not found" in " ".join(result.output_tail)


async def test_timeout_kills_the_whole_process_group(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    # A background grandchild and a foreground sleep: both must go when the timeout fires.
    cmd = f"sleep 60 & echo $! > {pid_file}; echo started; sleep 60"
    with structlog.testing.capture_logs() as logs:
        result = await run_hook(hook(cmd, timeout=0.5), env=ENV, label="slow")
    assert result.timed_out
    assert result.exit_code is None
    assert result.fails_run
    assert result.describe() == "timed out after 0.5s (process group stopped)"
    assert result.output_tail == ("started",)
    child = int(pid_file.read_text())
    assert wait_dead(child), f"background process {child} survived the timeout"
    assert any(e["event"] == "hook_timeout" for e in logs)
    failed = next(e for e in logs if e["event"] == "hook_failed")
    assert failed["timed_out"] is True


async def test_a_timed_out_hook_that_ignores_sigterm_is_killed():
    result = await run_hook(hook("trap '' TERM; sleep 60", timeout=0.3), env=ENV, label="stubborn")
    assert result.timed_out
    assert result.fails_run


async def test_timeout_with_continue_on_error_does_not_fail_the_run():
    result = await run_hook(hook("sleep 60", timeout=0.2, continue_on_error=True), env=ENV, label="h")
    assert result.timed_out
    assert not result.fails_run


async def test_background_leftovers_do_not_keep_the_run_waiting(tmp_path: Path):
    pid_file = tmp_path / "bg.pid"
    # The shell exits at once but its background job holds the output pipe.
    result = await run_hook(
        hook(f"sleep 60 & echo $! > {pid_file}; echo done", timeout=30), env=ENV, label="h"
    )
    assert result.ok
    assert not result.timed_out
    assert result.output_tail == ("done",)
    assert wait_dead(int(pid_file.read_text()))


async def test_only_the_last_lines_are_kept_but_every_line_is_logged():
    with structlog.testing.capture_logs() as logs:
        result = await run_hook(hook("seq 1 50"), env=ENV, label="h")
    assert result.output_tail == tuple(str(n) for n in range(51 - OUTPUT_TAIL_LINES, 51))
    assert [e["line"] for e in logs if e["event"] == "hook_output"] == [str(n) for n in range(1, 51)]


async def test_a_huge_line_is_reported_not_fatal():
    result = await run_hook(
        hook("head -c 200000 /dev/zero | tr '\\0' x; echo; echo after"), env=ENV, label="h"
    )
    assert result.ok
    assert LINE_TOO_LONG in result.output_tail
    assert result.output_tail[-1] == "after"


async def test_hook_environment_is_only_what_is_given():
    result = await run_hook(hook('echo "[$HOME]"'), env={"PATH": ENV["PATH"], "HOME": "/h"}, label="h")
    assert result.output_tail == ("[/h]",)


async def test_run_hooks_stops_the_list_after_a_fatal_failure(tmp_path: Path):
    marker = tmp_path / "ran"
    hooks = [
        hook("exit 1", continue_on_error=True),
        hook("echo second"),
        hook("exit 2"),
        hook(f"touch {marker}"),
    ]
    with structlog.testing.capture_logs() as logs:
        results = await run_hooks(hooks, env=ENV, label="sync.hooks.post_sync")
    assert [r.label for r in results] == [
        "sync.hooks.post_sync[0]",
        "sync.hooks.post_sync[1]",
        "sync.hooks.post_sync[2]",
    ]
    assert [r.exit_code for r in results] == [1, 0, 2]
    assert [r.fails_run for r in results] == [False, False, True]
    assert not marker.exists()
    stopped = next(e for e in logs if e["event"] == "hooks_stopped")
    assert stopped["skipped"] == 1
