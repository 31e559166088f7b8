"""The one loop behind every sweep: rounds repeat, a failed round is logged and the next goes on,
the first round waits unless asked to run at once, and cancelling stops it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pixeldrop import periodic
from pixeldrop.errors import StorageUnavailable


def rounds_of(failing: set[int], wanted: int) -> tuple[list[int], asyncio.Event, object]:
    done: list[int] = []
    enough = asyncio.Event()

    async def work() -> None:
        done.append(len(done) + 1)
        if len(done) == wanted:
            enough.set()
        if len(done) in failing:
            raise StorageUnavailable("down")

    return done, enough, work


@pytest.mark.parametrize("now", [False, True])
def test_rounds_go_on_after_a_failed_one(caplog, now):
    async def scenario() -> list[int]:
        done, enough, work = rounds_of(failing={1, 2}, wanted=3)
        loop = asyncio.create_task(periodic.every(0.001, "sweep the test", work, now=now))
        await asyncio.wait_for(enough.wait(), 30)
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
        return done

    with caplog.at_level(logging.WARNING, logger="pixeldrop.periodic"):
        done = asyncio.run(scenario())
    assert done[:3] == [1, 2, 3]
    warnings = [record.getMessage() for record in caplog.records if record.name == "pixeldrop.periodic"]
    assert warnings[:2] == ["could not sweep the test (storage unavailable?); retrying"] * 2


@pytest.mark.parametrize("now", [False, True])
def test_the_first_round_waits_unless_now(now):
    async def scenario() -> list[int]:
        done, _, work = rounds_of(failing=set(), wanted=1)
        loop = asyncio.create_task(periodic.every(3600, "sweep the test", work, now=now))
        for _ in range(10):  # let the task run up to its first sleep
            await asyncio.sleep(0)
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
        return done

    assert asyncio.run(scenario()) == ([1] if now else [])
