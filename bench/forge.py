"""The forge side of the webhook benches (bench/webhooks.py, bench/replicas.py).

* :class:`FakeProcess`: the in-repo GitLab fake (tests/fakes/gitlab.py) in a process of its own,
  optionally pinned to some CPUs. The fake is a Python server too: in the harness's process it
  would take the GIL from the harness while imglife's background jobs call it. It knows one bot
  user with one token; each project it is given has a ``.imglife.yml`` and, for each merge
  request, a head commit with a Dockerfile of its own.
* :func:`write_imglife_config`: an imglife.yaml (and eol-data.yaml) whose forge is the fake.
* :func:`merge_request_hook` and :func:`hook_headers`: a "Merge Request Hook" delivery, as the
  fake's GitLab would send it.

The benches run as scripts (``python bench/NAME.py``), so this module is imported as ``forge``,
after the script has put the repository root on ``sys.path`` for ``tests``.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tests.fakes.gitlab import DEVELOPER, FakeGitLab

ROOT = Path(__file__).resolve().parents[1]
BOT_USER = "imglife-bot"
STATUS_NAME = "imglife/check"
DEFAULT_BRANCH = "main"
FIXTURE = ROOT / "tests" / "fixtures" / "webhooks" / "gitlab" / "merge_request__open.json"
EOL_DATA = ROOT / "examples" / "eol-data.yaml"
REPO_SETTINGS = "dockerfiles:\n  - Dockerfile\ncheck:\n  strict: false\n"
DOCKERFILE = "FROM registry.example.com/bases/alpine:3.21.3-core1.0.0\nRUN apk add --no-cache curl\n"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

CONFIG = """\
registry:
  provider: local
  path: records
sync:
  entries:
    - source: docker.io/library/alpine
      tag_regex: '^3\\.\\d+\\.\\d+$'
      target: registry.example.com/mirrors/alpine
      lifecycle:
        product: alpine
        track: minor
build:
  core_version: "1.0.0"
  registry: registry.example.com/bases
  images:
    - name: alpine
      folder: images/alpine
      type: core
      mirror_image: registry.example.com/mirrors/alpine
      mirror_tag: "3.21.3"
      version: "3.21.3"
lifecycle:
  eol_provider: local
  eol_data_file: eol-data.yaml
bot:
  gitlab:
    url: {gitlab_url}
  workers: {workers}
