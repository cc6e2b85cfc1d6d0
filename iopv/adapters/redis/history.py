"""Reading a fund's published values back from its Redis history stream ``<prefix>:<FUND>:history``.

Used by ``iopv history`` and meant for any other reader (the web API's ``/api/history``). An
entry's fields are the record's fields as the sink writes them (``fields.field_args``): strings as
they are (``status``, ``basket``, ``as_of``), everything else as its JSON text; the fund is in the
key. ``fields.decode_entry`` turns them back into the record published on MQTT.

Time selection works whatever the entry IDs are. An entry is written after its boundary, so its
ID's milliseconds are never below the boundary's (``<boundary_ms>-0`` IDs equal it; ``*`` IDs are
the arrival time), and entries are written in boundary order. So ``XRANGE key <from_ms> +`` in
pages finds every entry with ``ts >= from``, and reading stops at the first record past ``to``;
each record is still filtered on its own ``ts`` (int ns), which is what the bounds mean.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, tzinfo
from typing import Any

import redis.asyncio as aioredis

from iopv.adapters.redis.fields import decode_entry
from iopv.core.names import history_key, value_key
from iopv.core.pcf_checks import NAME_PATTERN

#: Entries read per XRANGE call.
PAGE_ENTRIES = 1000
#: What a fund name may be (README "Basket files"): it becomes a key, so nothing else is looked up.
FUND_NAME = NAME_PATTERN  # a fund ticker, as the basket files allow it


class UnknownFund(LookupError):
    """Neither the fund's latest-value hash nor its history stream exists."""


def parse_time_ns(text: str, *, zone: tzinfo = UTC) -> int:
    """A time bound as int ns since the epoch: epoch milliseconds (digits only) or ISO-8601
    (``2024-12-06``, ``2024-12-06T14:30``, ``2024-12-06T14:30:15.250-05:00``, ``...Z``). A time
    without an offset is in ``zone`` (UTC unless given). Raises ``ValueError`` naming what was
    expected. The one ISO-8601 reading of the readers: ``iopv history``, the web API, ``iopv explain``."""
    text = text.strip()
    if text.isdigit():
        return int(text) * 1_000_000
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r}: expected ISO-8601 (e.g. 2024-12-06T14:30:00Z; no offset = "
                         f"{'UTC' if zone is UTC else zone}) or epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


async def iter_history(client: aioredis.Redis, key_prefix: str, fund: str, *, from_ns: int | None = None,
                       to_ns: int | None = None, page_entries: int = PAGE_ENTRIES) -> AsyncIterator[dict[str, Any]]:
    """The published records of ``fund`` with ``from_ns <= ts <= to_ns`` (either bound optional,
    int ns since the epoch, UTC), oldest first. Raises ``UnknownFund`` when the fund has neither
    a latest value nor a history, ``ValueError`` for a malformed fund name."""
    if not FUND_NAME.fullmatch(fund):
        raise ValueError(f"fund {fund!r}: expected letters, digits, '.', '_' or '-'")
    key = history_key(key_prefix, fund)
    if not await client.exists(key, value_key(key_prefix, fund)):
        raise UnknownFund(f"fund {fund}: no history in Redis (no key {key})")
    start = "-" if from_ns is None else str(max(from_ns, 0) // 1_000_000)
    while True:
        entries = await client.xrange(key, min=start, max="+", count=page_entries)
        for _, fields in entries:
            record = decode_entry(fund, fields)
            ts = record.get("ts")
            if not isinstance(ts, int):
                continue  # not a value entry
            if to_ns is not None and ts > to_ns:
                return
            if from_ns is None or ts >= from_ns:
                yield record
        if len(entries) < page_entries:
            return
        last = entries[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else last)  # exclusive: after the last one read


async def read_history(client: aioredis.Redis, key_prefix: str, fund: str, *, from_ns: int | None = None,
                       to_ns: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """``iter_history`` as a list, at most ``limit`` records (the oldest ones)."""
    out: list[dict[str, Any]] = []
    async for record in iter_history(client, key_prefix, fund, from_ns=from_ns, to_ns=to_ns):
        if limit is not None and len(out) >= limit:
            break
        out.append(record)
    return out
