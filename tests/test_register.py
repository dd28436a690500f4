"""`imglife register` as CI uses it: detection from real images, the record written, errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import secrets
from pathlib import Path

import pytest

from bot.cli import main
from bot.credentials import env_prefix
from bot.errors import UsageError
from bot.records.local import LocalRecordStore
from handlers.records import purge_plan
from handlers.register import RegisterRequest, parse_fields, parse_platforms, register_build
from tests.helpers.images import build_image, build_index
from tests.helpers.skopeo import push_image

BASE = "registry.example.com/bases/alpine:3.21.3-core1.0.0"
OTHER_BASE = "registry.example.com/bases/alpine:3.20.6-core1.0.0"
BASE_LABEL = "org.opencontainers.image.base.name"


def run(argv: list[str], environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **(environ or {})}
    return main(argv, environ=env, stdout=out, stderr=err), out.getvalue(), err.getvalue()


@pytest.fixture
def local_setup(tmp_path: Path, basic_registry):
    config = tmp_path / "imglife.yaml"
    config.write_text(
        f"registry:\n  provider: local\n  path: records\n  insecure_registries: ['{basic_registry.host}']\n"
    )
    prefix = env_prefix(basic_registry.host)
    environ = {
        "IMGLIFE_CONFIG": str(config),
        f"{prefix}_USERNAME": basic_registry.username,
        f"{prefix}_PASSWORD": basic_registry.password,
    }
    return environ, tmp_path / "records"


def push(registry, image) -> str:
    repo = f"apps/svc-{secrets.token_hex(4)}"
    push_image(registry, f"{repo}:1.2.0", image, registry.creds)
    return f"{registry.host}/{repo}:1.2.0"


def stored(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))]


def test_register_with_everything_given_needs_no_registry(tmp_path):
    config = tmp_path / "imglife.yaml"
    config.write_text("registry: {provider: local, path: records}\n")
    code, out, err = run(
        [
            "--config", str(config), "register",
            "--image", "registry.example.com/apps/myservice:1.2.0",
            "--base", BASE,
            "--revision", "a3f8b1c",
            "--project", "myteam/myservice",
            "--platform", "linux/amd64 linux/arm64",
            "--field", "ci_pipeline_id=123", "--field", "ci_job_url=https://ci.example.com/j/1?a=b",
        ]
    )  # fmt: skip
    assert code == 0, err
    assert "registered registry.example.com/apps/myservice:1.2.0" in out
    (record,) = stored(tmp_path / "records")
    assert record == {
        "image": "registry.example.com/apps/myservice:1.2.0",
        "base": BASE,
        "revision": "a3f8b1c",
        "project": "myteam/myservice",
        "platforms": ["linux/amd64", "linux/arm64"],
        "built_at": record["built_at"],
        "custom_fields": {"ci_pipeline_id": "123", "ci_job_url": "https://ci.example.com/j/1?a=b"},
    }
    built = dt.datetime.strptime(record["built_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    assert abs(dt.datetime.now(dt.UTC) - built) < dt.timedelta(minutes=5)


def test_base_and_platforms_are_detected_from_an_index_config_label(basic_registry, local_setup):
    environ, root = local_setup
    image = push(basic_registry, build_index(labels={BASE_LABEL: BASE}, nonce=secrets.token_hex(4)))
    code, out, err = run(["register", "--image", image, "--revision", "r1", "--project", "t/s"], environ)
    assert code == 0, err
    assert "(config label)" in out
    (record,) = stored(root)
    assert (record["base"], record["platforms"]) == (BASE, ["linux/amd64", "linux/arm64"])


def test_manifest_annotations_win_over_config_labels(basic_registry, local_setup):
    environ, root = local_setup
    image = push(
        basic_registry,
        build_image(labels={BASE_LABEL: OTHER_BASE}, annotations={BASE_LABEL: BASE}, platform="linux/arm/v7"),
    )
    code, out, err = run(["register", "--image", image, "--revision", "r1", "--project", "t/s"], environ)
    assert code == 0, err
    (record,) = stored(root)
    assert record["base"] == BASE
    assert record["platforms"] == ["linux/arm/v7"]
    assert "(manifest annotation)" in out


def test_index_annotations_are_read_first(basic_registry, local_setup):
    environ, root = local_setup
    index = build_index(
        annotations={BASE_LABEL: BASE}, labels={BASE_LABEL: OTHER_BASE}, nonce=secrets.token_hex(4)
    )
    image = push(basic_registry, index)
    assert run(["register", "--image", image, "--revision", "r", "--project", "t/s"], environ)[0] == 0
    assert stored(root)[0]["base"] == BASE


def test_missing_base_label_is_an_error_naming_the_label(basic_registry, local_setup):
    environ, root = local_setup
    image = push(basic_registry, build_image(nonce=secrets.token_hex(4)))
    code, _out, err = run(["register", "--image", image, "--revision", "r", "--project", "t/s"], environ)
    assert code == 1
    assert f"no {BASE_LABEL} annotation or label" in err
    assert "--base" in err
    assert stored(root) == []


def test_missing_image_is_an_error_and_writes_nothing(basic_registry, local_setup):
    environ, root = local_setup
    missing = f"{basic_registry.host}/apps/never-pushed:9.9.9"
    code, _, err = run(["register", "--image", missing, "--revision", "r", "--project", "t/s"], environ)
    assert code == 1
    assert "is not in its registry" in err
    assert "Traceback" not in err
    assert stored(root) == []


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--field", "novalue"], "--field 'novalue'"),
        (["--field", "=v"], "--field '=v'"),
        (["--platform", "linux"], "--platform 'linux'"),
        (["--image", "registry.example.com/apps/x"], "needs a tag"),
        (["--image", "Bad/Ref:1"], "invalid image reference"),
        (["--base", "no good"], "invalid image reference"),
    ],
)
def test_bad_arguments_exit_2_and_write_nothing(tmp_path, args, fragment):
    config = tmp_path / "imglife.yaml"
    config.write_text("registry: {provider: local, path: records}\n")
    base_args = {"--image": "registry.example.com/apps/x:1", "--base": BASE, "--platform": "linux/amd64"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base_args[flag] = value
    argv = ["--config", str(config), "register", "--revision", "r", "--project", "t/s"]
    for flag, value in base_args.items():
        argv += [flag, value]
    if args[0] == "--field":
        argv += args
    code, _out, err = run(argv)
    assert code == 2
    assert fragment in err
    assert not (tmp_path / "records").exists()


def test_dry_run_prints_the_record_and_writes_nothing(tmp_path):
    config = tmp_path / "imglife.yaml"
    config.write_text("registry: {provider: local, path: records}\n")
    code, out, _ = run(
        ["--config", str(config), "register", "--dry-run", "--output", "json", "--image", "r.io/a:1",
         "--base", BASE, "--platform", "linux/amd64", "--revision", "r", "--project", "t/s"]
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["image"] == "r.io/a:1"
    assert not (tmp_path / "records").exists()


def test_registering_again_replaces_the_record(tmp_path):
    config = tmp_path / "imglife.yaml"
    config.write_text("registry: {provider: local, path: records}\n")
    common = [
        "--config",
        str(config),
        "register",
        "--image",
        "r.io/a:1",
        "--platform",
        "linux/amd64",
        "--project",
        "t/s",
    ]
    assert run([*common, "--base", OTHER_BASE, "--revision", "old"])[0] == 0
    code, out, _ = run([*common, "--base", BASE, "--revision", "new"])
    assert code == 0
    assert "replaces" in out
    (record,) = stored(tmp_path / "records")
    assert (record["base"], record["revision"]) == (BASE, "new")


async def test_concurrent_registrations_of_one_image_end_with_one_record(tmp_path):
    store = LocalRecordStore(tmp_path)
    now = dt.datetime.now(dt.UTC)
    requests = [
        RegisterRequest(
            image="r.io/a:1", revision=f"r{i}", project="t/s", base=BASE, platforms=("linux/amd64",)
        )
        for i in range(10)
    ]
    await asyncio.gather(*(register_build(r, store=store, images=None, now=now) for r in requests))
    scan = await store.scan()
    assert len(scan.records) == 1
    assert scan.problems == []
    assert scan.records[0].revision in {f"r{i}" for i in range(10)}


def test_field_and_platform_parsing():
    assert parse_fields(["a=1", "b.c=x=y", "d="]) == {"a": "1", "b.c": "x=y", "d": ""}
    assert parse_platforms(" linux/amd64,linux/arm64  linux/arm/v7 ") == (
        "linux/amd64",
        "linux/arm64",
        "linux/arm/v7",
    )
    with pytest.raises(UsageError):
        parse_fields(["9x=1"])


# -- purge policy --------------------------------------------------------------------------------


def make_records(spec: dict[str, list[int]], now: dt.datetime):
    from bot.records import BuildRecord

    return [
        BuildRecord(
            image=f"r.io/{repo}:{age}d",
            base=BASE,
            revision="r",
            project="p",
            platforms=(),
            built_at=now - dt.timedelta(days=age),
        )
        for repo, ages in spec.items()
        for age in ages
    ]


@pytest.mark.parametrize(
    ("older_than", "keep_last", "expected"),
    [
        (30, None, {"a:40d", "a:90d", "b:31d"}),
        (None, 2, {"a:40d", "a:90d"}),
        (30, 3, {"a:90d"}),
        (0, 0, {"a:1d", "a:10d", "a:40d", "a:90d", "b:31d", "b:2d"}),
    ],
)
def test_purge_keeps_the_newest_per_repository_and_drops_the_old(older_than, keep_last, expected):
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    records = make_records({"a": [1, 10, 40, 90], "b": [2, 31]}, now)
    doomed = purge_plan(records, now=now, older_than_days=older_than, keep_last=keep_last)
    assert {r.image.removeprefix("r.io/") for r in doomed} == expected


def test_purge_without_a_policy_is_a_usage_error():
    with pytest.raises(UsageError, match="--older-than-days"):
        purge_plan([], now=dt.datetime.now(dt.UTC), older_than_days=None, keep_last=None)


def test_app_list_and_purge_through_the_cli(tmp_path):
    config = tmp_path / "imglife.yaml"
    config.write_text("registry: {provider: local, path: records}\n")
    for tag in ("1", "2", "3"):
        assert run(["--config", str(config), "register", "--image", f"r.io/a:{tag}", "--base", BASE,
                    "--platform", "linux/amd64", "--revision", tag, "--project", "t/s"])[0] == 0  # fmt: skip
    code, out, _ = run(["--config", str(config), "app", "list", "--output", "json"])
    assert code == 0
    assert [r["image"] for r in json.loads(out)] == ["r.io/a:1", "r.io/a:2", "r.io/a:3"]
    code, out, _ = run(["--config", str(config), "app", "purge", "--keep-last", "1", "--dry-run"])
    assert code == 0
    assert "[dry-run] 2 would purge, 1 kept" in out
    assert len(stored(tmp_path / "records")) == 3
    code, out, _ = run(["--config", str(config), "app", "purge", "--keep-last", "1"])
    assert "2 purged, 1 kept, 0 errors" in out
    assert len(stored(tmp_path / "records")) == 1
    code, out, _ = run(["--config", str(config), "app", "list"])
    assert "IMAGE" in out
    assert out.count("r.io/a:") == 1


def test_app_list_reports_unreadable_records_and_exits_1(tmp_path):
    config = tmp_path / "imglife.yaml"
    config.write_text("registry: {provider: local, path: records}\n")
    bad = tmp_path / "records" / "records" / "r.io" / "a" / "1.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    code, _out, err = run(["--config", str(config), "app", "list"])
    assert code == 1
    assert "not JSON" in err
    assert str(bad) in err
