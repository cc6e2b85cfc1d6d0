"""sd_notify (iopv.service.sdnotify): READY=1 once ready, WATCHDOG=1 while the loop turns, the
failing checks in STATUS=, nothing at all outside systemd."""

from __future__ import annotations

import asyncio
import socket

from iopv.service.sdnotify import Notifier


def test_ready_once_watchdog_and_status(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        states = iter([(False, {"redis_connected": False, "mqtt_connected": True})] + [(True, {"a": True})] * 50)

        async def scenario():
            stop = asyncio.Event()
            task = asyncio.create_task(notifier.run(lambda: next(states), stop))
            await asyncio.sleep(0.5)
            stop.set()
            await task

        asyncio.run(scenario())
        messages = []
        server.settimeout(0.2)
        try:
            while True:
                messages.append(server.recv(4096).decode())
        except TimeoutError:
            pass
    assert messages[0].splitlines() == ["STATUS=waiting for: redis_connected", "WATCHDOG=1"]
    assert messages[1].splitlines() == ["STATUS=ready", "READY=1", "WATCHDOG=1"]
    assert sum("READY=1" in m for m in messages) == 1 and len(messages) >= 3
    assert messages[-1] == "STOPPING=1"


def test_nothing_outside_systemd():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.notify("READY=1") is False
    asyncio.run(notifier.run(lambda: (True, {}), asyncio.Event()))  # returns at once
