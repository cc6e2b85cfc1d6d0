"""IOPV engine: the intraday indicative value of ETFs, streamed every interval from live ticks.

The package is laid out by layer, each importing only the ones below it (checked by import-linter
in ``make test``)::

    iopv.core      codes and flags, baskets as arrays, calendar
    iopv.kernels   numba kernels over those arrays
    iopv.engine    book, intake, valuer, cycle, replay (no network)
    iopv.adapters  MQTT and Redis
    iopv.service   the live service and its HTTP endpoint
    iopv.demo      the demo;  iopv.cli  the ``iopv`` command

The public API below is re-exported lazily (PEP 562), so ``import iopv`` stays cheap and
``iopv.config`` or ``iopv.core`` can be imported without compiling any kernel.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Settings": "iopv.config",
    "load_settings": "iopv.config",
    "ConfigError": "iopv.config",
    "Universe": "iopv.core.universe",
    "load_pcf": "iopv.core.universe",
    "build_universe": "iopv.core.universe",
    "PcfError": "iopv.core.universe",
    "PriceBook": "iopv.engine.book",
    "Valuer": "iopv.engine.valuer",
    "Publication": "iopv.engine.publication",
    "Engine": "iopv.engine.cycle",
    "read_tape": "iopv.engine.tape",
    "replay": "iopv.engine.replay",
    "replay_frames": "iopv.engine.replay",
    "Service": "iopv.service.live",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'iopv' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
