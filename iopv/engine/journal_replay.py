"""Replay of an audit journal through the live engine's own code: the same ``Engine``, the same
``TickIntake.decode`` of every recorded message (topic, payload, receive time), the same
``Engine.cycle`` at every recorded boundary marker, the same basket swap and restart restore.

Live semantics, as recorded: the messages are decoded in receive order, and at each marker the
cycle applies every tick decoded before it and values the funds -- exactly what the live cycle did,
since the marker was queued by that cycle right after it applied them. A ``session`` event (a
process start, or the day's rotation) starts a new engine from the recorded basket file and
settings; a ``restore`` event applies the restart state that process restored from Redis; a
``checkpoint`` (rotation) applies the book as it stood at the rotation boundary; a ``basket`` event
with reason ``reload`` swaps the recorded file in where the live engine swapped it. A session that
records ``horizon_ns`` was cut in event time: the replay's engine opens that boundary too (older
journals were recorded in arrival order, and replay so). A ``health`` event changes the book's
wholeness where the live one changed (so the same values are flagged ``recovering``); a
``transfer`` merges the recorded peer state into the book, as the live state transfer did.

Every marker carries the BLAKE2b digest of the payloads the live engine published at it; the
replay recomputes it from its own payloads, so a match proves every field and digit equal.

The events come from ``iopv.adapters.journal.format.events`` (the file format lives there).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import orjson

from iopv.config import EngineSettings, IntakeSettings, MqttSettings, Settings
from iopv.core.universe import Universe, build_universe, parse_json
from iopv.engine import restart
from iopv.engine.book import PriceBook
from iopv.engine.cycle import Engine
from iopv.engine.publication import Publication
from iopv.engine.reload import PreparedBasket


class JournalReplayError(ValueError):
    """The journal's events cannot be replayed from this point (names what and where)."""


def publication_digest(payloads: list[bytes]) -> bytes:
    """16-byte BLAKE2b of a boundary's payloads joined with newlines (as ``iopv replay`` prints
    them, without the final newline)."""
    return hashlib.blake2b(b"\n".join(payloads), digest_size=16).digest()


def recorded_settings(settings: Settings) -> dict:
    """The settings a journal records: everything that shapes a published value."""
    return {"engine": dataclasses.asdict(settings.engine), "intake": dataclasses.asdict(settings.intake),
            "mqtt": {"tick_topic_prefix": settings.mqtt.tick_topic_prefix}}


def settings_from_record(recorded: dict) -> Settings:
    return Settings(engine=EngineSettings(**recorded["engine"]), intake=IntakeSettings(**recorded["intake"]),
                    mqtt=MqttSettings(**recorded["mqtt"]))


def universe_from_record(meta: dict, data: bytes) -> Universe:
    """The basket a ``basket`` event recorded, validated as ``load_pcf`` validates a file."""
    if meta.get("error") or not data:
        raise JournalReplayError(f"basket {meta.get('source')} was not recorded: {meta.get('error', 'empty')}")
    version = hashlib.sha256(data).hexdigest()[:12]
    if version != meta.get("version"):
        raise JournalReplayError(f"basket {meta.get('source')}: recorded bytes hash to {version}, "
                                 f"the record says {meta.get('version')}")
    return build_universe(parse_json(meta["source"], data), source=meta["source"], version=version)


@dataclass(frozen=True, slots=True)
class ReplayedBoundary:
    """One replayed boundary: the publication, whether it matched the live digest, and the
    engine as it stood right after that cycle, its book the boundary's (valid until the
    iteration goes on: the boundary's cut then applies the ticks held for the next one)."""

    boundary_ns: int
    publication: Publication | None
    recorded_digest: bytes
    matches: bool
    engine: Engine
    session: int  # 1 for the first process of the file, 2 after a restart, ...


@dataclass
class ReplayStats:
    ticks: int = 0
    boundaries: int = 0
    matched: int = 0
    mismatched: int = 0
    #: Markers whose count of tick messages received differs from the replay's (ticks missing).
    count_mismatches: int = 0
    sessions: int = 0
    reloads: int = 0
    restores: int = 0
    transfers: int = 0
    dropped: int = 0
    clean_end: bool = False
    first_mismatch: int | None = None


