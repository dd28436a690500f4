"""A base-images configuration and EOL data whose dates are relative to today, for check/status/eol tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml

REGISTRY = "registry.example.com"
ALPINE = f"{REGISTRY}/bases/alpine"
NODE = f"{REGISTRY}/bases/node"
GOLANG = f"{REGISTRY}/bases/golang"
ALPINE_DEV = f"{REGISTRY}/bases/alpine-dev"

ALPINE_LATEST = f"{ALPINE}:3.22.1-core1.2.0"  # cycle 3.22: supported for a long time
ALPINE_OLD_CORE = f"{ALPINE}:3.22.1-core1.0.0"  # same cycle, older core version: outdated
ALPINE_WARNING = f"{ALPINE}:3.21.3-core1.2.0"  # cycle 3.21: EOL in 10 days
ALPINE_EOL = f"{ALPINE}:3.19.4-core1.2.0"  # cycle 3.19: EOL last year
NODE_LATEST = f"{NODE}:22.11.0-core1.2.0"  # nodejs 22: eol false
GOLANG_LATEST = f"{GOLANG}:1.23.4-core1.2.0"  # go 1.23: eol true (no date)


def base_images_config(
    eol_file: str = "eol-data.yaml",
    *,
    registry: str | None = None,
    upstream: str = "docker.io/library",
    mirrors: str = f"{REGISTRY}/mirrors",
    bases: str = f"{REGISTRY}/bases",
) -> str:
    """An imglife.yaml of a base-images project: build, sync with lifecycles, lifecycle.

    ``upstream``, ``mirrors`` and ``bases`` place the sync sources, targets and the base images
    (a test that really syncs or cleans up points them at a local registry).
    """
    return (
        (registry or "registry:\n  provider: local\n  path: records\n")
        + f"""
sync:
  entries:
    - source: {upstream}/alpine
      tag_regex: '^3\\.\\d+\\.\\d+$'
      target: {mirrors}/alpine
      lifecycle: {{product: alpine, track: minor}}
    - source: {upstream}/node
      tag_regex: '^22\\.\\d+\\.\\d+$'
      target: {mirrors}/node
      lifecycle: {{product: nodejs, extract: major}}
    - source: {upstream}/golang
      tag: "1.23.4"
      target: {mirrors}/golang
      lifecycle: {{product: go, track: minor}}
build:
  core_version: "1.2.0"
  registry: {bases}
  images:
    - {{name: alpine, type: core, mirror_image: {mirrors}/alpine, version: "3.22.1"}}
    - {{name: node, type: spe, mirror_image: {mirrors}/node, version: "22.11.0"}}
    - {{name: golang, type: core, mirror_image: {mirrors}/golang, version: "1.23.4"}}
    - {{name: alpine-dev, type: spe-dev, mirror_image: {mirrors}/alpine, version: "3.22.1"}}
lifecycle:
  eol_provider: endoflife
  eol_data_file: {eol_file}
"""
    )


def eol_data(today: dt.date) -> dict[str, list[dict[str, object]]]:
    def days(n: int) -> str:
        return (today + dt.timedelta(days=n)).isoformat()

    return {
        "alpine": [
            {"cycle": "3.22", "eol": days(500), "latest": "3.22.1", "latestReleaseDate": days(-60)},
            {"cycle": "3.21", "eol": days(10), "latest": "3.21.3", "latestReleaseDate": days(-200)},
            {"cycle": "3.19", "eol": days(-300), "latest": "3.19.4", "latestReleaseDate": days(-700)},
        ],
        "nodejs": [{"cycle": "22", "eol": False, "latest": "22.11.0"}],
        "go": [{"cycle": "1.23", "eol": True, "latest": "1.23.4"}],
    }


def write_project(
    directory: Path,
    today: dt.date | None = None,
    *,
    registry: str | None = None,
    upstream: str = "docker.io/library",
    mirrors: str = f"{REGISTRY}/mirrors",
    bases: str = f"{REGISTRY}/bases",
) -> Path:
    """Write imglife.yaml and eol-data.yaml into ``directory``; return the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "imglife.yaml"
    config.write_text(base_images_config(registry=registry, upstream=upstream, mirrors=mirrors, bases=bases))
    (directory / "eol-data.yaml").write_text(
        yaml.safe_dump(eol_data(today or dt.datetime.now(dt.UTC).date()), sort_keys=False)
    )
    return config
