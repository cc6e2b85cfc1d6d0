"""The journal file format, version 2: zstd frames of length-prefixed records (docs/audit.md).

A journal file is a plain concatenation of zstd frames, so ``zstd -dc FILE`` prints its record
stream without any of our code:

- a *file header*: a zstd skippable frame (magic ``0x184D2A5A``, 16 bytes of data: ``IOPVJRNL``,
  u32 format version, u32 reserved);
- then *blocks*, each a skippable frame (magic ``0x184D2A5B``, 12 bytes: u32 compressed length,
  u32 raw length, u32 CRC-32 of the compressed bytes) followed by one zstd frame (content size and
  checksum written) holding whole records.

A record is a 13-byte header -- u8 kind, u32 body length, i64 time in ns since the epoch, UTC --
and its body. Every integer is little-endian. The kinds and bodies are listed in ``KINDS`` and in
docs/audit.md. Version 2 added the READ record (version 1 files are read as before; a day file
begun by a version 1 writer keeps its header, and its version 2 sessions say ``"format": 2``).

``read_records`` yields every whole record of a file, in order, and stops at the first damage it
finds -- a bad magic, a CRC mismatch, a frame that does not decompress, a record that runs past
its block -- recording it as a ``JournalError`` that names the file and the byte offset. A
truncated last block (a write cut short by a crash) is decompressed as far as it goes and read up
to its last whole record.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson
import zstandard

from iopv.engine.codec import TOPIC_ERRORS
from iopv.kernels.mqtt import TICK_END, TICK_PAYLOAD, TICK_TOPIC, split_packets_nb

FORMAT_VERSION = 2
#: File header versions this reader reads.
READABLE_VERSIONS = (1, 2)
FILE_MAGIC = b"IOPVJRNL"
SKIPPABLE_HEADER = 0x184D2A5A
SKIPPABLE_BLOCK = 0x184D2A5B
FILE_HEADER = struct.pack("<II8sII", SKIPPABLE_HEADER, 16, FILE_MAGIC, FORMAT_VERSION, 0)
BLOCK_HEADER = struct.Struct("<IIIII")  # magic, 12, compressed length, raw length, crc32
RECORD_HEADER = struct.Struct("<BIq")  # kind, body length, time ns
TICK_HEADER = struct.Struct("<BH")  # payload type, topic length
MARK_BODY = struct.Struct("<BIQ16s")  # published, funds, tick messages this session, digest

#: Record kinds.
SESSION = 1  # body: JSON {"format", "instance", "reason", "pid", "settings": {...}}; time: wall clock
BASKET = 2  # body: u32 JSON length, JSON {"version", "source", "reason"}, then the basket file's bytes
RESTORE = 3  # body: the restart state restored at start (iopv.engine.restart JSON); time: the clock used
CHECKPOINT = 4  # body: the book at a rotation boundary (restart-state JSON); time: that boundary
TICK = 5  # body: u8 payload type, u16 topic length (0xFFFF: none), topic UTF-8, payload; time: receipt
MARK = 6  # body: MARK_BODY; time: the boundary whose values were published
DROP = 7  # body: u64 tick messages dropped here (the writer could not keep up); time: wall clock
END = 8  # body: empty; a clean stop; time: wall clock
READ = 9  # body: QoS 0 MQTT PUBLISH packets as received, back to back, one tick message each; time: receipt
HEALTH = 10  # body: JSON {"event": "lost" | "resumed", "detail"}: the book's wholeness changed; time: then
TRANSFER = 11  # body: a whole peer's restart state, merged into the book (state transfer); time: then
KINDS = {SESSION: "session", BASKET: "basket", RESTORE: "restore", CHECKPOINT: "checkpoint",
         TICK: "tick", MARK: "mark", DROP: "drop", END: "end", READ: "read", HEALTH: "health",
         TRANSFER: "transfer"}

#: TICK payload types: how the message reached the intake (``bytes`` is the norm).
PAYLOAD_BYTES = 0
PAYLOAD_BYTEARRAY = 1
PAYLOAD_STR = 2
PAYLOAD_OVERSIZE = 3  # not kept: the payload is the u64 length of what was received
NO_TOPIC = 0xFFFF

#: Blocks are cut at about this much raw data, so a damaged block loses little.
BLOCK_RAW_BYTES = 4 << 20
ZSTD_LEVEL = 1  # ~10-16 B per single-tick message, ~240 ns here; level 3: ~8% smaller, ~45% slower (docs/audit.md)


class JournalError(ValueError):
    """A journal file that cannot be read (further): names the file and the byte offset."""

    def __init__(self, path: str, offset: int, message: str):
        super().__init__(f"{path}: offset {offset}: {message}")
        self.path = path
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Record:
    kind: int
    time_ns: int
    body: bytes
    offset: int  # byte offset of the record's block in the file


def encode_tick(time_ns: int, topic: str | None, payload) -> bytes:
    """A TICK record."""
    kind = PAYLOAD_BYTES
    if type(payload) is not bytes:
        if isinstance(payload, str):
            kind, payload = PAYLOAD_STR, payload.encode("utf-8", "surrogatepass")
        else:
            kind, payload = PAYLOAD_BYTEARRAY, bytes(payload)
    if topic is None:
        topic_bytes, topic_length = b"", NO_TOPIC
    else:
        topic_bytes = topic.encode("utf-8", "surrogatepass")[:NO_TOPIC - 1]
        topic_length = len(topic_bytes)
    body_length = TICK_HEADER.size + len(topic_bytes) + len(payload)
    return b"".join((RECORD_HEADER.pack(TICK, body_length, time_ns), TICK_HEADER.pack(kind, topic_length),
                     topic_bytes, payload))


def encode_oversize(time_ns: int, topic: str | None, length: int) -> bytes:
    """A TICK record for a payload over the intake's limit: its length, not its bytes."""
    topic_bytes = b"" if topic is None else topic.encode("utf-8", "surrogatepass")[:NO_TOPIC - 1]
    body = TICK_HEADER.pack(PAYLOAD_OVERSIZE, NO_TOPIC if topic is None else len(topic_bytes)) + topic_bytes \
        + struct.pack("<Q", length)
    return encode_record(TICK, time_ns, body)


