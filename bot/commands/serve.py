"""``imglife serve``: the webhook bot (SPEC §6) — one process, jobs in memory (bot/server/service.py)."""

from __future__ import annotations

import argparse

from bot.commands.base import Command, Invocation

COMMAND_NAME = "serve"


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: bot.host, else 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port to listen on (default: bot.port, else 8080)")


async def _run(invocation: Invocation) -> int:
    # Imported here: the server (aiohttp.web, prometheus, the router) is a quarter of a second
    # that every other command would pay at start-up.
    from bot.server.service import serve

    config = invocation.config()
    host = invocation.args.host or config.bot.host
    port = invocation.args.port if invocation.args.port is not None else config.bot.port
    return await serve(config, invocation.config_path(), invocation.environ, host=host, port=port)


COMMAND = Command(
    name=COMMAND_NAME,
    help="run the webhook bot for GitLab and Gitea/Forgejo (POST /webhooks/gitlab, /webhooks/gitea)",
    add_arguments=_arguments,
    run=_run,
    default_log_format="json",
)
