"""MQTT 3.1.1 wire format, as much as the value publisher writes and reads itself: PUBLISH
packets out (QoS 0 and 1), PUBACK packets in. Pure functions over bytes, no sockets.

Why by hand: at US scale a cycle publishes 3,500 retained messages, and paho builds each packet,
logs it, tracks it and handles its PUBACK in ~30 us of Python even when called directly (~50 us
through aiomqtt): 100-190 ms of the event loop per cycle. Encoding a whole publication here
costs ~0.5-1 us per message and splitting the acknowledgements out of the byte stream ~0.2 us
(figures in iopv/adapters/mqtt/sink.py). paho still owns the connection and every other packet.

References: MQTT Version 3.1.1 (OASIS Standard, 2014), sections 2.2.3 (remaining length),
3.3 (PUBLISH), 3.4 (PUBACK), 4.7 (topic names).
"""

from __future__ import annotations

from collections.abc import Sequence

from iopv.kernels.mqtt import RemainingLength, read_remaining_length_nb

PUBLISH = 0x30
PUBACK = 0x40
#: Largest remaining length the 4-byte variable-length encoding can carry (MQTT 3.1.1 2.2.3).
MAX_REMAINING_LENGTH = 268_435_455
#: Packet identifiers are 16-bit and non-zero (MQTT 3.1.1 2.3.1).
MAX_PACKET_ID = 65_535


def remaining_length(length: int) -> bytes:
    """The variable-length encoding of a packet's remaining length: 7 bits per byte, low first."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"MQTT remaining length out of range: {length} (max {MAX_REMAINING_LENGTH})")
    out = bytearray()
    while True:
        byte = length & 0x7F
        length >>= 7
        if length:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def topic_field(topic: str) -> bytes:
    """A topic name as PUBLISH carries it: 2-byte big-endian length, then UTF-8. Rejects what a
    broker would disconnect for: empty, wildcards, U+0000, more than 65,535 bytes."""
    encoded = topic.encode("utf-8")  # a lone surrogate raises UnicodeEncodeError (a ValueError)
    if not encoded or len(encoded) > 0xFFFF:
        raise ValueError(f"MQTT topic must be 1-65535 bytes of UTF-8, got {len(encoded)}: {topic[:80]!r}")
    if b"+" in encoded or b"#" in encoded or b"\x00" in encoded:
        raise ValueError(f"MQTT topic name must not contain '+', '#' or U+0000: {topic[:80]!r}")
    return len(encoded).to_bytes(2, "big") + encoded


def encode_publish(topic: str, payload: bytes, *, qos: int, retain: bool, packet_id: int = 0,
                   dup: bool = False) -> bytes:
    """One PUBLISH packet. ``packet_id`` is required (1-65535) for QoS 1 and 2, absent for QoS 0."""
    return publish_header(qos, retain, dup) + _variable_and_payload(topic_field(topic), payload, qos, packet_id)


def publish_header(qos: int, retain: bool, dup: bool = False) -> bytes:
    """The first byte of a PUBLISH packet."""
    if qos not in (0, 1, 2):
        raise ValueError(f"MQTT QoS must be 0, 1 or 2, got {qos!r}")
    return bytes((PUBLISH | (int(dup) << 3) | (qos << 1) | int(retain),))


def _variable_and_payload(field: bytes, payload: bytes, qos: int, packet_id: int) -> bytes:
    if qos:
        if not 1 <= packet_id <= MAX_PACKET_ID:
            raise ValueError(f"MQTT packet id must be 1-65535 for QoS {qos}, got {packet_id!r}")
        return remaining_length(len(field) + 2 + len(payload)) + field + packet_id.to_bytes(2, "big") + payload
    return remaining_length(len(field) + len(payload)) + field + payload


def encode_publishes(topic_fields: Sequence[bytes], payloads: Sequence[bytes], *, qos: int, retain: bool,
                     packet_ids: Sequence[int] = ()) -> bytes:
    """Many PUBLISH packets back to back, as one buffer to write: the same bytes as
    ``encode_publish`` for each message, at ~1 us per message. ``topic_fields`` come from
    ``topic_field`` (cache them: topics repeat every cycle); ``packet_ids`` pair with the messages
    for QoS 1 and are ignored for QoS 0. QoS 2 is not offered: its PUBREC/PUBREL/PUBCOMP
    exchange stays with paho."""
    if qos not in (0, 1):
        raise ValueError(f"encode_publishes writes QoS 0 or 1, got {qos!r}")
    if len(topic_fields) != len(payloads) or (qos and len(packet_ids) != len(payloads)):
        raise ValueError("encode_publishes: topic_fields, payloads (and packet_ids for QoS 1) must pair up")
    first = publish_header(qos, retain)[0]
    parts: list[bytes] = []
    append = parts.append
    if qos:
        for field, payload, packet_id in zip(topic_fields, payloads, packet_ids):
            if not 0 < packet_id <= MAX_PACKET_ID:
                raise ValueError(f"MQTT packet id must be 1-65535, got {packet_id!r}")
            length = len(field) + 2 + len(payload)
            append(_fixed_header(first, length))
            append(field)
            append(packet_id.to_bytes(2, "big"))
            append(payload)
    else:
        for field, payload in zip(topic_fields, payloads):
            append(_fixed_header(first, len(field) + len(payload)))
            append(field)
            append(payload)
    return b"".join(parts)


def _fixed_header(first: int, length: int) -> bytes:
    if length < 0x80:
        return bytes((first, length))
    if length < 0x4000:  # the usual case: a few hundred bytes of JSON
        return bytes((first, (length & 0x7F) | 0x80, length >> 7))
    return bytes((first,)) + remaining_length(length)


def encode_puback(packet_id: int) -> bytes:
    """A PUBACK packet (what the broker answers a QoS 1 PUBLISH with)."""
    return bytes((PUBACK, 2)) + packet_id.to_bytes(2, "big")


#: ``read_remaining_length`` results: the buffer ends inside the field; the field runs past
#: the 4 bytes MQTT allows (a malformed packet).
INCOMPLETE = RemainingLength.INCOMPLETE
MALFORMED = RemainingLength.MALFORMED


def read_remaining_length(buffer: bytes, index: int, end_of_data: int) -> tuple[int, int]:
    """The remaining length of the packet whose fixed header's first byte is ``buffer[index -
    1]``: ``(length, index after the field)``, or ``(INCOMPLETE, _)`` / ``(MALFORMED, _)``. The
    rule is the feed's packet split's (``iopv.kernels.mqtt.read_remaining_length_nb``), called here
    for the rare packet that is not a PUBACK and for a partial packet's header."""
    return read_remaining_length_nb(buffer, index, end_of_data)


