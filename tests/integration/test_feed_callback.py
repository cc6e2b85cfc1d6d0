"""The tick feed's direct path past aiomqtt's message queue (iopv/adapters/mqtt/feed.py): the private
attributes it relies on still exist (and the start-up check names any that goes), TickSocket
splits any byte stream exactly and skips oversize messages without buffering them, and against a
real Mosquitto every published tick is counted, the latest wins, hostile payloads are counted
by reason, and a 64 MiB message delays no tick behind it."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
import uuid
from importlib.metadata import version

import aiomqtt
import orjson
import paho.mqtt.client as paho
import pytest

from iopv.adapters.mqtt import client as mqtt_client
from iopv.adapters.mqtt.client import INTERNALS, paho_client
from iopv.adapters.mqtt.feed import OTHER_ROWS, TICK_ROWS, MqttTickFeed, TickSocket
from iopv.config import load_settings
from iopv.core.constants import counts_by_reason
from iopv.core.universe import build_universe
from iopv.engine.book import PriceBook
from iopv.engine.intake import TickIntake
from tests.support.live import wait_for

PCF = [{"fund": "A", "creation_unit": 1, "currency": "USD", "cash": 0,
        "holdings": [{"symbol": f"S{i}", "shares": 1, "price": 10.0} for i in range(20)]}]


def test_aiomqtt_still_keeps_its_paho_client_in_a_private_attribute():
    """Fails loudly when an aiomqtt upgrade moves ``Client._client`` or paho's ``_sock``/
    ``_protocol``: the feed's direct callback depends on them (pinned aiomqtt >=2.5,<3)."""
    major, minor = (int(x) for x in version("aiomqtt").split(".")[:2])
    assert (2, 5) <= (major, minor) < (3, 0)
    major, minor = (int(x) for x in version("paho-mqtt").split(".")[:2])
    assert (2, 1) <= (major, minor) < (2, 3)  # the range pinned in pyproject.toml
    client = asyncio.run(_make_client())  # aiomqtt needs a running loop to construct
    inner = paho_client(client)
    assert isinstance(inner, paho.Client)
    assert inner.on_message == client._on_message  # noqa: SLF001 -- what the feed replaces
    assert inner.on_socket_open == client._on_socket_open  # noqa: SLF001
    assert inner._protocol == paho.MQTTv311  # noqa: SLF001
    assert hasattr(inner, "_sock")
    with pytest.raises(RuntimeError, match="Client._client"):
        paho_client(object())


@pytest.mark.parametrize(("owner", "name"), [(o, n) for o, names in INTERNALS.items() for n in names])
def test_the_start_up_check_names_any_internal_that_has_gone(owner, name, monkeypatch):
    """An aiomqtt or paho upgrade that drops one of the eight private attributes fails at the
    feed's and the sinks' start (``paho_client``), naming it -- not mid-session."""
    client = asyncio.run(_make_client())
    inner = client._client  # noqa: SLF001
    target = {"aiomqtt.Client": client, "paho.Client": inner, "paho.MQTTMessageInfo": paho.MQTTMessageInfo}[owner]
    if name in vars(target):
        monkeypatch.delattr(target, name)
    else:  # a method: gone from the class
        monkeypatch.delattr(type(target), name)
    with pytest.raises(RuntimeError, match=f"{owner}.{name}"):
        paho_client(client)


def test_the_feed_checks_the_internals_before_it_connects(monkeypatch):
    monkeypatch.setitem(mqtt_client.INTERNALS, "paho.Client", ("_sock", "_renamed_in_paho_3"))
    settings = load_settings(environ={}, overrides={"mqtt": {"url": "mqtt://127.0.0.1:1"}}).mqtt
    feed = MqttTickFeed(settings, TickIntake(PriceBook(build_universe(PCF))), instance="t")
    with pytest.raises(RuntimeError, match="_renamed_in_paho_3"):
        asyncio.run(asyncio.wait_for(feed.run(), 5))


def test_only_the_client_module_touches_private_attributes_of_aiomqtt_and_paho():
    """ruff checks SLF001: every private access is marked ``noqa: SLF001`` at its line. Of the
    package's modules that use aiomqtt or paho, only iopv/adapters/mqtt/client.py has any."""
    from pathlib import Path

    import iopv

    root = Path(iopv.__file__).parent
    marked = sorted(str(path.relative_to(root)) for path in root.rglob("*.py")
                    if "noqa: SLF001" in (text := path.read_text()) and ("paho" in text or "aiomqtt" in text))
    assert marked == ["adapters/mqtt/client.py"]


