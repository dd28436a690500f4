"""`imglife eol update` against an endoflife.date stand-in, and `eol notify` into Slack/webhook receivers."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.records import BuildRecord
from bot.records.local import LocalRecordStore
from tests.fakes.endoflife import FakeEndOfLife
from tests.fakes.webhooks import FakeSlack, FakeWebhookReceiver
from tests.helpers.lifecycle import ALPINE_EOL, ALPINE_LATEST, ALPINE_WARNING, eol_data, write_project

TODAY = dt.datetime.now(dt.UTC).date()


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(environ or {})}
    return main(argv, environ=env, stdout=out, stderr=err), out.getvalue(), err.getvalue()


@pytest.fixture
def endoflife():
    with FakeEndOfLife(products=eol_data(TODAY), today=TODAY) as fake:
        yield fake


def project_using(directory: Path, endoflife: FakeEndOfLife, *, extra: str = "") -> Path:
    config = write_project(directory, TODAY)
    text = config.read_text().replace(
        "  eol_provider: endoflife\n", f"  eol_provider: endoflife\n  endoflife_url: {endoflife.url}\n{extra}"
    )
    config.write_text(text)
    (directory / "eol-data.yaml").unlink()
    return config


# -- eol update ----------------------------------------------------------------------------------


def test_update_writes_every_lifecycle_product_and_reports_changes(tmp_path, endoflife):
    config = project_using(tmp_path, endoflife)
    code, out, err = run(["--config", str(config), "eol", "update"])
    assert code == 0, err
    assert "fetched alpine (3 cycles), go (1 cycles), nodejs (1 cycles); updated" in out
    written = yaml.safe_load((tmp_path / "eol-data.yaml").read_text())
    assert sorted(written) == ["alpine", "go", "nodejs"]
    assert written["alpine"][1] == {
        "cycle": "3.21",
        "eol": (TODAY + dt.timedelta(days=10)).isoformat(),
        "latest": "3.21.3",
        "latestReleaseDate": (TODAY - dt.timedelta(days=200)).isoformat(),
    }
    assert written["go"][0]["eol"] is True
    assert written["nodejs"][0]["eol"] is False
    assert "unchanged" in run(["--config", str(config), "eol", "update"])[1]
    assert endoflife.request_count("GET", r"^/api/alpine\.json$") == 2


def test_update_keeps_hand_maintained_products(tmp_path, endoflife):
    config = project_using(tmp_path, endoflife)
    (tmp_path / "eol-data.yaml").write_text("internal-runtime:\n  - cycle: '7'\n    eol: '2031-01-01'\n")
    assert run(["--config", str(config), "eol", "update"])[0] == 0
    assert "internal-runtime" in yaml.safe_load((tmp_path / "eol-data.yaml").read_text())


def test_dry_run_prints_and_writes_nothing_and_data_file_redirects(tmp_path, endoflife):
    config = project_using(tmp_path, endoflife)
    code, out, _ = run(["--config", str(config), "eol", "update", "--dry-run"])
    assert code == 0
    assert "alpine:" in out
    assert "[dry-run]" in out
    assert not (tmp_path / "eol-data.yaml").exists()
    code, _, _ = run(["--config", str(config), "eol", "update", "--data-file", str(tmp_path / "other.yaml")])
    assert code == 0
    assert (tmp_path / "other.yaml").exists()
    assert not (tmp_path / "eol-data.yaml").exists()


@pytest.mark.parametrize("fault", ["unknown-product", "garbage"])
def test_a_failing_product_fails_the_run_and_leaves_the_file_alone(tmp_path, endoflife, fault):
    config = project_using(tmp_path, endoflife)
    before = "alpine: []\n"
    (tmp_path / "eol-data.yaml").write_text(before)
    if fault == "unknown-product":
        config.write_text(config.read_text().replace("product: go,", "product: no-such-product,"))
        expected = "unknown product 'no-such-product'"
    else:
        endoflife.serve_garbage("nodejs")
        expected = "did not answer a JSON list of cycles"
    code, _, err = run(["--config", str(config), "eol", "update"])
    assert code == 1
    assert expected in err
    assert "Traceback" not in err
    assert (tmp_path / "eol-data.yaml").read_text() == before


def test_a_passing_5xx_is_retried(tmp_path, endoflife):
    config = project_using(tmp_path, endoflife)
    endoflife.fail_next("GET", r"/api/alpine\.json", 503, times=1)
    code, _, err = run(["--config", str(config), "eol", "update"])
    assert code == 0, err
    assert endoflife.request_count("GET", r"^/api/alpine\.json$") == 2


def test_local_provider_makes_no_request(tmp_path, endoflife):
    config = project_using(tmp_path, endoflife)
    config.write_text(config.read_text().replace("eol_provider: endoflife", "eol_provider: local"))
    (tmp_path / "eol-data.yaml").write_text(yaml.safe_dump(eol_data(TODAY)))
    code, out, _ = run(["--config", str(config), "eol", "update"])
    assert code == 0
    assert "eol_provider is local: nothing fetched" in out
    assert endoflife.requests == []
    (tmp_path / "eol-data.yaml").write_text("alpine:\n  - cycle: '3.21'\n    eol: later\n")
    code, _, err = run(["--config", str(config), "eol", "update"])
    assert code == 1
    assert "expected a date YYYY-MM-DD, true or false" in err


def test_package_registry_target_publishes_data_and_config(tmp_path, endoflife):
    config = project_using(tmp_path, endoflife, extra="  eol_target: pkgregistry\n")
    code, out, err = run(["--config", str(config), "eol", "update"])
    assert code == 0, err
    assert "eol-data.yaml, imglife.yaml" in out
    documents = tmp_path / "records" / "imglife"
    assert "alpine" in yaml.safe_load((documents / "eol-data.yaml").read_text())
    assert (documents / "imglife.yaml").read_bytes() == config.read_bytes()
    assert not (tmp_path / "eol-data.yaml").exists()


# -- eol notify ----------------------------------------------------------------------------------

BUILT = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def record(image: str, base: str) -> BuildRecord:
    return BuildRecord(image=image, base=base, revision="r", project="team/x", platforms=(), built_at=BUILT)


@pytest.fixture
def notify_project(tmp_path):
    config = write_project(tmp_path, TODAY)

    async def fill() -> None:
        store = LocalRecordStore(tmp_path / "records")
        for r in (
            record("registry.example.com/apps/api:2.0.0", ALPINE_LATEST),
            record("registry.example.com/apps/billing:4.1.0", ALPINE_WARNING),
            record("registry.example.com/apps/legacy:0.9.0", ALPINE_EOL),
        ):
            await store.put(r)

    asyncio.run(fill())
    return config


@pytest.fixture
def receivers():
    with FakeSlack() as slack, FakeWebhookReceiver() as hook:
        yield slack, hook


def notify_env(slack: FakeSlack, hook: FakeWebhookReceiver) -> dict[str, str]:
    return {"IMGLIFE_SLACK_WEBHOOK_URL": slack.webhook_url, "IMGLIFE_NOTIFY_WEBHOOK_URL": hook.webhook_url}


def test_notify_sends_one_message_per_receiver_with_the_affected_applications(notify_project, receivers):
    slack, hook = receivers
    code, out, err = run(["--config", str(notify_project), "eol", "notify"], notify_env(slack, hook))
    assert code == 0, err
    assert "3 alert(s) sent to 2 of 2 receiver(s)" in out
    (text,) = slack.texts
    assert "registry.example.com/bases/alpine:3.21.3-core1.2.0` — warning" in text
    assert "used by: registry.example.com/apps/billing:4.1.0" in text
    assert "registry.example.com/bases/alpine:3.19.4-core1.2.0` — eol" in text
    assert "registry.example.com/bases/golang:1.23.4-core1.2.0` — eol (date unknown)" in text
    assert "apps/api:2.0.0" not in text  # on a supported tag
    (payload,) = hook.payloads
    assert payload["source"] == "imglife"
    alerts = {a["base"]: a for a in payload["alerts"]}
    assert alerts["registry.example.com/bases/alpine:3.19.4-core1.2.0"]["applications"] == [
        {"image": "registry.example.com/apps/legacy:0.9.0", "project": "team/x", "revision": "r"}
    ]
    assert alerts["registry.example.com/bases/alpine:3.21.3-core1.2.0"]["eol_status"] == "warning"


def test_notify_threshold_eol_skips_warnings(notify_project, receivers):
    slack, hook = receivers
    notify_project.write_text(notify_project.read_text() + "  notify:\n    min_status: eol\n")
    assert run(["--config", str(notify_project), "eol", "notify"], notify_env(slack, hook))[0] == 0
    assert [a["eol_status"] for a in hook.payloads[0]["alerts"]] == ["eol", "eol"]


def test_notify_dry_run_sends_nothing(notify_project, receivers):
    slack, hook = receivers
    code, out, _ = run(
        ["--config", str(notify_project), "eol", "notify", "--dry-run"], notify_env(slack, hook)
    )
    assert code == 0
    assert "[dry-run] Slack message:" in out
    assert slack.texts == []
    assert hook.payloads == []


def test_notify_without_a_receiver_is_a_configuration_error(notify_project):
    code, _, err = run(["--config", str(notify_project), "eol", "notify"])
    assert code == 2
    assert "IMGLIFE_SLACK_WEBHOOK_URL" in err


def test_a_refusing_receiver_fails_the_run_without_showing_the_webhook_secret(notify_project, receivers):
    slack, hook = receivers
    slack.set_error("channel_is_archived")
    code, out, err = run(["--config", str(notify_project), "eol", "notify"], notify_env(slack, hook))
    assert code == 1
    assert "channel_is_archived" in err
    assert slack.webhook_url not in out + err
    assert len(hook.payloads) == 1  # the other receiver still got its message


def test_nothing_to_notify_sends_nothing(tmp_path, receivers):
    slack, hook = receivers
    config = write_project(tmp_path, TODAY)
    healthy = {
        k: [c for c in v if c.get("eol") is False or c["cycle"] == "3.22"] for k, v in eol_data(TODAY).items()
    }
    healthy["go"] = [{"cycle": "1.23", "eol": False}]
    (tmp_path / "eol-data.yaml").write_text(yaml.safe_dump(healthy))
    code, out, _ = run(["--config", str(config), "eol", "notify"], notify_env(slack, hook))
    assert code == 0
    assert "no message sent" in out
    assert slack.texts == []
    assert hook.payloads == []


def test_an_api_that_keeps_failing_fails_the_run(tmp_path, endoflife):
    config = project_using(tmp_path, endoflife)
    endoflife.fail_next("GET", r"/api/go\.json", 500, times=None)
    code, _, err = run(["--config", str(config), "eol", "update"])
    assert code == 1
    assert "api/go.json answered HTTP 500" in err
    assert not (tmp_path / "eol-data.yaml").exists()
