"""The ingest path's deadline: past it the await is cancelled and TimeoutError raised; a
cancel from outside stays a cancel; a call that answers in time is untouched."""

from __future__ import annotations

import asyncio

import pytest

from app.ingest_line import Deadline


async def test_an_answer_in_time_is_returned() -> None:
    async with Deadline(1.0):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)  # no late cancel arrives after the block


async def test_past_the_deadline_the_await_is_cancelled_as_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        async with Deadline(0.02):
            await asyncio.sleep(5)
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # the task goes on normally


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    async def wait() -> None:
        async with Deadline(5):
            await asyncio.sleep(5)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
