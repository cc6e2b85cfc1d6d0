"""The audit journal without servers: the live writer fed by the real intake and cycle, then
replayed; write-ahead ordering; truncated and corrupted files; explain against the reference."""

from __future__ import annotations

import asyncio
import io
import os
import random
import struct
import time
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from iopv.adapters.journal import JournalError, JournalReader, events
from iopv.adapters.journal import format as fmt
from iopv.adapters.journal.files import day_of, open_day_file
from iopv.adapters.journal.writer import JournalWriter
from iopv.adapters.mqtt.feed import TickSocket
from iopv.adapters.mqtt.wire import remaining_length
from iopv.cli import main
from iopv.config import load_settings
from iopv.core.constants import DAY_NS
from iopv.core.universe import load_pcf
from iopv.engine import restart
from iopv.engine.cycle import Engine
from iopv.engine.explain import explain
from iopv.engine.journal_replay import JournalReplay
from iopv.engine.reload import prepare
from iopv.service.route import PublicationRoute
from tests.support.live import exact, make_basket

INTERVAL_NS = 1_000_000_000
T0 = time.time_ns() // INTERVAL_NS * INTERVAL_NS  # today (a run across midnight rotates: still valid)


class Recorder:
    """A sink that keeps every publication it is offered, in order."""

    name = "recorder"

    def __init__(self):
        self.payloads: list[bytes] = []
        self.boundaries: list[int] = []

    def offer(self, publication) -> None:
        self.boundaries.append(publication.ts_ns)
        self.payloads.extend(publication.payloads)


def _ticks(step: int, t0: int = T0) -> list[tuple[str, bytes]]:
    """Valid and hostile messages for one step."""
    ts = t0 + step * INTERVAL_NS
    return [
        ("ticks/S001", orjson.dumps({"symbol": "S001", "price": 10.5 + step / 100, "ts": ts + 1})),
        ("ticks/_batch", orjson.dumps([{"symbol": f"S{i:03d}", "price": 20 + i / 7 + step, "ts": ts + 2}
                                       for i in range(2, 30)])),
        ("ticks/EURUSD", orjson.dumps({"symbol": "EURUSD", "price": 1.0812 + step / 1e4, "ts": ts + 3})),
        ("ticks/S003", b'{"symbol": "S003", "price": "12"}'),  # bad price type
        ("ticks/S004", b"{not json"),
        ("ticks/S005", orjson.dumps({"price": 33.25 + step})),  # symbol from the topic, receive time
        ("ticks/S006", orjson.dumps({"symbol": "S006", "price": -1.0, "ts": ts})),
        ("ticks/S007", orjson.dumps({"symbol": "S007", "price": 5.0, "ts": 1})),  # out of order after step 0
        ("ticks/S008", orjson.dumps({"symbol": "S008", "price": 41.0, "bid": 40.5, "ask": 41.5, "ts": ts + 4})),
        ("ticks/S009", orjson.dumps({"symbol": "S009", "status": "halted", "ts": ts + 5})),
    ]


class Reads:
    """A socket that delivers a byte stream in random pieces (BlockingIOError between reads)."""

    def __init__(self, data: bytes, rng: random.Random, piece: int = 700):
        self.data, self.rng, self.position, self.piece = data, rng, 0, piece

    def recv(self, size: int) -> bytes:
        if self.position and self.rng.random() < 0.3:
            raise BlockingIOError
        piece = min(size, self.rng.randrange(1, self.piece))
        chunk = self.data[self.position:self.position + piece]
        self.position += len(chunk)
        return chunk


def feed_reads(messages: list[tuple[str | bytes, bytes]], intake, writer, rng: random.Random,
               piece: int = 700) -> int:
    """The messages as QoS 0 PUBLISH packets through the live feed's socket wrapper, as
    ``MqttTickFeed`` wires it with a journal: each read recorded at once, its messages staged
    unrecorded. Returns the number of reads that held messages."""
    reads = []

    def on_read(now, buffer, rows):
        reads.append(len(rows))
        writer.publishes(now, buffer, rows)

    # A PINGRESP after every 7th message: the journal records the reads' ticks without it.
    stream = b"".join(encode_publish_bytes(t if isinstance(t, bytes) else t.encode(), p) + b"\xd0\x00" * (k % 7 == 6)
                      for k, (t, p) in enumerate(messages))
    wrapped = TickSocket(Reads(stream, rng, piece),
                         lambda topic, payload, now: intake.stage(payload, topic.decode("utf-8", "replace"), now),
                         on_read=on_read)
    while True:
        try:
            if not wrapped.recv(4096):
                break
        except BlockingIOError:
            wrapped.pending()
    assert sum(reads) == len(messages)
    return len(reads)