def decode_tick(body: bytes) -> tuple[str | None, object]:
    """(topic, payload) of a TICK body, the payload of the type the intake was given."""
    kind, topic_length = TICK_HEADER.unpack_from(body)
    start = TICK_HEADER.size
    if topic_length == NO_TOPIC:
        topic, end = None, start
    else:
        end = start + topic_length
        topic = body[start:end].decode("utf-8", "surrogatepass")
    payload = body[end:]
    if kind == PAYLOAD_BYTEARRAY:
        return topic, bytearray(payload)
    if kind == PAYLOAD_STR:
        return topic, payload.decode("utf-8", "surrogatepass")
    if kind == PAYLOAD_OVERSIZE:
        return topic, bytes(struct.unpack("<Q", payload)[0])
    return topic, payload


def read_ticks(body: bytes) -> list[tuple[str, bytes]]:
    """The tick messages of a READ body: ``(topic, payload)`` per PUBLISH packet, in order, the
    topic decoded as the live feed decoded it. Raises ``ValueError`` if the body is not whole
    QoS 0 PUBLISH packets and nothing else."""
    rows = _split_read(body)
    return [(body[topic:payload].decode("utf-8", TOPIC_ERRORS), body[payload:end]) for topic, payload, end
            in zip(rows[:, TICK_TOPIC].tolist(), rows[:, TICK_PAYLOAD].tolist(), rows[:, TICK_END].tolist())]


