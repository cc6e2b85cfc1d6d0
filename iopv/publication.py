"""What one boundary publishes: a record per fund, encoded once, shared by every sink."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from iopv.codec import encode_record
from iopv.pcf import Universe


@dataclass(frozen=True, slots=True)
class Publication:
    """The values of every fund at one boundary. ``payloads[i]`` is the JSON of ``records[i]``."""

    ts_ns: int
    funds: tuple[str, ...]
    records: list[dict[str, Any]]
    payloads: list[bytes]


def build_publication(universe: Universe, ts_ns: int, values: np.ndarray) -> Publication:
    """Records ``{"fund", "ts", "iopv"}`` for every fund, in PCF order, and their JSON."""
    records = [{"fund": fund, "ts": ts_ns, "iopv": value}
               for fund, value in zip(universe.funds, values.tolist())]
    return Publication(ts_ns, universe.funds, records, [encode_record(r) for r in records])
