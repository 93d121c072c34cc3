"""Coalesced acks: one multiple-ack per run of finished deliveries, never over one still in hand."""

from __future__ import annotations

import asyncio
from typing import Any

import pamqp.frame
from aiormq.abc import ChannelFrame
from pamqp import commands

from cirasa.common.bus.acks import Acks


class Channel:
    """What a broker's channel would see: every ack and nack frame, and what they settle."""

    number = 1

    def __init__(self, delivered: int) -> None:
        self.is_closed = False
        self.frames: list[tuple[str, int, bool]] = []
        self.writes = 0
        self.outstanding = set(range(1, delivered + 1))
        self.write_queue = self

    async def put(self, frame: ChannelFrame) -> None:
        """What aiormq's writer would send: the payload, read back as the broker reads it."""
        self.writes += 1
        payload = frame.payload
        while payload:
            size = int.from_bytes(payload[3:7], "big")
            _, _, method = pamqp.frame.unmarshal(payload[: size + 8])
            assert isinstance(method, commands.Basic.Ack)
            await self.basic_ack(method.delivery_tag, method.multiple)
            payload = payload[size + 8 :]

    async def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.frames.append(("ack", tag, multiple))
        assert tag in self.outstanding, f"unknown delivery tag {tag}: a channel error on a real broker"
        self.outstanding -= {t for t in self.outstanding if t <= tag} if multiple else {tag}

    async def basic_nack(self, tag: int, requeue: bool = True, **_: Any) -> None:
        self.frames.append(("nack", tag, False))
        self.outstanding.discard(tag)


async def test_finished_deliveries_go_out_in_one_multiple_ack() -> None:
    channel, acks = Channel(5), Acks(delay_s=0.001)
    for tag in (3, 1, 2, 5, 4):
        acks.finished(channel, tag)
    await acks.drain()
    assert channel.frames == [("ack", 5, True)]
    assert not channel.outstanding


async def test_a_delivery_still_in_hand_is_never_covered() -> None:
    channel, acks = Channel(6), Acks(delay_s=0.001)
    for tag in (1, 2, 4, 5):  # 3 is still being handled, 6 not started
        acks.finished(channel, tag)
    await acks.drain()
    assert channel.frames == [("ack", 2, True), ("ack", 4, False), ("ack", 5, False)]
    assert channel.writes == 1  # one write for the three
    assert channel.outstanding == {3, 6}
    acks.finished(channel, 3)
    acks.finished(channel, 6)
    await acks.drain()
    # 3 closes the gap: one multiple-ack up to 3 (4 and 5 are settled already), then 6 continues the run
    assert channel.frames[3:] == [("ack", 6, True)]
    assert not channel.outstanding


async def test_a_requeued_delivery_is_not_acked_by_the_run_over_it() -> None:
    channel, acks = Channel(3), Acks(delay_s=0.001)
    acks.finished(channel, 1)
    await acks.requeue(channel, 2)
    acks.finished(channel, 3)
    await acks.drain()
    assert channel.frames == [("nack", 2, False), ("ack", 3, True)]
    assert not channel.outstanding


async def test_the_acks_of_a_closed_channel_are_dropped() -> None:
    channel, acks = Channel(2), Acks(delay_s=0.001)
    acks.finished(channel, 1)
    channel.is_closed = True
    await asyncio.sleep(0.01)
    assert channel.frames == []


async def test_acks_wait_a_little_for_others_then_go_by_themselves() -> None:
    channel, acks = Channel(2), Acks(delay_s=0.01)
    acks.finished(channel, 1)
    await asyncio.sleep(0.002)
    acks.finished(channel, 2)
    assert channel.frames == []
    await asyncio.sleep(0.05)
    assert channel.frames == [("ack", 2, True)]


async def test_frames_reach_the_channel_in_the_order_they_were_made() -> None:
    class SlowChannel(Channel):
        async def put(self, frame: ChannelFrame) -> None:
            await asyncio.sleep(0.01 if self.writes == 0 else 0)  # a write that waits for the socket
            await super().put(frame)

    channel, acks = SlowChannel(5), Acks(delay_s=0.001)
    for tag in (1, 2, 4):
        acks.finished(channel, tag)
    await asyncio.sleep(0.003)  # the first batch is out of the batcher, its first frame in the socket
    acks.finished(channel, 3)
    await acks.drain()
    assert channel.frames == [("ack", 2, True), ("ack", 4, False), ("ack", 3, True)]
    assert channel.outstanding == {5}