def encode_publish_bytes(topic: bytes, payload: bytes) -> bytes:
    return b"\x30" + remaining_length(2 + len(topic) + len(payload)) + len(topic).to_bytes(2, "big") + topic + payload


def run_live(tmp_path: Path, *, reload_at: int | None = 2, steps: int = 5, t0: int = T0, basis: str = "last",
             reads: random.Random | None = None):
    """The engine with a journal writer, driven by hand: messages, then a cycle per step.
    ``reads``: the messages go through the MQTT feed's socket wrapper in random reads."""
    document = make_basket(3)
    for fund in document:
        fund["price_basis"] = basis
    pcf = tmp_path / "pcf.json"
    pcf.write_bytes(orjson.dumps(document))
    settings = load_settings(environ={}, overrides={
        "engine": {"pcf_path": str(pcf), "interval_s": 1.0, "calendar": "always", "instance": "unit"},
        "ops": {"journal_dir": str(tmp_path / "journal"), "journal_flush_ms": 20},
    })
    sink = Recorder()

    async def scenario():
        writer = JournalWriter(settings)
        released: list[int] = []
        # The service's route (iopv.service.route): the values wait for their journal marker.
        route = PublicationRoute([sink], journal=writer, followers=[lambda p: released.append(p.ts_ns)])
        engine = Engine(load_pcf(pcf), settings, publish=route.publish)
        route.snapshot = lambda boundary_ns, held=False: restart.snapshot(engine.book, boundary_ns)
        route.messages = lambda: engine.intake.messages
        engine.after_swap.append(writer.basket)

        def cycle(boundary_ns):
            engine.cycle(boundary_ns)
            assert boundary_ns not in released, "values must wait for their journal marker"
        writer.start(engine.universe)
        for step in range(steps):
            if reads is not None:
                hostile_topics = [("ticks/S\u00e901", b'{"price": 1.5}'), (b"ticks/\xff\xfe", b'{"price": 2.5}')]
                feed_reads(_ticks(step, t0) + hostile_topics[:step % 3], engine.intake, writer, reads)
            else:
                for topic, payload in _ticks(step, t0):  # as the feed: recorded, then staged
                    writer.tick(payload, topic, t0 + step * INTERVAL_NS + 10)
                    engine.intake.stage(payload, topic, t0 + step * INTERVAL_NS + 10)
            if step == reload_at:
                document[0]["holdings"][0]["shares"] += 100
                pcf.write_bytes(orjson.dumps(document))
                engine.stage_basket(prepare(str(pcf), engine.universe))
            cycle(t0 + (step + 1) * INTERVAL_NS)
            await asyncio.sleep(0.05)  # the writer confirms; the route releases
        await writer.aclose()
        return writer, engine

    writer, engine = asyncio.run(scenario())
    return writer, sink, document


def replay_payloads(path: Path) -> tuple[list[bytes], JournalReplay, JournalReader]:
    reader = JournalReader(str(path))
    replay = JournalReplay(events(reader))
    out = []
    for boundary in replay:
        out.extend(boundary.publication.payloads)
    return out, replay, reader


def test_replay_reproduces_every_published_byte_across_a_reload(tmp_path):
    writer, sink, _ = run_live(tmp_path)
    assert len(sink.boundaries) == 5 and writer.dropped == 0 and writer.late_releases == 0
    payloads, replay, reader = replay_payloads(writer.path)
    assert reader.damage is None
    assert payloads == sink.payloads
    assert replay.stats.matched == 5 and replay.stats.mismatched == 0 and replay.stats.count_mismatches == 0
    assert replay.stats.reloads == 1 and replay.stats.clean_end
    versions = {orjson.loads(p)["basket"] for p in payloads}
    assert len(versions) == 2, "the reload must show in the replayed records"