class JournalReplay:
    """Iterate to replay; ``stats`` holds the counts. Raises JournalReplayError on events that
    cannot be replayed (a basket not recorded, a marker the engine would not publish)."""

    def __init__(self, events: Iterable[tuple[str, int, object]]):
        self.events = events
        self.stats = ReplayStats()
        self.engine: Engine | None = None
        self._settings: Settings | None = None
        self._messages_base = 0
        self._horizon: int | None = None

    def __iter__(self) -> Iterator[ReplayedBoundary]:
        stats = self.stats
        decode = None
        for kind, time_ns, data in self.events:
            if kind == "tick":
                if decode is None:
                    raise JournalReplayError("a tick before any session and basket")
                topic, payload = data
                decode(payload, topic, time_ns)
                stats.ticks += 1
            elif kind == "mark":
                if self.engine is None:
                    raise JournalReplayError("a boundary marker before any session and basket")
                _published, _funds, messages, digest = data
                if self._messages_base + self.engine.intake.messages != messages:
                    stats.count_mismatches += 1
                # Not cut yet: the boundary's book is what a consumer of the iteration sees
                # (``iopv explain``); the cut follows before the next event.
                publication = self.engine.cycle(time_ns, cut=False)
                matches = publication is not None and publication_digest(publication.payloads) == digest
                stats.boundaries += 1
                if matches:
                    stats.matched += 1
                else:
                    stats.mismatched += 1
                    if stats.first_mismatch is None:
                        stats.first_mismatch = time_ns
                engine = self.engine
                yield ReplayedBoundary(time_ns, publication, digest, matches, engine, stats.sessions)
                engine.cut(time_ns)
            elif kind == "session":
                self._settings = settings_from_record(data["settings"])
                self._messages_base = data.get("messages_base", 0)
                self._horizon = data.get("horizon_ns")
                self.engine = decode = None
                stats.sessions += 1
                stats.clean_end = False
            elif kind == "basket":
                meta, raw = data
                universe = universe_from_record(meta, raw)
                if self.engine is None:
                    if self._settings is None:
                        raise JournalReplayError("a basket before any session")
                    self.engine = Engine(universe, self._settings)
                    if self._horizon is not None:
                        self.engine.open(self._horizon)
                    decode = self.engine.intake.decode
                else:
                    carry = PriceBook.carry_over(self.engine.universe, universe)
                    self.engine.swap_basket(PreparedBasket(universe, carry, None))
                    stats.reloads += 1
            elif kind in ("restore", "checkpoint"):
                if self.engine is None:
                    raise JournalReplayError(f"a {kind} before any basket")
                restart.restore(self.engine.book, data, now_ns=time_ns)
                stats.restores += kind == "restore"
                if kind == "checkpoint":  # a day file's start: the held ticks and the health too
                    held = restart.held_arrays(self.engine.book, data)
                    if held is not None:
                        self.engine.intake.restore_held(*held)
                    self.engine.health.set_state(orjson.loads(data))
            elif kind == "health":
                if self.engine is None:
                    raise JournalReplayError("a health event before any basket")
                self.engine.intake.flush()
                if data["event"] == "lost":
                    self.engine.health.lost(data["detail"], time_ns)
                elif data["event"] == "resumed":
                    self.engine.health.resumed(time_ns)
                elif data["event"] == "regained":
                    self.engine.health.regain(data["detail"], time_ns)
            elif kind == "transfer":
                if self.engine is None:
                    raise JournalReplayError("a state transfer before any basket")
                self.engine.intake.flush()  # as the live transfer: ticks received before it first
                restart.merge(self.engine.book, data, time_ns)
                self.engine.health.regain("transfer", time_ns)
                stats.transfers += 1
            elif kind == "drop":
                stats.dropped += data
            elif kind == "end":
                stats.clean_end = True
