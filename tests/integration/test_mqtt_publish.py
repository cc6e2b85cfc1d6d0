"""The value publisher's own MQTT packets (iopv/adapters/mqtt/wire.py, iopv/adapters/mqtt/sink.py): the encoder
byte for byte against hand-built packets and paho's own encoder and decoder, PUBACKs split out of
any byte stream exactly, and against a real Mosquitto: every fund arrives exactly once with its
exact payload (QoS 1 and 0, more funds than one window), packet ids wrap around on one
connection next to paho's own publishes, a broker restart mid-publication re-sends it whole,
and a publication the broker never acknowledges is a connection error."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import aiomqtt
import orjson
import paho.mqtt.client as paho
import pytest

from iopv.adapters.mqtt import sink as mqtt_sink_module
from iopv.adapters.mqtt.client import paho_client, reserve_packet_ids, tls_context
from iopv.adapters.mqtt.sink import MqttSink, PubackSocket
from iopv.adapters.mqtt.wire import (
    encode_puback,
    encode_publish,
    encode_publishes,
    remaining_length,
    split_pubacks,
    topic_field,
)
from iopv.config import load_settings
from iopv.engine.publication import Publication
from iopv.localservers.servers import MosquittoServer
from tests.support.live import make_certificates, stopped_on_exit, wait_for

# -- encoding ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "expected"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_remaining_length_at_each_byte_boundary(length, expected):
    assert remaining_length(length) == expected


@pytest.mark.parametrize("length", [-1, 268_435_456])
def test_remaining_length_out_of_range_is_refused(length):
    with pytest.raises(ValueError, match="remaining length"):
        remaining_length(length)


def test_publish_matches_hand_built_bytes():
    # QoS 1, retained: 0x33, remaining = 2 + 6 (topic) + 2 (id) + 5 (payload) = 15
    assert encode_publish("iopv/A", b"hello", qos=1, retain=True, packet_id=0x0102) == \
        b"\x33\x0f\x00\x06iopv/A\x01\x02hello"
    # QoS 0, not retained: no packet id
    assert encode_publish("a/b", b"{}", qos=0, retain=False) == b"\x30\x07\x00\x03a/b{}"
    assert encode_publish("é", b"", qos=0, retain=True) == b"\x31\x04\x00\x02\xc3\xa9"
    with pytest.raises(ValueError, match="packet id"):
        encode_publish("a", b"", qos=1, retain=True, packet_id=0)


class FakeSocket:
    """Serves fixed bytes to paho's reader; swallows what paho writes."""

    def __init__(self, data: bytes):
        self.data, self.sent = data, []

    def recv(self, size: int) -> bytes:
        if not self.data:
            raise BlockingIOError
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    def send(self, data) -> int:
        self.sent.append(bytes(data))
        return len(data)

    def close(self) -> None:
        self.data = b""


