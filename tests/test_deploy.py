"""The deployment files of deploy/: each is parsed and checked against what it deploys.

No container engine, cluster or systemd runs here: the Containerfile is parsed instruction by
instruction, the Kubernetes manifests are parsed with PyYAML (and rendered with the real
``kubectl kustomize`` where kubectl exists, with and without the optional components), the systemd
units are parsed with configparser (and checked with ``systemd-analyze verify`` where it exists), the
Redis command lines of the Kubernetes component and of compose are run by a real ``redis-server``
where one is installed, and every ``imglife`` command line in the files is parsed by the real CLI
parser. The last tests scan bot/ and handlers/ for every environment variable the code reads and
require each to be documented for Kubernetes and in the docs.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bot.cli import build_parser
from bot.config.loader import parse_config
from bot.credentials.registry import env_prefix

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
REDIS_COMPONENT = KUBE / "redis"
CONTAINERFILE = DEPLOY / "Containerfile"
UNIT = DEPLOY / "imglife.service"
TEMPLATE_UNIT = DEPLOY / "imglife@.service"
COMPOSE = DEPLOY / "compose.yaml"
BOT_UID = 10001
DRAIN_SECONDS = 30  # bot.drain_timeout's default: after SIGTERM, running jobs get up to 30 s
# Redis mode's environment: the URL (overrides bot.redis_url, never with credentials), AUTH's password
# and Redis 6+ ACL user. Checked by name too, so their documentation does not hang on the scan below.
REDIS_VARIABLES = ("IMGLIFE_REDIS_URL", "IMGLIFE_REDIS_PASSWORD", "IMGLIFE_REDIS_USERNAME")


def parse_cli(argv: list[str]) -> Any:
    """Parse ``argv`` (without the leading ``imglife``) with the real parser; fail on a usage error."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage
        pytest.fail(f"imglife {shlex.join(argv)}: not accepted by the CLI parser (exit {exc.code})")


# --- Containerfile ----------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_containerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Instructions (continuation lines joined, comments dropped), global ARG defaults, stages."""
    instructions: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, args = whole.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the file ends inside a continued instruction"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            words = [w for w in words if not w.startswith("--platform")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert instruction.keyword == "ARG", f"line {instruction.line}: only ARG may precede FROM"
            key, _, default = instruction.args.partition("=")
            global_args[key] = default
        else:
            stages[-1].instructions.append(instruction)
    return global_args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_containerfile(CONTAINERFILE.read_text())[1]


def test_containerfile_is_multi_stage_on_python_slim(stages: list[Stage]) -> None:
    assert len(stages) == 2
    builder, final = stages
    assert builder.name == "builder"
    assert builder.base == final.base == "python:3.11-slim"
    build = " ".join(i.args for i in builder.all("RUN"))
    assert "pip wheel" in build
    assert "--no-index" in build, "the venv is installed from the built wheels only"
    # The build context copies what pyproject.toml needs to build the wheel.
    copied = {word for i in builder.all("COPY") for word in i.args.split()[:-1]}
    assert {"pyproject.toml", "README.md", "bot", "handlers"} <= copied
    for path in copied:
        assert (ROOT / path).exists(), path


def test_containerfile_final_stage_has_no_build_tools(stages: list[Stage]) -> None:
    final = stages[-1]
    for run in final.all("RUN"):
        assert not re.search(r"\b(apt-get|apt|apk|dnf|yum)\b.*\binstall\b", run.args), run.args
        assert not re.search(r"\b(gcc|g\+\+|make|build-essential|pip)\b", run.args), run.args
    copies = final.all("COPY") + final.all("ADD")
    assert copies, "the final stage copies the installed package"
    for copy in copies:
        assert copy.keyword == "COPY"
        assert copy.args.startswith("--from=builder "), f"line {copy.line}: copies only from the builder"


