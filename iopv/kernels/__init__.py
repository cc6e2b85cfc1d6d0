"""Layer 2, the compiled kernels (numba, ``@njit(cache=True)``, ``_nb`` suffix): pure functions over arrays.

``valuation`` (apply ticks, value every fund, round, replay), ``scanner`` (payload bytes -> staged
ticks), ``realtime`` (incremental per-tick values), ``cache`` (where their compiled code is kept).
Each kernel module is kept whole: numba caches per source file. Imports only ``iopv.core``."""
