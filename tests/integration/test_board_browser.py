"""The live board in a real headless browser (Debian's chromium, driven by Selenium through the
system's chromedriver), against the live service on real Redis and Mosquitto at a 1 s interval:
the numbers in the table equal the values published to MQTT and Redis at that boundary (and the
exact reference), they change in place at the next boundary after a tick, and selecting a fund
draws its chart from the history. A screenshot is kept: ``board.png`` in the test's tmp dir, and
copied to ``$IOPV_ARTIFACTS`` when that is set.

Skipped, saying why, only where no chromium/chromedriver is installed
(``scripts/install-servers.sh`` installs both on Debian/Ubuntu)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
import uuid
from decimal import Decimal
from pathlib import Path

import aiomqtt
import orjson
import pytest
import redis.asyncio as aioredis

from iopv.engine import view
from iopv.localservers.servers import free_port
from iopv.service.live import Service
from tests.support.live import exact, make_basket, publish_all, settings_for, tick, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver") or next(
    (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no headless browser: install chromium and chromium-driver (scripts/install-servers.sh does on Debian)")

READ_TABLE = """
const out = {};
for (const tr of document.querySelectorAll('#board tbody tr')) {
  out[tr.dataset.fund] = [tr.dataset.ts, tr.querySelector('td.iopv').textContent,
                          tr.querySelector('td.status').textContent, tr.querySelector('td.premium').textContent,
                          tr.querySelector('td.alerts').textContent, tr.className];
}
return out;
"""


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1500,950", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=DriverService(executable_path=CHROMEDRIVER))


async def collect_mqtt(port: int, prefix: str, seen: dict, ready: asyncio.Event) -> None:
    """Every value published to MQTT, by (fund, ts)."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"board-{uuid.uuid4().hex[:6]}") as client:
        await client.subscribe(f"{prefix}/#", qos=1)
        ready.set()
        async for message in client.messages:
            fund = message.topic.value.split("/", 1)[1]
            if not fund.startswith("_"):
                record = orjson.loads(message.payload)
                seen[(record["fund"], record["ts"])] = record


