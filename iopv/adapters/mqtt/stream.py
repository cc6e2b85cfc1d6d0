"""The buffering shared by the tick feed's and the value publisher's socket wrappers.

Both read paho's socket themselves, take some MQTT packets out of the byte stream (QoS 0 PUBLISH
packets for the feed, ``TickSocket``; the PUBACKs the publisher awaits, ``PubackSocket``) and
hand every other packet to paho, unchanged and in order, through ``recv``. ``PacketSocket`` is
what they share: the reads, the partial packet kept for the next read, the bytes held for paho,
``pending`` (aiomqtt's reader calls paho again while it is non-zero, meant for TLS), and packets
skipped whole as their bytes arrive. A subclass says how to split a buffer (``_split``).

The cost is linear in the bytes received, whatever the packet sizes: a partial packet is kept in
a ``bytearray`` and parsed again only once enough bytes have come to complete it (``_needed``),
and a skipped packet is never buffered. (Joining each read to the whole partial packet made a
64 MiB message cost ~46 s of CPU, quadratic in its size.)
"""

from __future__ import annotations

from iopv.adapters.mqtt.wire import read_remaining_length

#: Most bytes read at once while skipping a packet (``PacketSocket.skip``).
SKIP_READ_BYTES = 1 << 20


class PacketSocket:
    """paho's socket with some packets taken out of what paho reads (see the module docstring).
    Everything but ``recv`` and ``pending`` (send, fileno, close, TLS) goes to the socket."""

    #: Bytes asked of the socket per read.
    read_bytes = 32_768

    def __init__(self, sock):
        self._sock = sock
        self._inner_pending = getattr(sock, "pending", None)
        self._partial = bytearray()  # the start of a packet not yet complete
        self._needed_bytes = 0  # what _partial must hold before it is parsed again
        self._skip = 0  # bytes of the stream still to discard (the rest of a skipped packet)
        self._for_paho = b""  # whole packets paho has yet to read
        self._position = 0

    def recv(self, size: int) -> bytes:
        while self._position >= len(self._for_paho):
            data = self._read()  # BlockingIOError / TLS errors pass through
            if not data:
                return data  # closed: paho handles the lost connection
            self._for_paho, self._position = self._take(data), 0
        position = self._position
        chunk = self._for_paho[position:position + size]
        self._position = position + len(chunk)
        return chunk

    def _read(self) -> bytes:
        skip = self._skip
        return self._sock.recv(min(max(skip, self.read_bytes), SKIP_READ_BYTES) if skip else self.read_bytes)

    def _take(self, data: bytes) -> bytes:
        """Add ``data`` to the stream: the whole packets in it for paho, in order."""
        if self._skip:
            if len(data) <= self._skip:
                self._skip -= len(data)
                return b""
            data = data[self._skip:]
            self._skip = 0
        partial = self._partial
        if partial:
            if len(partial) + len(data) < self._needed_bytes:
                partial += data
                return b""
            data = b"".join((partial, data))
            partial.clear()
        for_paho, rest = self._split(data)
        if rest < len(data):
            partial += memoryview(data)[rest:]
            self._needed_bytes = self._needed(partial)
        return for_paho

    def skip(self, count: int) -> None:
        """Discard the next ``count`` bytes of the stream (the rest of a packet being skipped)."""
        self._skip += count

    def _split(self, buffer: bytes) -> tuple[bytes, int]:
        """Take the packets this wrapper handles out of ``buffer`` (which starts at a packet):
        ``(every other whole packet, in order, for paho; offset of a trailing partial packet)``,
        the offset ``len(buffer)`` when there is none."""
        raise NotImplementedError

    def _needed(self, partial: bytearray) -> int:
        """Bytes ``partial`` (the start of one packet) must reach before it can be split: the
        whole packet once its length is known, else one more byte."""
        length, index = read_remaining_length(partial, 1, len(partial))
        return index + length if length >= 0 else len(partial) + 1

    def pending(self) -> int:
        waiting = len(self._for_paho) - self._position
        if self._inner_pending is not None:
            waiting += self._inner_pending()
        return waiting

    def __getattr__(self, name: str):
        return getattr(self._sock, name)
