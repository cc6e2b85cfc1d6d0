"""Layer 5, the running service.

- ``factory``: builds and wires every part of one instance (read ``build`` for the data flow);
- ``live``: ``Service``, the parts run as named tasks, with a clean stop;
- ``route``: ``PublicationRoute``, where a boundary's publication goes (restart state, journal
  gate, sinks, followers);
- ``recovery``: whether the book is whole (start decision, feed gaps, state transfer, restart
  restore);
- ``feed_events``: the reference data (fund directory, session events, daily summary, heartbeat);
- ``components``: what ``/readyz`` and ``/metrics`` read; ``metrics``: the Prometheus registry;
- ``web`` (aiohttp), ``health`` (``/healthz``, ``/readyz``, ``/metrics``), ``api`` (JSON API and
  push stream, ``static/``: the board); ``sdnotify``: systemd readiness and watchdog.
"""
