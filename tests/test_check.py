"""`imglife check` as an application pipeline uses it: every JSON field, every exit code, every source."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import io
import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.cli import main
from bot.records.gitlab import GitLabRecordStore
from tests.fakes.gitlab import FakeGitLab
from tests.helpers.lifecycle import (
    ALPINE,
    ALPINE_DEV,
    ALPINE_EOL,
    ALPINE_LATEST,
    ALPINE_OLD_CORE,
    ALPINE_WARNING,
    GOLANG_LATEST,
    NODE_LATEST,
    base_images_config,
    eol_data,
    write_project,
)
from tests.helpers.proxy import FaultProxy

TODAY = dt.datetime.now(dt.UTC).date()
FIELDS = ["base", "latest", "up_to_date", "eol_date", "eol_status", "warnings"]


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(environ or {})}
    return main(argv, environ=env, stdout=out, stderr=err), out.getvalue(), err.getvalue()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "base-images", TODAY)


def check(
    config: Path, base: str, *flags: str, environ: dict[str, str] | None = None
) -> tuple[int, dict, str]:
    code, out, err = run(
        ["--config", str(config), "check", "--base", base, "--output", "json", *flags], environ
    )
    return code, json.loads(out), err


def days(n: int) -> str:
    return (TODAY + dt.timedelta(days=n)).isoformat()


def test_latest_supported_base_passes_even_strict(project):
    code, result, _ = check(project, ALPINE_LATEST, "--strict")
    assert code == 0
    assert list(result) == FIELDS
    assert result == {
        "base": ALPINE_LATEST,
        "latest": ALPINE_LATEST,
        "up_to_date": True,
        "eol_date": days(500),
        "eol_status": "ok",
        "warnings": [],
    }


@pytest.mark.parametrize(("flags", "exit_code"), [((), 0), (("--strict",), 1), (("--warn",), 0)])
def test_outdated_base_is_reported_and_fails_only_under_strict(project, flags, exit_code):
    code, result, _ = check(project, ALPINE_OLD_CORE, *flags)
    assert code == exit_code
    assert result["up_to_date"] is False
    assert result["latest"] == ALPINE_LATEST
    assert result["eol_status"] == "ok"
    assert result["warnings"] == ["base image is outdated: latest is 3.22.1-core1.2.0"]


@pytest.mark.parametrize(
    ("base", "status", "eol_date", "strict_exit"),
    [
        (ALPINE_WARNING, "warning", days(10), 1),  # outdated too: strict fails on that
        (ALPINE_EOL, "eol", days(-300), 1),
        (NODE_LATEST, "ok", None, 0),  # nodejs 22: eol false
        (GOLANG_LATEST, "eol", None, 1),  # go 1.23: eol true, no date
    ],
)
def test_eol_status_and_date_for_every_kind_of_eol_value(project, base, status, eol_date, strict_exit):
    code, result, _ = check(project, base)
    assert code == 0
    assert (result["eol_status"], result["eol_date"]) == (status, eol_date)
    assert check(project, base, "--strict")[0] == strict_exit


def test_warning_alone_does_not_fail_strict_and_names_the_days(tmp_path):
    config = write_project(tmp_path, TODAY)
    # Make 3.21 the latest: then the base is current, and only the EOL window warns.
    config.write_text(config.read_text().replace('version: "3.22.1"}', 'version: "3.21.3"}', 1))
    code, result, _ = check(config, ALPINE_WARNING, "--strict")
    assert code == 0
    assert result["up_to_date"] is True
    assert result["eol_status"] == "warning"
    assert result["warnings"] == [f"alpine 3.21 reaches end of life on {days(10)} (in 10 days)"]


def test_alert_window_comes_from_the_environment(project):
    assert (
        check(project, ALPINE_WARNING, environ={"IMGLIFE_ALERT_CRITICAL_DAYS": "5"})[1]["eol_status"] == "ok"
    )
    assert (
        check(project, ALPINE_LATEST, environ={"IMGLIFE_ALERT_CRITICAL_DAYS": "600"})[1]["eol_status"]
        == "warning"
    )
    code, _, err = run(
        ["--config", str(project), "check", "--base", ALPINE_LATEST], {"IMGLIFE_ALERT_CRITICAL_DAYS": "soon"}
    )
    assert code == 2
    assert "IMGLIFE_ALERT_CRITICAL_DAYS must be a whole number" in err


def test_unknown_base_is_unknown_and_fails_strict_listing_the_known_bases(project):
    code, result, _ = check(project, "registry.example.com/bases/debian:12")
    assert code == 0
    assert result["eol_status"] == "unknown"
    assert (result["latest"], result["up_to_date"], result["eol_date"]) == (None, None, None)
    code, _, err = run(
        ["--config", str(project), "check", "--base", "registry.example.com/bases/debian:12", "--strict"]
    )
    assert code == 1
    assert err.count("imglife: error:") == 1
    for known in (ALPINE, "registry.example.com/bases/node", ALPINE_DEV):
        assert known in err


def test_spe_dev_bases_are_not_eol_checked(project):
    _, result, _ = check(project, f"{ALPINE_DEV}:3.22.1-core1.2.0")
    assert result["eol_status"] == "unknown"
    assert "EOL is not tracked for spe-dev images" in result["warnings"]


def test_missing_cycle_and_missing_data_are_unknown_with_a_reason(project):
    _, result, _ = check(project, f"{ALPINE}:3.18.9-core1.2.0")
    assert result["eol_status"] == "unknown"
    assert "no EOL data for alpine cycle 3.18" in result["warnings"]
    (project.parent / "eol-data.yaml").unlink()
    _, result, _ = check(project, ALPINE_LATEST)
    assert result["eol_status"] == "unknown"
    assert any("run `imglife eol update`" in w for w in result["warnings"])


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("alpine: [\n", "not valid YAML"),
        ("alpine:\n  - cycle: '3.22'\n    eol: someday\n", "expected a date YYYY-MM-DD, true or false"),
        ("- just a list\n", "expected a mapping of product"),
        ("alpine:\n  - eol: '2030-01-01'\n", "cycle: missing"),
    ],
)
def test_malformed_eol_data_is_one_clear_error(project, content, fragment):
    (project.parent / "eol-data.yaml").write_text(content)
    code, out, err = run(["--config", str(project), "check", "--base", ALPINE_LATEST])
    assert code == 1
    assert fragment in err
    assert "eol-data.yaml" in err
    assert "Traceback" not in err
    assert out == ""


def test_text_output_reads_well(project):
    code, out, _ = run(["--config", str(project), "check", "--base", ALPINE_WARNING])
    assert code == 0
    assert out.splitlines()[:3] == [
        f"base     {ALPINE_WARNING}",
        f"latest   {ALPINE_LATEST}  (outdated)",
        f"eol      {days(10)}  (warning)",
    ]
    assert "warning: base image is outdated" in out


@pytest.fixture
def file_server() -> Iterator[tuple[str, dict[str, bytes], list[dict[str, str]]]]:
    """A static HTTP server: path -> bytes; records the headers of each request."""
    files: dict[str, bytes] = {}
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append({k.lower(): v for k, v in self.headers.items()})
            body = files.get(self.path.split("?")[0])
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"not found")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", files, seen
    finally:
        server.shutdown()
        server.server_close()


def test_config_and_eol_data_from_urls(tmp_path, file_server):
    url, files, seen = file_server
    files["/imglife.yaml"] = base_images_config().encode()
    files["/eol-data.yaml"] = yaml.safe_dump(eol_data(TODAY)).encode()
    app_config = tmp_path / "imglife.apps.yaml"
    app_config.write_text("registry:\n  provider: local\n  path: records\n")
    code, result, err = check(
        app_config,
        ALPINE_EOL,
        "--config-url",
        f"{url}/imglife.yaml",
        "--eol-data-url",
        f"{url}/eol-data.yaml",
    )
    assert code == 0, err
    assert (result["latest"], result["eol_status"]) == (ALPINE_LATEST, "eol")
    assert all("authorization" not in h and "private-token" not in h for h in seen)
    code, _, err = run(
        ["--config", str(app_config), "check", "--base", ALPINE_EOL, "--config-url", f"{url}/missing.yaml"]
    )
    assert code == 1
    assert "HTTP 404" in err


def test_application_config_without_build_says_where_to_get_one(tmp_path):
    app_config = tmp_path / "imglife.apps.yaml"
    app_config.write_text("registry:\n  provider: local\n  path: records\n")
    code, _, err = run(["--config", str(app_config), "check", "--base", ALPINE_LATEST])
    assert code == 1
    assert "no base-images configuration" in err
    assert "--config-url" in err


def test_config_and_eol_data_from_the_package_registry(tmp_path):
    token = "glpat-check-" + secrets.token_hex(6)
    with FakeGitLab() as fake:
        fake.add_token(token, "ci")
        project_id = fake.add_project("platform/base-images", members={"ci": 40}).id
        registry = f"registry:\n  provider: gitlab\n  url: {fake.url}\n  project_id: {project_id}\n"
        published = base_images_config(registry=registry).replace(
            "eol_data_file: eol-data.yaml", "eol_target: pkgregistry"
        )

        async def publish() -> None:
            store = GitLabRecordStore(fake.url, project_id, token)
            try:
                await store.write_document("imglife.yaml", published.encode())
                await store.write_document("eol-data.yaml", yaml.safe_dump(eol_data(TODAY)).encode())
            finally:
                await store.aclose()

        asyncio.run(publish())
        app_config = tmp_path / "imglife.apps.yaml"
        app_config.write_text(registry)
        code, result, err = check(app_config, ALPINE_WARNING, environ={"GITLAB_TOKEN": token})
    assert code == 0, err
    assert (result["latest"], result["eol_status"], result["eol_date"]) == (
        ALPINE_LATEST,
        "warning",
        days(10),
    )


async def test_check_never_contacts_an_oci_registry(anon_registry, tmp_path):
    async with FaultProxy(anon_registry) as proxy:
        config = write_project(tmp_path, TODAY)
        config.write_text(config.read_text().replace("registry.example.com", proxy.host))
        base = ALPINE_LATEST.replace("registry.example.com", proxy.host)
        code, out, err = await asyncio.to_thread(
            run, ["--config", str(config), "check", "--base", base, "--output", "json"]
        )
        assert code == 0, err
        assert json.loads(out)["up_to_date"] is True
    assert proxy.requests == []