"""

Changes = Sequence[tuple[int, str]]  # (iid, head commit) of each merge request of a project


def write_imglife_config(workdir: Path, gitlab_url: str, workers: int, eol_data: str | None = None) -> Path:
    """``workdir``/imglife.yaml (``bot.workers``: ``workers``) and the eol-data.yaml beside it:
    ``eol_data``, or a copy of examples/eol-data.yaml. Returns the path of imglife.yaml."""
    config = workdir / "imglife.yaml"
    config.write_text(CONFIG.format(gitlab_url=gitlab_url, workers=workers))
    if eol_data is None:
        shutil.copy(EOL_DATA, workdir / "eol-data.yaml")
    else:
        (workdir / "eol-data.yaml").write_text(eol_data)
    return config


# --- the GitLab fake, in a process of its own -----------------------------------------------------


def _fake_main(conn: Connection, token: str, cores: set[int] | None) -> None:
    if cores:
        os.sched_setaffinity(0, cores)
    with FakeGitLab() as fake:
        fake.add_token(token, BOT_USER)
        conn.send(fake.url)
        while True:
            command, args = conn.recv()
            if command == "stop":
                break
            if command == "projects":
                conn.send([_add_project(fake, path, changes) for path, changes in args])
            elif command == "statuses":
                with fake.lock:
                    conn.send(sum(1 for s in fake.project(args).statuses if s.name == STATUS_NAME))
            elif command == "tally":
                conn.send(_tally(fake, args))
            elif command == "cpu":
                conn.send(time.process_time())
            else:
                conn.send(None)


def _add_project(fake: FakeGitLab, path: str, changes: Changes) -> int:
    project = fake.add_project(path, members={BOT_USER: DEVELOPER}, default_branch=DEFAULT_BRANCH)
    fake.add_file(project.id, DEFAULT_BRANCH, ".imglife.yml", REPO_SETTINGS)
    for iid, sha in changes:
        fake.add_merge_request(project.id, iid, f"feature-{iid}", sha)
        fake.add_file(project.id, sha, "Dockerfile", DOCKERFILE)
    return project.id


def _tally(fake: FakeGitLab, project_ids: list[int]) -> dict[str, int]:
    statuses: Counter[tuple[int, str]] = Counter()
    comments: Counter[tuple[int, int]] = Counter()
    with fake.lock:
        for project_id in project_ids:
            project = fake.project(project_id)
            statuses.update((project_id, s.sha) for s in project.statuses if s.name == STATUS_NAME)
            for iid, mr in project.merge_requests.items():
                bot_notes = sum(1 for n in mr.notes if n.author.username == BOT_USER and not n.system)
                if bot_notes:
                    comments[(project_id, iid)] = bot_notes
    return {
        "statuses": sum(statuses.values()),
        "heads": len(statuses),
        "heads_twice": sum(1 for n in statuses.values() if n > 1),
        "comments": sum(comments.values()),
        "mrs_commented": len(comments),
        "mrs_twice": sum(1 for n in comments.values() if n > 1),
    }


class FakeProcess:
    """The GitLab fake in a child process, which accepts ``token`` for the bot user and runs on
    ``cores`` (all the CPUs this process may use when None)."""

    def __init__(self, token: str, cores: set[int] | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_fake_main, args=(child, token, cores), name="fake-gitlab", daemon=True
        )
        self._process.start()
        child.close()
        if not self._conn.poll(START_TIMEOUT):
            self.stop()
            raise SystemExit("the GitLab fake did not start")
        self.url: str = self._conn.recv()

    def call(self, command: str, args: Any) -> Any:
        self._conn.send((command, args))
        return self._conn.recv()

    def add_projects(self, projects: Sequence[tuple[str, Changes]]) -> list[int]:
        """Creates projects (path, changes); returns their ids."""
        return [int(i) for i in self.call("projects", [(path, list(changes)) for path, changes in projects])]

    def add_project(self, path: str, changes: Changes) -> int:
        return self.add_projects([(path, changes)])[0]

    def statuses(self, project_id: int) -> int:
        """imglife/check statuses posted on the project so far."""
        return int(self.call("statuses", project_id))

    def tally(self, project_ids: list[int]) -> dict[str, int]:
        """imglife/check statuses and bot comments on the merge requests of ``project_ids``: in all,
        the heads and merge requests that have any, and those that have more than one."""
        return dict(self.call("tally", project_ids))

    def cpu_seconds(self) -> float:
        """CPU time of the fake's process so far."""
        return float(self.call("cpu", None))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop", None))
            self._process.join(timeout)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout)
        self._conn.close()


# --- deliveries -----------------------------------------------------------------------------------


def merge_request_hook(
    template: dict[str, Any],
    fake_url: str,
    project_id: int,
    path: str,
    *,
    iid: int | str,
    mr_id: int | str,
    sha: str,
) -> dict[str, Any]:
    """A copy of ``template`` (the parsed FIXTURE, GitLab's documented example) made into the
    "open" event of merge request ``iid`` (id ``mr_id``, head commit ``sha``) of the project."""
    payload: dict[str, Any] = json.loads(json.dumps(template))
    web_url = f"{fake_url}/{path}"
    payload["project"].update(
        id=project_id, path_with_namespace=path, default_branch=DEFAULT_BRANCH, web_url=web_url
    )
    attrs = payload["object_attributes"]
    attrs.update(
        id=mr_id,
        iid=iid,
        action="open",
        source_branch=f"feature-{iid}",
        target_branch=DEFAULT_BRANCH,
        source_project_id=project_id,
        target_project_id=project_id,
        url=f"{web_url}/-/merge_requests/{iid}",
    )
    attrs["last_commit"].update(id=sha, url=f"{web_url}/-/commit/{sha}")
    return payload


def hook_headers(fake_url: str, secret: str) -> dict[str, str]:
    """The headers every Merge Request Hook delivery has (not the ids of the delivery)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/18.0.0",
        "X-Gitlab-Event": "Merge Request Hook",
        "X-Gitlab-Token": secret,
        "X-Gitlab-Instance": fake_url,
    }
