"""What every ``iopv`` command shares: running a coroutine (on uvloop) and its settings from flags."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from typing import Any

from iopv.config import Settings, load_settings

#: The text log line; ``--log-format json`` writes the same fields as one JSON object per line.
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: JSON field names of the text line's fields (asctime, levelname, name, message).
JSON_FIELDS = {"asctime": "time", "levelname": "level", "name": "logger"}


def configure_logging(level: str, log_format: str = "text") -> None:
    """Logging to stderr, as text lines or (``json``) JSON lines with the same fields: ``time``,
    ``level``, ``logger``, ``message``, and ``exc_info`` (the traceback) when there is one.
    python-json-logger makes the objects: it escapes, adds tracebacks and ``extra`` fields as a
    log shipper expects, and is maintained; the text line is logging's own."""
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(TEXT_FORMAT.replace(":", ""), rename_fields=JSON_FIELDS,
                                           json_ensure_ascii=False))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def run_async(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (it is a dependency everywhere but Windows)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def settings_from(args: argparse.Namespace, **engine: Any) -> Settings:
    """The settings a command runs with: the TOML file < ``IOPV_*`` environment < its flags."""
    return load_settings(
        args.config,
        overrides={
            "engine": {"pcf_path": getattr(args, "pcf", None), "interval_s": getattr(args, "interval", None),
                       "shard": getattr(args, "shard", None), "instance": getattr(args, "instance", None),
                       **engine},
            "mqtt": {"url": getattr(args, "mqtt_url", None)},
            "redis": {"url": getattr(args, "redis_url", None),
                      "cluster": True if getattr(args, "redis_cluster", False) else None},
            "ops": {"http_port": getattr(args, "http_port", None),
                    "restore_state": False if getattr(args, "clean_start", False) else None},
        },
    )