@pytest.mark.parametrize("seed", range(3))
def test_socket_reads_recorded_at_once_replay_every_published_byte(tmp_path, seed):
    """The live feed's path: each socket read's messages recorded at once, as received (non-ASCII
    and invalid UTF-8 topics included), replay to the same bytes as were published."""
    writer, sink, _ = run_live(tmp_path, reads=random.Random(seed))
    assert len(sink.boundaries) == 5 and writer.dropped == 0
    payloads, replay, reader = replay_payloads(writer.path)
    assert reader.damage is None and payloads == sink.payloads
    assert replay.stats.matched == 5 and replay.stats.mismatched == 0 and replay.stats.count_mismatches == 0
    topics = [data[0] for kind, _, data in events(JournalReader(str(writer.path))) if kind == "tick"]
    assert "ticks/S\u00e901" in topics and "ticks/\ufffd\ufffd" in topics and topics.count("ticks/S001") == 5


def test_a_read_is_recorded_as_received_and_reads_back_as_its_messages(tmp_path):
    """A READ record's body is the PUBLISH packets exactly as received (flags included), and
    reads back as the messages the feed staged; anything else in a READ body is damage named by
    file and offset."""
    rng = random.Random(5)
    messages = [(f"ticks/S{rng.randrange(1000)}".encode(), rng.randbytes(rng.randrange(0, 300))) for _ in range(200)]
    messages += [(b"", b""), (b"t" * 300, b"{}"), ("ticks/S\u00e9".encode(), b"{}"), (b"ticks/\xff", b"{}")]
    packets = [encode_publish_bytes(t, p) for t, p in messages]
    packets[7] = b"\x39" + packets[7][1:]  # DUP and RETAIN set: still a QoS 0 PUBLISH, kept as is
    body = b"".join(packets)
    assert fmt.read_ticks(body) == [(t.decode("utf-8", "replace"), p) for t, p in messages]
    for bad in (body + b"\xd0\x00", body[:-1], b"\x32" + body[1:]):  # a PINGRESP, cut short, QoS 1
        with pytest.raises(ValueError, match="other than whole QoS 0 PUBLISH"):
            fmt.read_ticks(bad)
    path = tmp_path / "bad.iopvj"
    compressor = fmt.new_compressor()
    path.write_bytes(fmt.FILE_HEADER + fmt.encode_block([fmt.read_header(5, len(body)), body], compressor)
                     + fmt.encode_block([fmt.read_header(6, len(body) + 2), body + b"\xd0\x00"], compressor))
    reader = JournalReader(str(path))
    assert [data for kind, _, data in events(reader) if kind == "tick"] == fmt.read_ticks(body)
    assert reader.damage is not None and reader.damage.offset > len(fmt.FILE_HEADER)
    assert f"{path}: offset {reader.damage.offset}: a READ record holds something other" in str(reader.damage)


def test_version_1_files_still_read_and_append_and_unknown_versions_are_refused(tmp_path):
    """Format 2 only added the READ record: a version 1 file (TICK records) replays as before, a
    writer appends to it (its sessions say format 2), and a version this reader does not know is
    refused naming the file and offset."""
    writer, sink, _ = run_live(tmp_path, reload_at=None, steps=2)
    data = bytearray(writer.path.read_bytes())
    struct.pack_into("<I", data, 16, 1)
    writer.path.write_bytes(bytes(data))
    payloads, replay, reader = replay_payloads(writer.path)
    assert reader.damage is None and payloads == sink.payloads and replay.stats.mismatched == 0
    fd, path = open_day_file(writer.path.parent, "unit", T0)
    os.close(fd)
    assert path == writer.path and path.read_bytes() == bytes(data), "appended to, not refused or cut"
    struct.pack_into("<I", data, 16, 3)
    writer.path.write_bytes(bytes(data))
    with pytest.raises(JournalError) as refused:
        list(JournalReader(str(writer.path)))
    assert str(refused.value) == f"{writer.path}: offset 16: journal format version 3, this reader knows 1, 2"


