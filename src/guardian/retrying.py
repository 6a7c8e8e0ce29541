"""The one retry loop of the guardian's own HTTP and SMTP clients: bounded tries, exponential
backoff with jitter, a server's ``Retry-After`` honoured (capped).

An attempt raises :class:`Retry` for a failure worth another try (a 429, a 5xx, a refused
connection); ``Retry.final`` is the error raised when the tries run out. Any other exception
ends the loop at once. (Clients on an SDK use its own retry: looker-sdk and the Google
libraries; inside Airflow tasks the providers' hooks use theirs.)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Retry(Exception):
    """An attempt failed in a way worth retrying; ``final`` is raised when no tries are left."""

    def __init__(self, final: Exception, *, after: float | None = None) -> None:
        super().__init__(str(final))
        self.final = final
        self.after = after


def backoff(attempt: int, *, base: float = 0.5, cap: float = 8.0) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter over base*2^n, capped."""
    return float(min(cap, base * 2**attempt)) * random.uniform(0.5, 1.0)


def with_retries(
    attempt: Callable[[], T],
    *,
    attempts: int,
    base: float = 0.5,
    cap: float = 8.0,
    max_retry_after: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``attempt`` up to ``attempts`` times; return its first result, or raise the last ``Retry.final``."""
    for n in range(1, attempts + 1):
        try:
            return attempt()
        except Retry as retry:
            if n == attempts:
                raise retry.final from retry.final.__cause__
            sleep(min(max_retry_after, retry.after) if retry.after is not None else backoff(n, base=base, cap=cap))
    raise AssertionError("attempts must be at least 1")
