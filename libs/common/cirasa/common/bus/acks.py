"""Acks sent together: one frame for every delivery a channel's handlers finished meanwhile.

A consumer acked each delivery in a frame of its own, one write and one broker round of work per
event. Here a finished delivery waits a few milliseconds for others; then the longest run of
consecutive settled delivery tags goes out as ONE ``basic.ack(multiple=True)``, and a finished
delivery past one still being handled is acked alone (holding it back would let one slow handler
keep the prefetch window full).

What makes the multiple-ack safe: a channel numbers its deliveries 1, 2, 3, ... and a multiple-ack
settles every outstanding delivery up to its tag. So a run only grows over tags this side has seen
finish (acked) or has settled itself (a nack, a single ack): a delivery whose handler has not
started yet, or is still running, is a gap that ends the run. Nothing is acked before its handler
returned; a crash meanwhile only means a redelivery, which the inbox turns into a duplicate.
A channel that closed takes its unsent acks with it: the broker delivers those messages again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiormq import spec
from aiormq.abc import ChannelFrame

log = structlog.get_logger(__name__)

ACK_DELAY_S = 0.002  # how long a finished delivery waits for others before its ack goes out


@dataclass
class _Settled:
    """One channel's deliveries as far as acks go."""

    upto: int = 0  # every tag up to this one is settled
    finished: set[int] = field(default_factory=set)  # handled, ack not sent yet
    settled: set[int] = field(default_factory=set)  # past ``upto``, acked alone or nacked

    def frames(self) -> list[tuple[int, bool]]:
        """(delivery tag, multiple) of the acks that settle every finished delivery."""
        last_finished = None
        tag = self.upto + 1
        while tag in self.finished or tag in self.settled:
            if tag in self.finished:
                last_finished = tag
                self.finished.discard(tag)
            else:
                self.settled.discard(tag)
            tag += 1
        self.upto = tag - 1
        frames = [] if last_finished is None else [(last_finished, True)]
        frames += [(alone, False) for alone in sorted(self.finished)]
        self.settled |= self.finished
        self.finished.clear()
        return frames


class Acks:
    """Coalesces the acks of every channel of one connection (keyed by aiormq's channel)."""

    def __init__(self, delay_s: float = ACK_DELAY_S) -> None:
        self._delay_s = delay_s
        self._channels: dict[Any, _Settled] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        # frames go out in the order they were made: a multiple-ack overtaking an earlier one would
        # settle that one's deliveries first, and the earlier frame then names an unknown tag
        self._in_order = asyncio.Lock()

    def finished(self, channel: Any, tag: int) -> None:
        """The handler of delivery ``tag`` returned: ack it with the next batch."""
        self._channels.setdefault(channel, _Settled()).finished.add(tag)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay_s, self._flush)

    async def requeue(self, channel: Any, tag: int) -> None:
        """Give delivery ``tag`` back to the broker now (a nack, sent alone)."""
        await channel.basic_nack(tag, requeue=True)
        self._channels.setdefault(channel, _Settled()).settled.add(tag)  # only once the nack is out

    async def drain(self) -> None:
        """Send every ack due and wait for them (before the connection closes)."""
        if self._timer is not None:
            self._timer.cancel()
            self._flush()
        if self._sending:
            await asyncio.wait(set(self._sending))

    def _flush(self) -> None:
        self._timer = None
        for channel, settled in list(self._channels.items()):
            if channel.is_closed:  # its deliveries go back to the queue: nothing to ack any more
                del self._channels[channel]
                continue
            frames = settled.frames()
            if frames:
                task = asyncio.create_task(self._send(channel, frames))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

    async def _send(self, channel: Any, frames: list[tuple[int, bool]]) -> None:
        """All the acks of one flush in one write (aiormq marshals several frames into one)."""
        acks = [spec.Basic.Ack(delivery_tag=tag, multiple=multiple) for tag, multiple in frames]
        async with self._in_order:  # a lock's waiters are served first come, first served
            if channel.is_closed:  # the broker delivers those again
                log.debug("bus.acks_lost", frames=len(frames))
                return
            await channel.write_queue.put(ChannelFrame.marshall(channel_number=channel.number, frames=acks))
