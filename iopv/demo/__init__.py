"""The demo: ``run`` (``iopv demo``: the engine on the demo universe with live simulated ticks;
the command line hands it its terminal table), ``simulator`` (random-walk ticks over MQTT),
``universe`` (the demo's basket file, from the 2004 PowerShares filing), ``cluster`` (``make
cluster-demo``: shards and replicas on a local Redis Cluster and NATS cluster)."""
