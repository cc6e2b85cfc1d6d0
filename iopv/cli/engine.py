"""The commands that run the engine: ``run``, ``demo``, ``replay`` (a tape or a journal),
``explain``, ``check-pcf`` and ``shards``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter

import numpy as np

from iopv.cli.common import run_async, settings_from
from iopv.config import ConfigError
from iopv.core.constants import REASONS, REJECTIONS, counts_by_reason
from iopv.core.universe import PcfError, load_pcf

log = logging.getLogger("iopv")


def cmd_run(args: argparse.Namespace) -> int:
    from iopv.service.live import Service

    settings = settings_from(args)
    return run_async(Service(settings).run())


def cmd_demo(args: argparse.Namespace) -> int:
    from iopv.cli.display import TerminalDisplay
    from iopv.demo.run import demo

    settings = settings_from(args, calendar="always")  # the simulator ticks around the clock
    return demo(settings,
                own_mqtt=not (args.mqtt_url or os.environ.get("IOPV_MQTT_URL")),
                own_redis=not (args.redis_url or os.environ.get("IOPV_REDIS_URL")),
                ticks_per_s=args.ticks_per_s, seed=args.seed, duration_s=args.duration,
                runner=run_async, display_factory=TerminalDisplay)


def cmd_replay(args: argparse.Namespace) -> int:
    if args.journal:
        return cmd_replay_journal(args)
    if not args.tape:
        raise ConfigError("replay: give --tape FILE (with --pcf) or --journal FILE")
    from iopv.engine.publication import build_publication, static_fields
    from iopv.engine.replay import replay_frames
    from iopv.engine.tape import read_tape

    settings = settings_from(args, decimals=args.decimals, calendar=args.calendar)
    universe = load_pcf(settings.engine.pcf_path)
    e = settings.engine
    static = static_fields(universe)
    try:
        tape = read_tape(args.tape, universe.book_index())
    except OSError as exc:
        raise ConfigError(f"{args.tape}: cannot read tape: {exc.strerror or exc}") from None
    out = sys.stdout.buffer
    boundaries = 0
    for boundary, frame in replay_frames(
            universe, tape, interval_ns=e.interval_ns, decimals=e.decimals, calendar=e.calendar,
            stale_after_ns=round(e.stale_after_s * 1e9), min_coverage=e.min_coverage,
            halted_weight=e.halted_weight, spike_pct=e.spike_pct,
            spike_confirm_ticks=e.spike_confirm_ticks):
        out.write(b"\n".join(build_publication(universe, boundary, frame, static=static).payloads) + b"\n")
        boundaries += 1
    out.flush()
    counts = np.bincount(tape.code, minlength=len(REASONS))
    print(f"replay: {len(tape)} ticks, {boundaries} boundaries x {len(universe.funds)} funds; "
          f"outcomes {counts_by_reason(counts)}", file=sys.stderr)
    if args.rejects:
        reasons = Counter()
        for line, code in zip(tape.line.tolist(), tape.code.tolist()):
            if code in REJECTIONS:
                reasons[code] += 1
                if reasons[code] <= 20:
                    print(f"{args.tape}:{line}: rejected: {REASONS[code]}", file=sys.stderr)
    return 0


def _journal_events(path: str):
    from iopv.adapters.journal import JournalReader, events

    reader = JournalReader(path)
    return reader, events(reader)


def cmd_replay_journal(args: argparse.Namespace) -> int:
    """Exit 0: every boundary reproduced; 3: the journal is damaged or incomplete (what is whole
    was replayed); 4: a boundary differs from what the live engine published."""
    from iopv.adapters.journal import JournalError
    from iopv.engine.journal_replay import JournalReplay, JournalReplayError

    reader, stream = _journal_events(args.journal)
    replay = JournalReplay(stream)
    out = sys.stdout.buffer
    problem = None
    try:
        for boundary in replay:
            if boundary.publication is not None:
                out.write(b"\n".join(boundary.publication.payloads) + b"\n")
    except (JournalError, JournalReplayError) as exc:
        problem = str(exc)
    out.flush()
    stats = replay.stats
    print(f"replay: {args.journal}: {stats.ticks} tick messages, {stats.boundaries} boundaries, "
          f"{stats.matched} identical to the published digest, {stats.mismatched} different; "
          f"{stats.sessions} session(s), {stats.reloads} basket reload(s), {stats.restores} restart restore(s); "
          f"{'clean stop' if stats.clean_end else 'no clean stop recorded'}", file=sys.stderr)
    status = 0
    flag = f"{args.journal}.incomplete"
    if os.path.exists(flag):
        with open(flag, encoding="utf-8", errors="replace") as handle:
            print(f"iopv replay: {flag}: the day is flagged incomplete:\n{handle.read().rstrip()}", file=sys.stderr)
        status = 3
    if stats.count_mismatches:
        print(f"iopv replay: {args.journal}: {stats.count_mismatches} boundary marker(s) count tick messages the "
              "journal does not hold (records missing)", file=sys.stderr)
        status = 3
    if reader.damage is not None:
        print(f"iopv replay: {reader.damage}", file=sys.stderr)
        status = 3
    if problem:
        print(f"iopv replay: {args.journal}: {problem}", file=sys.stderr)
        status = 3
    if stats.dropped or reader.dropped:
        print(f"iopv replay: {args.journal}: incomplete: {max(stats.dropped, reader.dropped)} tick message(s) "
              "were dropped by the live writer; boundaries after the first drop may differ", file=sys.stderr)
        status = 3
    if stats.mismatched:
        print(f"iopv replay: {stats.mismatched} boundary(ies) differ from the live publication, the first at "
              f"ts={stats.first_mismatch}", file=sys.stderr)
        status = 4 if status == 0 else status
    return status


def parse_time(text: str, *, tz: str | None, day: str | None) -> int:
    """ns since the epoch from an int (ns), an ISO date-time (naive: in ``tz``, default UTC) or a
    bare time of day (on ``day``, YYYY-MM-DD)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from iopv.adapters.redis.history import parse_time_ns

    text = text.strip()
    if text.isdigit():
        return int(text)
    zone = ZoneInfo(tz) if tz else dt.UTC
    try:
        if "T" not in text and " " not in text and len(text) <= 15:
            if day is None:
                raise ValueError("a bare time needs a day: give --journal FILE or a full date-time")
            text = f"{day}T{text}"
        return parse_time_ns(text.replace(" ", "T"), zone=zone)
    except ValueError as exc:
        raise ConfigError(f"--at: expected nanoseconds, YYYY-MM-DDTHH:MM:SS[+HH:MM] or HH:MM:SS: {exc}") from None