async def _make_client() -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", 1)


def packet(first: int, body: bytes) -> bytes:
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            return bytes([first]) + bytes(encoded) + body


def publish(topic: bytes, payload: bytes, qos: int = 0, flags: int = 0) -> bytes:
    body = struct.pack("!H", len(topic)) + topic + (b"\x00\x07" if qos else b"") + payload
    return packet(0x30 | (qos << 1) | flags, body)


class ChunkedSocket:
    """Delivers a byte stream in random-sized pieces, then BlockingIOError, then EOF."""

    def __init__(self, data: bytes, rng: random.Random):
        self.data, self.rng, self.position = data, rng, 0

    def recv(self, size: int) -> bytes:
        if self.position >= len(self.data):
            return b""
        if self.rng.random() < 0.2:
            raise BlockingIOError
        piece = min(size, self.rng.randrange(1, 300))
        chunk = self.data[self.position:self.position + piece]
        self.position += len(chunk)
        return chunk


@pytest.mark.parametrize("seed", range(20))
def test_tick_socket_splits_any_chunking_exactly(seed):
    rng = random.Random(seed)
    stream, expected_ticks, expected_paho, tick_packets = [], [], [], []
    for i in range(200):
        kind = rng.randrange(6)
        if kind <= 2:
            topic, payload = f"ticks/S{i}".encode(), b'{"price": %d.5}' % i * rng.choice([1, 1, 400])
            data = publish(topic, payload, flags=rng.choice([0, 1, 8]))
            expected_ticks.append((topic, payload))
            tick_packets.append(data)
        elif kind == 3:
            data = publish(b"ticks/Q", b"qos1", qos=1)  # paho acknowledges QoS 1
        elif kind == 4:
            data = rng.choice([b"\x20\x02\x00\x00", b"\xd0\x00", b"\x90\x03\x00\x01\x00"])
        else:
            data = publish(b"", b"")  # empty topic and payload: still a QoS 0 PUBLISH
            expected_ticks.append((b"", b""))
            tick_packets.append(data)
        if kind in (3, 4):
            expected_paho.append(data)
        stream.append(data)
    ticks, times, reads = [], [], []

    def on_read(now, buffer, rows):  # the journal's view of each read: the same packets, in order
        reads.extend((now, buffer[start:end], buffer[topic:payload], buffer[payload:end])
                     for start, topic, payload, end in rows.tolist())

    wrapped = TickSocket(ChunkedSocket(b"".join(stream), rng),
                         lambda t, p, now: (ticks.append((t, p)), times.append(now)), on_read=on_read)
    to_paho = bytearray()
    while True:
        try:
            chunk = wrapped.recv(rng.choice([1, 2, 5, 2048]))
        except BlockingIOError:
            assert wrapped.pending() == 0  # nothing held for paho when it is told to wait
            continue
        if not chunk:
            break
        to_paho += chunk
        wrapped.pending()
    assert ticks == expected_ticks
    assert bytes(to_paho) == b"".join(expected_paho)
    assert reads == [(now, packet, t, p) for now, packet, (t, p) in zip(times, tick_packets, ticks)]
    assert times == sorted(times) and len(set(times)) < len(times)  # one receive time per read


def test_tick_socket_splits_a_read_fuller_than_its_packet_tables_in_order():
    """A read holding more packets than one split call's tables (TICK_ROWS ticks, OTHER_ROWS
    others) is split on from where the call stopped; a malformed length passes the rest to paho."""
    tiny = [publish(b"", b"%d" % (i % 10)) for i in range(TICK_ROWS + 500)]  # 5 bytes each
    pings = [b"\xd0\x00"] * (OTHER_ROWS + 3)
    malformed = b"\x30\xff\xff\xff\xff\x01" + b"rest"
    stream = b"".join(tiny[:100] + pings + tiny[100:] + [malformed])

    class Once:
        done = False

        def recv(self, size):
            assert size >= len(stream)
            if self.done:
                return b""
            self.done = True
            return stream

    ticks = []
    wrapped = TickSocket(Once(), lambda t, p, _now: ticks.append(p))
    wrapped.read_bytes = len(stream)
    assert wrapped.recv(len(stream)) == b"".join(pings) + malformed
    assert ticks == [b"%d" % (i % 10) for i in range(TICK_ROWS + 500)]


