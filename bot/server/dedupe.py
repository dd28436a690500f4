"""Remember which deliveries were already taken, for a while (SPEC §6.2: de-duplicate with a TTL)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_TTL = 24 * 3600.0
DEFAULT_MAX_ENTRIES = 200_000


class Deduplicator:
    """In-process memory of keys; the oldest are forgotten first when full."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, *keys: str) -> bool:
        """True (and remember every key) unless one of ``keys`` was seen within the TTL."""
        now = self._clock()
        while self._seen and next(iter(self._seen.values())) <= now:
            self._seen.popitem(last=False)
        if any(key in self._seen for key in keys):
            return False
        for key in keys:
            self._seen[key] = now + self._ttl
            self._seen.move_to_end(key)
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return True
