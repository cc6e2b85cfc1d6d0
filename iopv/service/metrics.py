"""Prometheus metrics of one engine instance (``prometheus_client``), served on ``/metrics``.

Counters the components already keep (tick outcomes, sink counts, reconnects) are read at scrape
time from each component's ``stats()`` (``iopv.service.components``) by a custom collector, so
the tick path pays nothing for them. Only the two latencies are histograms, observed once per
cycle and once per sent publication. Each Service has its own
registry, so several instances (or tests) never share or clash over global metrics.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from iopv.core.constants import REASONS, REJECTIONS
from iopv.engine.health import RECOVERING_REASONS, REGAINED_BY

if TYPE_CHECKING:
    from iopv.service.components import Components

#: The classic text format every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ServiceCollector:
    """Reads each component's ``stats()`` at scrape time."""

    def __init__(self, components: Components):
        self.components = components

    def collect(self):
        c = self.components
        engine = c.engine.stats(time.time_ns())
        ticks = CounterMetricFamily("iopv_ticks", "Ticks by outcome (accepted, unknown_symbol, "
                                    "out_of_order, or a rejection reason)", labels=["outcome"])
        counts = engine["ticks"]
        for code, reason in enumerate(REASONS):
            ticks.add_metric([reason], float(counts[code]))
        yield ticks
        yield CounterMetricFamily("iopv_ticks_received", "Ticks decoded (all outcomes)", value=float(sum(counts)))
        yield CounterMetricFamily("iopv_ticks_rejected", "Ticks rejected (any reason)",
                                  value=float(sum(counts[code] for code in sorted(REJECTIONS))))
        yield CounterMetricFamily("iopv_tick_messages", "MQTT tick messages decoded",
                                  value=float(engine["tick_messages"]))
        yield GaugeMetricFamily("iopv_tick_staged", "Ticks decoded, not yet applied",
                                value=float(engine["tick_staged"]))
        yield GaugeMetricFamily("iopv_tick_held", "Ticks stamped after the open boundary, waiting for it "
                                "(event time)", value=float(engine["tick_held"]))
        yield GaugeMetricFamily("iopv_book_whole", "1 while the book holds every tick; 0 while its values "
                                "are flagged recovering", value=float(engine["book_whole"]))
        recovering = GaugeMetricFamily("iopv_book_recovering", "1 for the reason the book is not whole",
                                       labels=["reason"])
        book_lost = CounterMetricFamily("iopv_book_lost", "Times the book stopped being whole, by reason",
                                        labels=["reason"])
        for reason in RECOVERING_REASONS:
            recovering.add_metric([reason], float(engine["book_recovering"] == reason))
            book_lost.add_metric([reason], float(engine["book_lost"][reason]))
        yield recovering
        yield book_lost
        regained = CounterMetricFamily("iopv_book_regained", "Times the book became whole again, by how "
                                       "(transfer: a peer's state; fresh: every symbol ticked)", labels=["how"])
        for how in REGAINED_BY:
            regained.add_metric([how], float(engine["book_regained"][how]))
        yield regained
        yield CounterMetricFamily("iopv_cycles", "Valuation cycles run", value=float(engine["cycles"]))
        yield CounterMetricFamily("iopv_boundaries_missed", "Boundaries skipped after a stall",
                                  value=float(c.clock.stats()["boundaries_missed"]))
        feed = c.feed.stats()
        sinks = [(sink.name, sink.stats()) for sink in c.sinks]
        connected = GaugeMetricFamily("iopv_connected", "1 when the connection is up", labels=["connection"])
        reconnects = CounterMetricFamily("iopv_reconnects", "Reconnect attempts", labels=["connection"])
        for name, stats in (("ticks", feed), *sinks):
            connected.add_metric([name], float(stats["connected"]))
            reconnects.add_metric([name], float(stats["reconnects"]))
        yield connected
        yield reconnects
        depth = GaugeMetricFamily("iopv_sink_queue_depth", "Publications waiting per sink", labels=["sink"])
        bound = GaugeMetricFamily("iopv_sink_queue_bound", "Queue bound per sink", labels=["sink"])
        sent = CounterMetricFamily("iopv_sink_published", "Publications sent per sink", labels=["sink"])
        lost = CounterMetricFamily("iopv_sink_dropped", "Publications dropped (queue full) per sink",
                                   labels=["sink"])
        last = GaugeMetricFamily("iopv_sink_last_boundary_seconds", "Boundary of the last publication "
                                 "sent, Unix seconds", labels=["sink"])
        replica = dict.fromkeys(("skipped_writes", "peer_writes", "divergences", "late_writes", "superseded"), 0.0)
        for name, stats in sinks:
            depth.add_metric([name], float(stats["queued"]))
            bound.add_metric([name], float(stats["max_queued"]))
            sent.add_metric([name], float(stats["published"]))
            lost.add_metric([name], float(stats["dropped"]))
            last.add_metric([name], stats["last_ts_ns"] / 1e9)
            for key in replica:
                replica[key] += stats.get(key, 0)
        yield from (depth, bound, sent, lost, last)
        yield CounterMetricFamily("iopv_redis_peer_writes", "History entries already written for the "
                                  "boundary (by a peer replica)", value=replica["peer_writes"])
        yield CounterMetricFamily("iopv_replica_divergences", "Peer entries whose iopv differs from ours at "
                                  "the published digit, both whole", value=replica["divergences"])
        yield CounterMetricFamily("iopv_redis_superseded", "Flagged (recovering) history entries of a peer "
                                  "replaced by this whole instance's values", value=replica["superseded"])
        yield CounterMetricFamily("iopv_redis_late_writes", "History entries refused: the stream already "
                                  "holds a later boundary", value=replica["late_writes"])
        yield CounterMetricFamily("iopv_redis_skipped_writes", "Redis writes skipped: the key holds "
                                  "another type (WRONGTYPE)", value=replica["skipped_writes"])
        yield GaugeMetricFamily("iopv_feed_silent", "1 while the tick feed is silent", value=float(feed["silent"]))
        yield CounterMetricFamily("iopv_feed_silences", "Times the tick feed went silent",
                                  value=float(feed["silences"]))
        status = GaugeMetricFamily("iopv_symbols", "Basket symbols by tick status", labels=["status"])
        for key, value in engine["symbols"].items():
            status.add_metric([key], float(value))
        yield status
        yield GaugeMetricFamily("iopv_state_restored_symbols", "Symbols restored from the saved state",
                                value=float(c.restored_symbols()))
        if c.journal is not None:
            yield from journal_metrics(c.journal.stats())


