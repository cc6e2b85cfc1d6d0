"""Garbage-collector policy: keep full collections off the hot path.

CPython's full (generation 2) collection walks every tracked container, and a US-scale universe
leaves hundreds of thousands of long-lived ones (the basket's fund records, the symbol index,
module state): one full collection measured ~65 ms, and the per-cycle publications trigger one
every few cycles -- a late boundary publication whenever it lands inside a cycle. Once the
universe is loaded and the kernels are warm, ``freeze_long_lived`` moves everything alive into
CPython's permanent generation (``gc.freeze``), which collections skip; later collections only
walk what the cycles create. A basket swap thaws it (``thaw``) so the old basket can be freed,
and freezes again shortly after, off the boundary.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

#: Delay after a basket swap before the survivors are collected and frozen again.
REFREEZE_AFTER_S = 1.0


def freeze_long_lived() -> None:
    """Collect once, then exempt every surviving object from future collections."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.debug("gc: %d objects frozen in %.1f ms", gc.get_freeze_count(), (time.perf_counter() - started) * 1e3)


def thaw() -> None:
    """Make the frozen objects collectable again (before dropping a long-lived structure)."""
    gc.unfreeze()


def thaw_and_refreeze_soon() -> None:
    """``thaw`` now; ``freeze_long_lived`` ``REFREEZE_AFTER_S`` later on the running loop (at
    once when there is none)."""
    thaw()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        freeze_long_lived()
        return
    loop.call_later(REFREEZE_AFTER_S, freeze_long_lived)
