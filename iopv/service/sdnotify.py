"""systemd's readiness and watchdog notifications (``Type=notify``, ``WatchdogSec=``;
deploy/iopv@.service), a no-op when the process is not run by systemd.

The protocol is one datagram per notification to the Unix socket named by ``$NOTIFY_SOCKET``
(sd_notify(3)): ``READY=1`` once every ``/readyz`` check passes for the first time, ``STATUS=``
with the failing checks, and ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` from the event loop
itself, so a loop that stops turning (a stuck cycle, a blocking call) is killed and restarted by
systemd. Written here rather than taken from a package: the maintained binding (systemd-python)
needs libsystemd headers to build, and the protocol is a few lines of the standard library.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages when ``$NOTIFY_SOCKET`` is set; otherwise does nothing."""

    def __init__(self, environ: dict[str, str] | None = None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self.address = address
        self.watchdog_s = int(environ.get("WATCHDOG_USEC", "0") or 0) / 1e6
        self.ready_sent = False
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *lines: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            log.warning("sd_notify to %r failed: %s", self.address, exc)
            return False
        self.sent += 1
        return True

    async def run(self, readiness: Callable[[], tuple[bool, dict[str, bool]]], stop: asyncio.Event) -> None:
        """Until ``stop``: READY=1 (once) when ready, STATUS= while not, WATCHDOG=1 each half period."""
        if not self.enabled:
            return
        period_s = self.watchdog_s / 2 if self.watchdog_s > 0 else 1.0
        while not stop.is_set():
            ready, checks = readiness()
            failing = ", ".join(name for name, ok in checks.items() if not ok)
            lines = [f"STATUS={'ready' if ready else 'waiting for: ' + failing}"]
            if ready and not self.ready_sent:
                lines.append("READY=1")
                self.ready_sent = True
            if self.watchdog_s > 0:
                lines.append("WATCHDOG=1")
            self.notify(*lines)
            try:
                await asyncio.wait_for(stop.wait(), min(period_s, 1.0))
            except TimeoutError:
                pass
        self.notify("STOPPING=1")
