"""Fetch release cycles from the endoflife.date API (or a mirror of it).

API: ``GET {base}/api/{product}.json`` answers a JSON list of cycles
(https://endoflife.date/docs/api). The base URL is ``lifecycle.endoflife_url``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from urllib.parse import quote

from bot.http import HttpClient, TransportError
from bot.lifecycle.eoldata import Cycle, EolData, EolDataError, parse_cycle
from bot.retry import RetryPolicy

MAX_CONCURRENT_PRODUCTS = 8


class EndOfLifeClient:
    def __init__(self, base_url: str, *, retry: RetryPolicy | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._http = HttpClient(service="endoflife", max_connections=MAX_CONCURRENT_PRODUCTS, retry=retry)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def cycles(self, product: str) -> tuple[Cycle, ...]:
        url = f"{self._base}/api/{quote(product, safe='')}.json"
        try:
            response = await self._http.request("GET", url)
        except TransportError as exc:
            raise EolDataError(f"cannot reach {self._base} for product {product!r}: {exc}") from exc
        if response.status_code == 404:
            raise EolDataError(f"unknown product {product!r}: {url} answered 404 (check lifecycle.product)")
        if response.status_code != 200:
            raise EolDataError(f"{url} answered HTTP {response.status_code}")
        body = response.json()
        if not isinstance(body, list):
            raise EolDataError(
                f"{url} did not answer a JSON list of cycles (is {self._base} an endoflife.date API?)"
            )
        return tuple(parse_cycle(item, where=f"{url}[{i}]") for i, item in enumerate(body))

    async def fetch(self, products: Iterable[str]) -> EolData:
        """Every product's cycles; any failure fails the whole fetch, naming every product at fault."""
        names = sorted(set(products))
        results = await asyncio.gather(*(self.cycles(name) for name in names), return_exceptions=True)
        errors = [str(r) for r in results if isinstance(r, EolDataError)]
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, EolDataError):
                raise result
        if errors:
            raise EolDataError("\n".join(errors))
        return EolData({name: r for name, r in zip(names, results, strict=True) if isinstance(r, tuple)})
