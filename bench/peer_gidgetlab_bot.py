"""The peer of bench/webhooks.py: a minimal gidgetlab ``GitLabBot`` doing the merge-request check inline.

    python bench/peer_gidgetlab_bot.py --host 127.0.0.1 --port PORT --gitlab-url URL

The webhook secret and the API token come from gidgetlab's own variables, ``GL_SECRET`` and
``GL_ACCESS_TOKEN``. ``GitLabBot`` verifies ``X-Gitlab-Token``, runs the registered handlers and
only then answers 200 (500 when a handler raised), so the acknowledgement waits for the work:
read ``.imglife.yml`` from the default branch and each Dockerfile at the head commit, find the
``FROM`` lines, and post the ``imglife/check`` commit status. The bot's default one-second
"consistency" sleep before the handlers is turned off; it would only add a constant second.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

import yaml
from gidgetlab import sansio
from gidgetlab.abc import GitLabAPI
from gidgetlab.aiohttp import GitLabBot

REQUESTER = "imglife-bench-peer"
STATUS_NAME = "imglife/check"
CHECKED_ACTIONS = frozenset({"open", "reopen"})
DEFAULT_DOCKERFILES = ("Dockerfile",)


def from_lines(dockerfile: str) -> list[str]:
    """The images of the ``FROM`` instructions (``--platform=`` flags skipped)."""
    images = []
    for line in dockerfile.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "FROM":
            images.append(next((w for w in words[1:] if not w.startswith("--")), ""))
    return images


async def check_merge_request(event: sansio.Event, gl: GitLabAPI, *args: Any, **kwargs: Any) -> None:
    attrs = event.object_attributes
    last_commit = attrs.get("last_commit") or {}
    sha = last_commit.get("id")
    if attrs.get("action") not in CHECKED_ACTIONS or not sha:
        return
    project = f"/projects/{event.project_id}"
    default_branch = event.data["project"].get("default_branch") or "HEAD"
    settings_text = await gl.getitem(f"{project}/repository/files/.imglife.yml/raw", {"ref": default_branch})
    settings = yaml.safe_load(settings_text or "") or {}
    bases: list[str] = []
    for path in settings.get("dockerfiles") or DEFAULT_DOCKERFILES:
        text = await gl.getitem(f"{project}/repository/files/{quote(path, safe='')}/raw", {"ref": sha})
        bases += from_lines(text or "")
    status = {
        "state": "success",
        "name": STATUS_NAME,
        "ref": attrs["source_branch"],
        "description": f"{len(bases)} base image(s): {', '.join(bases)}"[:140],
    }
    await gl.post(f"{project}/statuses/{sha}", data=status)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gitlab-url", required=True)
    args = parser.parse_args()
    bot = GitLabBot(REQUESTER, url=args.gitlab_url, wait_consistency=False)
    bot.router.add(check_merge_request, "Merge Request Hook")
    bot.run(host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
