"""Every MQTT topic and Redis key the engine writes or reads, each shape built in one function.

Writers (the sinks, the feed, the events), readers (``iopv history``, ``iopv tail``, the web
API, the back-fill example) and the tests build names here, so a shape is written once.

Ticks in, under ``mqtt.tick_topic_prefix`` (``ticks``): ``ticks/<SYMBOL>`` (``tick_topic``),
``ticks/_batch`` for arrays (``tick_batch_topic``); the engine subscribes to ``ticks/#``
(``tick_filter``) or, as a shard, to its symbols' topics.

The topic tree under ``mqtt.value_topic_prefix`` (``iopv``), one filter per kind:

    iopv/<FUND>                       values, retained              iopv/+
    iopv/_status/<instance>           engine status, retained       iopv/_status/+
    iopv/_directory/<FUND>            fund directory, retained      iopv/_directory/+
    iopv/_session/<instance>/<event>  session events, retained      iopv/_session/+/+
    iopv/_summary/<FUND>              daily summary, retained       iopv/_summary/+
    iopv/_heartbeat/<instance>        heartbeat, retained           iopv/_heartbeat/+

Fund tickers never start with ``_`` (``core.universe.NAME_PATTERN``), and every reserved kind is
two or three levels deep, so ``iopv/+`` matches values only; ``iopv/#`` matches everything.

Redis keys under ``redis.key_prefix`` (``iopv``; a ticker never starts with ``_``, so none
collides with ``iopv:<FUND>`` or ``iopv:<FUND>:history``):

    iopv:<FUND>                  hash: the fund's latest value
    iopv:<FUND>:history          stream: one entry per boundary (ID ``<boundary ms>-0``)
    iopv:_state:<instance>       string: the instance's restart state (JSON)
    iopv:_replicas:<K/N>         hash: instance -> its state key; ``_first_tick:<UTC day>``

    iopv:_directory:<FUND>       hash: the fund's directory record
    iopv:_directory              hash: fund -> its directory record's JSON (every shard's funds)
    iopv:_session:<instance>     hash: event -> that event's JSON record, and ``session``
    iopv:_summary:<FUND>         stream: one entry per session (ID ``<close ts ms>-0``)
    iopv:_heartbeat:<instance>   hash: the latest heartbeat
"""

from __future__ import annotations

#: The session events, in the order they happen in a day.
SESSION_EVENTS = ("start_of_day", "first_value", "close", "end_of_day")

#: Reserved first levels under the value prefix (the status is the engine's older one).
DIRECTORY, SESSION, SUMMARY, HEARTBEAT, STATUS = "_directory", "_session", "_summary", "_heartbeat", "_status"


# MQTT topics ------------------------------------------------------------------------------------

#: The tick topic of arrays of ticks of any symbols (a leading ``_``: never a symbol).
TICK_BATCH = "_batch"


def tick_topic(tick_prefix: str, symbol: str) -> str:
    """A symbol's ticks: ``<prefix>/<SYMBOL>``."""
    return f"{tick_prefix}/{symbol}"


def tick_batch_topic(tick_prefix: str) -> str:
    """Arrays of ticks of any symbols: ``<prefix>/_batch``."""
    return f"{tick_prefix}/{TICK_BATCH}"


def tick_filter(tick_prefix: str) -> str:
    """Every tick topic: ``<prefix>/#``."""
    return f"{tick_prefix}/#"


def value_filter(value_prefix: str, fund: str | None = None) -> str:
    """What a subscriber to one fund's values (``<prefix>/<FUND>``) or to every fund's
    (``<prefix>/+``) subscribes to."""
    return f"{value_prefix}/{'+' if fund is None else fund}"


def status_topic(value_prefix: str, instance: str) -> str:
    """An instance's retained status: ``<prefix>/_status/<instance>``."""
    return f"{value_prefix}/{STATUS}/{instance}"


def value_topic(value_prefix: str, fund: str) -> str:
    """A fund's retained value: ``<prefix>/<FUND>``."""
    return f"{value_prefix}/{fund}"


def directory_topic(value_prefix: str, fund: str) -> str:
    """A fund's retained directory record: ``<prefix>/_directory/<FUND>``."""
    return f"{value_prefix}/{DIRECTORY}/{fund}"


