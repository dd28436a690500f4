"""The command line as a user meets it: help, --check, inspect, exit codes, clean errors, no secrets."""

from __future__ import annotations

import io
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.credentials import env_prefix
from tests.helpers.images import build_index
from tests.helpers.registry import start_registry
from tests.helpers.skopeo import push_image

REPO_ROOT = Path(__file__).parent.parent
EXAMPLES = REPO_ROOT / "examples"
BASE = "registry.example.com/bases/alpine:3.21.3-core1.0.0"


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(environ or {})}
    code = main(argv, environ=env, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def local_config(tmp_path: Path, *insecure: str) -> Path:
    path = tmp_path / "imglife.yaml"
    hosts = "".join(f"\n    - {host}" for host in insecure)
    path.write_text(
        f"registry:\n  provider: local\n  path: records\n  insecure_registries:{hosts or ' []'}\n"
    )
    return path


def test_help_lists_only_commands_that_work():
    code, out, _ = run(["--help"])
    assert code == 0
    commands_section = out.split("COMMAND\n", 1)[1]
    listed = [line.split()[0] for line in commands_section.splitlines() if re.match(r"^ {4}\w", line)]
    assert listed == ["check", "register", "sync", "cleanup", "status", "eol", "app", "inspect", "serve"]
    assert "--check" in out
    assert "--log-format" in out


def test_python_dash_m_bot_is_the_same_program():
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--version"], capture_output=True, text=True, check=False, cwd=REPO_ROOT
    )
    assert result.returncode == 0
    assert result.stdout.startswith("imglife ")


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("imglife*.yaml")))
def test_check_accepts_every_example(example):
    code, out, _ = run(["--config", str(EXAMPLES / example), "--check"])
    assert code == 0, out
    assert "configuration is valid" in out


def test_check_lists_every_problem_with_file_line_and_key_path(tmp_path):
    config = tmp_path / "imglife.yaml"
    config.write_text(
        "registry:\n"
        "  provider: local\n"
        "sync:\n"
        "  entries:\n"
        "    - source: docker.io/library/alpine\n"
        "      target: registry.example.com/mirrors/alpine\n"
        "      tga: '3.21'\n"
        "    - source: docker.io/library/golang\n"
        "      target: registry.example.com/mirrors/golang\n"
        "      tag_regex: '^(1\\.'\n"
    )
    code, out, _ = run(["--check"], {"IMGLIFE_CONFIG": str(config)})
    assert code == 1
    assert f"{config}:7:7: sync.entries[0].tga: unknown key 'tga'" in out
    assert "did you mean 'tag'?" in out
    assert f"{config}:10:7: sync.entries[1].tag_regex: invalid regular expression" in out
    assert "problems" in out