def split_pubacks(buffer: bytes, pending: set[int]) -> tuple[bytes, bytes]:
    """Take the PUBACKs for ``pending`` packet ids out of ``buffer`` (removing those ids from the
    set); return ``(others, partial)``: every other whole packet, in order and unchanged, and a
    trailing incomplete packet to prepend to the next read. A malformed remaining length is
    passed on with everything after it (whoever reads ``others`` drops the connection)."""
    others: list[bytes] = []
    end_of_data = len(buffer)
    position = 0
    kept_from = 0  # start of a run of packets for others not yet appended
    while position < end_of_data:
        first = buffer[position]
        if first == PUBACK and position + 4 <= end_of_data and buffer[position + 1] == 2:
            packet_id = (buffer[position + 2] << 8) | buffer[position + 3]
            if packet_id in pending:
                pending.discard(packet_id)
                if kept_from < position:
                    others.append(buffer[kept_from:position])
                position += 4
                kept_from = position
                continue
        length, index = read_remaining_length(buffer, position + 1, end_of_data)
        if length == INCOMPLETE:
            others.append(buffer[kept_from:position])
            return b"".join(others), buffer[position:]
        if length == MALFORMED:
            others.append(buffer[kept_from:])
            return b"".join(others), b""
        end = index + length
        if end > end_of_data:
            others.append(buffer[kept_from:position])
            return b"".join(others), buffer[position:]
        position = end
    others.append(buffer[kept_from:])
    return b"".join(others), b""

