"""Layer 4, the outside world: MQTT (wire format, client internals, tick feed, value sink), Redis
(client, sink, restart-state store), and the queued-sink pattern with its reconnect backoff."""
