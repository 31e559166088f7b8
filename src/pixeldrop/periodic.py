"""Background work repeated while a server runs: the sweeps of reservations, jobs, expired images
and idempotency keys.

Neutral ground: the app and the domain (pixeldrop.jobs, paid_generation) both start such loops,
and the domain must not import the app. A round that fails (storage unavailable, most often) is
logged and the loop goes on: the next round tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# How often every sweep runs: refunds that failed are retried, dead processes' reservations and
# jobs looked for, succeeded jobs charged, and expired images, job results and idempotency keys
# deleted.
SWEEP_SECONDS = 10.0


async def every(seconds: float, what: str, work: Callable[[], Awaitable[object]], now: bool = False) -> None:
    """Await `work()` every `seconds` until cancelled, the first time after `seconds` (at once
    with `now`). `what` names the work in the warning that a failed round logs."""
    if not now:
        await asyncio.sleep(seconds)
    while True:
        try:
            await work()
        except Exception:
            log.warning("could not %s (storage unavailable?); retrying", what)
        await asyncio.sleep(seconds)