def paho_encoded(topic: str, payload: bytes, qos: int, retain: bool, packet_id: int) -> bytes:
    """The packet paho itself builds for ``publish`` (captured from its outgoing queue)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    captured = []
    client._sock = FakeSocket(b"")  # noqa: SLF001 -- "connected" as far as _send_publish checks
    client._packet_queue = lambda command, packet, mid, qos, info=None: captured.append(bytes(packet))  # noqa: SLF001
    client._send_publish(packet_id, topic.encode(), payload, qos, retain)  # noqa: SLF001
    return captured[0]


# Payload sizes that put the remaining length exactly on the 1/2/3-byte varint boundaries.
TOPIC = "iopv/FUND"  # field: 2 + 9 bytes


@pytest.mark.parametrize("remaining", [127, 128, 16_383, 16_384, 2_097_152])
@pytest.mark.parametrize(("qos", "retain"), [(0, True), (1, True), (1, False)])
def test_publish_matches_paho_at_varint_boundaries(remaining, qos, retain):
    payload = random.Random(remaining).randbytes(remaining - 11 - 2 * qos)
    ours = encode_publish(TOPIC, payload, qos=qos, retain=retain, packet_id=4242 if qos else 0)
    assert ours == paho_encoded(TOPIC, payload, qos, retain, 4242)
    assert ours[1:1 + len(remaining_length(remaining))] == remaining_length(remaining)
    batch = encode_publishes([topic_field(TOPIC)], [payload], qos=qos, retain=retain, packet_ids=[4242])
    assert batch == ours


def test_batch_decodes_with_paho_message_by_message():
    """paho's own reader parses the batch buffer into the very messages (topic, payload, QoS,
    retain, packet id), and answers each QoS 1 message with the PUBACK split_pubacks expects."""
    rng = random.Random(7)
    topics = [f"iopv/F{i}" for i in range(300)] + ["iopv/ünï/cødé"]
    payloads = [orjson.dumps({"i": i, "pad": "x" * rng.choice([0, 100, 120, 16_400])}) for i in range(len(topics))]
    for qos in (0, 1):
        ids = [65_535 - i for i in range(len(topics))]  # high ids: both bytes used
        data = encode_publishes([topic_field(t) for t in topics], payloads, qos=qos, retain=True, packet_ids=ids)
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        received: list[paho.MQTTMessage] = []
        client.on_message = lambda _c, _u, message: received.append(message)
        sock = FakeSocket(data)
        client._sock = sock  # noqa: SLF001
        while sock.data:
            assert client._packet_read() == paho.MQTT_ERR_SUCCESS  # noqa: SLF001
        assert [(m.topic, m.payload, m.qos, m.retain) for m in received] == \
            [(t, p, qos, True) for t, p in zip(topics, payloads)]
        if qos:
            assert [m.mid for m in received] == ids
            assert b"".join(sock.sent) == b"".join(encode_puback(i) for i in ids)


def test_topic_field_refuses_what_a_broker_would_disconnect_for():
    assert topic_field("x" * 65_535)[:2] == b"\xff\xff"
    for bad in ("", "x" * 65_536, "iopv/+", "iopv/#", "iopv/a\x00b", "iopv/\ud800"):
        with pytest.raises(ValueError):
            topic_field(bad)
    with pytest.raises(ValueError, match="QoS 0 or 1"):
        encode_publishes([topic_field("a")], [b""], qos=2, retain=True, packet_ids=[1])


# -- PUBACKs out of the byte stream ------------------------------------------------------------


def other_packets() -> list[bytes]:
    return [b"\xd0\x00",  # PINGRESP
            b"\x20\x02\x00\x00",  # CONNACK
            b"\x90\x03\x00\x07\x01",  # SUBACK
            b"\x30" + remaining_length(200) + b"\x00\x01t" + b"p" * 197,  # a QoS 0 PUBLISH (2-byte length)
            b"\x50\x02\x00\x05"]  # PUBREC


@pytest.mark.parametrize("seed", range(20))
def test_split_pubacks_at_any_chunking_keeps_everything_else_in_order(seed):
    rng = random.Random(seed)
    ours = rng.sample(range(1, 65_536), 300)
    theirs = [i for i in rng.sample(range(1, 65_536), 40) if i not in ours]
    stream: list[tuple[bytes, bool]] = [(encode_puback(i), True) for i in ours]
    stream += [(encode_puback(i), False) for i in theirs] + [(p, False) for p in other_packets() * 5]
    rng.shuffle(stream)
    data = b"".join(p for p, _ in stream)
    awaiting, others, partial = set(ours), [], b""
    position = 0
    while position < len(data):
        size = rng.choice([1, 2, 3, 4, 5, 7, 64, 1000])
        rest, partial = split_pubacks(partial + data[position:position + size], awaiting)
        others.append(rest)
        position += size
    assert partial == b"" and awaiting == set()
    assert b"".join(others) == b"".join(p for p, mine in stream if not mine)


def test_split_pubacks_passes_a_malformed_length_on():
    bad = b"\x40\x02\x00\x09" + b"\x30\xff\xff\xff\xff\x01" + b"tail"
    awaiting = {9}
    assert split_pubacks(bad, awaiting) == (b"\x30\xff\xff\xff\xff\x01tail", b"")
    assert awaiting == set()


def test_packet_ids_come_from_paho_counter_wrap_and_skip_pahos_own():
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client._last_mid = 65_533  # noqa: SLF001
    client._out_messages = {65_535: None, 1: None}  # noqa: SLF001 -- paho's unacknowledged messages
    assert reserve_packet_ids(client, 4) == [65_534, 2, 3, 4]
    assert client._mid_generate() == 5  # noqa: SLF001 -- paho's next id follows ours
    with pytest.raises(ValueError):
        reserve_packet_ids(client, 65_533)


def test_the_paho_and_aiomqtt_internals_the_publisher_uses_exist():
    client = asyncio.run(_make_client())
    inner = paho_client(client)
    assert isinstance(client._disconnected, asyncio.Future)  # noqa: SLF001
    assert inner._out_messages == {} and callable(inner._packet_queue)  # noqa: SLF001
    with pytest.raises(RuntimeError, match="internals"):
        paho_client(object())


async def _make_client() -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", 1)


# -- against a real broker ---------------------------------------------------------------------


def publication(ts_ns: int, funds: int) -> Publication:
    names = tuple(f"F{i:05d}" for i in range(funds))
    records = [{"fund": name, "ts": ts_ns, "iopv": round(10.0 + i / 1e4 + ts_ns % 1000, 4), "pad": "é" * (i % 300)}
               for i, name in enumerate(names)]
    return Publication(ts_ns, names, records, [orjson.dumps(r) for r in records])


def settings_for(port: int, qos: int, **mqtt):
    return load_settings(environ={}, overrides={"mqtt": {
        "url": f"mqtt://127.0.0.1:{port}", "value_topic_prefix": f"iopv{uuid.uuid4().hex[:8]}", "value_qos": qos,
        "reconnect_min_s": 0.05, "reconnect_max_s": 0.2, **mqtt}}).mqtt


async def collect(port: int, prefix: str, expected: int, timeout_s: float = 20.0,
                  ready: asyncio.Event | None = None, tls_context=None) -> dict[str, list[bytes]]:
    """Every message on ``prefix/+`` (a list per topic, to see duplicates) until ``expected``
    topics have one, then 0.3 s more for strays."""
    received: dict[str, list[bytes]] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"sub-{uuid.uuid4().hex[:6]}",
                              tls_context=tls_context) as sub:
        await sub.subscribe(f"{prefix}/+", qos=1)
        if ready is not None:
            ready.set()
        settle = None
        async with asyncio.timeout(timeout_s):
            messages = aiter(sub.messages)
            while True:
                wait_s = None if settle is None else max(0.0, settle - time.monotonic())
                try:
                    message = await asyncio.wait_for(anext(messages), wait_s)
                except TimeoutError:
                    return received
                received.setdefault(str(message.topic), []).append(message.payload)
                if settle is None and len(received) == expected:
                    settle = time.monotonic() + 0.3


async def start(sink: MqttSink) -> asyncio.Task:
    task = asyncio.create_task(sink.run())
    await wait_for(lambda: sink.connected, what="mqtt sink connected")
    return task


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def expected_messages(prefix: str, pub: Publication) -> dict[str, list[bytes]]:
    return {f"{prefix}/{f}": [p] for f, p in zip(pub.funds, pub.payloads)}


@pytest.mark.parametrize("qos", [1, 0])
def test_every_fund_arrives_exactly_once_with_its_exact_payload(mosquitto, monkeypatch, qos):
    monkeypatch.setattr(mqtt_sink_module, "PUBLISH_WINDOW", 1_500)  # 5,000 funds: 4 windows
    settings = settings_for(mosquitto.port, qos)
    pub = publication(1_000, 5_000)

    async def scenario():
        sink = MqttSink(settings, instance=f"t{uuid.uuid4().hex[:6]}", max_queued=4)
        task = await start(sink)
        ready = asyncio.Event()
        live = asyncio.create_task(collect(mosquitto.port, settings.value_topic_prefix, 5_000, ready=ready))
        await ready.wait()
        sink.offer(pub)
        await wait_for(lambda: sink.last_ts_ns == 1_000, what="publication sent")
        retained = await collect(mosquitto.port, settings.value_topic_prefix, 5_000)
        live_messages = await live
        await stop(task)
        return live_messages, retained, sink

    live_messages, retained, sink = asyncio.run(scenario())
    expected = expected_messages(settings.value_topic_prefix, pub)
    assert live_messages == expected  # no fund missing, none twice
    assert retained == expected
    assert sink.published == 1 and sink.reconnects == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_large_publication_over_tls(tmp_path):
    """Over TLS the buffer goes out in partial writes (a record at a time, SSLWantWrite) and the
    PUBACKs come in record by record (``SSLSocket.pending``)."""
    make_certificates(tmp_path)
    directory = tmp_path / "broker"
    directory.mkdir()
    broker = MosquittoServer(directory, tls=True, listener_config=(
        f"allow_anonymous true\ncafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'server.crt'}\n"
        f"keyfile {tmp_path / 'server.key'}\nrequire_certificate true\n")).start()
    settings = settings_for(broker.port, 1, url=broker.url, tls_ca_file=str(tmp_path / "ca.crt"),
                            tls_cert_file=str(tmp_path / "client.crt"), tls_key_file=str(tmp_path / "client.key"))
    pub = publication(5_000, 5_000)

    async def scenario():
        sink = MqttSink(settings, instance=f"t{uuid.uuid4().hex[:6]}", max_queued=4)
        task = await start(sink)
        sink.offer(pub)
        await wait_for(lambda: sink.last_ts_ns == 5_000, what="publication sent over TLS")
        context = tls_context(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
        retained = await collect(broker.port, settings.value_topic_prefix, 5_000, tls_context=context)
        await stop(task)
        return retained, sink

    try:
        retained, sink = asyncio.run(scenario())
    finally:
        broker.stop()
    assert sink.published == 1 and sink.reconnects == 0
    assert retained == expected_messages(settings.value_topic_prefix, pub)


def test_packet_ids_wrap_around_on_one_connection_next_to_pahos_own_publishes(mosquitto):
    """70,000 acknowledged publishes on one connection (the id counter wraps past 65,535) while
    paho publishes QoS 1 messages of its own on the same connection mid-publication."""
    settings = settings_for(mosquitto.port, 1)
    funds, batches = 5_000, 14

    async def scenario():
        sink = MqttSink(settings, instance=f"t{uuid.uuid4().hex[:6]}", max_queued=4)
        task = await start(sink)
        inner = paho_client(sink._client)  # noqa: SLF001
        last_ids, own = [inner._last_mid], 0  # noqa: SLF001
        for b in range(1, batches + 1):
            sink.offer(publication(b * 1_000, funds))
            await asyncio.sleep(0)  # the writer has reserved its ids and written
            await sink._client.publish(f"{settings.value_topic_prefix}/_own/{b}", b"x", qos=1,  # noqa: SLF001
                                       retain=True)
            own += 1
            await wait_for(lambda: sink.last_ts_ns == b * 1_000, what=f"batch {b}")
            last_ids.append(inner._last_mid)  # noqa: SLF001
        retained = await collect(mosquitto.port, settings.value_topic_prefix, funds)
        await stop(task)
        return retained, sink, last_ids, own

    retained, sink, last_ids, own = asyncio.run(scenario())
    assert sink.published == batches and sink.reconnects == 0 and own == batches
    assert sum(later < earlier for earlier, later in zip(last_ids, last_ids[1:])) == 1, "ids wrapped once"
    assert retained == expected_messages(settings.value_topic_prefix, publication(batches * 1_000, funds))


@pytest.fixture
def own_mosquitto():
    directory = Path(tempfile.mkdtemp(prefix="iopv-mqtt-publish-"))
    server = MosquittoServer(directory).start()
    with stopped_on_exit(server, directory=directory):
        yield server


def test_broker_restart_mid_publication_sends_it_whole_after_reconnect(own_mosquitto, monkeypatch):
    """The broker dies after two of five windows were acknowledged; it restarts empty (no
    persistence), so every value it ends up with came from the re-sent publication."""
    monkeypatch.setattr(mqtt_sink_module, "PUBLISH_WINDOW", 1_000)
    settings = settings_for(own_mosquitto.port, 1)
    pub = publication(7_000, 5_000)
    writes = {"n": 0}
    original = mqtt_sink_module.write_packets

    def write_then_kill(inner, data, written=None):
        original(inner, data, written)
        writes["n"] += 1
        if writes["n"] == 3:
            own_mosquitto.stop()  # the third window is written (maybe in part) and never acked

    monkeypatch.setattr(mqtt_sink_module, "write_packets", write_then_kill)

    async def scenario():
        sink = MqttSink(settings, instance=f"t{uuid.uuid4().hex[:6]}", max_queued=4)
        sink.send_timeout_s = 60.0  # the loss must be noticed at once, not by the timeout
        task = await start(sink)
        started = time.monotonic()
        sink.offer(pub)
        await wait_for(lambda: not sink.connected, what="connection lost")
        noticed_s = time.monotonic() - started
        await asyncio.sleep(0.3)
        sent_while_down = sink.last_ts_ns
        own_mosquitto.start()
        await wait_for(lambda: sink.last_ts_ns == 7_000, timeout_s=20, what="publication re-sent")
        retained = await collect(own_mosquitto.port, settings.value_topic_prefix, 5_000)
        await stop(task)
        return retained, sink, noticed_s, sent_while_down

    retained, sink, noticed_s, sent_while_down = asyncio.run(scenario())
    assert sent_while_down == 0, "a publication counts as sent only once every message is acked"
    assert noticed_s < 5
    assert writes["n"] >= 3 + 5  # the whole publication again, all five windows
    assert sink.published == 1 and sink.reconnects >= 1
    assert retained == expected_messages(settings.value_topic_prefix, pub)


def test_unacknowledged_publication_is_a_connection_error_and_is_retried(mosquitto, monkeypatch):
    settings = settings_for(mosquitto.port, 1)
    pub = publication(9_000, 300)
    original = mqtt_sink_module.split_pubacks
    swallow = {"on": True}

    def lose_acks(buffer, pending):  # the broker "never answers" while swallow is on
        if swallow["on"]:
            others, partial = original(buffer, set(pending))
            return others, partial
        return original(buffer, pending)

    monkeypatch.setattr(mqtt_sink_module, "split_pubacks", lose_acks)

    async def scenario():
        sink = MqttSink(settings, instance=f"t{uuid.uuid4().hex[:6]}", max_queued=4)
        sink.send_timeout_s = 0.3
        task = await start(sink)
        sink.offer(pub)
        await wait_for(lambda: sink.reconnects >= 1, what="timeout treated as a lost connection")
        assert sink.last_ts_ns == 0
        swallow["on"] = False
        await wait_for(lambda: sink.last_ts_ns == 9_000, what="publication sent after reconnect")
        retained = await collect(mosquitto.port, settings.value_topic_prefix, 300)
        await stop(task)
        return retained, sink

    retained, sink = asyncio.run(scenario())
    assert sink.published == 1
    assert retained == expected_messages(settings.value_topic_prefix, pub)


def test_qos2_keeps_the_aiomqtt_path(mosquitto, monkeypatch):
    monkeypatch.setattr(mqtt_sink_module, "QOS2_WINDOW", 7)
    settings = settings_for(mosquitto.port, 2)
    pub = publication(3_000, 50)

    async def scenario():
        sink = MqttSink(settings, instance=f"t{uuid.uuid4().hex[:6]}", max_queued=4)
        task = await start(sink)
        assert not isinstance(paho_client(sink._client)._sock, PubackSocket)  # noqa: SLF001
        sink.offer(pub)
        await wait_for(lambda: sink.last_ts_ns == 3_000, what="publication sent")
        retained = await collect(mosquitto.port, settings.value_topic_prefix, 50)
        await stop(task)
        return retained, sink

    retained, sink = asyncio.run(scenario())
    assert sink.published == 1
    assert retained == expected_messages(settings.value_topic_prefix, pub)



@pytest.mark.parametrize("length", [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455])
def test_read_remaining_length_decodes_every_width_and_reports_short_and_malformed_fields(length):
    from iopv.adapters.mqtt.wire import INCOMPLETE, MALFORMED, read_remaining_length
    field = bytearray()
    value = length
    while True:
        byte, value = value % 128, value // 128
        field.append(byte | (0x80 if value else 0))
        if not value:
            break
    buffer = bytes([0x30]) + bytes(field) + b"rest"
    assert read_remaining_length(buffer, 1, len(buffer)) == (length, 1 + len(field))
    assert read_remaining_length(buffer, 1, len(field))[0] == INCOMPLETE  # ends inside the field
    assert read_remaining_length(b"\x30\xff\xff\xff\xff\x01", 1, 6)[0] == MALFORMED
