"""Acks in batches (``bus/acks.py``): a delivery is acked only once its handler succeeded and every
earlier delivery has been settled, a failure's nack never waits, and many acks go out as one."""

from __future__ import annotations

import asyncio
from typing import Any

from cirasa.common.bus.acks import ACK_BATCH, ACK_DELAY_S, ChannelAcks


class FakeChannel:
    def __init__(self) -> None:
        self.acks: list[tuple[int, bool]] = []

    async def basic_ack(self, delivery_tag: int, multiple: bool = False, **_: Any) -> None:
        self.acks.append((delivery_tag, multiple))


async def settle() -> None:
    await asyncio.sleep(ACK_DELAY_S * 3)


async def test_a_success_waits_for_the_deliveries_before_it_then_all_go_in_one_ack() -> None:
    channel = FakeChannel()
    acks = ChannelAcks(channel)  # type: ignore[arg-type]
    for tag in (1, 2, 3):
        acks.delivered(tag)
    acks.succeeded(2)
    acks.succeeded(3)
    await settle()
    assert channel.acks == []  # 1 is still being handled: nothing after it may be acked
    acks.succeeded(1)
    await settle()
    assert channel.acks == [(3, True)]


async def test_a_nacked_delivery_lets_the_ones_after_it_be_acked() -> None:
    channel = FakeChannel()
    acks = ChannelAcks(channel)  # type: ignore[arg-type]
    for tag in (1, 2, 3):
        acks.delivered(tag)
    acks.succeeded(2)
    acks.settled(1)  # its handler failed: nacked on its own, at once
    await settle()
    assert channel.acks == [(2, True)]
    acks.succeeded(3)
    await settle()
    assert channel.acks == [(2, True), (3, True)]


async def test_a_full_batch_goes_out_without_waiting_and_stop_flushes_the_rest() -> None:
    channel = FakeChannel()
    acks = ChannelAcks(channel)  # type: ignore[arg-type]
    for tag in range(1, ACK_BATCH + 3):
        acks.delivered(tag)
        acks.succeeded(tag)
    for _ in range(3):
        await asyncio.sleep(0)  # a few turns of the loop, far less than ACK_DELAY_S
    assert channel.acks == [(ACK_BATCH + 2, True)]
    for tag in (ACK_BATCH + 3, ACK_BATCH + 4):
        acks.delivered(tag)
        acks.succeeded(tag)
    await acks.flush()  # what stop() does: no waiting
    assert channel.acks == [(ACK_BATCH + 2, True), (ACK_BATCH + 4, True)]