def cmd_explain(args: argparse.Namespace) -> int:
    import re

    import orjson

    from iopv.adapters.journal import JournalError
    from iopv.engine.explain import explain, to_json, to_text
    from iopv.engine.journal_replay import JournalReplay, JournalReplayError

    path = args.journal
    day = None
    if path:
        match = re.search(r"(\d{4}-\d{2}-\d{2})\.iopvj$", path)
        day = match.group(1) if match else None
    at_ns = parse_time(args.at, tz=args.tz, day=day)
    if not path:
        from iopv.adapters.journal.files import journal_path

        settings = settings_from(args)
        if not settings.ops.journal_dir:
            raise ConfigError("explain: give --journal FILE, or set ops.journal_dir in the configuration")
        path = str(journal_path(settings.ops.journal_dir, settings.engine.instance, at_ns))
    reader, stream = _journal_events(path)
    found = None
    try:
        for boundary in JournalReplay(stream):
            if boundary.boundary_ns > at_ns:
                break
            if boundary.publication is None or args.fund not in boundary.publication.funds:
                continue
            found = explain(boundary.engine, args.fund, boundary.publication)
            found["journal_digest_matches"] = boundary.matches
    except (JournalError, JournalReplayError) as exc:
        print(f"iopv explain: {path}: {exc}", file=sys.stderr)
    if reader.damage is not None:
        print(f"iopv explain: {reader.damage}", file=sys.stderr)
    if found is None:
        print(f"iopv explain: {path}: no published boundary of {args.fund} at or before {args.at}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(to_json(found), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(to_text(found))
        if not found["journal_digest_matches"]:
            print("WARNING: this boundary's replay differs from the digest the live engine recorded")
    return 0 if found["equal"] and found["journal_digest_matches"] else 4


def cmd_check_pcf(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            universe = load_pcf(path)
        except PcfError as exc:
            print(exc, file=sys.stderr)
            status = 1
            continue
        print(f"{path}: ok: {len(universe.funds)} funds, {universe.holdings} holdings, "
              f"{len(universe.symbols)} symbols")
    return status


def cmd_shards(args: argparse.Namespace) -> int:
    from iopv.core.shard import Shard, load_shard, tick_symbols

    if args.count < 1:
        raise ConfigError(f"--count: expected >= 1, got {args.count}")
    whole = load_pcf(args.file)
    print(f"{args.file}: {len(whole.funds)} funds, {whole.holdings} holdings, {len(whole.symbols)} symbols; "
          f"shard = crc32(ticker) mod {args.count}")
    for k in range(args.count):
        universe = load_shard(args.file, Shard(k, args.count))
        print(f"shard {k}/{args.count}: {len(universe.funds)} funds, {universe.holdings} holdings, "
              f"{len(tick_symbols(universe))} tick symbols")
        if args.funds:
            print("  " + " ".join(universe.funds))
    return 0
