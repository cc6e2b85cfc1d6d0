"""Open-loop MQTT load generator: single-tick QoS 0 messages at a fixed offered rate.

It speaks just enough MQTT 3.1.1 over a raw socket (CONNECT, PUBLISH QoS 0, DISCONNECT) and
writes many pre-encoded packets per ``sendall``, so the generator costs ~1 us per message and is
not what limits the measurement (an aiomqtt publisher costs much more; see ``end_to_end``).

Open loop: message ``seq`` is due at ``t0 + seq / rate`` whatever happened before; a late
generator sends the backlog at once rather than slowing down, and every tick carries its
*intended* send time as ``ts``, so latency measured from ``ts`` includes any generator lateness
(no coordinated omission). Every ``probe_every``-th message is a probe tick on ``probe_symbol``
with price ``100 + k / 10_000`` (k counting up from ``probe_k0``), which a probe fund holding one
share of it turns into a published value that names k.

Run as ``python -m bench.loadgen --host H --port P --rate R --duration S --symbols FILE ...``;
prints one JSON object (t0_ns, sent, achieved rate, lateness) on stdout.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

import numpy as np
import orjson

PROBE_BASE_PRICE = 100.0
PROBE_STEP = 1e-4
CHUNK_MAX = 2_000  # messages per sendall at most


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect(host: str, port: int, client_id: str, timeout_s: float = 5.0) -> socket.socket:
    """An MQTT 3.1.1 session (clean, keepalive off) on a raw TCP socket."""
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ident = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x00"  # protocol, level 4, clean session, keepalive 0
    payload = len(ident).to_bytes(2, "big") + ident
    body = variable + payload
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    ack = b""
    while len(ack) < 4:
        chunk = sock.recv(4 - len(ack))
        if not chunk:
            raise ConnectionError("broker closed the connection before CONNACK")
        ack += chunk
    if ack[0] != 0x20 or ack[3] != 0:
        raise ConnectionError(f"CONNACK refused: {ack!r}")
    sock.settimeout(None)
    return sock


def publish_packet(topic: bytes, payload: bytes) -> bytes:
    """One PUBLISH, QoS 0, not retained."""
    body_len = 2 + len(topic) + len(payload)
    return b"\x30" + _varint(body_len) + len(topic).to_bytes(2, "big") + topic + payload


def probe_price(k: int) -> float:
    return round(PROBE_BASE_PRICE + k * PROBE_STEP, 4)


def probe_k_of_value(value: float) -> int:
    return round((value - PROBE_BASE_PRICE) / PROBE_STEP)


def generate(host: str, port: int, *, rate: float, duration_s: float, symbols: list[str],
             base_prices: list[float], probe_every: int, probe_symbol: str, probe_k0: int,
             seed: int, client_id: str = "bench-loadgen") -> dict:
    """Publish ``rate * duration_s`` messages on schedule; returns the send statistics."""
    total = int(rate * duration_s)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(symbols), total)
    moves = 1 + rng.normal(0, 0.002, total)
    cents = np.maximum(np.rint(np.asarray(base_prices)[which] * 100 * moves), 1).astype(np.int64)
    topics = [f"ticks/{s}".encode() for s in symbols]
    heads = [b'{"symbol":"' + s.encode() + b'","price":' for s in symbols]
    probe_topic = f"ticks/{probe_symbol}".encode()
    probe_head = b'{"symbol":"' + probe_symbol.encode() + b'","price":'
    step_ns = 1e9 / rate
    sock = connect(host, port, client_id)
    which_l, cents_l = which.tolist(), cents.tolist()
    sent = 0
    max_lag_ns = 0
    sends = 0
    perf = time.perf_counter_ns
    t0_ns = time.time_ns() + 20_000_000  # start 20 ms from now, on both clocks
    p0 = perf() + 20_000_000
    while sent < total:
        now = perf() - p0
        due = min(total, int(now / step_ns) + 1) if now >= 0 else 0
        if due <= sent:
            time.sleep(max(0.0, (sent * step_ns - now) / 1e9))
            continue
        lag = now - int(sent * step_ns)
        max_lag_ns = max(max_lag_ns, lag)
        stop = min(due, sent + CHUNK_MAX)
        packets = []
        for seq in range(sent, stop):
            ts = t0_ns + int(seq * step_ns)
            if seq % probe_every == 0:
                k = probe_k0 + seq // probe_every
                payload = b"%b%.4f,\"ts\":%d}" % (probe_head, probe_price(k), ts)
                packets.append(publish_packet(probe_topic, payload))
            else:
                i = which_l[seq]
                c = cents_l[seq]
                payload = b"%b%d.%02d,\"ts\":%d}" % (heads[i], c // 100, c % 100, ts)
                packets.append(publish_packet(topics[i], payload))
        sock.sendall(b"".join(packets))
        sends += 1
        sent = stop
    end_ns = time.time_ns()
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    return {
        "t0_ns": t0_ns,
        "end_ns": end_ns,
        "sent": sent,
        "rate": rate,
        "duration_s": duration_s,
        "achieved_msgs_per_s": sent / max(1e-9, (end_ns - t0_ns) / 1e9),
        "max_lag_ms": max_lag_ns / 1e6,
        "sendall_calls": sends,
        "probe_every": probe_every,
        "probe_k0": probe_k0,
        "probes": (total + probe_every - 1) // probe_every,
    }


def probe_schedule(result: dict) -> tuple[np.ndarray, np.ndarray]:
    """(k, intended send time ns) of every probe a ``generate`` run sent."""
    seqs = np.arange(0, result["sent"], result["probe_every"], dtype=np.int64)
    ks = result["probe_k0"] + seqs // result["probe_every"]
    ts = result["t0_ns"] + (seqs * (1e9 / result["rate"])).astype(np.int64)
    return ks, ts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--symbols", required=True, help="JSON file: [[symbol, price], ...]")
    parser.add_argument("--probe-every", type=int, default=100)
    parser.add_argument("--probe-symbol", default="PROBE.X")
    parser.add_argument("--probe-k0", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with open(args.symbols, "rb") as handle:
        pairs = orjson.loads(handle.read())
    result = generate(args.host, args.port, rate=args.rate, duration_s=args.duration,
                      symbols=[p[0] for p in pairs], base_prices=[p[1] for p in pairs],
                      probe_every=args.probe_every, probe_symbol=args.probe_symbol,
                      probe_k0=args.probe_k0, seed=args.seed)
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
