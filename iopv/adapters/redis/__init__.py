"""Redis: ``client`` (connection set-up), ``fields`` (how a record is stored and read back, and
the script arguments' field lists), ``scripts`` (the Lua writers: whole values supersede flagged
ones), ``sink`` (latest value, history, restart state; one node), ``cluster`` (the same on a
Redis Cluster), ``history`` (reading a fund's history), ``state`` (restart state, the shard's
replica registry and first-tick mark), ``events`` (the reference data)."""
