"""The tick feed's direct path past aiomqtt's message queue (iopv/feeds/mqtt.py): the private
attributes it relies on still exist, TickSocket splits any byte stream exactly, and against a
real Mosquitto every published tick is counted, the latest wins, hostile payloads are counted
by reason."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import uuid
from importlib.metadata import version

import aiomqtt
import orjson
import paho.mqtt.client as paho
import pytest

from iopv.adapters.mqtt.feed import MqttTickFeed, TickSocket, paho_client
from iopv.config import load_settings
from iopv.core.constants import counts_by_reason
from iopv.core.universe import build_universe
from iopv.engine.book import PriceBook
from iopv.engine.intake import TickIntake

PCF = [{"fund": "A", "creation_unit": 1, "currency": "USD", "cash": 0,
        "holdings": [{"symbol": f"S{i}", "shares": 1, "price": 10.0} for i in range(20)]}]


def test_aiomqtt_still_keeps_its_paho_client_in_a_private_attribute():
    """Fails loudly when an aiomqtt upgrade moves ``Client._client`` or paho's ``_sock``/
    ``_protocol``: the feed's direct callback depends on them (pinned aiomqtt >=2.5,<3)."""
    major, minor = (int(x) for x in version("aiomqtt").split(".")[:2])
    assert (2, 5) <= (major, minor) < (3, 0)
    client = asyncio.run(_make_client())  # aiomqtt needs a running loop to construct
    inner = paho_client(client)
    assert isinstance(inner, paho.Client)
    assert inner.on_message == client._on_message  # noqa: SLF001 -- what the feed replaces
    assert inner.on_socket_open == client._on_socket_open  # noqa: SLF001
    assert inner._protocol == paho.MQTTv311  # noqa: SLF001
    assert hasattr(inner, "_sock")
    with pytest.raises(RuntimeError, match="Client._client"):
        paho_client(object())


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
    stream, expected_ticks, expected_paho = [], [], []
    for i in range(200):
        kind = rng.randrange(6)
        if kind <= 2:
            topic, payload = f"ticks/S{i}".encode(), b'{"price": %d.5}' % i * rng.choice([1, 1, 400])
            data = publish(topic, payload, flags=rng.choice([0, 1, 8]))
            expected_ticks.append((topic, payload))
        elif kind == 3:
            data = publish(b"ticks/Q", b"qos1", qos=1)  # paho acknowledges QoS 1
        elif kind == 4:
            data = rng.choice([b"\x20\x02\x00\x00", b"\xd0\x00", b"\x90\x03\x00\x01\x00"])
        else:
            data = publish(b"", b"")  # empty topic and payload: still a QoS 0 PUBLISH
            expected_ticks.append((b"", b""))
        if kind in (3, 4):
            expected_paho.append(data)
        stream.append(data)
    ticks = []
    wrapped = TickSocket(ChunkedSocket(b"".join(stream), rng), lambda t, p: ticks.append((t, p)))
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
    wrapped = TickSocket(Endless(), lambda t, p: seen.append(p))
    with pytest.raises(BlockingIOError):
        while True:
            wrapped.recv(1)
    first = len(seen)
    assert 0 < first <= TickSocket._READ_BYTES // 100  # noqa: SLF001
    assert wrapped.pending() == 0  # the reader stops; the next readable event reads again
    with pytest.raises(BlockingIOError):
        wrapped.recv(1)
    assert len(seen) > first


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


async def wait_until(predicate, what: str, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


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
        await wait_until(lambda: intake.received + intake.pending >= total, "every tick counted")
        await asyncio.sleep(0.1)
        intake.flush()
        assert intake.messages == 20_000 + 1 + len(hostile)
        assert counts_by_reason(intake.counts) == {
            "accepted": 20_001, "unknown_symbol": 1, "not_an_object": 1, "malformed_json": 1,
            "bad_price_type": 1, "missing_symbol": 1, "non_positive_price": 1, "non_finite_price": 1,
            "bad_ts": 1, "oversize_payload": 1}
        assert {s: book.price_of(s) for s in latest} == latest
        assert feed.callback_errors == 0 and feed.connected
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_feed_over_tls_counts_every_tick_including_packets_spanning_records(tmp_path):
    """TLS hands data over record by record (``SSLSocket.pending``): TickSocket must keep reading
    what the TLS layer holds and reassemble packets larger than a record."""
    from iopv.testing.servers import MosquittoServer
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
        await wait_until(lambda: intake.received + intake.pending >= total, "every tick over TLS")
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

    from iopv.testing.servers import MosquittoServer

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
        await wait_until(lambda: intake.received + intake.pending >= 100, "ticks before the restart")
        await asyncio.to_thread(mosquitto.stop)
        await wait_until(lambda: not feed.connected, "the feed noticing the broker is gone")
        await asyncio.to_thread(mosquitto.start)
        await wait_until(lambda: feed.connected and feed.subscribed.is_set(), "the feed back", timeout_s=20)
        second = [("ticks/S2", orjson.dumps({"symbol": "S2", "price": 22.0, "ts": i})) for i in range(100)]
        await asyncio.to_thread(raw_publish, mosquitto.port, second)
        await wait_until(lambda: intake.received + intake.pending >= 200, "ticks after the restart")
        intake.flush()
        assert counts_by_reason(intake.counts) == {"accepted": 200}
        assert (book.price_of("S1"), book.price_of("S2")) == (11.0, 22.0)
        assert feed.reconnects >= 1 and feed.callback_errors == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