def test_tick_socket_reads_at_most_one_chunk_per_readable_event():
    stream = b"".join(publish(b"ticks/S1", b"x" * 100) for _ in range(2000))

    class Endless:  # the same packets over and over, a continuous byte stream
        position = 0

        def recv(self, size):
            doubled = stream + stream
            chunk = doubled[self.position:self.position + size]
            self.position = (self.position + size) % len(stream)
            return chunk

    seen = []
    wrapped = TickSocket(Endless(), lambda t, p, _now: seen.append(p))
    with pytest.raises(BlockingIOError):
        while True:
            wrapped.recv(1)
    first = len(seen)
    assert 0 < first <= TickSocket.read_bytes // 100
    assert wrapped.pending() == 0  # the reader stops; the next readable event reads again
    with pytest.raises(BlockingIOError):
        wrapped.recv(1)
    assert len(seen) > first


@pytest.mark.parametrize("seed", range(10))
def test_tick_socket_skips_oversize_publishes_unbuffered_in_any_chunking(seed):
    """A QoS 0 PUBLISH announcing more than the limit is reported once and skipped, whatever
    the chunking (its header or topic length split across reads included); nothing of it is
    buffered, and the packets around it come out exactly."""
    rng = random.Random(seed)
    limit = 1_000
    stream, expected_ticks, expected_paho, oversize = [], [], [], 0
    for i in range(150):
        kind = rng.randrange(5)
        if kind == 0:
            payload = b"z" * rng.choice([limit + 1, 5_000, 70_000, 300_000])
            stream.append(publish(b"ticks/_batch", payload))
            oversize += 1
        elif kind == 1:
            data = publish(b"ticks/Q", b"q" * rng.choice([10, 5_000]), qos=1)  # paho's, whatever its size
            stream.append(data)
            expected_paho.append(data)
        else:
            topic, payload = f"ticks/S{i}".encode(), b"p" * rng.choice([0, 1, limit - 1, limit])
            stream.append(publish(topic, payload))
            expected_ticks.append((topic, payload))
    ticks, reported, held = [], [], []
    wrapped = TickSocket(ChunkedSocket(b"".join(stream), rng), lambda t, p, _now: ticks.append((t, p)),
                         max_payload_bytes=limit, on_oversize=lambda: reported.append(1))
    to_paho = bytearray()
    while True:
        try:
            chunk = wrapped.recv(rng.choice([1, 7, 4096]))
        except BlockingIOError:
            wrapped.pending()
            continue
        held.append(len(wrapped._partial))  # noqa: SLF001
        if not chunk:
            break
        to_paho += chunk
        wrapped.pending()
    assert ticks == expected_ticks
    assert len(reported) == oversize
    assert bytes(to_paho) == b"".join(expected_paho)
    assert max(held) < 5_100  # a partial packet under the limit, or paho's QoS 1 one: never an oversize one


def test_tick_socket_reads_a_large_message_under_the_limit_in_linear_time():
    """A message just under a large limit arrives whole and intact, in 32 KiB reads; joining each
    read to the whole partial packet (the old buffering) was quadratic: ~46 s for 64 MiB."""
    payload = bytes(range(256)) * (48 << 12)  # 48 MiB
    stream = publish(b"ticks/_batch", payload) + publish(b"ticks/S1", b"{}")

    class Whole:
        position = 0

        def recv(self, size):
            chunk = stream[self.position:self.position + size]
            self.position += len(chunk)
            return chunk

    seen = []
    wrapped = TickSocket(Whole(), lambda t, p, _now: seen.append((t, p)), max_payload_bytes=len(payload))
    started = time.perf_counter()
    while len(seen) < 2:
        with pytest.raises(BlockingIOError):
            wrapped.recv(1)
        wrapped.pending()
    assert time.perf_counter() - started < 5.0  # ~0.1 s; quadratic buffering took minutes
    assert seen[0] == (b"ticks/_batch", payload) and seen[1] == (b"ticks/S1", b"{}")


def feed_settings(mosquitto):
    return load_settings(environ={}, overrides={"mqtt": {"url": mosquitto.url}}).mqtt


