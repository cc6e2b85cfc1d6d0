#!/usr/bin/env python3
"""Follow the IOPV values over MQTT, detect gaps, and back-fill them from Redis or the web API.

A runnable example for subscribers (docs/subscribers.md, "Gaps and back-fill"); it needs only
paho-mqtt >= 2 and, for --redis-url, redis-py (no iopv package). It prints one JSON line per
value, oldest first per fund, each with ``"via"``: ``mqtt`` (live or retained) or ``redis`` /
``api`` (back-filled), and keeps the last boundary per fund in --state, so a restart back-fills
what it missed while it was away.

A gap is seen two ways:
  - the boundary sequence: a fund's next value has ``ts`` more than one interval after the last
    one held (the interval is in every heartbeat); whatever the history holds in between was
    missed (nothing, over a night or a weekend);
  - the heartbeat: ``last_ts`` of an instance is newer than the last value held for one of its
    funds (the directory says which shard each fund is on), so a value was lost even if no
    later one has come yet.

    python docs/examples/backfill.py --mqtt-url mqtt://localhost:1883 --redis-url redis://localhost:6379/0
    python docs/examples/backfill.py --mqtt-url mqtt://localhost:1883 --api-url http://localhost:9108 \\
        --state last.json --duration 60
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import time
import urllib.parse
import urllib.request
import uuid

import paho.mqtt.client as mqtt

# Topic and key shapes (the engine's iopv/core/names.py; the test checks they agree).
VALUE_FILTER = "{prefix}/+"
HEARTBEAT_FILTER = "{prefix}/_heartbeat/+"
DIRECTORY_FILTER = "{prefix}/_directory/+"
HISTORY_KEY = "{key_prefix}:{fund}:history"


class History:
    """A fund's values between two boundaries, exclusive, from Redis or from /api/history."""

    def __init__(self, redis_url: str | None, key_prefix: str, api_url: str | None):
        self.via = "redis" if redis_url else "api"
        self.key_prefix = key_prefix
        self.api_url = (api_url or "").rstrip("/")
        self.redis = None
        if redis_url:
            import redis

            self.redis = redis.Redis.from_url(redis_url, decode_responses=True)

    def between(self, fund: str, after_ns: int, before_ns: int) -> list[dict]:
        if before_ns - after_ns <= 1_000_000:
            return []
        first_ms, last_ms = after_ns // 1_000_000 + 1, (before_ns - 1) // 1_000_000
        if self.redis is not None:
            key = HISTORY_KEY.format(key_prefix=self.key_prefix, fund=fund)
            records = []
            for _, fields in self.redis.xrange(key, min=first_ms, max=last_ms):
                record = {"fund": fund}
                for name, text in fields.items():  # strings as they are, the rest JSON text
                    try:
                        record[name] = text if name in ("status", "basket", "as_of", "instance") else json.loads(text)
                    except ValueError:
                        record[name] = text
                records.append(record)
        else:
            query = urllib.parse.urlencode({"from": first_ms, "to": last_ms})
            with urllib.request.urlopen(f"{self.api_url}/api/history/{fund}?{query}", timeout=10) as answer:
                records = json.load(answer)
        return [r for r in records if after_ns < r["ts"] < before_ns]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mqtt-url", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--prefix", default="iopv", help="mqtt.value_topic_prefix")
    parser.add_argument("--redis-url", help="back-fill from the Redis history")
    parser.add_argument("--key-prefix", default="iopv", help="redis.key_prefix")
    parser.add_argument("--api-url", help="back-fill from the engine's /api/history instead")
    parser.add_argument("--state", help="JSON file of the last boundary held per fund (read, then rewritten)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    args = parser.parse_args(argv)
    if not (args.redis_url or args.api_url):
        parser.error("give --redis-url or --api-url")
    history = History(args.redis_url, args.key_prefix, args.api_url)
    last: dict[str, int] = {}
    if args.state:
        try:
            with open(args.state) as handle:
                last = {fund: int(ts) for fund, ts in json.load(handle).items()}
        except FileNotFoundError:
            pass
    shard_of: dict[str, str] = {}
    interval_ns = 0
    inbox: queue.Queue = queue.Queue()

    url = urllib.parse.urlsplit(args.mqtt_url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"backfill-{uuid.uuid4().hex[:6]}")
    if url.username:
        client.username_pw_set(url.username, url.password)
    client.on_message = lambda _c, _u, message: inbox.put((message.topic, message.payload))
    client.on_connect = lambda c, *_a: c.subscribe([(f.format(prefix=args.prefix), 1) for f in
                                                    (VALUE_FILTER, HEARTBEAT_FILTER, DIRECTORY_FILTER)])
    client.connect(url.hostname or "127.0.0.1", url.port or 1883)
    client.loop_start()

    def emit(record: dict, via: str) -> None:
        print(json.dumps({**record, "via": via}), flush=True)

    def fill(fund: str, before_ns: int) -> None:
        """Everything the history holds for ``fund`` after the last value held and before ``before_ns``."""
        for record in history.between(fund, last[fund], before_ns):
            emit(record, history.via)
            last[fund] = record["ts"]

    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                topic, payload = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if not payload:
                continue  # an empty payload clears a retained topic (e.g. a removed fund's value)
            record = json.loads(payload)
            level = topic[len(args.prefix) + 1:]
            if level.startswith("_directory/"):
                shard_of[record["fund"]] = record["shard"]
            elif level.startswith("_heartbeat/"):
                interval_ns = round(record["interval_s"] * 1e9)
                for fund, held in list(last.items()):
                    if record["last_ts"] > held and shard_of.get(fund) == record["shard"]:
                        fill(fund, record["last_ts"] + 1)  # values up to the engine's last boundary
            elif not level.startswith("_"):
                fund, ts = record["fund"], record["ts"]
                if fund in last and ts <= last[fund]:
                    continue  # a replica's duplicate, or already back-filled
                if fund in last and (interval_ns == 0 or ts - last[fund] > interval_ns):
                    fill(fund, ts)  # the sequence jumped: read what lies between
                emit(record, "mqtt")
                last[fund] = ts
    except KeyboardInterrupt:
        pass
    finally:
        client.loop_stop()
        client.disconnect()
        if args.state:
            with open(args.state, "w") as handle:
                json.dump(last, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
