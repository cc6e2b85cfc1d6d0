"""Where a boundary's publication goes, in one object: the route from the engine's cycle to the
audit journal, the restart state, the sinks and the publication's followers.

The engine hands every publication to ``PublicationRoute.publish`` (given to it at construction:
``iopv.service.factory``). In order:

1. The restart state is taken at once (``snapshot``): the book as of the boundary, before the
   next boundary's held ticks are applied, whether or not the values wait for the journal.
2. With the audit journal on, the values wait for their journal marker (write-ahead): the
   journal calls ``release`` once the marker is written (``ops.journal_max_wait_ms`` at most),
   and takes the book with its held ticks as a checkpoint if the day rotates there.
3. Delivery: the state-keeping sink (Redis: the restart state rides with the values) and then
   every other sink get the publication; each only queues it (never blocks the clock).
4. The followers -- the board's hub, the feed's reference-data events -- see what was delivered.

Nothing here calls back into the service, and no adapter calls into this module: the factory
passes each part what it needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from iopv.engine.publication import Publication


class Sink(Protocol):
    name: str

    def offer(self, publication: Publication) -> None: ...


class StateSink(Protocol):
    name: str

    def offer(self, publication: Publication, state: bytes | None = None) -> None: ...


class Journal(Protocol):
    def boundary(self, boundary_ns: int, publication: Publication, release: Callable[[], None],
                 checkpoint: Callable[[], bytes], messages: int) -> None: ...


class PublicationRoute:
    """The journal gate, the restart state, the sinks and the followers of every publication."""

    def __init__(self, sinks: Sequence[Sink], *, state_sink: StateSink | None = None,
                 snapshot: Callable[..., bytes] | None = None, journal: Journal | None = None,
                 messages: Callable[[], int] = lambda: 0, followers: Iterable[Callable[[Publication], None]] = ()):
        """``snapshot(boundary_ns, held=False)`` is the restart state (``held``: with the ticks
        waiting for the next boundary, for a journal checkpoint); ``messages()`` the tick
        messages received so far (the journal's marker records it)."""
        self.sinks = tuple(sinks)
        self.state_sink = state_sink
        self.snapshot = snapshot
        self.journal = journal
        self.messages = messages
        self.followers = list(followers)

    def publish(self, publication: Publication) -> None:
        """The engine's cycle hands its publication here (never blocks)."""
        boundary_ns = publication.ts_ns
        state = self.snapshot(boundary_ns) if self.snapshot is not None else None
        if self.journal is None:
            self.deliver(publication, state)
            return
        snapshot = self.snapshot

        def checkpoint() -> bytes:
            return snapshot(boundary_ns, held=True) if snapshot is not None else b""

        self.journal.boundary(boundary_ns, publication, lambda: self.deliver(publication, state), checkpoint,
                              self.messages())

    def deliver(self, publication: Publication, state: bytes | None = None) -> None:
        """To every sink (the state-keeping one first, with the state), then to the followers."""
        if self.state_sink is not None:
            self.state_sink.offer(publication, state)
        for sink in self.sinks:
            sink.offer(publication)
        for follower in self.followers:
            follower(publication)
