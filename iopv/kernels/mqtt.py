"""Kernel of the tick feed's socket wrapper: one socket read split into MQTT packets in one call.

The live feed reads paho's socket in 32 KiB chunks and takes the QoS 0 PUBLISH packets (the
ticks) out of the byte stream itself (``iopv.adapters.mqtt.feed.TickSocket``). Finding where each
packet starts and ends, byte by byte, cost ~0.5 us of Python per message; here it is one call
per read, and the same table of offsets serves the intake (one slice pair per tick) and the audit
journal (which records the packets as they were received, and splits them the same way on replay).

References: MQTT Version 3.1.1 (OASIS Standard, 2014), sections 2.2 (fixed header: packet type
and flags in the first byte; remaining length, 1-4 bytes of 7 bits, least significant first) and
3.3 (PUBLISH: a 2-byte topic length, the topic, a packet identifier only for QoS 1 and 2, then
the payload).

Same contract as the other kernels: arrays and scalars in, the caller's arrays written.
"""

from __future__ import annotations

from typing import NamedTuple

from numba import njit


class RemainingLengthT(NamedTuple):
    """``read_remaining_length_nb`` results other than a length."""

    INCOMPLETE: int = -1  # the buffer ends inside the field
    MALFORMED: int = -2  # the field runs past the 4 bytes MQTT allows


RemainingLength = RemainingLengthT()


@njit(cache=True, inline="always")
def read_remaining_length_nb(buffer, index, end_of_data):
    """The remaining length of the packet whose fixed header's first byte is ``buffer[index -
    1]`` (1-4 bytes, 7 bits each, least significant first; MQTT 3.1.1 2.2.3): ``(length, index
    after the field)``, or ``(RemainingLength.INCOMPLETE | MALFORMED, _)``. The one decoder of
    the field: the packet split below inlines it, and the value publisher's PUBACK reader
    (``iopv.adapters.mqtt.wire.read_remaining_length``) calls it."""
    length = 0
    shift = 0
    while True:
        if index >= end_of_data:
            return RemainingLength.INCOMPLETE, index
        byte = buffer[index]
        index += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return length, index
        shift += 7
        if shift > 21:
            return RemainingLength.MALFORMED, index


#: Columns of a row of the ``ticks`` table: packet start, topic start, topic end (= payload
#: start), packet end.
TICK_START, TICK_TOPIC, TICK_PAYLOAD, TICK_END = 0, 1, 2, 3


@njit(cache=True)
def split_packets_nb(buffer, start, limit, ticks, others):
    """Split ``buffer[start:]`` (uint8; ``start`` is where a packet begins) into whole packets.

    - A QoS 0 PUBLISH (first byte ``0x30`` with any DUP and RETAIN bits) whose topic fits in it:
      a row of ``ticks`` (start, topic start, topic end, end) if its payload is at most ``limit``
      bytes, else counted as oversize (its bytes are dropped).
    - Any other whole packet (CONNACK, SUBACK, PINGRESP, a QoS 1 or 2 PUBLISH, a PUBLISH whose
      topic length overruns it): a row of ``others`` (start, end), for paho, in order.
    - A remaining length over 4 bytes (malformed): the rest of the buffer is one row of
      ``others`` (paho then drops the connection) and the split ends.
    - A trailing incomplete packet ends the split where it starts -- unless its header already
      shows an oversize QoS 0 PUBLISH: then it is counted as oversize and ``skip`` says how many
      bytes of it are still to come (to be discarded as they arrive, never buffered).

    Stops early, at a packet boundary, when either table is full; the caller then calls again
    from the returned ``position``. Returns ``(ticks rows, others rows, oversize count,
    position, skip)``; ``position`` is where the unsplit rest starts (``buffer.size`` when none)."""
    end_of_data = buffer.size
    position = start
    n_ticks = 0
    n_others = 0
    oversize = 0
    skip = 0
    while position < end_of_data and n_ticks < ticks.shape[0] and n_others < others.shape[0]:
        first = buffer[position]
        length, index = read_remaining_length_nb(buffer, position + 1, end_of_data)
        if length == RemainingLength.MALFORMED:
            others[n_others, 0] = position
            others[n_others, 1] = end_of_data
            n_others += 1
            position = end_of_data
            break
        if length == RemainingLength.INCOMPLETE:
            break
        end = index + length
        publish = (first & 0xF6) == 0x30 and length >= 2
        if end <= end_of_data:
            if publish:
                topic_end = index + 2 + ((buffer[index] << 8) | buffer[index + 1])
                if topic_end <= end:
                    if end - topic_end <= limit:
                        ticks[n_ticks, 0] = position
                        ticks[n_ticks, 1] = index + 2
                        ticks[n_ticks, 2] = topic_end
                        ticks[n_ticks, 3] = end
                        n_ticks += 1
                    else:
                        oversize += 1
                    position = end
                    continue
            others[n_others, 0] = position
            others[n_others, 1] = end
            n_others += 1
            position = end
            continue
        if publish and index + 2 <= end_of_data:
            topic_end = index + 2 + ((buffer[index] << 8) | buffer[index + 1])
            if topic_end <= end and end - topic_end > limit:
                oversize += 1
                skip = end - end_of_data
                position = end_of_data
        break
    return n_ticks, n_others, oversize, position, skip
