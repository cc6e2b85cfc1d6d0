"""Layer 4, the outside world, each connection with one reconnect loop and a bounded queue.

- ``mqtt``: ``wire`` (MQTT 3.1.1 packets), ``client`` (aiomqtt/paho internals used), ``stream``
  (socket wrappers' buffering), ``feed`` (ticks in), ``sink`` (values and status out), ``events``
  (the reference data out);
- ``redis``: ``client``, ``fields`` (how a record is stored, both ways), ``scripts`` (the Lua
  writers), ``sink`` (one node) and ``cluster`` (Redis Cluster), ``history`` (reading it back),
  ``state`` (restart state, replica registry, first-tick mark), ``events`` (reference data);
- ``journal``: the audit journal: ``format`` (the file format), ``records`` (encoding on the
  loop side), ``writer`` (its thread), ``files`` (day files);
- ``queued``: the queued-sink pattern; ``backoff``: capped, jittered reconnect delays.
"""
