"""Layer 3, the engine in plain Python over the kernels: book, intake and decoding, valuer,
publication, clock and cycle, basket reloads, real-time mode, replay, restart state.

No network here: the engine hands publications to sinks it is given (``iopv.adapters``)."""
