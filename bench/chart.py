"""The main figures of a results file as one PNG (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OK, BAD, ALT, GREY = "#2b7bba", "#d95f02", "#7f7f7f", "#bbbbbb"


def _missing(ax, title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color=GREY)
    ax.set_xticks([])
    ax.set_yticks([])


def _valuation(ax, results: dict) -> None:
    rows = results.get("valuation")
    if not isinstance(rows, list):
        return _missing(ax, "Valuation")
    names = [r["scale"] for r in rows]
    x = range(len(rows))
    width = 0.2
    series = [("value_packed_nb", "engine_ms_p50", OK), ("scipy CSR", "scipy_ms_p50", ALT),
              ("scipy split", "scipy_split_ms_p50", GREY), ("live Valuer.frame", "valuer_ms_p50", BAD)]
    for k, (label, key, color) in enumerate(series):
        ax.bar([i + (k - 1.5) * width for i in x], [r[key] for r in rows], width, label=label, color=color)
    ax.axhline(2.0, color="k", ls="--", lw=0.8)
    ax.text(len(rows) - 0.5, 2.0, "target 2 ms (US)", va="bottom", ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(list(x), [f"{n}\n{r['holdings']:,} h" for n, r in zip(names, rows)])
    ax.set_ylabel("ms per full valuation (p50)")
    ax.set_title("Valuation of every fund")
    ax.legend(fontsize=7)


def _ingest(ax, results: dict) -> None:
    i = results.get("ingest")
    if not isinstance(i, dict) or "per_workload" not in i:
        return _missing(ax, "Tick intake")
    names = list(i["per_workload"])
    x = range(len(names))
    ax.bar([k - 0.2 for k in x], [i["per_workload"][n]["engine_ticks_per_s_p50"] for n in names], 0.4,
           label="TickIntake", color=OK)
    ax.bar([k + 0.2 for k in x], [i["per_workload"][n]["baseline_ticks_per_s_p50"] for n in names], 0.4,
           label="orjson + dict baseline", color=ALT)
    ax.axhline(1_000_000, color="k", ls="--", lw=0.8)
    ax.text(len(names) - 0.5, 1_000_000, "target 1M ticks/s (batched)", va="bottom", ha="right", fontsize=7)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("ticks / s (median)")
    ax.set_title("Tick intake (decode + flush)")
    ax.legend(fontsize=7)


def _end_to_end(ax, results: dict) -> None:
    e = results.get("end_to_end")
    if not isinstance(e, dict) or "rates" not in e:
        return _missing(ax, "End to end")
    offered = [r["offered_msgs_per_s"] for r in e["rates"]]
    absorbed = [r["absorbed_msgs_per_s"] for r in e["rates"]]
    top = max(offered + [50_000]) * 1.1
    ax.plot([0, top], [0, top], color=GREY, lw=0.8, label="absorbed = offered")
    ax.plot(offered, absorbed, "o-", color=OK, label="engine absorbed")
    c = e.get("ceilings", {})
    for key, label, color in (("aiomqtt_receive_msgs_per_s", "aiomqtt receive ceiling", BAD),
                              ("feed_intake_msgs_per_s", "feed + intake ceiling", ALT)):
        if c.get(key):
            ax.axhline(c[key], color=color, ls=":", lw=1, label=label)
    ax.axvline(50_000, color="k", ls="--", lw=0.8)
    ax.text(50_000, top * 0.02, " target 50k", fontsize=7)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("offered single-tick msgs / s")
    ax.set_ylabel("msgs / s")
    ax.set_title(f"End to end over Mosquitto (sustained {e['sustained_msgs_per_s']:,}/s)")
    ax.legend(fontsize=7)


def _latency(ax, results: dict) -> None:
    e = results.get("end_to_end")
    if not isinstance(e, dict) or "rates" not in e:
        return _missing(ax, "Tick -> publish latency")
    labels = ["p50", "p99", "p999", "max"]
    for r, color in zip(e["rates"], [OK, ALT, BAD, GREY, "k"]):
        values = [r.get(f"tick_to_publish_us_{q}") for q in labels]
        if None in values:
            continue
        ax.plot(labels, [v / 1e3 for v in values], "o-", color=color, label=f"{r['offered_msgs_per_s']:,}/s")
    ax.axhline(e["interval_s"] * 1e3, color=GREY, ls=":", lw=1)
    ax.text(0, e["interval_s"] * 1e3, f"interval {e['interval_s']} s", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms (HDR histogram)")
    ax.set_title("Tick sent -> value received (probe fund)")
    ax.legend(fontsize=7, title="offered", title_fontsize=7)


def _cycle(ax, results: dict) -> None:
    c = results.get("cycle")
    if not isinstance(c, dict) or "engine_cycle_ms_p50" not in c:
        return _missing(ax, "Cycle at US scale")
    names = ["engine cycle", "MQTT sink", "Redis sink", "jitter (demo)"]
    p50 = [c["engine_cycle_ms_p50"], c["mqtt_boundary_to_last_publish_ms_p50"],
           c["redis_boundary_to_last_publish_ms_p50"], c["jitter_ms_p50"]]
    p99 = [c["engine_cycle_ms_p99"], c["mqtt_boundary_to_last_publish_ms_p99"],
           c["redis_boundary_to_last_publish_ms_p99"], c["jitter_ms_p99"]]
    x = range(len(names))
    ax.bar([k - 0.2 for k in x], p50, 0.4, label="p50", color=OK)
    ax.bar([k + 0.2 for k in x], p99, 0.4, label="p99", color=BAD)
    ax.axhline(100, color="k", ls="--", lw=0.8)
    ax.text(2.5, 100, "target 100 ms (sinks)", va="bottom", ha="right", fontsize=7)
    ax.axhline(5, color="k", ls=":", lw=0.8)
    ax.text(3.5, 5, "target 5 ms (jitter)", va="bottom", ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(list(x), names, fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title(f"Boundary -> last publish, {c['funds']:,} funds")
    ax.legend(fontsize=7)


def _replay(ax, results: dict) -> None:
    r = results.get("replay")
    if not isinstance(r, dict) or "engine_s" not in r:
        return _missing(ax, "Replay")
    ax.barh(["engine"], [r["engine_decode_s"]], color=ALT, label="decode (tickscan)")
    ax.barh(["engine"], [r["engine_kernel_s"]], left=[r["engine_decode_s"]], color=OK, label="replay kernel + ties")
    ax.barh(["pandas"], [r["pandas_parse_s"]], color=GREY, label="read_json")
    ax.barh(["pandas"], [r["pandas_pivot_s"]], left=[r["pandas_parse_s"]], color="#9ecae1", label="pivot + ffill")
    ax.barh(["pandas"], [r["pandas_multiply_s"]], left=[r["pandas_parse_s"] + r["pandas_pivot_s"]],
            color="#fdae6b", label="sparse multiply")
    ax.set_xlabel("seconds")
    ax.set_title(f"Replay of {r['ticks']:,} ticks ({r['boundaries']} boundaries)")
    ax.legend(fontsize=7)


def draw(results: dict, path: str | Path) -> Path:
    """Write the chart; returns its path."""
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    for draw_one, ax in zip((_valuation, _ingest, _end_to_end, _cycle, _latency, _replay), axes.flat):
        try:
            draw_one(ax, results)
        except (KeyError, TypeError, ValueError) as exc:
            ax.clear()
            _missing(ax, f"{draw_one.__name__.strip('_')}: {type(exc).__name__}")
    meta = results.get("meta", {})
    m = meta.get("machine", {})
    targets = results.get("targets", [])
    counts = {k: sum(t["status"] == k for t in targets) for k in ("PASS", "MISS", "NOT RUN", "QUICK")}
    missed = [t["name"] for t in targets if t["status"] == "MISS"]
    status = (f"targets: {counts['PASS']} pass, {counts['MISS']} miss, {counts['NOT RUN']} not run, "
              f"{counts['QUICK']} indicative (quick)"
              + (f" (missed: {'; '.join(missed)})" if missed else ""))
    fig.suptitle(f"iopv benchmark, {meta.get('mode')} mode, {meta.get('started_at')} -- {m.get('cpu_model')} "
                 f"x{m.get('cpu_count')}, numba {m.get('numba')}, numpy {m.get('numpy')}\n{status}", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
