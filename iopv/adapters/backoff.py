"""Capped exponential backoff with full jitter, for reconnect loops."""

from __future__ import annotations

import random


class Backoff:
    """Delays of ``uniform(min, min(max, min * 2**attempt))`` seconds; ``reset`` after success."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None):
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay_s(self) -> float:
        ceiling = min(self.max_s, self.min_s * (2.0 ** min(self.attempt, 30)))
        self.attempt += 1
        return self._rng.uniform(self.min_s, ceiling)

    def reset(self) -> None:
        self.attempt = 0