def test_board_shows_the_published_values_and_updates_in_place(tmp_path, mosquitto, redis_server):
    document = make_basket(seed=41)
    settings = settings_for(tmp_path, document, mosquitto, redis_server, calendar="always", interval_s=1.0)
    settings = dataclasses.replace(settings, ops=dataclasses.replace(settings.ops, http_port=free_port()))
    symbol = document[0]["holdings"][0]["symbol"]
    halted_symbol = next(h["symbol"] for h in document[1]["holdings"]
                         if all(h["symbol"] != g["symbol"] for g in document[0]["holdings"]))
    topic = f"{settings.mqtt.tick_topic_prefix}/{symbol}"
    url = f"http://127.0.0.1:{settings.ops.http_port}/"
    shot = tmp_path / "board.png"

    async def table(driver) -> dict:
        return await asyncio.to_thread(driver.execute_script, READ_TABLE)

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        seen: dict = {}
        subscribed = asyncio.Event()
        collector = asyncio.create_task(collect_mqtt(mosquitto.port, settings.mqtt.value_topic_prefix, seen,
                                                     subscribed))
        driver = await asyncio.to_thread(browser)
        try:
            await asyncio.wait_for(subscribed.wait(), 10)
            await asyncio.wait_for(service.feed.subscribed.wait(), 10)
            now = time.time_ns()
            await publish_all("127.0.0.1", mosquitto.port, [
                (topic, orjson.dumps(tick(symbol, 123.25, now))),
                # F0's own market price (premium column) and a halted holding of F1 (stands out).
                (f"{settings.mqtt.tick_topic_prefix}/F0", orjson.dumps(tick("F0", 150.0, now))),
                (f"{settings.mqtt.tick_topic_prefix}/{halted_symbol}",
                 orjson.dumps({"symbol": halted_symbol, "status": "halted", "ts": now}))])
            await wait_for(lambda: service.engine.intake.messages >= 3, 10, "ticks received")
            cycles = service.engine.cycles
            await wait_for(lambda: service.engine.cycles > cycles, 10, "ticks applied at a boundary")
            await wait_for(lambda: service.http is not None and service.redis_sink.published >= 1, 10, "first values")
            await asyncio.to_thread(driver.get, url)
            # The table fills from /api/board, then follows the stream.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                first = await table(driver)
                expected = exact(document, {symbol: Decimal("123.25")})["F0"]
                if len(first) == len(document) and first["F0"][1] == f"{expected}":
                    break
                await asyncio.sleep(0.1)
            first = await table(driver)
            # The next price: the row must change in place at the next boundary.
            await publish_all("127.0.0.1", mosquitto.port, [(topic, orjson.dumps(tick(symbol, 140.5, time.time_ns())))])
            deadline = time.monotonic() + 15
            second = first
            while time.monotonic() < deadline and second["F0"][1] == first["F0"][1]:
                await asyncio.sleep(0.1)
                second = await table(driver)
            # Select F0: its chart of today's values comes from the history API.
            row = await asyncio.to_thread(driver.find_element, "css selector", 'tr[data-fund="F0"]')
            await asyncio.to_thread(row.click)
            deadline = time.monotonic() + 10
            points = "0"
            while time.monotonic() < deadline and int(points or 0) < 2:
                await asyncio.sleep(0.2)
                points = await asyncio.to_thread(
                    driver.execute_script, "return document.getElementById('chart').dataset.points")
            canvas = await asyncio.to_thread(driver.find_elements, "css selector", "#chart canvas")
            await asyncio.sleep(1.2)  # one more boundary, so the chart has a line and ages tick
            await asyncio.to_thread(driver.save_screenshot, str(shot))
            wanted = {(fund, int(ts)) for snapshot in (first, second) for fund, (ts, *_rest) in snapshot.items()}
            await wait_for(lambda: wanted <= set(seen), 10, "MQTT values of the boundaries shown")
            client = aioredis.Redis.from_url(redis_server.url)
            history = {}
            for fund in {f for f, _ts in wanted}:
                for _id, fields in await client.xrange(f"{settings.redis.key_prefix}:{fund}:history"):
                    history[(fund, int(fields[b"ts"]))] = float(fields[b"iopv"])
            await client.aclose()
        finally:
            await asyncio.to_thread(driver.quit)
            service.request_stop()
            code = await asyncio.wait_for(task, 5)
            collector.cancel()
        return first, second, seen, history, int(points or 0), len(canvas), code

    first, second, seen, history, points, canvases, code = asyncio.run(scenario())
    artifacts = os.environ.get("IOPV_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "board.png")
    assert code == 0
    assert len(first) == len(document)
    for snapshot in (first, second):
        for fund, (ts, text, status, premium, alerts, classes) in snapshot.items():
            published = seen[(fund, int(ts))]
            assert text == f"{published['iopv']:.4f}", (fund, ts)  # MQTT at that boundary
            assert history[(fund, int(ts))] == published["iopv"]  # Redis at that boundary
            assert status == published["status"]
            assert premium == (f"{published['premium_bps']:+.1f}" if "premium_bps" in published else "")
            # The alerts are the engine's rule (iopv.engine.view), "late" aside (it depends on when we looked).
            expected = view.alerts(published, now_ns=int(ts), interval_s=1.0)
            assert [a for a in alerts.split() if a != "late"] == expected
            assert all(f"alert-{a}" in classes.split() for a in expected)
        assert "F0" in {f for f, row in snapshot.items() if row[3]}  # F0's market price ticked
        assert "halted" in snapshot["F1"][4].split() and "alert-halted" in snapshot["F1"][5].split()
        assert "halted" not in snapshot["F0"][4]
    assert first["F0"][1] == exact(document, {symbol: Decimal("123.25")})["F0"]
    assert second["F0"][1] == exact(document, {symbol: Decimal("140.5")})["F0"] != first["F0"][1]
    assert int(second["F0"][0]) > int(first["F0"][0])
    assert points >= 2 and canvases == 1
    assert shot.stat().st_size > 10_000
