"""Prometheus metrics of one engine instance (``prometheus_client``), served on ``/metrics``.

Counters the engine already keeps (tick outcomes, sink counts, reconnects) are read at scrape
time by a custom collector, so the tick path pays nothing for them. Only the two latencies are
histograms, observed once per cycle and once per sent publication. Each Service has its own
registry, so several instances (or tests) never share or clash over global metrics.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from iopv.core.constants import BOOK_HALTED, REASONS, REJECTIONS
from iopv.engine.book import NEVER

if TYPE_CHECKING:
    from iopv.service.live import Service

#: The classic text format every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


def holding_status(service: Service, now_ns: int) -> dict[str, int]:
    """Symbols never ticked this session, ticked but stale (older than ``engine.stale_after_s``; 0 = never),
    and halted (``book.flags & BOOK_HALTED``)."""
    book = service.engine.book
    n = len(book.symbols)
    last_ts = book.last_ts[:n]
    never = last_ts == NEVER
    stale_after_s = service.settings.engine.stale_after_s
    cutoff = now_ns - int(stale_after_s * 1e9) if stale_after_s > 0 else NEVER
    return {
        "never_ticked": int(np.count_nonzero(never)),
        "stale": int(np.count_nonzero(~never & (last_ts < cutoff))),
        "halted": int(np.count_nonzero(book.flags[:n] & BOOK_HALTED)),
    }


class ServiceCollector:
    """Reads the service's own counters at scrape time."""

    def __init__(self, service: Service):
        self.service = service

    def collect(self):
        s = self.service
        intake = s.engine.intake
        ticks = CounterMetricFamily("iopv_ticks", "Ticks by outcome (accepted, unknown_symbol, "
                                    "out_of_order, or a rejection reason)", labels=["outcome"])
        for code, reason in enumerate(REASONS):
            ticks.add_metric([reason], float(intake.counts[code]))
        yield ticks
        yield CounterMetricFamily("iopv_ticks_received", "Ticks decoded (all outcomes)",
                                  value=float(intake.counts.sum()))
        yield CounterMetricFamily("iopv_ticks_rejected", "Ticks rejected (any reason)",
                                  value=float(intake.counts[sorted(REJECTIONS)].sum()))
        yield CounterMetricFamily("iopv_tick_messages", "MQTT tick messages decoded", value=float(intake.messages))
        yield GaugeMetricFamily("iopv_tick_staged", "Ticks decoded, not yet applied", value=float(intake.pending))
        yield CounterMetricFamily("iopv_cycles", "Valuation cycles run", value=float(s.engine.cycles))
        yield CounterMetricFamily("iopv_boundaries_missed", "Boundaries skipped after a stall",
                                  value=float(s.clock.missed))
        connected = GaugeMetricFamily("iopv_connected", "1 when the connection is up", labels=["connection"])
        reconnects = CounterMetricFamily("iopv_reconnects", "Reconnect attempts", labels=["connection"])
        for name, conn in (("ticks", s.feed), ("mqtt", s.mqtt_sink), ("redis", s.redis_sink)):
            connected.add_metric([name], float(conn.connected))
            reconnects.add_metric([name], float(conn.reconnects))
        yield connected
        yield reconnects
        depth = GaugeMetricFamily("iopv_sink_queue_depth", "Publications waiting per sink", labels=["sink"])
        bound = GaugeMetricFamily("iopv_sink_queue_bound", "Queue bound per sink", labels=["sink"])
        sent = CounterMetricFamily("iopv_sink_published", "Publications sent per sink", labels=["sink"])
        lost = CounterMetricFamily("iopv_sink_dropped", "Publications dropped (queue full) per sink",
                                   labels=["sink"])
        last = GaugeMetricFamily("iopv_sink_last_boundary_seconds", "Boundary of the last publication "
                                 "sent, Unix seconds", labels=["sink"])
        for sink in (s.mqtt_sink, s.redis_sink):
            depth.add_metric([sink.name], float(sink.queued))
            bound.add_metric([sink.name], float(sink.max_queued))
            sent.add_metric([sink.name], float(sink.published))
            lost.add_metric([sink.name], float(sink.dropped))
            last.add_metric([sink.name], sink.last_ts_ns / 1e9)
        yield from (depth, bound, sent, lost, last)
        yield CounterMetricFamily("iopv_redis_peer_writes", "History entries already written for the "
                                  "boundary (by a peer replica)", value=float(s.redis_sink.peer_writes))
        yield CounterMetricFamily("iopv_replica_divergences", "Peer entries whose iopv differs from ours at "
                                  "the published digit", value=float(s.redis_sink.divergences))
        yield CounterMetricFamily("iopv_redis_late_writes", "History entries refused: the stream already "
                                  "holds a later boundary", value=float(s.redis_sink.late_writes))
        yield CounterMetricFamily("iopv_redis_skipped_writes", "Redis writes skipped: the key holds "
                                  "another type (WRONGTYPE)", value=float(s.redis_sink.skipped_writes))
        yield GaugeMetricFamily("iopv_feed_silent", "1 while the tick feed is silent", value=float(s.feed.silent))
        yield CounterMetricFamily("iopv_feed_silences", "Times the tick feed went silent",
                                  value=float(s.feed.silences))
        status = GaugeMetricFamily("iopv_symbols", "Basket symbols by tick status", labels=["status"])
        for key, value in holding_status(s, time.time_ns()).items():
            status.add_metric([key], float(value))
        yield status
        yield GaugeMetricFamily("iopv_state_restored_symbols", "Symbols restored from the saved state",
                                value=float(s.restored_symbols))


class Metrics:
    """The registry of one service plus its two histograms."""

    def __init__(self, service: Service):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServiceCollector(service))
        self.cycle_duration = Histogram("iopv_cycle_duration_seconds", "Duration of a valuation cycle",
                                        buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.publish_latency = Histogram("iopv_publish_latency_seconds", "Boundary to sent, per sink",
                                         ["sink"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        for sink in (service.mqtt_sink, service.redis_sink):
            sink.on_sent = self.publish_latency.labels(sink.name).observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