def test_a_new_day_rotates_to_a_file_that_replays_on_its_own(tmp_path):
    tomorrow = (time.time_ns() // DAY_NS + 1) * DAY_NS + 3_600 * INTERVAL_NS
    writer, sink, _ = run_live(tmp_path, reload_at=1, steps=4, t0=tomorrow)
    files = sorted((tmp_path / "journal").glob("*.iopvj"))
    assert len(files) == 2 and writer.path == files[-1]
    payloads, replay, reader = replay_payloads(files[-1])
    assert reader.damage is None and replay.stats.mismatched == 0 and replay.stats.count_mismatches == 0
    assert payloads == sink.payloads, "the new day's file starts from a checkpoint of the book"
    first, _, _ = replay_payloads(files[0])
    assert first == [], "no boundary was published on the first day"


def test_truncated_and_corrupted_journal_name_file_and_offset(tmp_path, capsys):
    writer, sink, _ = run_live(tmp_path, reload_at=None, steps=4)
    data = writer.path.read_bytes()
    end, damage = fmt.block_spans(data)
    assert damage is None and end == len(data)
    # Truncated in the middle of its last block: what is whole is replayed, the error names the offset.
    cut = tmp_path / "cut.iopvj"
    cut.write_bytes(data[:-7])
    payloads, replay, reader = replay_payloads(cut)
    assert reader.damage is not None and str(cut) in str(reader.damage)
    last_block = _block_offsets(data)[-1]
    assert reader.damage.offset == last_block and f"offset {last_block}" in str(reader.damage)
    assert payloads == sink.payloads[:len(payloads)] and payloads
    # A flipped byte in the middle: a checksum error at that block; everything before replays.
    offsets = _block_offsets(data)
    bad = bytearray(data)
    bad[offsets[2] + 30] ^= 0xFF
    broken = tmp_path / "broken.iopvj"
    broken.write_bytes(bytes(bad))
    payloads, replay, reader = replay_payloads(broken)
    assert reader.damage.offset == offsets[2] and "checksum" in str(reader.damage)
    assert payloads == sink.payloads[:len(payloads)]
    # The command: exit 3, the error on stderr, the whole part on stdout.
    assert main(["replay", "--journal", str(broken)]) == 3
    captured = capsys.readouterr()
    assert f"{broken}: offset {offsets[2]}: block checksum mismatch" in captured.err
    assert captured.out.encode().splitlines() == payloads
    # Not a journal at all.
    junk = tmp_path / "junk.iopvj"
    junk.write_bytes(b"hello")
    with pytest.raises(JournalError, match="offset 0"):
        list(JournalReader(str(junk)))


def _block_offsets(data: bytes) -> list[int]:
    offsets, position = [], len(fmt.FILE_HEADER)
    while position < len(data):
        offsets.append(position)
        _magic, _size, length, _raw, _crc = fmt.BLOCK_HEADER.unpack_from(data, position)
        position += fmt.BLOCK_HEADER.size + length
    return offsets


@pytest.mark.parametrize("through_reads", [False, True])
def test_file_is_plain_zstd_frames_with_documented_records(tmp_path, through_reads):
    """docs/audit.md: read with zstd alone, the records parse with the documented layout (the
    reader there, kinds 5 and 9), giving the messages that were received."""
    import zstandard

    writer, sink, _ = run_live(tmp_path, reload_at=None, steps=2, reads=random.Random(3) if through_reads else None)
    stream = io.BytesIO(writer.path.read_bytes())
    raw = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True).read()

    def publishes(body):  # kind 9: MQTT 3.1.1 QoS 0 PUBLISH packets, as in docs/audit.md
        at = 0
        while at < len(body):
            length, shift, at = 0, 0, at + 1  # the first byte: packet type and flags
            while True:
                byte = body[at]
                at += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
            topic_length = int.from_bytes(body[at:at + 2], "big")
            yield body[at + 2:at + 2 + topic_length].decode("utf-8", "replace"), body[at + 2 + topic_length:at + length]
            at += length

    kinds, position, messages = [], 0, []
    while position < len(raw):
        kind, length, _time = struct.unpack_from("<BIq", raw, position)
        body = raw[position + 13:position + 13 + length]
        kinds.append(kind)
        if kind == 5:
            _payload_type, topic_length = struct.unpack_from("<BH", body)
            messages.append((body[3:3 + topic_length].decode(), body[3 + topic_length:]))
        elif kind == 9:
            messages.extend(publishes(body))
        position += 13 + length
    assert kinds[:2] == [fmt.SESSION, fmt.BASKET] and kinds[-1] == fmt.END
    assert (fmt.READ in kinds) == through_reads and (fmt.TICK in kinds) != through_reads
    sent = _ticks(0) + _ticks(1) + ([("ticks/S\u00e901", b'{"price": 1.5}')] if through_reads else [])
    assert kinds.count(fmt.MARK) == 2 and messages == [(t if isinstance(t, str) else t.decode(), p) for t, p in sent]


