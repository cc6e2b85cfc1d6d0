"""JSON Schemas (draft 2020-12) of every record the engine publishes, shipped as package data.

``boundary-value``: the value of a fund at a boundary (MQTT ``iopv/<FUND>``, and the JSON of
``iopv replay`` and ``iopv history``); ``redis-value``: the same record as the fields of the Redis
hash ``iopv:<FUND>`` and of each ``iopv:<FUND>:history`` entry (every field a string);
``realtime-value``: ``iopv-rt/<FUND>``; ``status``: ``iopv/_status/<instance>``; ``directory``,
``session-event``, ``summary``, ``heartbeat``: the feed's reference data (``iopv/_directory/<FUND>``,
``iopv/_session/<instance>/<event>``, ``iopv/_summary/<FUND>``, ``iopv/_heartbeat/<instance>``, and
their Redis hashes and streams, read back as records). docs/schemas/
holds copies (a test keeps them equal) and docs/subscribers.md explains every field.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

#: Schema name -> file name.
SCHEMAS = {
    "boundary-value": "boundary-value.schema.json",
    "redis-value": "redis-value.schema.json",
    "realtime-value": "realtime-value.schema.json",
    "status": "status.schema.json",
    "directory": "directory.schema.json",
    "session-event": "session-event.schema.json",
    "summary": "summary.schema.json",
    "heartbeat": "heartbeat.schema.json",
}


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` (a key of ``SCHEMAS``) as a dict."""
    return json.loads(resources.files(__name__).joinpath(SCHEMAS[name]).read_text(encoding="utf-8"))
