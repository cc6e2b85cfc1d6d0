"""Publishing one cycle's values over MQTT, four ways, against a throwaway Mosquitto:
3,500 retained messages of ~400 bytes, until the broker has acknowledged every one (QoS 1).

- ``aiomqtt``: ``aiomqtt.Client.publish`` with 64 in flight (the sink's path before
  iopv/adapters/mqtt/wire.py, and its QoS 2 path still);
- ``paho``: paho's ``Client.publish`` called directly on the loop's thread, completions counted
  in ``on_publish`` (paho's in-flight limit off: with it, each PUBACK rescans every message);
- ``sink``: ``MqttSink.send`` -- pre-encoded packets through paho's queue, PUBACKs taken out of
  the byte stream (QoS 1, and QoS 0: written to the socket);
- ``raw``: the same bytes over a plain blocking socket in a thread, no event loop, PUBACKs
  acknowledged at once as the sink does (TCP_QUICKACK): the broker's pace with nothing of ours
  in the way (``sink`` should come close to it; it is not a strict floor on a noisy machine).

Reported per contender: wall time (median, max) and the CPU the publishing thread spent (median,
and per message). Contenders alternate round by round, on uvloop, after one warm-up round each.

    PYTHONPATH=. python -m bench.mqtt_publish [--funds 3500] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import socket
import time
import uuid

import numpy as np
import orjson
import uvloop

from iopv.adapters.mqtt import wire as mqtt_wire
from iopv.adapters.mqtt.client import make_client, paho_client
from iopv.adapters.mqtt.sink import QUICKACK, MqttSink
from iopv.config import load_settings
from iopv.engine.publication import Publication
from iopv.localservers.servers import local_servers


def publication(funds: int, seed: int = 7) -> Publication:
    rng = np.random.default_rng(seed)
    names = tuple(f"F{i:04d}" for i in range(funds))
    records = [{"fund": name, "ts": 1_700_000_015_000_000_000, "iopv": round(float(v), 4), "coverage": 0.9987,
                "stale": 3, "halted": 0, "status": "ok", "flags": ["stale"], "basket": "2024-04-01T06:00:00Z",
                "as_of": "2024-04-01", "estimated_cash": 1234.56, "total_cash": 2345.67,
                "shares_outstanding": 12_500_000, "prior_nav": 50.1234, "market_price": 50.12,
                "premium_bps": -1.25, "iopv_bid": round(float(v) - 0.01, 4), "iopv_ask": round(float(v) + 0.01, 4),
                "note": "x" * int(rng.integers(20, 60))}
               for name, v in zip(names, rng.uniform(10, 500, funds))]
    return Publication(records[0]["ts"], names, records, [orjson.dumps(r) for r in records])


def mqtt_settings(url: str, qos: int):
    return load_settings(environ={}, overrides={"mqtt": {
        "url": url, "value_topic_prefix": f"bench{uuid.uuid4().hex[:6]}", "value_qos": qos}}).mqtt


async def aiomqtt_windowed(url: str, pub: Publication, rounds: int) -> list[tuple[float, float]]:
    settings = mqtt_settings(url, 1)
    out = []
    async with make_client(settings, f"bench-a-{uuid.uuid4().hex[:6]}") as client:
        for _ in range(rounds):
            messages = iter(zip(pub.funds, pub.payloads))

            async def worker():
                for fund, payload in messages:
                    await client.publish(f"{settings.value_topic_prefix}/{fund}", payload, qos=1, retain=True,
                                         timeout=math.inf)

            started, cpu = time.perf_counter(), time.thread_time()
            await asyncio.gather(*(worker() for _ in range(64)))
            out.append((time.perf_counter() - started, time.thread_time() - cpu))
    return out


async def paho_direct(url: str, pub: Publication, rounds: int) -> list[tuple[float, float]]:
    settings = mqtt_settings(url, 1)
    client = make_client(settings, f"bench-p-{uuid.uuid4().hex[:6]}")
    inner = paho_client(client)
    inner.max_inflight_messages_set(0)  # before connecting; otherwise each PUBACK rescans all
    out = []
    async with client:
        aiomqtt_on_publish = inner.on_publish
        for _ in range(rounds):
            done = asyncio.get_running_loop().create_future()
            left = len(pub.funds)

            def on_publish(_client, _userdata, _mid, _rc, _properties):
                nonlocal left
                left -= 1
                if not left:
                    done.set_result(None)

            inner.on_publish = on_publish
            started, cpu = time.perf_counter(), time.thread_time()
            for fund, payload in zip(pub.funds, pub.payloads):
                inner.publish(f"{settings.value_topic_prefix}/{fund}", payload, 1, True)
            await done
            out.append((time.perf_counter() - started, time.thread_time() - cpu))
            inner.on_publish = aiomqtt_on_publish
    return out


async def sink(url: str, pub: Publication, rounds: int, qos: int) -> list[tuple[float, float]]:
    publisher = MqttSink(mqtt_settings(url, qos), instance=f"bench-s-{uuid.uuid4().hex[:6]}", max_queued=4)
    out = []
    async with publisher.connect() as client:
        for _ in range(rounds):
            started, cpu = time.perf_counter(), time.thread_time()
            await publisher.send(client, [pub])
            out.append((time.perf_counter() - started, time.thread_time() - cpu))
    return out


def raw_socket(port: int, pub: Publication, rounds: int) -> list[tuple[float, float]]:
    prefix = f"bench{uuid.uuid4().hex[:6]}/"
    fields = [mqtt_wire.topic_field(prefix + fund) for fund in pub.funds]
    client_id = f"bench-r-{uuid.uuid4().hex[:6]}".encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id  # clean session
    out = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"\x10" + mqtt_wire.remaining_length(len(body)) + body)
        if sock.recv(4) != b"\x20\x02\x00\x00":
            raise RuntimeError("raw socket: connection refused")
        last = 0
        for _ in range(rounds):
            started, cpu = time.perf_counter(), time.thread_time()
            ids = [(last + k) % mqtt_wire.MAX_PACKET_ID + 1 for k in range(len(fields))]
            last = ids[-1]
            sock.sendall(mqtt_wire.encode_publishes(fields, pub.payloads, qos=1, retain=True, packet_ids=ids))
            awaiting, partial = set(ids), b""
            while awaiting:
                others, partial = mqtt_wire.split_pubacks(partial + sock.recv(65_536), awaiting)
                if QUICKACK is not None:  # as PubackSocket does: see its _ack_now
                    sock.setsockopt(socket.IPPROTO_TCP, QUICKACK, 1)
                if others:
                    raise RuntimeError(f"raw socket: unexpected packets {others[:16]!r}")
            out.append((time.perf_counter() - started, time.thread_time() - cpu))
    return out


async def compare(funds: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    pub = publication(funds)
    results: dict[str, list[tuple[float, float]]] = {}
    with local_servers(redis=False) as (mosquitto, _):
        contenders = {
            "aiomqtt, QoS 1 (64 in flight)": lambda: aiomqtt_windowed(mosquitto.url, pub, 2),
            "paho publish, QoS 1": lambda: paho_direct(mosquitto.url, pub, 2),
            "MqttSink.send, QoS 1": lambda: sink(mosquitto.url, pub, 2, 1),
            "MqttSink.send, QoS 0 (written)": lambda: sink(mosquitto.url, pub, 2, 0),
            "raw socket, QoS 1 (broker pace)": lambda: asyncio.to_thread(raw_socket, mosquitto.port, pub, 2),
        }
        for _ in range(rounds):  # alternate: each round, every contender once (fresh connection, warm-up dropped)
            for name, run in contenders.items():
                results.setdefault(name, []).extend((await run())[1:])
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--funds", type=int, default=3_500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    results = uvloop.run(compare(args.funds, args.rounds))
    payload_bytes = int(np.mean([len(p) for p in publication(args.funds).payloads]))
    print(f"{args.funds:,} retained messages of ~{payload_bytes} bytes, {args.rounds} rounds "
          f"(ms; CPU = the publishing thread's)")
    print(f"  {'':34} {'wall p50':>9} {'wall max':>9} {'CPU p50':>8} {'us/msg':>7}")
    for name, samples in results.items():
        wall = np.array([w for w, _ in samples]) * 1e3
        cpu = np.array([c for _, c in samples]) * 1e3
        print(f"  {name:34} {np.median(wall):9.1f} {wall.max():9.1f} {np.median(cpu):8.1f} "
              f"{np.median(cpu) * 1e3 / args.funds:7.1f}")


if __name__ == "__main__":
    main()