def test_writer_drops_count_and_mark_when_the_queue_is_full(tmp_path, capsys):
    settings = load_settings(environ={}, overrides={
        "engine": {"pcf_path": str(tmp_path / "p.json"), "instance": "drops"},
        "ops": {"journal_dir": str(tmp_path), "journal_queue_bytes": 65536}})
    (tmp_path / "p.json").write_bytes(orjson.dumps(make_basket(1)))

    async def scenario():
        writer = JournalWriter(settings)
        writer.start(load_pcf(tmp_path / "p.json"))
        await asyncio.sleep(0.3)  # the session and basket records are written
        payload = b'{"symbol": "S001", "price": 1.5, "pad": "%s"}' % (b"x" * 10_000)
        for k in range(12):  # no await: nothing is handed to the writer in between
            writer.tick(payload, "ticks/S001", T0 + k)
        dropped = writer.dropped
        await asyncio.sleep(0.4)
        writer.tick(payload, "ticks/S001", T0 + 99)  # ends the drop run
        await writer.aclose()
        return writer, dropped

    writer, dropped = asyncio.run(scenario())
    assert 4 <= dropped <= 8 and writer.dropped == dropped, "about 64 KiB of 10 KB messages fit"
    reader = JournalReader(str(writer.path))
    kinds = [record.kind for record in reader]
    assert fmt.DROP in kinds and reader.dropped == dropped and kinds.count(fmt.TICK) == 13 - dropped
    assert kinds.index(fmt.DROP) == len(kinds) - 3, "the gap is marked where it was (before the last tick)"
    assert Path(f"{writer.path}.incomplete").is_file()
    assert main(["replay", "--journal", str(writer.path)]) == 3
    assert "flagged incomplete" in capsys.readouterr().err


def test_writer_drops_whole_reads_counting_their_messages_when_the_queue_is_full(tmp_path):
    settings = load_settings(environ={}, overrides={
        "engine": {"pcf_path": str(tmp_path / "p.json"), "instance": "drops"},
        "ops": {"journal_dir": str(tmp_path), "journal_queue_bytes": 65536}})
    (tmp_path / "p.json").write_bytes(orjson.dumps(make_basket(1)))
    messages = [("ticks/S001", b'{"price": 1.5, "pad": "%s"}' % (b"x" * 1_000))] * 10  # ~10 KB per read
    recorded = []

    async def scenario():
        writer = JournalWriter(settings)
        writer.start(load_pcf(tmp_path / "p.json"))
        await asyncio.sleep(0.3)

        class Intake:
            def stage(self, payload, topic, now):
                recorded.append(topic)

        for _ in range(12):  # no await: nothing is handed to the writer in between
            feed_reads(messages, Intake(), writer, random.Random(1), piece=1 << 16)
        dropped = writer.dropped
        await asyncio.sleep(0.4)
        feed_reads(messages, Intake(), writer, random.Random(1), piece=1 << 16)
        await writer.aclose()
        return writer, dropped

    writer, dropped = asyncio.run(scenario())
    assert 40 <= dropped <= 80 and writer.dropped == dropped, "about 64 KiB of 1 KB messages fit, of 120"
    reader = JournalReader(str(writer.path))
    records = list(reader)
    assert reader.dropped == dropped and len(recorded) == 130
    assert sum(len(fmt.read_ticks(r.body)) for r in records if r.kind == fmt.READ) == 130 - dropped
    after = records[[r.kind for r in records].index(fmt.DROP) + 1:]
    assert [r.kind for r in after[:-1]] == [fmt.READ] * (len(after) - 1) and after[-1].kind == fmt.END
    assert sum(len(fmt.read_ticks(r.body)) for r in after[:-1]) == 10, "the gap is marked before the last read"