def raw_publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    """QoS 0 publishes over one raw socket, many packets per sendall (like bench.loadgen)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        client_id = uuid.uuid4().hex[:12].encode()
        sock.sendall(packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(client_id)) + client_id))
        assert sock.recv(4)[:1] == b"\x20"
        data = b"".join(publish(topic.encode(), payload) for topic, payload in messages)
        sock.sendall(data)
        sock.sendall(b"\xe0\x00")  # DISCONNECT after everything


def test_feed_counts_every_tick_latest_wins_and_hostile_by_reason(mosquitto):
    asyncio.run(_feed_scenario(mosquitto))


async def _feed_scenario(mosquitto):
    book = PriceBook(build_universe(PCF))
    intake = TickIntake(book, capacity=64)  # many flushes mid-burst
    feed = MqttTickFeed(feed_settings(mosquitto), intake, instance=f"t{uuid.uuid4().hex[:8]}")
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.subscribed.wait(), 10)
        rng = random.Random(7)
        messages, latest = [], {}
        for i in range(20_000):
            symbol = f"S{rng.randrange(20)}"
            price = round(rng.uniform(1, 100), 2)
            messages.append((f"ticks/{symbol}", orjson.dumps({"symbol": symbol, "price": price, "ts": 1000 + i})))
            latest[symbol] = price
        batch = [{"symbol": "S0", "price": 55.5, "ts": 10**6}, {"symbol": "NOPE", "price": 1.0, "ts": 10**6}, 3]
        latest["S0"] = 55.5
        hostile = [b"{not json", b'{"symbol": "S1", "price": "1"}', b'{"price": 1.0, "ts": 5}',
                   b'{"symbol": "S1", "price": -1.0, "ts": 10}', b'{"symbol": "S1", "price": 1e400, "ts": 10}',
                   b'{"symbol": "S1", "price": 1.0, "ts": -4}', b"x" * (1 << 20 | 1)]
        messages += [("ticks/_batch", orjson.dumps(batch))] + [("ticks/_bad", p) for p in hostile]
        await asyncio.to_thread(raw_publish, mosquitto.port, messages)
        total = 20_000 + len(batch) + len(hostile)
        await wait_for(lambda: intake.received + intake.pending >= total, timeout_s=20.0, what="every tick counted")
        await asyncio.sleep(0.1)
        intake.flush()
        # The oversize message never reaches decode: the feed skips it unread.
        assert (intake.messages, intake.skipped_messages) == (20_000 + 1 + len(hostile) - 1, 1)
        assert counts_by_reason(intake.counts) == {
            "accepted": 20_001, "unknown_symbol": 1, "not_an_object": 1, "malformed_json": 1,
            "bad_price_type": 1, "missing_symbol": 1, "non_positive_price": 1, "non_finite_price": 1,
            "bad_ts": 1, "oversize_payload": 1}
        assert {s: book.price_of(s) for s in latest} == latest
        assert feed.callback_errors == 0 and feed.connected
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_a_64_mib_message_delays_neither_the_next_tick_nor_the_event_loop(mosquitto):
    """Issue 9, repair 1: a 64 MiB message on ``ticks/_batch``, then one valid tick. The tick must
    be applied within one boundary interval (1 s here) of being sent, the big message counted
    ``oversize_payload``, and the event loop (the clock, the sinks) never held up for long. The
    old TickSocket joined each 32 KiB read to the whole partial packet: ~46 s of CPU for 64 MiB,
    during which no tick was applied."""
    asyncio.run(_oversize_scenario(mosquitto))


async def _oversize_scenario(mosquitto):
    interval_s = 1.0
    book = PriceBook(build_universe(PCF))
    intake = TickIntake(book)  # max_payload_bytes: 1 MiB
    feed = MqttTickFeed(feed_settings(mosquitto), intake, instance=f"t{uuid.uuid4().hex[:8]}")
    task = asyncio.create_task(feed.run())
    lags = []

    async def loop_lag() -> None:  # how late a 5 ms sleep wakes: the boundary's lateness, roughly
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - started - 0.005)

    # Built before the probe starts: building 64 MiB holds the loop up itself (~0.1-0.3 s).
    huge = b"[" + b'{"symbol": "S1", "price": 1.5},' * ((64 << 20) // 31) + b"1]"
    assert len(huge) > 64 << 20
    tick = orjson.dumps({"symbol": "S5", "price": 77.25, "ts": 1_000})
    probe = asyncio.create_task(loop_lag())
    try:
        await asyncio.wait_for(feed.subscribed.wait(), 10)
        await asyncio.to_thread(raw_publish, mosquitto.port, [("ticks/_batch", huge), ("ticks/S5", tick)])
        sent = time.perf_counter()
        while book.price_of("S5") != 77.25:
            assert time.perf_counter() - sent < interval_s, "the tick behind 64 MiB missed the next boundary"
            await asyncio.sleep(0.005)
        intake.flush()
        assert counts_by_reason(intake.counts) == {"oversize_payload": 1, "accepted": 1}
        assert max(lags) < 0.25, f"the event loop was held up {max(lags) * 1e3:.0f} ms"
        assert feed.callback_errors == 0 and feed.connected
    finally:
        probe.cancel()
        task.cancel()
        await asyncio.gather(task, probe, return_exceptions=True)


def test_feed_over_tls_counts_every_tick_including_packets_spanning_records(tmp_path):
    """TLS hands data over record by record (``SSLSocket.pending``): TickSocket must keep reading
    what the TLS layer holds and reassemble packets larger than a record."""
    from iopv.localservers.servers import MosquittoServer
    from tests.support.live import openssl

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=feed-test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=tmp_path)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=server", "-keyout", "server.key",
            "-out", "server.csr", cwd=tmp_path)
    (tmp_path / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "server.ext", "-out", "server.crt", cwd=tmp_path)
    directory = tmp_path / "broker"
    directory.mkdir()
    mosquitto = MosquittoServer(directory, tls=True, listener_config=(
        f"allow_anonymous true\ncafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'server.crt'}\n"
        f"keyfile {tmp_path / 'server.key'}\n")).start()
    try:
        settings = load_settings(environ={}, overrides={
            "mqtt": {"url": mosquitto.url, "tls_ca_file": str(tmp_path / "ca.crt")}}).mqtt
        asyncio.run(_tls_scenario(settings))
    finally:
        mosquitto.stop()


async def _tls_scenario(settings):
    from iopv.adapters.mqtt.client import make_client

    book = PriceBook(build_universe(PCF))
    intake = TickIntake(book)
    feed = MqttTickFeed(settings, intake, instance=f"t{uuid.uuid4().hex[:8]}")
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.subscribed.wait(), 10)
        big = [{"symbol": f"S{i % 20}", "price": 1.0 + i % 7, "ts": i} for i in range(2_000)]  # ~90 KB
        latest = {f"S{i % 20}": 1.0 + i % 7 for i in range(2_000)}
        async with make_client(settings, f"pub-{uuid.uuid4().hex[:8]}") as publisher:
            await publisher.publish("ticks/_batch", orjson.dumps(big))
            for i in range(3_000):
                symbol = f"S{i % 20}"
                latest[symbol] = 100.0 + i
                await publisher.publish(f"ticks/{symbol}", orjson.dumps(
                    {"symbol": symbol, "price": 100.0 + i, "ts": 10_000 + i}))
            await publisher.publish("ticks/S3", b"{broken")
        total = 2_000 + 3_000 + 1
        await wait_for(lambda: intake.received + intake.pending >= total, timeout_s=20.0, what="every tick over TLS")
        intake.flush()
        assert counts_by_reason(intake.counts) == {"accepted": 5_000, "malformed_json": 1}
        assert {s: book.price_of(s) for s in latest} == latest
        assert feed.callback_errors == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_feed_resumes_after_a_broker_restart(tmp_path):
    """A new connection gets a new socket: it must be wrapped again (ticks after the restart count)."""
    import dataclasses

    from iopv.localservers.servers import MosquittoServer

    mosquitto = MosquittoServer(tmp_path).start()
    try:
        settings = dataclasses.replace(feed_settings(mosquitto), reconnect_min_s=0.05, reconnect_max_s=0.2)
        asyncio.run(_restart_scenario(mosquitto, settings))
    finally:
        mosquitto.stop()


async def _restart_scenario(mosquitto, settings):
    book = PriceBook(build_universe(PCF))
    intake = TickIntake(book)
    feed = MqttTickFeed(settings, intake, instance=f"t{uuid.uuid4().hex[:8]}")
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.subscribed.wait(), 10)
        first = [("ticks/S1", orjson.dumps({"symbol": "S1", "price": 11.0, "ts": i})) for i in range(100)]
        await asyncio.to_thread(raw_publish, mosquitto.port, first)
        await wait_for(lambda: intake.received + intake.pending >= 100, timeout_s=20.0, what="ticks before the restart")
        await asyncio.to_thread(mosquitto.stop)
        await wait_for(lambda: not feed.connected, timeout_s=20.0, what="the feed noticing the broker is gone")
        await asyncio.to_thread(mosquitto.start)
        await wait_for(lambda: feed.connected and feed.subscribed.is_set(), timeout_s=20.0, what="the feed back")
        second = [("ticks/S2", orjson.dumps({"symbol": "S2", "price": 22.0, "ts": i})) for i in range(100)]
        await asyncio.to_thread(raw_publish, mosquitto.port, second)
        await wait_for(lambda: intake.received + intake.pending >= 200, timeout_s=20.0, what="ticks after the restart")
        intake.flush()
        assert counts_by_reason(intake.counts) == {"accepted": 200}
        assert (book.price_of("S1"), book.price_of("S2")) == (11.0, 22.0)
        assert feed.reconnects >= 1 and feed.callback_errors == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
