"""Throwaway local servers on free loopback ports: ``iopv demo`` and ``make cluster-demo`` start
them, and so do the tests and the benchmark. The service never imports them (import-linter).

``servers`` (one Redis, one Mosquitto: ``local_servers``, ``free_port``, the process plumbing that
makes a server die with its parent) and ``clusters`` (a Redis Cluster of 3 masters + 3 replicas, a
3-node NATS cluster with MQTT)."""
