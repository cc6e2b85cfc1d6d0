"""Targets (issue #4) and the terminal table. Targets are evaluated, reported, never asserted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: (name, key path, target text, check). A check gets the results and returns (value, passed).
TARGETS: list[tuple[str, str, str, Callable[[dict], tuple[Any, bool]]]] = []


def get(results: dict, path: str, default=None):
    """``results`` at a dotted path; ``valuation[us]`` picks the row whose ``scale`` is us."""
    node: Any = results
    for part in path.split("."):
        if node is None:
            return default
        if "[" in part:
            name, key = part[:-1].split("[")
            rows = node.get(name) if isinstance(node, dict) else None
            node = next((r for r in rows or [] if isinstance(r, dict) and r.get("scale") == key), None)
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return default if node is None else node


#: A check's verdict when the run was too small to judge the target (quick mode).
INDICATIVE = object()


def _target(name: str, path: str, text: str, op: str, bound: float) -> None:
    def check(results: dict):
        value = get(results, path)
        if not isinstance(value, (int, float)):
            return None, None
        return value, (value <= bound if op == "<=" else value >= bound)
    TARGETS.append((name, path, text, check))


_target("valuation US scale p50", "valuation[us].engine_ms_p50", "<= 2 ms", "<=", 2.0)
_target("valuation US speed-up vs scipy", "valuation[us].speedup_vs_scipy", ">= 1.5x", ">=", 1.5)
_target("batched tick intake", "ingest.batched_ticks_per_s", ">= 1,000,000 ticks/s", ">=", 1_000_000)
_target("end to end, single-tick msgs", "end_to_end.sustained_msgs_per_s", ">= 50,000 msgs/s", ">=", 50_000)
_target("cycle -> last MQTT publish p99", "cycle.mqtt_boundary_to_last_publish_ms_p99", "<= 100 ms", "<=", 100.0)
_target("cycle -> last Redis publish p99", "cycle.redis_boundary_to_last_publish_ms_p99", "<= 100 ms", "<=", 100.0)
_target("Redis Cluster 3+3: cycle -> last write p99", "cluster.redis_cluster_boundary_to_last_write_ms_p99",
        "<= 100 ms", "<=", 100.0)
_target("Redis master failover: history gap after recovery", "cluster.failover_longest_history_gap_boundaries",
        "0 boundaries", "<=", 0.0)
_target("boundary jitter p99", "cycle.jitter_ms_p99", "<= 5 ms", "<=", 5.0)


def _realtime_check(scale: str, throttle_ms: float, figure: str):
    def check(results: dict):
        row = next((r for r in get(results, "realtime", []) or []
                    if r.get("scale") == scale and r.get("throttle_ms") == throttle_ms), None)
        if row is None or not row.get(figure):
            return None, None
        p99 = row[figure]["p99"] / 1e3
        return p99, p99 <= 2.0 and row["achieved_ticks_per_s"] >= 0.98 * row["offered_ticks_per_s"]
    return check


#: The issue defines the replay target on a tape of this many ticks.
REPLAY_TARGET_TICKS = 1_000_000


def _replay_check(results: dict):
    engine, pandas = get(results, "replay.engine_s"), get(results, "replay.pandas_s")
    if not isinstance(engine, (int, float)) or not isinstance(pandas, (int, float)):
        return None, None
    if (get(results, "replay.ticks") or 0) < REPLAY_TARGET_TICKS:
        # Quick mode's short tape: the engine's per-boundary work (three sides, quality, exact
        # ties) outweighs pandas' one-side product there; indicative only, not the target.
        return engine, INDICATIVE
    return engine, engine < pandas


_target("journal on / off, MQTT single-tick rate", "journal.mqtt_on_over_off", ">= 0.9", ">=", 0.9)
_target("journal on / off, engine loop capacity", "journal.loop_capacity_on_over_off", ">= 0.9", ">=", 0.9)
TARGETS.append(("replay faster than pandas", "replay.engine_s", "< replay.pandas_s", _replay_check))
for _scale in ("demo", "us"):
    # The feature as specified: every tick updates its funds' values at once, publication is
    # throttled per fund (default 250 ms); the value's latency is the target.
    TARGETS.append((f"real-time tick -> value p99, {_scale}", f"realtime[{_scale},250ms].tick_to_value_us",
                    "<= 2 ms at 20,000 ticks/s", _realtime_check(_scale, 250.0, "tick_to_value_us")))
    # Unthrottled, every move is also published at once: the same bound on the publication.
    TARGETS.append((f"real-time tick -> published p99, {_scale}, no throttle",
                    f"realtime[{_scale},0ms].tick_to_publish_us", "<= 2 ms at 20,000 ticks/s",
                    _realtime_check(_scale, 0.0, "tick_to_publish_us")))


def targets(results: dict) -> list[dict]:
    out = []
    for name, path, text, check in TARGETS:
        value, passed = check(results)
        out.append({"name": name, "key": path, "target": text, "value": value,
                    "status": "NOT RUN" if passed is None else "QUICK" if passed is INDICATIVE
                    else ("PASS" if passed else "MISS")})
    return out


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 10_000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.{digits}g}"
    return str(value)


def _table(headers: list[str], rows: list[list], indent: str = "  ") -> list[str]:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = indent + "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths)))
    out = [line, indent + "  ".join("-" * w for w in widths)]
    for r in cells:
        out.append(indent + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return out


def render(results: dict) -> str:
    """The whole run as readable text."""
    lines: list[str] = []
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    lines.append(f"iopv benchmark ({meta.get('mode')} mode, {meta.get('started_at')}, {meta.get('duration_s')} s) "
                 f"on {m.get('cpu_model')} x{m.get('cpu_count')}, Python {m.get('python')}, "
                 f"numpy {m.get('numpy')}, numba {m.get('numba')}; load avg at start {m.get('loadavg_at_start')}")

    def errored(name: str) -> bool:
        section = results.get(name)
        if isinstance(section, dict) and "error" in section:
            lines.append(f"\n{name}: ERROR {section['error']}")
            return True
        return section is None

    if not errored("universes"):
        lines.append("\nUniverses")
        rows = [[r["scale"], r.get("funds"), r.get("holdings"), r.get("securities"), r.get("fx_pairs"),
                 r.get("foreign_holdings"), f"{r.get('basket_min')}/{r.get('basket_p50')}/{r.get('basket_max')}",
                 r.get("build_universe_s") or r.get("load_s"), r.get("route")]
                for r in results["universes"].get("scales", [])]
        lines += _table(["scale", "funds", "holdings", "securities", "fx pairs", "foreign h.", "basket min/p50/max",
                         "load s", "route"], rows)
    if not errored("valuation"):
        lines.append("\nValuation of every fund (ms per call; p50 / p99)")
        rows = [[r["scale"], r["holdings"], f"{fmt(r['engine_ms_p50'])} / {fmt(r['engine_ms_p99'])}",
                 f"{fmt(r['scipy_ms_p50'])} / {fmt(r['scipy_ms_p99'])}", f"{r['speedup_vs_scipy']:.2f}x",
                 f"{fmt(r['scipy_split_ms_p50'])} / {fmt(r['scipy_split_ms_p99'])}",
                 f"{r['speedup_vs_scipy_split']:.2f}x",
                 f"{fmt(r['valuer_ms_p50'])} / {fmt(r['valuer_ms_p99'])}", r["valuer_without_exact_ties_ms_p50"],
                 r["near_ties_per_call"]]
                for r in results["valuation"]]
        lines += _table(["scale", "holdings", "value_packed_nb", "scipy CSR", "vs scipy", "scipy split",
                         "vs split", "live Valuer.frame", "frame w/o ties", "ties/call"], rows)
    if not errored("ingest"):
        i = results["ingest"]
        lines.append(f"\nTick intake (US-scale book, {i['book_symbols']:,} symbols; median of {i['repetitions']})")
        rows = [[k, v["engine_ticks_per_s_p50"], v["engine_ticks_per_s_min"], v["engine_ticks_per_s_max"],
                 v["baseline_ticks_per_s_p50"], v["flush_share_of_time"]] for k, v in i["per_workload"].items()]
        lines += _table(["workload", "engine ticks/s", "min", "max", "baseline ticks/s", "flush share"], rows)
        p = i["profile_batched_1000"]
        lines.append("  per tick, batched 1000 (ns): " + ", ".join(f"{k.replace('_ns_per_tick', '')} {v:.0f}"
                                                              for k, v in p.items()))
    if not errored("end_to_end"):
        e = results["end_to_end"]
        lines.append(f"\nEnd to end over Mosquitto ({e['universe']}, interval {e['interval_s']} s, "
                     f"{e['window_s']} s per rate)")
        rows = [[r["offered_msgs_per_s"], r["achieved_offered_msgs_per_s"], r["absorbed_msgs_per_s"],
                 r["delivered_ratio"], r["backlog_at_end_msgs"], "yes" if r["sustained"] else "no",
                 r.get("tick_to_publish_us_p50", 0) / 1e3, r.get("tick_to_publish_us_p99", 0) / 1e3,
                 r.get("missed_first_boundary_ratio")] for r in e["rates"]]
        lines += _table(["offered/s", "sent/s", "absorbed/s", "delivered", "backlog", "sustained",
                         "lat p50 ms", "lat p99 ms", "missed bnd"], rows)
        t, b = e["tick_to_publish_us"], e["boundary_to_publish_us"]
        lines.append(f"  tick -> publish at {e['latency_at_msgs_per_s']:,}/s (us): p50 {fmt(t['p50'])}, "
                     f"p99 {fmt(t['p99'])}, p99.9 {fmt(t['p999'])}, max {fmt(t['max'])}; "
                     f"engine part (boundary -> received): p50 {fmt(b['p50'])}, p99 {fmt(b['p99'])}")
        if "cut_to_publish_us" in e:
            k = e["cut_to_publish_us"]
            lines.append(f"  from the cut (boundary + {fmt(e['watermark_ms'])} ms watermark) -> received (us): "
                         f"p50 {fmt(k['p50'])}, p99 {fmt(k['p99'])}, max {fmt(k['max'])}")
        c = e["ceilings"]
        lines.append(f"  ceilings in-process (msgs/s): aiomqtt receive loop {fmt(c['aiomqtt_receive_msgs_per_s'])}, "
                     f"MqttTickFeed+TickIntake {fmt(c['feed_intake_msgs_per_s'])}, "
                     f"aiomqtt publish {fmt(c['aiomqtt_publish_msgs_per_s'])}")
    if not errored("cycle"):
        c = results["cycle"]
        lines.append(f"\nCycle at US scale ({c['funds']:,} funds, {c['cycles']} isolated cycles; ms)")
        rows = [["engine cycle (value+round+records)", c["engine_cycle_ms_p50"], c["engine_cycle_ms_p99"]],
                ["boundary -> last MQTT publish", c["mqtt_boundary_to_last_publish_ms_p50"],
                 c["mqtt_boundary_to_last_publish_ms_p99"]],
                ["boundary -> last Redis publish", c["redis_boundary_to_last_publish_ms_p50"],
                 c["redis_boundary_to_last_publish_ms_p99"]],
                ["boundary -> last publish (both)", c["boundary_to_last_publish_ms_p50"],
                 c["boundary_to_last_publish_ms_p99"]]]
        for name, label in (("mqtt", "mqtt sink alone"), ("redis", "redis sink alone"),
                            ("redis_pipeline", "redis sink alone, pipeline mode")):
            if f"{name}_alone_boundary_to_last_publish_ms_p50" in c:
                rows.append([f"  {label}", c[f"{name}_alone_boundary_to_last_publish_ms_p50"],
                             c[f"{name}_alone_boundary_to_last_publish_ms_p99"]])
        rows.append(["event-loop stall while publishing", None, c["loop_stall_while_publishing_ms_p99"]])
        rows.append([f"clock jitter ({c['jitter_boundaries']} x {c['jitter_interval_s']} s, demo)",
                     c["jitter_ms_p50"], c["jitter_ms_p99"]])
        if "jitter_clock_only_ms_p99" in c:
            rows.append(["  bare clock, idle loop", c["jitter_clock_only_ms_p50"], c["jitter_clock_only_ms_p99"]])
        lines += _table(["", "p50", "p99"], rows)
    if not errored("memory"):
        mem = results["memory"]
        lines.append(f"\nMemory (US scale): {mem['array_bytes_per_holding']:.1f} array B/holding, "
                     f"{mem['array_bytes_per_security']:.1f} B/book slot, {mem['array_bytes_per_fund']:.0f} B/fund; "
                     f"arrays {mem['array_bytes_total'] / 1e6:.1f} MB, RSS delta {mem['rss_delta_bytes'] / 1e6:.1f} MB "
                     f"({mem['rss_delta_bytes_per_holding']:.1f} B/holding)")
        s = results.get("startup", {})
        if "demo_cold" in s:
            cold, cached = s["demo_cold"], s["demo_cached"]
            us = s.get("us_cached")
            lines.append(f"Start-up (demo): cold JIT {cold['total_s']:.2f} s (warm-up {cold['warm_up_s']:.2f} s), "
                         f"cached {cached['total_s']:.2f} s (warm-up {cached['warm_up_s']:.2f} s)"
                         + (f"; US scale cached: load_pcf {us['load_pcf_s']:.1f} s, total {us['total_s']:.1f} s, "
                            f"peak RSS {us['peak_rss_mb']:.0f} MB" if us else ""))
    if not errored("replay"):
        r = results["replay"]
        lines.append(f"\nReplay ({r['ticks']:,} ticks, {r['boundaries']} boundaries x {r['funds']:,} funds): "
                     f"engine {r['engine_s']:.2f} s (decode {r['engine_decode_s']:.2f} "
                     f"+ kernel {r['engine_kernel_s']:.2f}), "
                     f"pandas {r['pandas_s']:.2f} s (parse {r['pandas_parse_s']:.2f} + pivot {r['pandas_pivot_s']:.2f} "
                     f"+ multiply {r['pandas_multiply_s']:.2f}); engine/pandas speed-up {r['speedup_vs_pandas']:.2f}x; "
                     f"max |diff| {r['max_abs_diff']:.2g}")

    if not errored("cluster") and results.get("cluster"):
        c = results["cluster"]
        lines.append(f"\nBeyond one machine ({c['funds']:,} funds; Redis Cluster 3+3, NATS 3 nodes)")
        lines += _table(["", "value"], [
            ["Redis Cluster: boundary -> last write p50 / p99 (ms)",
             f"{fmt(c['redis_cluster_boundary_to_last_write_ms_p50'])} / "
             f"{fmt(c['redis_cluster_boundary_to_last_write_ms_p99'])}"],
            ["second replica, all refused: boundary -> last write p50 (ms)",
             fmt(c["replica_boundary_to_last_write_ms_p50"])],
            ["master SIGKILL -> first whole publication written (s)", fmt(c["failover_first_write_s"])],
            ["longest history gap after recovery (boundaries)", c["failover_longest_history_gap_boundaries"]],
            ["US cycle through NATS MQTT, retained QoS 1 / QoS 0 (ms)",
             f"{fmt(c['nats_cycle_ms_qos1'])} / {fmt(c['nats_cycle_ms_qos0'])}"],
            ["US cycle through Mosquitto, retained QoS 1 (ms)", fmt(c["mosquitto_cycle_ms_qos1"])]])
        sh = c.get("shards")
        if sh:
            for label in ("one_shard", "two_shards"):
                parts = ", ".join(f"{r['shard']}: {r['absorbed_msgs_per_s']:,.0f}/s (~{r['delivered_ratio']:.1%} "
                                  f"delivered, {r['topic_share']:.0%} of topics)" for r in sh[label]["shards"])
                lines.append(f"  single-tick intake, {label.replace('_', ' ')}, offered "
                             f"{sh[label]['achieved_offered_msgs_per_s']:,.0f}/s: absorbed "
                             f"{sh[label]['absorbed_msgs_per_s']:,.0f}/s ({parts})")
    if not errored("realtime") and results.get("realtime"):
        lines.append("\nReal-time mode (20,000 ticks/s offered; latencies in ms, p50 / p99 / p99.9)")
        rows = []
        for r in results["realtime"]:
            v, p = r["tick_to_value_us"], r.get("tick_to_publish_us") or {}
            rows.append([r["scale"], f"{r['throttle_ms']:g}", f"{r['achieved_ticks_per_s']:,.0f}",
                         " / ".join(fmt(v[k] / 1e3) for k in ("p50", "p99", "p999")),
                         " / ".join(fmt(p[k] / 1e3) for k in ("p50", "p99", "p999")) if p else "-",
                         f"{r['records_per_s']:,.0f}"])
        lines += _table(["scale", "throttle ms", "ticks/s", "tick -> value", "tick -> published", "values/s"], rows)

    if not errored("journal"):
        j = results["journal"]
        p = j["in_process"]
        lines.append(f"\nAudit journal: MQTT single-tick messages offered flat out ({j['offered_msgs_per_s']:,}/s "
                     f"asked), absorbed {j['mqtt_absorbed_off_msgs_per_s']:,.0f}/s journal off vs "
                     f"{j['mqtt_absorbed_on_msgs_per_s']:,.0f}/s on (both engines subscribed at once, "
                     f"{len(j['runs'])} windows): on/off {j['mqtt_on_over_off']:.2f} (median of the "
                     f"windows' ratios), fewest delivered "
                     f"{j['mqtt_delivered_min']:.1%}; {j['mqtt_bytes_per_tick']:.1f} B on disk per tick message")
        lines.append(f"  engine CPU per message: event loop {j['loop_cpu_us_per_msg_off']:.2f} us off vs "
                     f"{j['loop_cpu_us_per_msg_on']:.2f} us on (capacity on/off {j['loop_capacity_on_over_off']:.2f}); "
                     f"whole process {j['process_cpu_us_per_msg_off']:.2f} vs {j['process_cpu_us_per_msg_on']:.2f} us")
        lines.append(f"  in process ({p['ticks']:,} messages): live feed path {p['live_off_ticks_per_s']:,.0f}/s off, "
                     f"{p['live_on_ticks_per_s']:,.0f}/s on; {p['bytes_per_tick']:.1f} B/tick on disk "
                     f"({p['payload_bytes_per_tick']:.1f} B payload); journal replay "
                     f"{p['journal_replay_ticks_per_s']:,.0f} "
                     f"ticks/s vs tape replay {p['tape_replay_ticks_per_s']:,.0f} ticks/s; "
                     f"{p['replay_matched']}/{p['boundaries']} boundaries identical")
        w = j.get("write_ahead")
        if w:
            lines.append(f"  write-ahead wait per boundary (marker queued -> values released): p50 "
                         f"{w['marker_wait_ms_p50']:.2f} ms, p90 {w['marker_wait_ms_p90']:.2f} ms, "
                         f"max {w['marker_wait_ms_max']:.2f} ms")

    lines.append("\nTargets (issue #4)")
    rows = [[t["name"], t["value"], t["target"], t["status"]] for t in results.get("targets", [])]
    lines += _table(["figure", "value", "target", "status"], rows)
    return "\n".join(lines)
