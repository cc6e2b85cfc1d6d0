"""Tick decoding (JSON object or array of objects) and result encoding (orjson).

Decoding checks what only Python can see -- JSON syntax, field presence and types -- and leaves
numeric checks (finite, > 0) and ordering to the kernel, so both live and replay paths reject
exactly the same ticks for exactly the same reasons (``iopv.core.constants``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from iopv.core.constants import MAX_TS, TRADING_STATUS_WORDS, TickOutcome, TradingStatus

NAN = math.nan


#: How a topic's bytes as received (MQTT: UTF-8) become text: invalid bytes read as U+FFFD, by
#: the live feed and by a journal replay of the packets it recorded alike.
TOPIC_ERRORS = "replace"


def topic_symbol(topic: str, prefix: str) -> str | None:
    """The symbol a tick topic names (``<prefix>/<SYMBOL>``), or None for any other topic
    (deeper levels, or a level starting with ``_`` such as ``ticks/_batch``)."""
    head, _, tail = topic.partition("/")
    if head != prefix or not tail or "/" in tail or tail.startswith("_"):
        return None
    return tail


def _quote_side(value: Any) -> float | None:
    """A bid or ask as a float; NAN when absent; None when invalid (not a finite number > 0)."""
    if value is None:
        return NAN
    kind = type(value)
    if kind is not float and kind is not int:
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number > 0.0 else None


def decode_tick_full(obj: Any, default_symbol: str | None, default_ts: int | None,
                     index: dict[str, int]) -> tuple[int, int, float, float, float, int, int]:
    """(code, book slot or -1, price, bid, ask, status, ts) for one decoded JSON value.

    ``code`` is ``TickOutcome.ACCEPTED`` for a well-formed tick (the kernel still checks the price value and
    the order), otherwise the rejection reason. The payload's symbol wins over the topic's;
    ``default_ts`` stands in for a missing ``ts`` (receive time live, None in replay). ``bid`` and
    ``ask`` are NAN when absent; ``status`` is a ``TradingStatus`` code. A message with a ``status``
    and no ``price`` is a trading-status message (price NAN)."""
    if type(obj) is not dict:
        return TickOutcome.NOT_AN_OBJECT, -1, NAN, NAN, NAN, 0, 0
    symbol = obj.get("symbol", default_symbol)
    if symbol is None:
        return TickOutcome.MISSING_SYMBOL, -1, NAN, NAN, NAN, 0, 0
    if type(symbol) is not str or not symbol:
        return TickOutcome.BAD_SYMBOL, -1, NAN, NAN, NAN, 0, 0
    word = obj.get("status")
    status = TradingStatus.NONE
    if word is not None:
        status = TRADING_STATUS_WORDS.get(word, -1) if type(word) is str else -1
    price = obj.get("price")
    kind = type(price)
    if kind is not float:
        if price is None:
            if status == TradingStatus.NONE or "price" in obj:
                return TickOutcome.MISSING_PRICE, -1, NAN, NAN, NAN, 0, 0
            price = NAN  # a status message
        elif kind is not int:  # bool, str, list, ... (bool is not int by type identity)
            return TickOutcome.BAD_PRICE_TYPE, -1, NAN, NAN, NAN, 0, 0
        else:
            try:
                price = float(price)
            except OverflowError:
                price = math.inf
    ts = obj.get("ts")
    if ts is None:
        if default_ts is None:
            return TickOutcome.MISSING_TS, -1, NAN, NAN, NAN, 0, 0
        ts = default_ts
    elif type(ts) is not int or not 0 <= ts <= MAX_TS:
        return TickOutcome.BAD_TS, -1, NAN, NAN, NAN, 0, 0
    if status < 0:
        return TickOutcome.BAD_TRADING_STATUS, -1, NAN, NAN, NAN, 0, 0
    bid = ask = NAN
    if "bid" in obj or "ask" in obj:
        bid = _quote_side(obj.get("bid"))
        ask = _quote_side(obj.get("ask"))
        if bid is None or ask is None or bid > ask:
            return TickOutcome.BAD_QUOTE, -1, NAN, NAN, NAN, 0, 0
    return TickOutcome.ACCEPTED, index.get(symbol, -1), price, bid, ask, status, ts


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode_payload(payload: bytes) -> tuple[list[Any] | None, bool]:
    """(JSON values, ok). A JSON array yields its items; any other value yields itself.

    orjson refuses numbers beyond the float64 range (``1e400``), which are valid JSON; only then
    does the standard library parse the payload, turning them into infinities so the one tick
    is rejected as ``non_finite_price`` and its neighbours in an array survive. ``NaN`` and
    ``Infinity`` literals stay malformed."""
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        try:
            document = json.loads(payload, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return None, False
    if type(document) is list:
        return document, True
    return [document], True


def encode_record(record: dict[str, Any]) -> bytes:
    """The JSON payload of one published record."""
    return orjson.dumps(record)
