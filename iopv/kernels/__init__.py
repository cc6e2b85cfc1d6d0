"""Layer 2, the compiled kernels (numba, ``@njit(cache=True)``, ``_nb`` suffix): pure functions over arrays.

``valuation`` (apply ticks, value every fund, round, replay), ``scanner`` (payload bytes -> staged
ticks), ``realtime`` (incremental per-tick values), ``cache`` (where their compiled code is kept,
and when it is stale: every package source a kernel module imports counts). Imports only
``iopv.core``."""

from iopv.kernels.cache import install

install()  # before any kernel module is imported: a kernel finds its cache locator when decorated
