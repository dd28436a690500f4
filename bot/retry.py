"""Retry policy shared by every HTTP client: exponential backoff, full jitter, ``Retry-After`` honoured."""

from __future__ import annotations

import random
from dataclasses import dataclass

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry a call that failed transiently.

    ``max_retry_after`` bounds how long a server may ask us to wait: a registry that says
    "come back in an hour" fails the call instead of hanging a worker.
    """

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to sleep before attempt ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography

    def gives_up(self, attempt: int, retry_after: float | None = None) -> bool:
        """True when no further attempt should be made after attempt number ``attempt``."""
        return attempt >= self.attempts or (retry_after is not None and retry_after > self.max_retry_after)
