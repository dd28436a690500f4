"""`imglife serve` as a subprocess, and signed webhook deliveries built from the documented fixtures.

The bot runs exactly as deployed (the console script, a config file, secrets and tokens in the
environment) on a free loopback port, and is driven only over HTTP. Deliveries start from the
forges' documented example payloads in ``tests/fixtures/webhooks`` with the fields a test cares
about replaced, so they keep every other field a real forge sends.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import secrets
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx

from tests.helpers.images import build_image
from tests.helpers.lifecycle import ALPINE_LATEST, REGISTRY, write_project
from tests.helpers.procs import ManagedProcess, free_port, wait_until
from tests.helpers.secrets import register_secret_env, register_test_secret
from tests.helpers.skopeo import push_image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
IMGLIFE = Path(sys.executable).with_name("imglife")
GITLAB_SECRET = register_test_secret("gl-e2e-secret-41c9", "tests/helpers/bot.py GITLAB_SECRET")
GITEA_SECRET = register_test_secret("gt-e2e-secret-7d02", "tests/helpers/bot.py GITEA_SECRET")
GITLAB_EVENTS = {
    "tag_push": "Tag Push Hook",
    "merge_request": "Merge Request Hook",
    "note": "Note Hook",
    "pipeline": "Pipeline Hook",
    "push": "Push Hook",
}
JOB_LINE = re.compile(
    r'^imglife_jobs_total\{handler="(?P<handler>[^"]+)",outcome="(?P<outcome>[^"]+)"\} (?P<n>\S+)$'
)


BASE_LABEL = "org.opencontainers.image.base.name"
MARKER = "<!-- imglife:check -->"


def sha(n: int) -> str:
    """A full commit sha made from a number (the fakes take any 40-hex sha as a commit)."""
    return f"{n:040x}"


@dataclass
class AppWorld:
    """What both forges' end-to-end tests share: the registry, the project's image, the records."""

    registry: Any
    image_repo: str  # host/apps/app-xxxx: what .imglife.yml lists
    records: Path
    upstream: str  # host/up-xxxx: where the sync entries' sources are
    mirrors: str  # host/mirrors-xxxx: where they are mirrored to

    @classmethod
    def names(cls, registry: Any) -> dict[str, str]:
        """Repository names no other test uses on the shared registry."""
        nonce = secrets.token_hex(4)
        host = registry.host
        return {
            "image_repo": f"{host}/apps/app-{nonce}",
            "upstream": f"{host}/up-{nonce}",
            "mirrors": f"{host}/mirrors-{nonce}",
        }

    def push_app_image(self, tag: str, base: str = ALPINE_LATEST) -> None:
        image = build_image(labels={BASE_LABEL: base}, nonce=secrets.token_hex(4))
        push_image(self.registry, f"{self.image_repo.split('/', 1)[1]}:{tag}", image, self.registry.creds)

    def stored_records(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.records.rglob("*.json"))]


def bot_config(tmp_path: Path, registry: Any, names: dict[str, str], forge_block: str) -> Path:
    """A base-images imglife.yaml with a local record store, plus ``forge_block`` under ``bot:``.

    Its sync entries mirror ``names["upstream"]`` into ``names["mirrors"]`` on ``registry``; the
    base images are on ``names["bases"]`` when given, else on the unreachable example registry.
    """
    store = f"registry:\n  provider: local\n  path: records\n  insecure_registries: ['{registry.host}']\n"
    config = write_project(
        tmp_path,
        registry=store,
        upstream=names["upstream"],
        mirrors=names["mirrors"],
        bases=names.get("bases", f"{REGISTRY}/bases"),
    )
    config.write_text(config.read_text() + "bot:\n" + forge_block)
    return config


def fixture(forge: str, name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / forge / f"{name}.json").read_text())
    return copy.deepcopy(payload)


class RunningBot:
    def __init__(self, proc: ManagedProcess, url: str) -> None:
        self.proc = proc
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10.0)

    def deliver_gitlab(
        self, payload: Mapping[str, Any], *, idempotency_key: str | None = None, secret: str = GITLAB_SECRET
    ) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "X-Gitlab-Event": GITLAB_EVENTS[str(payload["object_kind"])],
            "X-Gitlab-Token": secret,
            "X-Gitlab-Webhook-UUID": str(uuid.uuid4()),
        }
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return self.http.post("/webhooks/gitlab", content=json.dumps(payload).encode(), headers=headers)

    def deliver_gitea(
        self,
        event: str,
        payload: Mapping[str, Any],
        *,
        secret: str = GITEA_SECRET,
        family: str = "Gitea",
        form: bool = False,
    ) -> httpx.Response:
        """Post ``payload`` as Gitea does; ``family="Forgejo"`` sends only the ``X-Forgejo-*``
        headers, ``form=True`` the ``payload=<json>`` form body (still signed over the JSON)."""
        body = json.dumps(payload).encode()
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            f"X-{family}-Event": event,
            f"X-{family}-Event-Type": event,
            f"X-{family}-Delivery": str(uuid.uuid4()),
            f"X-{family}-Signature": signature,
        }
        if form:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = b"payload=" + quote_plus(body.decode()).encode()
        return self.http.post("/webhooks/gitea", content=body, headers=headers)

    def jobs(self) -> dict[tuple[str, str], int]:
        """Finished jobs by (handler, outcome), from /metrics."""
        counts: dict[tuple[str, str], int] = {}
        for line in self.http.get("/metrics").text.splitlines():
            match = JOB_LINE.match(line)
            if match:
                counts[(match["handler"], match["outcome"])] = int(float(match["n"]))
        return counts

    def wait_for_jobs(self, handler: str, count: int, *, timeout: float = 20.0) -> dict[str, int]:
        """Wait until ``count`` jobs of ``handler`` have finished; returns their outcomes."""

        def outcomes() -> dict[str, int]:
            return {o: n for (h, o), n in self.jobs().items() if h == handler}

        wait_until(
            lambda: sum(outcomes().values()) >= count,
            timeout=timeout,
            what=f"{count} {handler} job(s)",
            proc=self.proc,
            interval=0.05,
        )
        return outcomes()

    def wait_for(self, check: Callable[[], bool], what: str, *, timeout: float = 20.0) -> None:
        wait_until(check, timeout=timeout, what=what, proc=self.proc, interval=0.05)

    def log(self) -> list[dict[str, Any]]:
        """The bot's JSON log lines so far."""
        lines = []
        for line in self.proc.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines


@contextmanager
def run_bot(config: Path, environ: Mapping[str, str], *, log_dir: Path) -> Iterator[RunningBot]:
    """Start ``imglife serve`` on a free port; stop it by PID (SIGTERM) when the block ends."""
    port = free_port()
    register_secret_env(environ, "imglife serve environment")  # tokens, secrets, passwords
    env = {"PATH": "/usr/bin:/bin", "HOME": str(log_dir), **environ}
    argv = [str(IMGLIFE), "--config", str(config), "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = ManagedProcess(argv, log_path=log_dir / f"imglife-serve-{port}.log", env=env)
    bot = RunningBot(proc, f"http://127.0.0.1:{port}")
    try:
        wait_until(
            lambda: bot.http.get("/readyz").status_code == 200, timeout=20, what="imglife serve", proc=proc
        )
        yield bot
    finally:
        bot.http.close()
        proc.stop(grace=10)
