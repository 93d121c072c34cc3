"""Simulated time: an event loop whose clock jumps to the next timer, and the patches that make the
services read that clock (and draw their ids from the seed) while a simulation runs.

The loop is a ``SelectorEventLoop`` whose ``time()`` is a counter. When nothing is ready, the loop
asks its selector to wait until the next timer; our selector polls without blocking and moves the
clock forward by that timeout instead, as ``looptime`` does. Nothing really sleeps. Work that the
services hand to threads (``asyncio.to_thread``: backend calls, directory walks) runs inline, so no
thread can finish "in between" and make a run depend on the host's speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import selectors
import types
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


class Deadlock(RuntimeError):
    """Nothing is ready and no timer is set: the simulation can never move again."""


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events:
            return events
        if timeout is None:
            raise Deadlock("no task is ready and no timer is set")
        if timeout > 0:
            self.now += timeout
        return []


class SimLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time; ``run_in_executor`` runs the call inline."""

    def __init__(self) -> None:
        self._jumping = _JumpingSelector()
        super().__init__(self._jumping)

    def time(self) -> float:
        return self._jumping.now

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.create_future()
        try:
            fut.set_result(func(*args))
        except BaseException as exc:  # handed to whoever awaits, as the executor would
            fut.set_exception(exc)
        return fut

    def instant(self) -> datetime:
        return EPOCH + timedelta(seconds=self.time())


def _sim_datetime(loop: SimLoop) -> type[datetime]:
    class SimDatetime(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return loop.instant() if tz is not None else loop.instant().replace(tzinfo=None)

    return SimDatetime


@contextlib.contextmanager
def simulated(loop: SimLoop, seed: int) -> Iterator[None]:
    """Within: ``utcnow`` is the loop's instant, ids come from the seed, monotonic clocks are the
    loop's, and logging is off. ``utcnow`` is patched through the ``datetime`` it calls, so the copies
    imported by name and the events' ``occurred_at`` default (which hold the function) all follow."""
    import cirasa.accounting.service as accounting
    import cirasa.common.events as events
    import cirasa.gateway.broker.state as broker_state
    import cirasa.gateway.uws as uws

    ids = random.Random(f"{seed}:ids")
    fake_time = types.SimpleNamespace(monotonic=loop.time, perf_counter=loop.time, time=loop.time)
    patches: list[tuple[Any, str, Any]] = [
        (events, "datetime", _sim_datetime(loop)),
        (uuid, "uuid4", lambda: uuid.UUID(int=ids.getrandbits(128), version=4)),
        (accounting, "time", fake_time),
        (broker_state, "time", fake_time),
        (uws, "time", fake_time),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    config = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    try:
        for obj, name, value in patches:
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
        structlog.configure(**config)
