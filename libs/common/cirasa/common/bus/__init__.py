"""The event bus: RabbitMQ for real, an in-process double for ``cirasa dev`` and unit tests."""

from cirasa.common.bus.base import Bus, Outcome, Subscription
from cirasa.common.bus.memory import MemoryBroker, MemoryBus
from cirasa.common.bus.rabbit import RabbitBus, dead_letter_names

__all__ = ["Bus", "MemoryBroker", "MemoryBus", "Outcome", "RabbitBus", "Subscription", "dead_letter_names"]
