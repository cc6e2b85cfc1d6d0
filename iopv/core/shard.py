"""Shards: which instance owns which fund.

A universe splits by fund. Shard ``K/N`` (``engine.shard``) owns the funds whose ticker ``t``
has ``crc32(t encoded as UTF-8) mod N == K`` -- zlib's CRC-32 (IEEE 802.3, the one of ``zlib``,
``gzip``, PNG, Python's ``zlib.crc32``, Java's ``java.util.zip.CRC32``, PostgreSQL's
``crc32()``), as an unsigned 32-bit integer. Never Python's ``hash()``: it is salted per
process, so two replicas would disagree. Every shard loads the same basket file; the whole file
is validated as one (a problem in another shard's fund still rejects the file, as it would
with one instance), then the shard keeps its own funds in file order.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path
from typing import Any, NamedTuple

from iopv.core.universe import PcfError, Universe, build_universe, load_pcf, parse_json

SHARD_PATTERN = re.compile(r"^(\d{1,5})/(\d{1,5})$")


class Shard(NamedTuple):
    """Shard ``index`` of ``count`` (0 <= index < count)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def whole(self) -> bool:
        return self.count == 1

    def owns(self, fund: str) -> bool:
        return shard_of(fund, self.count) == self.index


def parse_shard(text: str) -> Shard:
    """``"K/N"`` -> Shard(K, N); raises ValueError naming the rule."""
    match = SHARD_PATTERN.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected K/N (shard K of N, e.g. 0/2), got {text!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if not (count >= 1 and 0 <= index < count):
        raise ValueError(f"expected 0 <= K < N and N >= 1, got {text!r}")
    return Shard(index, count)


def shard_of(fund: str, count: int) -> int:
    """The shard (0..count-1) that owns ``fund``: CRC-32 of its UTF-8 ticker mod ``count``."""
    return zlib.crc32(fund.encode("utf-8")) % count


def select_funds(document: list[Any], shard: Shard) -> list[Any]:
    """The fund objects of a (validated) basket document that ``shard`` owns, in file order."""
    return [fund for fund in document if shard.owns(fund["fund"])]


def load_shard(path: str | Path, shard: Shard) -> Universe:
    """The universe of ``shard``: the whole file validated, then only its funds laid out.
    Shard 0/1 is exactly ``load_pcf``. A shard may own no fund (it then publishes nothing)."""
    universe = load_pcf(path)
    if shard.whole:
        return universe
    document = parse_json(path)
    try:
        return build_universe(select_funds(document, shard), source=str(path), version=universe.version)
    except PcfError:  # pragma: no cover - the whole file validated; a subset cannot fail
        raise


def tick_symbols(universe: Universe) -> list[str]:
    """Every symbol whose ticks move ``universe``: holdings, FX pairs, the funds' own tickers."""
    return list(universe.book_index())