def test_config_precedence_flag_over_environment_over_working_directory(tmp_path, monkeypatch):
    good = local_config(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("registry: {provider: nope}\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imglife.yaml").write_text("registry: {provider: local, bogus: 1}\n")
    assert run(["--check", "--config", str(good.with_name("x.yaml"))])[0] == 1
    good.with_name("flag.yaml").write_text("registry: {provider: local}\n")
    assert run(["--check", "--config", str(tmp_path / "flag.yaml")], {"IMGLIFE_CONFIG": str(bad)})[0] == 0
    assert run(["--check"], {"IMGLIFE_CONFIG": str(bad)})[0] == 1
    code, out, _ = run(["--check"])
    assert code == 1
    assert "bogus" in out


def test_missing_config_file_is_named(tmp_path):
    code, out, _ = run(["--check", "--config", str(tmp_path / "nowhere.yaml")])
    assert code == 1
    assert "nowhere.yaml" in out


def test_invalid_config_for_a_command_exits_2_in_one_clean_message(tmp_path):
    config = tmp_path / "imglife.yaml"
    config.write_text("registry:\n  provider: s3\n")
    code, out, err = run(["inspect", "--config", str(config), "alpine"])
    assert code == 2
    assert "registry.bucket" in err or "bucket" in err
    assert "Traceback" not in err + out


def test_global_options_work_before_and_after_the_command(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text("registry: {provider: s3}\n")
    assert run(["--config", str(config), "inspect", "alpine"])[0] == 2
    assert run(["inspect", "--config", str(config), "alpine"])[0] == 2


@pytest.mark.parametrize("reference", ["Alpine:3", "r.io/app@sha256:123", "https://r.io/x", "r.io/a:-x"])
def test_malformed_reference_exits_2(reference):
    code, out, err = run(["inspect", reference])
    assert code == 2
    assert err.startswith("imglife: error: invalid")
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_unknown_flag_is_a_usage_error():
    code, _, err = run(["--no-such-flag"])
    assert code == 2
    assert "unrecognized arguments" in err


@pytest.fixture(scope="module")
def labelled_index(basic_registry):
    index = build_index(
        labels={"org.opencontainers.image.base.name": BASE},
        nonce=secrets.token_hex(4),
    )
    repo = f"cli/inspect-{secrets.token_hex(3)}"
    push_image(basic_registry, f"{repo}:1.2.0", index, basic_registry.creds)
    return repo, index


def registry_env(registry, password: str | None = None) -> dict[str, str]:
    prefix = env_prefix(registry.host)
    return {f"{prefix}_USERNAME": registry.username, f"{prefix}_PASSWORD": password or registry.password}


def test_inspect_describes_an_index_with_env_credentials(basic_registry, labelled_index, tmp_path):
    repo, index = labelled_index
    config = local_config(tmp_path, basic_registry.host)
    ref = f"{basic_registry.host}/{repo}:1.2.0"
    code, out, err = run(["--config", str(config), "inspect", ref], registry_env(basic_registry))
    assert code == 0, err
    assert index.digest in out
    assert "linux/amd64 linux/arm64" in out
    assert f"{BASE}  [config label]" in out

    code, out, _ = run(
        ["--config", str(config), "inspect", "--output", "json", ref], registry_env(basic_registry)
    )
    data = json.loads(out)
    assert data["digest"] == index.digest
    assert data["platforms"] == ["linux/amd64", "linux/arm64"]
    assert data["base"] == {"name": BASE, "digest": None, "source": "config label"}

    code, out, _ = run(["--config", str(config), "inspect", "--raw", ref], registry_env(basic_registry))
    assert out.encode().rstrip(b"\n") == index.manifest


def test_refused_credentials_exit_1_naming_the_variable_and_never_the_secret(
    basic_registry, labelled_index, tmp_path
):
    repo, _ = labelled_index
    wrong = f"zz-wrong-secret-{secrets.token_hex(8)}"
    config = local_config(tmp_path, basic_registry.host)
    code, out, err = run(
        [
            "--config",
            str(config),
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "inspect",
            f"{basic_registry.host}/{repo}:1.2.0",
        ],
        registry_env(basic_registry, wrong),
    )
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("imglife: error:")]
    assert len(errors) == 1
    assert (
        f"{env_prefix(basic_registry.host)}_USERNAME/{env_prefix(basic_registry.host)}_PASSWORD" in errors[0]
    )
    assert wrong not in out + err
    assert basic_registry.password not in out + err
    assert "Traceback" not in err


def test_unreachable_registry_exits_1(tmp_path):
    with start_registry("anon") as registry:
        host = registry.host
    config = local_config(tmp_path, host)
    code, out, err = run(["--config", str(config), "inspect", f"{host}/some/app:1"])
    assert (code, out) == (1, "")
    assert f"cannot reach registry {host}" in err
    assert "Traceback" not in err


def test_tls_failure_on_a_host_not_listed_as_insecure_exits_1(anon_registry, tmp_path):
    code, _, err = run(
        ["--config", str(local_config(tmp_path)), "inspect", f"{anon_registry.host}/some/app:1"]
    )
    assert code == 1
    assert "TLS" in err
    assert "registry.insecure_registries" in err


def test_json_logs_are_valid_json_lines_with_secrets_masked(basic_registry, labelled_index, tmp_path):
    repo, _ = labelled_index
    config = local_config(tmp_path, basic_registry.host)
    code, out, err = run(
        [
            "--config",
            str(config),
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "inspect",
            f"{basic_registry.host}/{repo}:1.2.0",
        ],
        registry_env(basic_registry),
    )
    assert code == 0
    events = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert any(e["event"] == "registry_request" for e in events)
    assert basic_registry.password not in err + out
