"""The seeded fault plan: which fault strikes at which await point, and a tally by kind."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

# every kind of fault the simulation can inject
KINDS = (
    "crash",  # a service's tasks are cancelled at an await point; it restarts later on its database
    "store_error",  # a store call raises AutoReconnect before it reaches the store
    "store_lost_ack",  # a store call is applied, then raises AutoReconnect (the answer was lost)
    "publish_error",  # a publish raises before the broker has the event
    "publish_lost_confirm",  # the broker has the event, the publisher gets an error
    "duplicate",  # a message is delivered twice
    "delay",  # a message is held back for a while
    "reorder",  # a message jumps the queue
    "redeliver",  # a handled (acked) message comes again
    "backend_stall",  # a backend call fails without doing anything
    "backend_lost",  # a backend call does its work, then its answer is lost
)


@dataclass
class FaultPlan:
    """Decides, from the seed, whether a fault strikes at each opportunity; ``enabled`` turns all off
    (the quiesce phase). Rates are per opportunity; each run draws its own mix of kinds."""

    seed: int
    kinds: frozenset[str] = frozenset(KINDS)
    enabled: bool = True
    injected: Counter[str] = field(default_factory=Counter)
    rates: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}:faults")
        base = {
            "crash": 0.002,
            "store_error": 0.01,
            "store_lost_ack": 0.005,
            "publish_error": 0.02,
            "publish_lost_confirm": 0.02,
            "duplicate": 0.03,
            "delay": 0.03,
            "reorder": 0.05,
            "redeliver": 0.02,
            "backend_stall": 0.03,
            "backend_lost": 0.02,
        }
        # a seed turns on a random subset, so that faults of a kind are sometimes dense, sometimes absent
        for kind in KINDS:
            on = kind in self.kinds and self.rng.random() < 0.6
            self.rates[kind] = base[kind] * self.rng.choice((1, 2, 4)) if on else 0.0

    def strikes(self, kind: str) -> bool:
        rate = self.rates.get(kind, 0.0)
        if not self.enabled or rate == 0.0 or self.rng.random() >= rate:
            return False
        self.injected[kind] += 1
        return True

    def uniform(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)

    def randrange(self, n: int) -> int:
        return self.rng.randrange(n)
