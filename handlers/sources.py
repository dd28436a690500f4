"""Where ``check``, ``status`` and ``eol notify`` get the base-images config and the EOL data.

Base-images config (``check``): ``--config-url``, else the package registry's ``imglife.yaml``
(published there by ``imglife eol update`` when ``eol_target: pkgregistry``), else the local
config. EOL data: ``--eol-data-url``, else the package registry's ``eol-data.yaml`` when the
base-images config says ``eol_target: pkgregistry``, else its ``lifecycle.eol_data_file``. Missing
EOL data is not an error: every cycle is then ``unknown``, and the report says how to fix it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.config import Config, parse_config
from bot.errors import ImglifeError
from bot.lifecycle.eoldata import EolData, parse_eol_data
from bot.records import RecordStore

CONFIG_DOCUMENT = "imglife.yaml"
EOL_DOCUMENT = "eol-data.yaml"
NO_EOL_DATA = "no EOL data ({where} not found): run `imglife eol update`"
MSG_NO_BUILD = (
    "no base-images configuration: {source} has no build section; pass --config-url, or publish the "
    "base-images imglife.yaml to the package registry (imglife eol update with eol_target: pkgregistry)"
)

Fetch = Callable[[str], Awaitable[bytes]]

# The bot checks many merge requests against the same few documents: parse each content once.
# Results are immutable (frozen dataclasses, configs nobody mutates); errors are not cached.
_parse_config = functools.lru_cache(maxsize=8)(parse_config)
_parse_eol_data = functools.lru_cache(maxsize=8)(parse_eol_data)


@dataclass(frozen=True, slots=True)
class Loaded:
    """Data and a description of where it came from (for reports and errors)."""

    source: str
    missing: str | None = None  # why there is nothing, when there is nothing


async def base_images_config(
    local: Config, local_path: Path, *, config_url: str | None, fetch: Fetch, store: RecordStore
) -> tuple[Config, Loaded]:
    if config_url:
        text = (await fetch(config_url)).decode("utf-8", errors="replace")
        config, loaded = _parse_config(text, config_url, local_path.parent), Loaded(config_url)
    else:
        document = await store.read_document(CONFIG_DOCUMENT)
        if document is not None:
            source = f"{store.description}: {CONFIG_DOCUMENT}"
            text = document.decode("utf-8", errors="replace")
            config, loaded = _parse_config(text, source, local_path.parent), Loaded(source)
        else:
            config, loaded = local, Loaded(str(local_path))
    if config.build is None:
        raise ImglifeError(MSG_NO_BUILD.format(source=loaded.source))
    return config, loaded


async def eol_data(
    config: Config, *, eol_url: str | None, fetch: Fetch, store: RecordStore
) -> tuple[EolData, Loaded]:
    if eol_url:
        return _parse_eol_data(await fetch(eol_url), source=eol_url), Loaded(eol_url)
    if config.lifecycle.eol_target == "pkgregistry":
        source = f"{store.description}: {EOL_DOCUMENT}"
        document = await store.read_document(EOL_DOCUMENT)
        if document is None:
            return EolData(), Loaded(source, NO_EOL_DATA.format(where=source))
        return _parse_eol_data(document, source=source), Loaded(source)
    path = config.lifecycle.eol_data_file
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return EolData(), Loaded(str(path), NO_EOL_DATA.format(where=path))
    except OSError as exc:
        raise ImglifeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return _parse_eol_data(text, source=str(path)), Loaded(str(path))