def test_containerfile_runtime_settings(stages: list[Stage]) -> None:
    final = stages[-1]
    keywords = [i.keyword for i in final.instructions]
    users = final.all("USER")
    assert users
    assert users[-1].args.split(":")[0] == str(BOT_UID)
    assert keywords.index("USER") < keywords.index("ENTRYPOINT"), "USER is set before ENTRYPOINT"
    assert final.all("EXPOSE")[-1].args == "8080"
    assert json.loads(final.all("ENTRYPOINT")[-1].args) == ["imglife"]
    command = json.loads(final.all("CMD")[-1].args)
    assert command == ["serve"]
    parse_cli(command)
    env = " ".join(i.args for i in final.all("ENV"))
    assert "IMGLIFE_CONFIG=/etc/imglife/imglife.yaml" in env
    assert "PATH=/opt/imglife/bin:" in env
    assert "useradd --system --uid 10001" in " ".join(i.args for i in final.all("RUN"))

    healthcheck = final.all("HEALTHCHECK")[-1].args
    exec_form = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert exec_form[:2] == ["python", "-c"]
    assert "urllib.request" in exec_form[2]
    assert "http://127.0.0.1:8080/healthz" in exec_form[2]
    compile(exec_form[2], "HEALTHCHECK", "exec")
    assert final.all("STOPSIGNAL")[-1].args == "SIGTERM"


