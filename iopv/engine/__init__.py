"""Layer 3, the engine in plain Python over the kernels, no network.

``book`` (the price book), ``codec`` (tick decoding, the scanner's Python fallback, and record
encoding), ``intake`` (live ticks into a bounded batch, applied in one kernel call), ``tape``
(tick tapes for replay), ``valuer`` (one valuation, rounded exactly), ``publication`` (what a
boundary publishes), ``clock`` and ``cycle`` (boundaries, and swap -> apply -> value -> publish),
``reload`` (basket reloads), ``realtime`` (per-tick values, throttled), ``replay`` (offline, by a
tape's timestamps), ``restart`` (the book's snapshot), ``health`` (whether the book is whole),
``journal_replay`` (the audit journal through the live engine), ``explain`` (one fund's value in
exact decimals), ``day`` (directory, session events, summaries, heartbeat), ``view`` (the
readers' columns), ``gcpolicy`` (the garbage collector off the hot path). The engine hands
publications to sinks it is given (``iopv.adapters``)."""
