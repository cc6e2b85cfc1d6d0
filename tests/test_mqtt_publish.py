"""The value publisher's own MQTT packets (iopv/mqtt_wire.py): the encoder byte for byte against
hand-built packets and paho's own encoder and decoder, and PUBACKs split out of any byte stream
exactly."""

from __future__ import annotations

import random

import orjson
import paho.mqtt.client as paho
import pytest

from iopv.mqtt_wire import (
    encode_puback,
    encode_publish,
    encode_publishes,
    remaining_length,
    split_pubacks,
    topic_field,
)

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