def test_explain_sums_to_the_published_value_and_the_reference(tmp_path):
    writer, sink, document = run_live(tmp_path, reload_at=None, steps=3)
    reader = JournalReader(str(writer.path))
    found = None
    for boundary in JournalReplay(events(reader)):
        if boundary.boundary_ns == T0 + 2 * INTERVAL_NS:
            found = explain(boundary.engine, "F1", boundary.publication)
            book = boundary.engine.book
            prices = {symbol: Decimal(repr(float(book.prices[slot]))) for symbol, slot in book.index.items()}
    assert found is not None and found["equal"]
    total = found["cash"] + sum(h["contribution"] for h in found["holdings"])
    assert total == found["sum"]
    assert exact(document, prices)["F1"] == found["rounded"]
    assert float(found["rounded"]) == found["published"]
    published = [orjson.loads(p) for p in sink.payloads]
    assert any(r["fund"] == "F1" and r["ts"] == T0 + 2 * INTERVAL_NS and r["iopv"] == found["published"]
               for r in published)
    fx_rows = [h for h in found["holdings"] if "fx" in h]
    assert fx_rows and fx_rows[0]["fx"]["pair"] == "EURUSD" and fx_rows[0]["fx"]["source"] == "tick"


def test_a_restart_cuts_a_torn_tail_and_appends(tmp_path):
    writer, sink, _ = run_live(tmp_path, reload_at=None, steps=2)
    data = writer.path.read_bytes()
    writer.path.write_bytes(data + data[len(fmt.FILE_HEADER):len(fmt.FILE_HEADER) + 40])  # a torn block
    again, sink2, _ = run_live(tmp_path, reload_at=None, steps=2)
    assert again.path == writer.path
    payloads, replay, reader = replay_payloads(writer.path)
    assert reader.damage is None, "the torn block was cut before appending"
    assert replay.stats.sessions == 2 and replay.stats.mismatched == 0
    assert payloads == sink.payloads + sink2.payloads


def _writer_settings(tmp_path, **ops):
    (tmp_path / "p.json").write_bytes(orjson.dumps(make_basket(1)))
    return load_settings(environ={}, overrides={
        "engine": {"pcf_path": str(tmp_path / "p.json"), "instance": "w"},
        "ops": {"journal_dir": str(tmp_path), **ops}})


class _Publication:
    funds = ("F0",)
    payloads = [b'{"fund":"F0"}']


def test_values_wait_for_their_marker_at_most_max_wait(tmp_path):
    settings = _writer_settings(tmp_path, journal_max_wait_ms=100)

    async def scenario():
        writer = JournalWriter(settings)
        writer.start(load_pcf(tmp_path / "p.json"))
        real_write = writer._write

        def slow_write(raw, compressor):  # a stalled disk
            time.sleep(0.4)
            real_write(raw, compressor)

        writer._write = slow_write
        released = []
        writer.boundary(T0, _Publication(), lambda: released.append(time.monotonic()), b"{}", 0)
        started = time.monotonic()
        assert not released
        await asyncio.sleep(0.25)
        late = list(released)
        await writer.aclose()
        return writer, late, started

    writer, late, started = asyncio.run(scenario())
    assert len(late) == 1 and late[0] - started < 0.25, "released by the max wait, before the slow write"
    assert writer.late_releases == 1


def test_a_failing_disk_stops_the_journal_not_the_values(tmp_path):
    settings = _writer_settings(tmp_path)

    async def scenario():
        writer = JournalWriter(settings)
        writer.start(load_pcf(tmp_path / "p.json"))
        await asyncio.sleep(0.1)
        os.close(writer._fd)  # every later write fails (EBADF)
        released = []
        writer.boundary(T0, _Publication(), lambda: released.append(1), b"{}", 0)
        await asyncio.sleep(0.3)
        writer.boundary(T0 + 1, _Publication(), lambda: released.append(2), b"{}", 0)
        writer.tick(b"{}", "ticks/X", T0)
        writer._fd = -1
        await writer.aclose()
        return writer, released

    writer, released = asyncio.run(scenario())
    assert released == [1, 2] and writer.failed and "OSError" in writer.failed
    assert writer.dropped == 1
    assert "writer failed" in Path(f"{writer.path}.incomplete").read_text()


