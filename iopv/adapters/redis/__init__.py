"""Redis: ``client`` (connection set-up), ``sink`` (latest value, history, restart state), ``state``
(reading the restart state back)."""
