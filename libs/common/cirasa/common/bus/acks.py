"""Acks in batches: a delivery whose handler succeeded is acked together with every earlier one once
they have all succeeded (one ``basic.ack`` with ``multiple``), at most ``ACK_DELAY_S`` later.

An ack is a frame and a socket write of its own; one per delivery cost a consuming service about a
fifth of its CPU under the submit benchmark. Batching changes nothing a producer or the broker can
tell apart: each delivery is still acked only after its handler (and the inbox mark) succeeded, a
failure is still nacked at once and requeued, and a crash before a batch goes out redelivers its
deliveries, as a crash before a single ack would (the inbox makes that harmless).

Delivery tags belong to a channel and rise in delivery order; a channel that reconnects starts again,
and what the old one had not acked comes back from the broker.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import aiormq.abc
import structlog

log = structlog.get_logger(__name__)

ACK_DELAY_S = 0.005  # longest a succeeded delivery waits for others to share its ack
ACK_BATCH = 16  # this many succeeded deliveries in a row are acked at once, without waiting


class ChannelAcks:
    """The deliveries of one channel not yet acked, in delivery order."""

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self._open: OrderedDict[int, bool] = OrderedDict()  # tag -> its handler succeeded
        self._timer: asyncio.TimerHandle | None = None
        self._flushing: asyncio.Task[None] | None = None

    def delivered(self, tag: int) -> None:
        """Call before anything awaits, so that tags are recorded in delivery order."""
        self._open[tag] = False

    def succeeded(self, tag: int) -> None:
        if tag not in self._open:
            return
        self._open[tag] = True
        if self._ready() >= ACK_BATCH:
            self._flush_soon(0.0)
        elif self._timer is None:
            self._flush_soon(ACK_DELAY_S)

    def settled(self, tag: int) -> None:
        """The delivery was nacked (or acked) on its own."""
        self._open.pop(tag, None)

    async def flush(self) -> None:
        """Ack every succeeded delivery that no unfinished one precedes."""
        self._cancel_timer()
        last, count = None, 0
        for tag, done in self._open.items():
            if not done:
                break
            last, count = tag, count + 1
        if last is None:
            return
        for _ in range(count):
            self._open.popitem(last=False)
        try:
            await self.channel.basic_ack(last, multiple=True)
        except Exception as exc:  # the channel is gone: the broker redelivers them
            log.warning("bus.ack_failed", tag=last, count=count, error=repr(exc))

    def _ready(self) -> int:
        count = 0
        for done in self._open.values():
            if not done:
                break
            count += 1
        return count

    def _flush_soon(self, delay: float) -> None:
        self._cancel_timer()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self._start_flush)

    def _start_flush(self) -> None:
        self._timer = None
        self._flushing = asyncio.ensure_future(self.flush())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