def _split_read(body: bytes) -> np.ndarray:
    """The packet table of a READ body (``split_packets_nb``); ``ValueError`` if it holds anything
    but whole QoS 0 PUBLISH packets."""
    rows = np.empty((len(body) // 4 + 1, 4), dtype=np.int64)  # a PUBLISH takes at least 4 bytes
    n_ticks, n_others, oversize, position, _ = split_packets_nb(np.frombuffer(body, dtype=np.uint8), 0, len(body),
                                                                rows, np.empty((1, 2), dtype=np.int64))
    if n_others or oversize or position != len(body):
        raise ValueError(f"a READ record holds something other than whole QoS 0 PUBLISH packets (at byte "
                         f"{position} of its body)")
    return rows[:n_ticks]


def read_header(time_ns: int, length: int) -> bytes:
    """The header of a READ record whose body (``length`` bytes of PUBLISH packets) follows."""
    return RECORD_HEADER.pack(READ, length, time_ns)


def encode_record(kind: int, time_ns: int, body: bytes) -> bytes:
    return RECORD_HEADER.pack(kind, len(body), time_ns) + body


def encode_block(parts: list, compressor: zstandard.ZstdCompressor) -> bytes:
    """One block: its skippable header and one zstd frame of ``parts`` (bytes-like, uint8
    arrays included) back to back: whole records."""
    raw_length = sum(map(len, parts))
    stream = compressor.compressobj(size=raw_length)
    frame = b"".join([stream.compress(part) for part in parts] + [stream.flush()])
    return BLOCK_HEADER.pack(SKIPPABLE_BLOCK, 12, len(frame), raw_length, zlib.crc32(frame)) + frame


def new_compressor() -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, write_content_size=True)


def _records(raw: bytes, offset: int, path: str, whole_only: bool) -> Iterator[Record]:
    """Records of one block's raw bytes; ``whole_only``: stop quietly at a cut-off record."""
    position = 0
    end = len(raw)
    header = RECORD_HEADER
    while position < end:
        if position + header.size > end:
            if whole_only:
                return
            raise JournalError(path, offset, "a record header runs past the end of its block")
        kind, length, time_ns = header.unpack_from(raw, position)
        body_start = position + header.size
        if body_start + length > end:
            if whole_only:
                return
            raise JournalError(path, offset, "a record runs past the end of its block")
        if kind not in KINDS:
            raise JournalError(path, offset, f"unknown record kind {kind} at raw position {position}")
        body = raw[body_start:body_start + length]
        if kind == READ:
            try:
                _split_read(body)
            except ValueError as exc:
                raise JournalError(path, offset, f"{exc}, at raw position {position}") from None
        yield Record(kind, time_ns, body, offset)
        position = body_start + length


def block_spans(data: bytes, path: str = "<journal>") -> tuple[int, JournalError | None]:
    """(end of the last whole block, the damage found after it or None), reading block headers
    only (the writer uses it to cut a torn tail off before appending)."""
    if not data:
        return 0, None
    if len(data) < len(FILE_HEADER) or data[:16] != FILE_HEADER[:16] \
            or struct.unpack_from("<I", data, 16)[0] not in READABLE_VERSIONS:
        return 0, JournalError(path, 0, "not an IOPV journal of a known version (bad file header)")
    position = len(FILE_HEADER)
    while position < len(data):
        if position + BLOCK_HEADER.size > len(data):
            return position, JournalError(path, position, "truncated block header")
        magic, size, length, _raw, _crc = BLOCK_HEADER.unpack_from(data, position)
        if magic != SKIPPABLE_BLOCK or size != 12:
            return position, JournalError(path, position, "bad block header")
        end = position + BLOCK_HEADER.size + length
        if end > len(data):
            return position, JournalError(path, position, "truncated block")
        position = end
    return position, None


def map_file(path: str):
    """The file's bytes, memory-mapped (a day of ticks can be hundreds of MB); b"" when empty."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return b""
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


class JournalReader:
    """Iterates the records of one journal file; after the iteration, ``damage`` holds the
    first problem found (or None) and ``incomplete`` whether the writer dropped ticks."""

    def __init__(self, path: str):
        self.path = str(path)
        self.damage: JournalError | None = None
        self.blocks = 0
        self.dropped = 0

    def __iter__(self) -> Iterator[Record]:
        path = self.path
        try:
            data = map_file(path)
        except OSError as exc:
            raise JournalError(path, 0, f"cannot read: {exc.strerror or exc}") from None
        if len(data) < len(FILE_HEADER) or data[:8] != FILE_HEADER[:8] or data[8:16] != FILE_MAGIC:
            raise JournalError(path, 0, "not an IOPV journal (bad file header)")
        version = struct.unpack_from("<I", data, 16)[0]
        if version not in READABLE_VERSIONS:
            raise JournalError(path, 16, f"journal format version {version}, this reader knows "
                               f"{', '.join(map(str, READABLE_VERSIONS))}")
        position = len(FILE_HEADER)
        decompressor = zstandard.ZstdDecompressor()
        while position < len(data):
            if position + BLOCK_HEADER.size > len(data):
                self.damage = JournalError(path, position, "truncated block header (the last block was cut short)")
                return
            magic, size, length, raw_length, crc = BLOCK_HEADER.unpack_from(data, position)
            if magic != SKIPPABLE_BLOCK or size != 12:
                self.damage = JournalError(path, position, "bad block header (corrupted)")
                return
            start = position + BLOCK_HEADER.size
            frame = data[start:start + length]
            if len(frame) < length:  # a torn last block: read what decompresses
                partial = decompressor.decompressobj().decompress(frame) if frame else b""
                yield from self._count(_records(partial, position, path, whole_only=True))
                self.damage = JournalError(
                    path, position, f"truncated block ({len(frame)} of {length} bytes): read up to its "
                    "last whole record")
                return
            if zlib.crc32(frame) != crc:
                self.damage = JournalError(path, position, "block checksum mismatch (corrupted)")
                return
            try:
                raw = decompressor.decompress(frame, max_output_size=raw_length)
            except zstandard.ZstdError as exc:
                self.damage = JournalError(path, position, f"block does not decompress: {exc}")
                return
            if len(raw) != raw_length:
                self.damage = JournalError(path, position, "block length mismatch (corrupted)")
                return
            try:
                yield from self._count(_records(raw, position, path, whole_only=False))
            except JournalError as exc:
                self.damage = exc
                return
            self.blocks += 1
            position = start + length

    def _count(self, records: Iterator[Record]) -> Iterator[Record]:
        for record in records:
            if record.kind == DROP:
                self.dropped += struct.unpack("<Q", record.body)[0]
            yield record


def events(records) -> Iterator[tuple[str, int, object]]:
    """The records decoded into the neutral events ``iopv.engine.journal_replay`` consumes:
    ``(kind name, time ns, data)``; data per kind: session -> dict, basket -> (dict, file bytes),
    restore / checkpoint / transfer -> restart-state bytes, health -> dict, tick -> (topic,
    payload), mark -> (published, funds, tick messages this session, digest), drop -> count,
    end -> None."""
    for record in records:
        kind, body = record.kind, record.body
        if kind == READ:
            for message in read_ticks(body):
                yield "tick", record.time_ns, message
        elif kind == TICK:
            yield "tick", record.time_ns, decode_tick(body)
        elif kind == MARK:
            yield "mark", record.time_ns, MARK_BODY.unpack(body)
        elif kind == SESSION:
            yield "session", record.time_ns, orjson.loads(body)
        elif kind == BASKET:
            length = struct.unpack_from("<I", body)[0]
            yield "basket", record.time_ns, (orjson.loads(body[4:4 + length]), body[4 + length:])
        elif kind in (RESTORE, CHECKPOINT, TRANSFER):
            yield KINDS[kind], record.time_ns, body
        elif kind == HEALTH:
            yield "health", record.time_ns, orjson.loads(body)
        elif kind == DROP:
            yield "drop", record.time_ns, struct.unpack("<Q", body)[0]
        else:
            yield KINDS[kind], record.time_ns, None
