"""Layer 1, the model: codes and flags, baskets as arrays, the names of the outside world.

``constants`` (every code kernels and Python share, scoped by family), ``universe`` (basket files
-> validated CSR arrays), ``pcf_checks`` (the checks of a basket file's values, the name
pattern), ``packed`` (the packed holdings layout the valuation kernels stream), ``calendar``
(trading sessions), ``shard`` (which funds and tick symbols a shard owns), ``names`` (the MQTT
topics and Redis keys). Imports nothing else of the package; everything above builds on these
arrays and constants."""
