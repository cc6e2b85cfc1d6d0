"""Layer 2, the compiled kernels (numba, ``@njit(cache=True)``, ``_nb`` suffix): pure functions over arrays.

``ticks`` (apply ticks to the book, in event time), ``valuation`` (value every fund, grade it,
round, replay), ``realtime`` (incremental per-tick values), ``scanner`` (payload and tape bytes ->
staged ticks) with its lexer ``jsonlex`` and its symbol table ``symbols``, ``mqtt`` (a socket read
split into MQTT packets), ``journal`` (the audit journal's record packing), ``cache`` (where their
compiled code is kept, and when it is stale: every package source a kernel module imports
counts). Imports only ``iopv.core``."""

from iopv.kernels.cache import install

install()  # before any kernel module is imported: a kernel finds its cache locator when decorated
