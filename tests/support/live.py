"""Helpers shared by the integration tests: baskets with an exact reference, settings on the
throwaway servers, waiting, publishing and reading retained values, test certificates."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import subprocess
import threading
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import aiomqtt
import numpy as np
import orjson

from iopv.config import load_settings


def make_basket(seed: int) -> list[dict]:
    """A few funds over overlapping symbols, one in EUR holdings, one all cash."""
    rng = np.random.default_rng(seed)
    symbols = [f"S{i:03d}" for i in range(40)]
    closes = {s: round(float(rng.uniform(5, 200)), 2) for s in symbols}
    funds = []
    for f in range(4):
        chosen = rng.choice(symbols, size=int(rng.integers(5, 25)), replace=False)
        holdings = [{"symbol": str(s), "shares": int(rng.integers(1, 5000)), "price": closes[str(s)]}
                    for s in chosen]
        fund = {"fund": f"F{f}", "creation_unit": 50000, "currency": "USD",
                "cash": round(float(rng.uniform(-5000, 5000)), 2), "holdings": holdings}
        if f == 1:
            fund["fx"] = {"EUR": 1.0812}
            holdings.append({"symbol": "EU01", "shares": 700, "price": 41.37, "currency": "EUR"})
        funds.append(fund)
    funds.append({"fund": "CASH", "creation_unit": 50000, "currency": "USD", "cash": 123456.78, "holdings": []})
    return funds


def exact(document: list[dict], prices: dict[str, Decimal]) -> dict[str, str]:
    """Reference: every fund's value at ``prices`` (previous closes where absent), 4 dp half-up."""
    out = {}
    for fund in document:
        rates = {ccy: prices.get(f"{ccy}{fund['currency']}", Decimal(repr(rate)))
                 for ccy, rate in fund.get("fx", {}).items()}
        total = Decimal(repr(fund["cash"]))
        for h in fund["holdings"]:
            price = prices.get(h["symbol"], Decimal(repr(h["price"])))
            fx = rates[h["currency"]] if h.get("currency", fund["currency"]) != fund["currency"] else Decimal(1)
            total += Decimal(h["shares"]) * price * fx
        value = (total / Decimal(fund["creation_unit"])).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
        out[fund["fund"]] = str(value)
    return out


def settings_for(tmp_path: Path, document: list[dict], mosquitto, redis_server, **engine):
    pcf = tmp_path / "pcf.json"
    pcf.write_bytes(orjson.dumps(document))
    tag = uuid.uuid4().hex[:8]
    return load_settings(environ={}, overrides={
        "engine": {"pcf_path": str(pcf), "interval_s": 0.5, "instance": f"t{tag}", **engine},
        "mqtt": {"url": mosquitto.url, "tick_topic_prefix": f"ticks{tag}", "value_topic_prefix": f"iopv{tag}"},
        "redis": {"url": redis_server.url, "key_prefix": f"iopv{tag}", "history_maxlen": 1000},
    })


async def wait_for(predicate, timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 10 ms until it holds; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class CollectingSink:
    """A stand-in sink that keeps what it is offered (when the unit under test is the publisher)."""

    name = "collector"

    def __init__(self):
        self.publications = []

    def offer(self, publication) -> None:
        self.publications.append(publication)


@contextlib.contextmanager
def stopped_on_exit(*servers, directory: Path | None = None):
    """Yield ``servers`` (a test's own throwaway servers, started); on exit stop each, in order,
    and remove ``directory``."""
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


async def publish_all(host: str, port: int, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client(host, port, identifier=f"pub-{uuid.uuid4().hex[:6]}") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


@functools.cache
def _validator(name: str):
    from jsonschema import Draft202012Validator

    from iopv.schemas import load_schema
    return Draft202012Validator(load_schema(name))


def assert_valid(name: str, record) -> None:
    """``record`` validates against the published-record schema ``name`` (iopv/schemas)."""
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator(name).iter_errors(record)]
    assert not problems, f"{name} schema: {problems} in {record}"


async def read_retained(host: str, port: int, prefix: str, expected: int, *, validate: bool = True) -> dict[str, dict]:
    """The retained values under ``prefix``, each checked against its schema (the status too)
    unless ``validate`` is off (a test publishing synthetic records through a sink alone)."""
    found: dict[str, dict] = {}
    async with aiomqtt.Client(host, port, identifier=f"sub-{uuid.uuid4().hex[:6]}") as client:
        await client.subscribe(f"{prefix}/#")
        async with asyncio.timeout(10):
            async for message in client.messages:
                assert message.retain, "values must be published retained"
                level = message.topic.value.split("/")[1]
                if level.startswith("_"):  # the instance status or the feed's reference data, not a fund
                    if level == "_status" and validate:
                        assert_valid("status", orjson.loads(message.payload))
                    continue
                found[message.topic.value.split("/", 1)[1]] = record = orjson.loads(message.payload)
                if validate:
                    assert_valid("boundary-value", record)
                if len(found) == expected:
                    break
    return found


def tick(symbol, price, ts, **extra) -> dict:
    return {"symbol": symbol, "price": price, "ts": ts, **extra}


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path) -> None:
    """In ``directory``: ca.crt/.key, server.crt/.key (for IP 127.0.0.1) and client.crt/.key,
    both signed by the CA; other-ca.crt is an unrelated CA (signs nothing here)."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN=iopv-test-{ca}",
                "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=directory)
    for name, extra in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=directory)
        (directory / f"{name}.ext").write_text(extra + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=directory)


class ValueCollector(threading.Thread):
    """Every value published on MQTT under ``prefix`` while it runs, each checked against its
    schema: (fund, ts) -> [(iopv, flags)], and the instance statuses."""

    def __init__(self, host: str, port: int, prefix: str):
        super().__init__(daemon=True)
        self.host, self.port, self.prefix = host, port, prefix
        self.values: dict[tuple[str, int], list[tuple[float, list[str]]]] = {}
        self.statuses: list[dict] = []
        self.stop_event = threading.Event()
        self.subscribed = threading.Event()
        self.error: BaseException | None = None  # what stopped the thread (a schema violation, say)

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 -- reported to the test through ``error``
            self.error = exc

    async def _run(self) -> None:
        async with aiomqtt.Client(self.host, self.port, identifier=f"col-{uuid.uuid4().hex[:6]}") as client:
            await client.subscribe(f"{self.prefix}/#", qos=1)
            self.subscribed.set()
            while not self.stop_event.is_set():
                try:
                    async with asyncio.timeout(0.2):
                        async for message in client.messages:
                            level = message.topic.value.split("/")[1]
                            if not message.payload or (level.startswith("_") and level != "_status"):
                                continue  # a cleared retained message; the directory, session events...
                            record = orjson.loads(message.payload)
                            if level == "_status":
                                assert_valid("status", record)
                                self.statuses.append(record)
                                continue
                            assert_valid("boundary-value", record)
                            self.values.setdefault((record["fund"], record["ts"]), []).append(
                                (record["iopv"], record["flags"]))
                except TimeoutError:
                    pass