@pytest.mark.parametrize("key, value", [("journal_flush_ms", 0), ("journal_flush_ms", 1500),
                                        ("journal_retention_days", -1), ("journal_queue_bytes", 100),
                                        ("journal_max_wait_ms", -5)])
def test_journal_settings_are_checked(key, value):
    from iopv.config import ConfigError

    with pytest.raises(ConfigError, match=f"ops.{key}"):
        load_settings(environ={}, overrides={"ops": {key: value}})


def test_explain_command_prints_the_table(tmp_path, capsys):
    writer, sink, _ = run_live(tmp_path, reload_at=None, steps=2)
    at = str(T0 + INTERVAL_NS + 500_000_000)
    assert main(["explain", "F1", "--at", at, "--journal", str(writer.path)]) == 0
    out = capsys.readouterr().out
    assert "F1 at " in out and "EQUAL" in out and "EURUSD" in out and "previous_close" in out
    assert main(["explain", "NOPE", "--at", at, "--journal", str(writer.path)]) == 1


def test_an_unusable_journal_dir_is_a_configuration_error(tmp_path):
    from iopv.config import ConfigError

    settings = _writer_settings(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = load_settings(environ={}, overrides={
        "engine": {"pcf_path": settings.engine.pcf_path}, "ops": {"journal_dir": str(blocker / "journal")}})

    async def scenario():
        JournalWriter(settings).start(load_pcf(settings.engine.pcf_path))

    with pytest.raises(ConfigError, match="ops.journal_dir: cannot open the journal"):
        asyncio.run(scenario())


def test_explain_shows_quotes_for_funds_valued_at_mid(tmp_path):
    writer, sink, document = run_live(tmp_path, reload_at=None, steps=2, basis="mid")
    holders = [f["fund"] for f in document if any(h["symbol"] == "S008" for h in f["holdings"])]
    assert holders, "the seeded basket holds S008 (quoted by every step)"
    published = {(r["fund"], r["ts"]): r["iopv"] for r in map(orjson.loads, sink.payloads)}
    for boundary in JournalReplay(events(JournalReader(str(writer.path)))):
        for fund in holders:
            found = explain(boundary.engine, fund, boundary.publication)
            assert found["equal"] and found["published"] == published[(fund, boundary.boundary_ns)]
            quoted = next(h for h in found["holdings"] if h["symbol"] == "S008")
            assert quoted["basis"] == "mid" and (quoted["bid"], quoted["ask"]) == (40.5, 41.5)
            assert quoted["price"] == Decimal("41.0")
            assert found["cash"] + sum(h["contribution"] for h in found["holdings"]) == found["sum"]


def test_retention_deletes_old_day_files_only(tmp_path):
    settings = _writer_settings(tmp_path, journal_retention_days=2)
    today = time.time_ns()
    old = [tmp_path / f"w-{day_of(today - k * DAY_NS)}.iopvj" for k in (3, 10)]
    kept = [tmp_path / f"w-{day_of(today - k * DAY_NS)}.iopvj" for k in (1, 2)]
    other = tmp_path / f"other-{day_of(today - 10 * DAY_NS)}.iopvj"  # another instance's
    for path in (*old, *kept, other, Path(f"{old[0]}.incomplete")):
        path.write_bytes(fmt.FILE_HEADER)

    async def scenario():
        writer = JournalWriter(settings)
        writer.start(load_pcf(tmp_path / "p.json"))
        await writer.aclose()

    asyncio.run(scenario())
    assert not any(p.exists() for p in old) and not Path(f"{old[0]}.incomplete").exists()
    assert all(p.exists() for p in kept) and other.exists()


def test_journal_counters_reach_the_metrics(tmp_path):
    from iopv.service.metrics import journal_metrics

    settings = _writer_settings(tmp_path)

    async def scenario():
        writer = JournalWriter(settings)
        writer.start(load_pcf(tmp_path / "p.json"))
        writer.dropped = 3  # as after a full queue
        await writer.aclose()
        return writer

    writer = asyncio.run(scenario())
    families = {family.name: family.samples[0].value for family in journal_metrics(writer.stats())}
    assert families["iopv_journal_dropped"] == 3 and families["iopv_journal_failed"] == 0
    assert families["iopv_journal_written_bytes"] == writer.path.stat().st_size - len(fmt.FILE_HEADER) > 0