def journal_metrics(stats: dict[str, float]):
    """The audit journal's counters (docs/audit.md)."""
    yield CounterMetricFamily("iopv_journal_dropped", "Tick messages the journal dropped (queue full or "
                              "writer failed): the day is incomplete", value=float(stats["dropped"]))
    yield CounterMetricFamily("iopv_journal_late_releases", "Boundaries released to the sinks before their "
                              "journal marker was written (ops.journal_max_wait_ms)",
                              value=float(stats["late_releases"]))
    yield CounterMetricFamily("iopv_journal_written_bytes", "Compressed bytes written to the journal",
                              value=float(stats["bytes_written"]))
    yield GaugeMetricFamily("iopv_journal_queue_bytes", "Journal records waiting for the writer thread",
                            value=float(stats["queued_bytes"]))
    yield GaugeMetricFamily("iopv_journal_failed", "1 once the journal's writer failed (disk error)",
                            value=float(stats["failed"]))


class Metrics:
    """The registry of one service plus its two histograms."""

    def __init__(self, components: Components):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServiceCollector(components))
        self.cycle_duration = Histogram("iopv_cycle_duration_seconds", "Duration of a valuation cycle",
                                        buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.publish_latency = Histogram("iopv_publish_latency_seconds", "Boundary to sent, per sink",
                                         ["sink"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        for sink in components.sinks:
            sink.on_sent = self.publish_latency.labels(sink.name).observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