# --- Kubernetes -------------------------------------------------------------------------------------


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> object, for every resource the kustomization lists."""
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for doc in load_documents(KUBE / resource):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects


def container(manifests: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    containers = manifests["Deployment", "imglife"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]  # type: ignore[no-any-return]


def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in KUBE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk - {"secret.example.yaml"}
    assert "components" not in kustomization, "the ServiceMonitor and Redis are off by default"
    for name in ("servicemonitor", "redis"):
        component = yaml.safe_load((KUBE / name / "kustomization.yaml").read_text())
        assert component["kind"] == "Component"
        listed = set(component["resources"]) | {patch["path"] for patch in component.get("patches", [])}
        assert listed == {p.name for p in (KUBE / name).glob("*.yaml")} - {"kustomization.yaml"}


def test_deployment_runs_one_non_root_replica_with_probes(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    deployment = manifests["Deployment", "imglife"]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert "replicas: 1" in (KUBE / "deployment.yaml").read_text()
    assert "redis_url" in (KUBE / "deployment.yaml").read_text(), "the comment says why one replica"
    assert "without Redis" in (KUBE / "deployment.yaml").read_text()
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == BOT_UID

    main = container(manifests)
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http": 8080}
    args = parse_cli(main["args"])
    assert (args.config, args.host, args.port) == ("/etc/imglife/imglife.yaml", "0.0.0.0", 8080)  # noqa: S104
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert set(main["resources"]) == {"requests", "limits"}

    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/imglife"]["readOnly"] is True
    config_volume = volumes[mounts["/etc/imglife"]["name"]]
    assert (("ConfigMap", config_volume["configMap"]["name"])) in manifests


def test_environment_comes_from_a_configmap_and_the_secret(
    manifests: dict[tuple[str, str], dict[str, Any]],
) -> None:
    sources = container(manifests)["envFrom"]
    assert sources[-1] == {"secretRef": {"name": "imglife"}}, "the Secret comes last and wins"
    for source in sources[:-1]:
        assert ("ConfigMap", source["configMapRef"]["name"]) in manifests
    assert "env" not in container(manifests), "explicit env would shadow the Secret's keys"
    secret = load_documents(KUBE / "secret.example.yaml")
    assert [(d["kind"], d["metadata"]["name"]) for d in secret] == [("Secret", "imglife")]
    for value in manifests["ConfigMap", "imglife-env"]["data"].values():
        assert isinstance(value, str), "ConfigMap values are strings"


def test_configmap_holds_a_valid_imglife_yaml(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    text = manifests["ConfigMap", "imglife-config"]["data"]["imglife.yaml"]
    config = parse_config(text, "configmap.yaml:imglife.yaml", Path("/etc/imglife"))
    assert config.bot.redis_url is None
    assert config.bot.port == 8080


def test_service_and_servicemonitor_select_the_pod(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    service = manifests["Service", "imglife"]
    pod_labels = manifests["Deployment", "imglife"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    (monitor,) = load_documents(KUBE / "servicemonitor" / "servicemonitor.yaml")
    assert monitor["kind"] == "ServiceMonitor"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


def overlay(tmp_path: Path, *components: str) -> Path:
    """An overlay of deploy/kubernetes with ``components`` (directory names under it) turned on."""
    directory = tmp_path / "overlay"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize wants relative paths to other kustomizations
                "resources": [os.path.relpath(KUBE, directory)],
                "components": [os.path.relpath(KUBE / name, directory) for name in components],
            }
        )
    )
    return directory


def test_kubectl_kustomize_renders_the_manifests_and_the_servicemonitor_toggle(tmp_path: Path) -> None:
    rendered = kustomize(KUBE)
    kinds = sorted(doc["kind"] for doc in rendered)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "Service", "ServiceAccount"]
    deployment = next(doc for doc in rendered if doc["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1

    with_monitor = kustomize(overlay(tmp_path, "servicemonitor"))
    monitors = [doc for doc in with_monitor if doc["kind"] == "ServiceMonitor"]
    assert len(monitors) == 1
    assert monitors[0]["metadata"]["labels"]["app.kubernetes.io/name"] == "imglife"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_kubectl_kustomize_renders_the_redis_component(tmp_path: Path) -> None:
    rendered = kustomize(overlay(tmp_path, "redis"))
    objects = {(doc["kind"], doc["metadata"]["name"]): doc for doc in rendered}
    assert set(objects) == {
        ("ServiceAccount", "imglife"),
        ("ConfigMap", "imglife-config"),
        ("ConfigMap", "imglife-env"),
        ("Deployment", "imglife"),
        ("Service", "imglife"),
        ("Service", "imglife-redis"),
        ("StatefulSet", "imglife-redis"),
        ("NetworkPolicy", "imglife-redis"),
        ("PodDisruptionBudget", "imglife"),
    }

    # The bot: several replicas, still draining within the grace period, pointed at the Redis Service.
    deployment = objects["Deployment", "imglife"]
    assert deployment["spec"]["replicas"] > 1
    pod = deployment["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > DRAIN_SECONDS
    (bot,) = pod["containers"]
    assert bot["envFrom"][-1] == {"secretRef": {"name": "imglife"}}, "the patch keeps the Secret"
    assert bot["readinessProbe"]["httpGet"]["path"] == "/readyz", "503 until Redis was reached"
    env = {e["name"]: e for e in bot["env"]}
    url = urlsplit(env["IMGLIFE_REDIS_URL"]["value"])
    assert url.scheme == "redis"
    assert (url.username, url.password) == (None, None), "no credentials in the URL"
    redis_service = objects["Service", url.hostname]
    assert url.port == redis_service["spec"]["ports"][0]["port"]
    assert "IMGLIFE_REDIS_PASSWORD" not in env, "the bot reads the password from the Secret"

    # The Service reaches the Redis pod and only it; the bot's Service never selects Redis.
    bot_labels = deployment["spec"]["template"]["metadata"]["labels"]
    statefulset = objects["StatefulSet", "imglife-redis"]
    redis_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert _selects(redis_service["spec"]["selector"], redis_labels)
    assert not _selects(redis_service["spec"]["selector"], bot_labels)
    assert not _selects(objects["Service", "imglife"]["spec"]["selector"], redis_labels)
    assert statefulset["spec"]["serviceName"] == "imglife-redis"
    (redis,) = statefulset["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in redis["ports"]}
    assert ports[redis_service["spec"]["ports"][0]["targetPort"]] == url.port

    # Only the bot's pods may connect to Redis; node drains take one bot replica at a time.
    policy = objects["NetworkPolicy", "imglife-redis"]["spec"]
    assert _selects(policy["podSelector"]["matchLabels"], redis_labels)
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert _selects(peer["podSelector"]["matchLabels"], bot_labels)
    assert not _selects(peer["podSelector"]["matchLabels"], redis_labels)
    budget = objects["PodDisruptionBudget", "imglife"]["spec"]
    assert _selects(budget["selector"]["matchLabels"], bot_labels)
    assert not _selects(budget["selector"]["matchLabels"], redis_labels)
    assert budget.get("maxUnavailable") == 1 or budget.get("minAvailable", 0) < deployment["spec"]["replicas"]


def _redis_statefulset() -> dict[str, Any]:
    docs = {doc["kind"]: doc for doc in load_documents(REDIS_COMPONENT / "statefulset.yaml")}
    return docs["StatefulSet"]


def test_redis_statefulset_persists_and_requires_the_secrets_password() -> None:
    statefulset = _redis_statefulset()
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    (redis,) = pod["containers"]
    assert redis["image"] == "redis:7-alpine"
    assert redis["securityContext"]["readOnlyRootFilesystem"] is True
    assert redis["securityContext"]["allowPrivilegeEscalation"] is False
    assert redis["securityContext"]["capabilities"]["drop"] == ["ALL"]

    shell, flag, script = redis["args"]
    assert (shell, flag) == ("sh", "-c")
    assert "$(" not in script, "Kubernetes would expand $(...) itself, empty or not"
    words = shlex.split(script.replace("${", "{"))  # the shell's expansion, as text
    assert words[:2] == ["exec", "redis-server"]
    assert words[words.index("--appendonly") + 1] == "yes"
    assert words[words.index("--maxmemory-policy") + 1] == "noeviction"
    assert words[words.index("--requirepass") + 1].startswith("{IMGLIFE_REDIS_PASSWORD:?")
    env = {e["name"]: e for e in redis["env"]}
    source = env["IMGLIFE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert source == {"name": "imglife", "key": "IMGLIFE_REDIS_PASSWORD"}, "required, from the bot's Secret"
    assert redis["readinessProbe"]["exec"]["command"][:2] == ["sh", "-c"]
    assert "redis-cli ping" in redis["readinessProbe"]["exec"]["command"][2]

    (claim,) = spec["volumeClaimTemplates"]
    mounts = {m["mountPath"]: m["name"] for m in redis["volumeMounts"]}
    assert mounts["/data"] == claim["metadata"]["name"], "the append-only file lives on the volume"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "IMGLIFE_REDIS_PASSWORD" in load_documents(KUBE / "secret.example.yaml")[0]["stringData"]


# --- systemd ----------------------------------------------------------------------------------------


def parse_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    return parse_unit(UNIT)


def test_systemd_unit_settings(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0] == "/usr/local/bin/imglife"
    args = parse_cli(exec_start[1:])
    assert args.config == "/etc/imglife/imglife.yaml"
    assert exec_start[-1] == "serve"
    assert service["EnvironmentFile"] == "/etc/imglife/env"
    assert service["DynamicUser"] == "yes"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"].removesuffix("s")) > DRAIN_SECONDS
    assert service["StateDirectory"] == "imglife"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }.items():
        assert service[key] == value, key
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_systemd_template_unit_runs_one_instance_per_port(unit: configparser.ConfigParser) -> None:
    template = parse_unit(TEMPLATE_UNIT)
    service = template["Service"]
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0] == "/usr/local/bin/imglife"
    assert exec_start[-2:] == ["--port", "%i"], "the instance name is the port"
    assert "serve" in exec_start
    args = parse_cli([word.replace("%i", "8081") for word in exec_start[1:]])
    assert (args.config, args.host, args.port) == ("/etc/imglife/imglife.yaml", "127.0.0.1", 8081)
    # The same user, environment, stop timeout, state directory and hardening as imglife.service.
    single = dict(unit["Service"])
    assert {key: value for key, value in service.items() if key != "ExecStart"} == {
        key: value for key, value in single.items() if key != "ExecStart"
    }
    assert int(service["TimeoutStopSec"].removesuffix("s")) > DRAIN_SECONDS
    assert template["Install"]["WantedBy"] == "multi-user.target"
    assert "IMGLIFE_REDIS_URL" in TEMPLATE_UNIT.read_text()


@pytest.mark.parametrize(
    ("source", "name"),
    [(UNIT, "imglife.service"), (TEMPLATE_UNIT, "imglife@8081.service")],
    ids=["imglife.service", "imglife@.service"],
)
def test_systemd_analyze_verify(tmp_path: Path, source: Path, name: str) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    imglife = shutil.which("imglife") or str(ROOT / ".venv" / "bin" / "imglife")
    if not Path(imglife).exists():
        pytest.skip("no imglife executable to stand in for /usr/local/bin/imglife")
    # verify checks that ExecStart's program exists: point it at this checkout's imglife. An instance
    # (imglife@8081.service) is loaded from the template next to it.
    copy = tmp_path / source.name
    copy.write_text(source.read_text().replace("/usr/local/bin/imglife", imglife))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for unit_name in {source.name, name}:
        assert unit_name not in output, output  # unknown keys are only warnings


# --- compose ----------------------------------------------------------------------------------------


def test_compose_file() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert set(services) == {"imglife", "registry", "redis"}
    bot = services["imglife"]
    context = (DEPLOY / bot["build"]["context"]).resolve()
    assert context == ROOT
    assert (context / bot["build"]["dockerfile"]).resolve() == CONTAINERFILE
    args = parse_cli(bot["command"])
    assert args.port == 8080
    assert bot["ports"] == ["127.0.0.1:8080:8080"]
    assert bot["read_only"] is True
    assert "/tmp" in bot["tmpfs"]
    assert "/healthz" in " ".join(bot["healthcheck"]["test"])
    compile(bot["healthcheck"]["test"][-1], "healthcheck", "exec")
    assert int(bot["stop_grace_period"].removesuffix("s")) > DRAIN_SECONDS
    assert bot["env_file"] == ["imglife.env"]
    assert (DEPLOY / "imglife.env.example").is_file(), "the env_file's template"
    assert set(bot["depends_on"]) == {"registry", "redis"}
    assert bot["depends_on"]["redis"] == {"condition": "service_healthy"}

    mounts = {volume.split(":")[1]: volume for volume in bot["volumes"]}
    config_mount = mounts["/etc/imglife/imglife.yaml"]
    assert config_mount.endswith(":ro")
    config_file = DEPLOY / config_mount.split(":")[0]
    config = parse_config(config_file.read_text(), str(config_file), Path("/etc/imglife"))
    assert config.registry.provider == "local"
    assert config.registry.path == Path("/var/lib/imglife/records")
    assert mounts["/var/lib/imglife"].split(":")[0] in compose["volumes"]

    registry = services["registry"]
    assert registry["image"] == "registry:2"
    assert registry["ports"] == ["127.0.0.1:5000:5000"]
    volume = registry["volumes"][0]
    assert volume.split(":") == ["registry-data", "/var/lib/registry"]
    assert "registry-data" in compose["volumes"]
    assert "registry:5000" in config.registry.insecure_registries


def test_compose_runs_the_bot_on_a_persistent_redis() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    url = urlsplit(services["imglife"]["environment"]["IMGLIFE_REDIS_URL"])
    assert (url.scheme, url.hostname, url.port, url.path) == ("redis", "redis", 6379, "/0")
    assert (url.username, url.password) == (None, None), "no credentials in the URL"

    redis = services[url.hostname]
    assert redis["image"] == "redis:7-alpine"
    assert "ports" not in redis, "only the bot reaches Redis"
    assert redis["env_file"] == ["imglife.env"], "IMGLIFE_REDIS_PASSWORD, the one the bot sends"
    assert redis["user"].split(":")[0] not in {"0", "root"}
    assert redis["read_only"] is True
    assert redis["cap_drop"] == ["ALL"]
    volume, path = redis["volumes"][0].split(":")
    assert path == "/data"
    assert volume in compose["volumes"], "a named volume: the append-only file outlives the container"

    shell, flag, script = redis["command"]
    assert (shell, flag) == ("sh", "-c")
    assert "$" not in script.replace("$$", ""), "a single $ would be compose's, empty at `up`"
    words = shlex.split(script.replace("$${", "{"))
    assert words[:2] == ["exec", "redis-server"]
    assert words[words.index("--appendonly") + 1] == "yes"
    assert words[words.index("--requirepass") + 1].startswith("{IMGLIFE_REDIS_PASSWORD:?")
    kind, check = redis["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    assert "redis-cli ping" in check
    assert "$" not in check.replace("$$", "")


# --- Redis command lines, run ------------------------------------------------------------------------


def _redis_commands(where: str) -> tuple[list[str], list[str]]:
    """(server argv, readiness/health check argv) of the Kubernetes component or of compose, as the
    container runs them: compose's `$$` is a `$` inside the container."""
    if where == "kubernetes":
        (redis,) = _redis_statefulset()["spec"]["template"]["spec"]["containers"]
        return redis["args"], redis["readinessProbe"]["exec"]["command"]
    redis = yaml.safe_load(COMPOSE.read_text())["services"]["redis"]
    kind, check = redis["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    return [arg.replace("$$", "$") for arg in redis["command"]], ["sh", "-c", check.replace("$$", "$")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("where", ["kubernetes", "compose"])
def test_redis_command_lines_start_a_real_redis(tmp_path: Path, where: str) -> None:
    """The files' own command lines, run by sh with a real redis-server and redis-cli: appendonly on,
    noeviction, the password required, the check passing; an empty password stops the start."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server / redis-cli are not installed")
    argv, check = _redis_commands(where)
    port = _free_port()
    data = tmp_path / "data"
    data.mkdir()
    # Stand-ins on PATH: the same programs, on a free local port and a temporary data directory.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrappers = {
        "redis-server": f'exec {server} "$@" --port {port} --bind 127.0.0.1 --dir {data} --daemonize no',
        "redis-cli": f'exec {cli} -p {port} "$@"',
    }
    for name, body in wrappers.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    base_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "HOME": str(tmp_path)}

    def redis_cli(*args: str, password: str = "") -> str:
        env = {**base_env, "REDISCLI_AUTH": password} if password else base_env
        done = subprocess.run(
            ["redis-cli", *args], capture_output=True, text=True, timeout=10, env=env, check=False
        )
        return done.stdout.strip()

    empty = subprocess.run(
        argv, capture_output=True, text=True, timeout=10, env={**base_env, "IMGLIFE_REDIS_PASSWORD": ""}
    )
    assert empty.returncode != 0
    assert "IMGLIFE_REDIS_PASSWORD" in empty.stderr

    password = 'a "quoted" pass word'
    env = {**base_env, "IMGLIFE_REDIS_PASSWORD": password}
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while "NOAUTH" not in redis_cli("ping"):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        assert subprocess.run(check, env=env, timeout=10, check=False).returncode == 0, "the check"
        assert redis_cli("config", "get", "appendonly", password=password).split() == ["appendonly", "yes"]
        assert redis_cli("config", "get", "maxmemory-policy", password=password).split()[-1] == "noeviction"
        assert subprocess.run(check, env=base_env, timeout=10, check=False).returncode != 0
    finally:
        process.terminate()
        process.communicate(timeout=10)
    assert (data / "appendonlydir").is_dir()


# --- CI snippets ------------------------------------------------------------------------------------


def _scripts(node: Any) -> Iterator[str]:
    """Every string under a ``script``/``before_script``/``after_script``/``run`` key."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"script", "before_script", "after_script", "run"}:
                yield from [value] if isinstance(value, str) else value
            else:
                yield from _scripts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _scripts(item)


def imglife_commands(path: Path) -> list[list[str]]:
    """The argv (after ``imglife``) of every imglife command line, variables replaced by placeholders."""
    commands = []
    for script in _scripts(yaml.safe_load(path.read_text())):
        text = re.sub(r"\$\{\{[^}]*\}\}", "placeholder", script)  # ${{ gitea.sha }}
        text = re.sub(r"\$\{?\w+\}?", "placeholder", text)  # $CI_COMMIT_SHA, ${BASE_IMAGE}
        for line in text.splitlines():
            words = shlex.split(line)
            if words and words[0] == "imglife":
                commands.append(words[1:])
    return commands


@pytest.mark.parametrize("name", ["gitlab-ci.yml", "gitea-actions.yml"])
def test_ci_snippets_run_real_imglife_commands(name: str) -> None:
    commands = imglife_commands(DEPLOY / "ci" / name)
    by_command = {argv[0]: parse_cli(argv) for argv in commands}
    assert set(by_command) == {"check", "register"}
    assert by_command["check"].strict is True
    assert by_command["check"].base == "placeholder"
    register = by_command["register"]
    assert (register.revision, register.project) == ("placeholder", "placeholder")


def test_ci_snippets_use_the_forges_variables() -> None:
    gitlab = yaml.safe_load((DEPLOY / "ci" / "gitlab-ci.yml").read_text())
    register = " ".join(gitlab["imglife-register"]["script"])
    for variable in ("$CI_COMMIT_SHA", "$CI_PROJECT_PATH", "$CI_COMMIT_TAG"):
        assert variable in register
    assert gitlab["imglife-register"]["rules"] == [{"if": "$CI_COMMIT_TAG"}]
    assert gitlab[".imglife"]["image"]["entrypoint"] == [""]

    gitea = yaml.safe_load((DEPLOY / "ci" / "gitea-actions.yml").read_text())
    run = " ".join(step["run"] for step in gitea["jobs"]["register"]["steps"])
    for expression in ("${{ gitea.sha }}", "${{ gitea.repository }}", "${{ gitea.ref_name }}"):
        assert expression in run
    assert set(gitea[True]) == {"pull_request", "push"}  # YAML 1.1 reads the key `on` as True


# --- environment variables --------------------------------------------------------------------------

# Names held in constants whose name ends like this are environment variables the code reads.
_CONSTANT_NAME = re.compile(r"(^|_)(VAR|VARS|VARIABLE|VARIABLES)$|^ENV_|^AWS_")
_VARIABLE_NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$|^[A-Z]{3,}$")
_MAPPINGS = {"environ", "_environ", "env"}
# Read by the code but not a setting of the bot's environment.
NOT_ENVIRONMENT = {
    "BASE_IMAGE": "a variable of the CI files the bot reads from repositories (bot/basefind.py)",
}
# The process environment every program has; the container image and the systemd unit set them.
PROCESS_VARIABLES = {"HOME", "PATH", "TERM"}
# Named like a secret, but not one: set where the deployment defines it, commented in the examples.
NOT_SECRET = {
    "IMGLIFE_REDIS_URL": "never carries credentials; the redis/ component and compose.yaml set it",
}


def _mapping_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _string(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def variables_read_by_the_code() -> dict[str, str]:
    """Variable name -> where: ``environ.get("X")``, ``environ["X"]``, ``os.getenv("X")``, and the
    quoted names held in constants such as ``PARALLELISM_VARIABLE = "..."``."""
    found: dict[str, str] = {}
    for path in sorted([*ROOT.glob("bot/**/*.py"), *ROOT.glob("handlers/**/*.py")]):
        tree = ast.parse(path.read_text(), str(path))
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            names: list[str | None] = []
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                owner = _mapping_name(node.func.value)
                if (node.func.attr == "get" and owner in _MAPPINGS) or node.func.attr == "getenv":
                    names.append(_string(node.args[0]))
            elif isinstance(node, ast.Subscript) and _mapping_name(node.value) in _MAPPINGS:
                names.append(_string(node.slice))
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and _CONSTANT_NAME.search(t.id) for t in targets):
                    names.extend(_string(n) for n in ast.walk(node.value) if isinstance(n, ast.expr))
            for name in names:
                if name and _VARIABLE_NAME.match(name) and name not in NOT_ENVIRONMENT:
                    found.setdefault(name, f"{where}:{node.lineno}")  # type: ignore[attr-defined]
    return found


def test_the_scan_finds_the_known_variables() -> None:
    found = variables_read_by_the_code()
    assert {
        "IMGLIFE_GITLAB_WEBHOOK_SECRET",
        "IMGLIFE_GITEA_WEBHOOK_SECRET",
        "GITLAB_TOKEN",
        "GITEA_TOKEN",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "IMGLIFE_ALERT_CRITICAL_DAYS",
        "IMGLIFE_SYNC_PARALLELISM",
        "IMGLIFE_CONFIG",
        "IMGLIFE_LOG_FORMAT",
        "DOCKER_CONFIG",
    } <= set(found)
    # Names the sync hooks are given, not read, stay out.
    assert "IMGLIFE_SYNC_SCOPE" not in found


def _kubernetes_text() -> str:
    return "\n".join(p.read_text() for p in sorted(KUBE.rglob("*.yaml")))


def test_every_variable_the_code_reads_is_documented() -> None:
    kubernetes = _kubernetes_text()
    docs = (ROOT / "README.md").read_text() + (ROOT / "docs" / "bot.md").read_text()
    missing = []
    for name, where in sorted(variables_read_by_the_code().items()):
        if name in PROCESS_VARIABLES:
            continue
        places = [
            label for label, text in (("deploy/kubernetes", kubernetes), ("docs", docs)) if name not in text
        ]
        if places:
            missing.append(f"{name} (read at {where}) is missing from: {', '.join(places)}")
    assert not missing, "\n".join(missing)


def test_redis_variables_are_documented() -> None:
    """Redis mode's variables, whether or not the code reads them yet: for Kubernetes, compose and
    systemd (imglife.env.example), in the docs and in deploy/README.md."""
    texts = {
        "deploy/kubernetes": _kubernetes_text(),
        "docs": (ROOT / "README.md").read_text() + (ROOT / "docs" / "bot.md").read_text(),
        "imglife.env.example": (DEPLOY / "imglife.env.example").read_text(),
        "deploy/README.md": (DEPLOY / "README.md").read_text(),
    }
    missing = [
        f"{name} in {label}" for name in REDIS_VARIABLES for label, text in texts.items() if name not in text
    ]
    assert not missing, missing
    for option in ("redis_url", "visibility_timeout", "drain_timeout"):
        assert f"bot.{option}" in texts["deploy/README.md"], option


def test_registry_credentials_per_host_are_documented() -> None:
    """The IMGLIFE_<HOST>_* rule of bot/credentials: the Secret example names real per-host keys."""
    secret = load_documents(KUBE / "secret.example.yaml")[0]["stringData"]
    for host in ("registry.example.com", "docker.io"):
        prefix = env_prefix(host)
        assert f"{prefix}_USERNAME" in secret
        assert f"{prefix}_PASSWORD" in secret or f"{prefix}_TOKEN" in secret
    assert env_prefix("registry:5000") + "_USERNAME" in (DEPLOY / "imglife.env.example").read_text()
    for text in (_kubernetes_text(), (ROOT / "README.md").read_text()):
        assert "IMGLIFE_<HOST>_USERNAME" in text
        assert "_TOKEN" in text


def test_secret_example_sets_every_secret_the_bot_reads() -> None:
    keys = set(load_documents(KUBE / "secret.example.yaml")[0]["stringData"])
    secrets = {
        name
        for name in variables_read_by_the_code()
        if name.endswith(("_SECRET", "_TOKEN", "_KEY", "_KEY_ID", "_URL", "_REGION", "_PASSWORD"))
        and name not in {"CI_JOB_TOKEN"}  # GitLab CI's own, never the bot's
        and name not in NOT_SECRET
    }
    assert secrets <= keys, sorted(secrets - keys)
    env_example = (DEPLOY / "imglife.env.example").read_text()
    names = {line.split("=", 1)[0] for line in env_example.splitlines() if "=" in line and line[0] != "#"}
    assert secrets - {"AWS_DEFAULT_REGION"} <= names, sorted(secrets - names)
