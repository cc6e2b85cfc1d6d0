"""Publishers of values: MQTT (retained topic per fund), Redis (hash + capped stream), terminal."""

from iopv.sinks.base import QueuedSink

__all__ = ["QueuedSink"]