def session_topic(value_prefix: str, instance: str, event: str) -> str:
    """An instance's retained session event: ``<prefix>/_session/<instance>/<event>``."""
    return f"{value_prefix}/{SESSION}/{instance}/{event}"


def summary_topic(value_prefix: str, fund: str) -> str:
    """A fund's retained daily summary: ``<prefix>/_summary/<FUND>``."""
    return f"{value_prefix}/{SUMMARY}/{fund}"


def heartbeat_topic(value_prefix: str, instance: str) -> str:
    """An instance's retained heartbeat: ``<prefix>/_heartbeat/<instance>``."""
    return f"{value_prefix}/{HEARTBEAT}/{instance}"


def topic_filters(value_prefix: str) -> dict[str, str]:
    """The subscription filter of each kind (values, status, directory, session, summary, heartbeat)."""
    return {"value": f"{value_prefix}/+", "status": f"{value_prefix}/{STATUS}/+",
            "directory": f"{value_prefix}/{DIRECTORY}/+", "session": f"{value_prefix}/{SESSION}/+/+",
            "summary": f"{value_prefix}/{SUMMARY}/+", "heartbeat": f"{value_prefix}/{HEARTBEAT}/+"}


def topic_kind(value_prefix: str, topic: str) -> tuple[str, str] | None:
    """(kind, key) of a topic under ``value_prefix``: ``("value", FUND)``, ``("status", instance)``,
    ``("directory", FUND)``, ``("session", "<instance>/<event>")``, ``("summary", FUND)``,
    ``("heartbeat", instance)``; None for anything else."""
    if not topic.startswith(value_prefix + "/"):
        return None
    levels = topic[len(value_prefix) + 1:].split("/")
    if len(levels) == 1:
        return None if levels[0].startswith("_") else ("value", levels[0])
    kinds = {STATUS: "status", DIRECTORY: "directory", SUMMARY: "summary", HEARTBEAT: "heartbeat"}
    if len(levels) == 2 and levels[0] in kinds:
        return kinds[levels[0]], levels[1]
    if len(levels) == 3 and levels[0] == SESSION and levels[2] in SESSION_EVENTS:
        return "session", f"{levels[1]}/{levels[2]}"
    return None


# Redis keys -------------------------------------------------------------------------------------

def value_key(key_prefix: str, fund: str) -> str:
    """A fund's latest value, a hash: ``<prefix>:<FUND>``."""
    return f"{key_prefix}:{fund}"


def history_key(key_prefix: str, fund: str) -> str:
    """A fund's history, a stream with one entry per boundary: ``<prefix>:<FUND>:history``."""
    return f"{key_prefix}:{fund}:history"


def state_key(key_prefix: str, instance: str) -> str:
    """An instance's restart state: ``<prefix>:_state:<instance>``."""
    return f"{key_prefix}:_state:{instance}"


def first_tick_field(day: int) -> str:
    """The field of ``registry_key`` holding when a replica of the shard first received a tick on
    UTC day ``day`` (a leading ``_``: never an instance name)."""
    return f"_first_tick:{day}"


def registry_key(key_prefix: str, shard: str) -> str:
    """A shard's replicas (instance -> state key) and first-tick marks: ``<prefix>:_replicas:<K/N>``."""
    return f"{key_prefix}:_replicas:{shard}"


def directory_key(key_prefix: str, fund: str) -> str:
    """A fund's directory hash: ``<prefix>:_directory:<FUND>``."""
    return f"{key_prefix}:{DIRECTORY}:{fund}"


def directory_index_key(key_prefix: str) -> str:
    """The directory index hash (fund -> record JSON): ``<prefix>:_directory``."""
    return f"{key_prefix}:{DIRECTORY}"


def session_key(key_prefix: str, instance: str) -> str:
    """An instance's session-events hash: ``<prefix>:_session:<instance>``."""
    return f"{key_prefix}:{SESSION}:{instance}"


def summary_key(key_prefix: str, fund: str) -> str:
    """A fund's daily-summary stream: ``<prefix>:_summary:<FUND>``."""
    return f"{key_prefix}:{SUMMARY}:{fund}"


def heartbeat_key(key_prefix: str, instance: str) -> str:
    """An instance's latest heartbeat hash: ``<prefix>:_heartbeat:<instance>``."""
    return f"{key_prefix}:{HEARTBEAT}:{instance}"
