"""Per-key request limits, counted by the `limits` library.

In memory by default (one server process); in Redis when a URL is given, so that several
servers share one count per key. A moving window: "60 per minute" means at most 60 requests in
any 60 seconds, with no burst at a window's edge.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from pixeldrop.errors import RateLimited

__all__ = ["RateLimiter", "Quota"]


@dataclass(frozen=True)
class Quota:
    """Where a key stands after a request was let through: for the RateLimit-* headers."""

    limit: int
    remaining: int
    reset_after: int  # seconds until a slot frees up

    def headers(self) -> dict[str, str]:
        return {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                "RateLimit-Reset": str(self.reset_after)}


class RateLimiter:
    def __init__(self, redis_url: str | None = None):
        self.storage = storage_from_string(redis_url or "memory://")
        self._limiter = MovingWindowRateLimiter(self.storage)

    def hit(self, key_id: int | str, per_minute: int, namespace: str = "api-key") -> Quota:
        """Count one request for the key, or raise RateLimited without counting it.

        `namespace` keeps other counters (sign-in attempts per email or IP, the playground per
        account) apart from the API keys' even when their ids look alike.
        """
        item = RateLimitItemPerMinute(per_minute)
        allowed = self._limiter.hit(item, namespace, str(key_id))
        stats = self._limiter.get_window_stats(item, namespace, str(key_id))
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        if not allowed:
            raise RateLimited(
                f"Too many requests: this key may make {per_minute} requests per minute.",
                retry_after=reset_after, limit=per_minute,
            )
        return Quota(per_minute, stats.remaining, reset_after)

    def reset(self) -> None:
        self.storage.reset()
