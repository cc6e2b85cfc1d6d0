"""Least privilege, exercised: Mosquitto with a password file and the shipped ACL file, Redis with
an ACL user that can only write the engine's keys, secrets read from files and never logged, and
MQTT and Redis over TLS with a CA made for the test (openssl). Throwaway servers, as everywhere."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aiomqtt
import orjson
import pytest
import redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry
from test_integration import make_basket, wait_for

from iopv.config import load_settings
from iopv.localservers.servers import MosquittoServer, RedisServer, find_binary
from iopv.service.live import Service
from tests.support.live import make_certificates, stopped_on_exit

ROOT = Path(__file__).resolve().parents[2]
ENGINE_PW, FEED_PW, REDIS_PW = "engine-secret-7", "feed-secret-8", "redis-secret-9"


@pytest.fixture
def secured(tmp_path):
    """Mosquitto (password file + the shipped ACL) and Redis (ACL users, default user off)."""
    directory = Path(tempfile.mkdtemp(prefix="iopv-secure-"))
    passwd = directory / "passwd"
    passwd.write_text("")
    for user, password in (("iopv-engine", ENGINE_PW), ("tick-feed", FEED_PW), ("iopv-reader", FEED_PW)):
        subprocess.run([find_binary("mosquitto_passwd"), "-b", str(passwd), user, password], check=True)
    mosquitto = MosquittoServer(directory, listener_config=(
        f"allow_anonymous false\npassword_file {passwd}\nacl_file {ROOT / 'config/security/mosquitto.acl'}\n")).start()
    digest = hashlib.sha256(REDIS_PW.encode()).hexdigest()
    acl = (ROOT / "config/security/redis-users.acl").read_text().replace(
        "#REPLACE_WITH_SHA256_OF_PASSWORD", f"#{digest}")
    (directory / "users.acl").write_text(acl)
    redis_server = RedisServer(directory, extra_args=("--aclfile", str(directory / "users.acl"))).start()
    with stopped_on_exit(mosquitto, redis_server, directory=directory):
        yield mosquitto, redis_server


def test_engine_runs_with_least_privilege_and_never_logs_secrets(tmp_path, secured, caplog):
    mosquitto, redis_server = secured
    pcf = tmp_path / "pcf.json"
    pcf.write_bytes(orjson.dumps(make_basket(seed=4)))
    (tmp_path / "mqtt_pw").write_text(ENGINE_PW + "\n")
    settings = load_settings(environ={
        # The Redis password travels in the URL (redacted in logs), the MQTT one in a file.
        "IOPV_REDIS_URL": f"redis://iopv-engine:{REDIS_PW}@127.0.0.1:{redis_server.port}/0",
        "IOPV_MQTT_URL": f"mqtt://iopv-engine@127.0.0.1:{mosquitto.port}",
        "IOPV_MQTT_PASSWORD_FILE": str(tmp_path / "mqtt_pw"),
    }, overrides={"engine": {"pcf_path": str(pcf), "interval_s": 0.2, "instance": f"s{uuid.uuid4().hex[:6]}"}})
    symbol = make_basket(seed=4)[0]["holdings"][0]["symbol"]

    async def scenario():
        service = Service(settings)
        task = asyncio.create_task(service.run(handle_signals=False))
        await asyncio.wait_for(service.feed.subscribed.wait(), 10)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, username="tick-feed", password=FEED_PW,
                                  identifier=f"feed-{uuid.uuid4().hex[:6]}") as feed:
            await feed.publish(f"ticks/{symbol}", orjson.dumps({"symbol": symbol, "price": 50.0,
                                                                 "ts": time.time_ns()}), qos=1)
            # The vendor may not write values: the broker drops it (the engine's value stands).
            await feed.publish("iopv/F0", b'{"fund":"F0","iopv":666}', qos=1, retain=True)
        await wait_for(lambda: service.engine.intake.accepted == 1, what="tick through the ACL")
        after = time.time_ns()
        await wait_for(lambda: service.redis_sink.last_ts_ns > after and service.mqtt_sink.last_ts_ns > after,
                       what="values written under least privilege")
        await wait_for(lambda: service.events.redis.published >= 2 and service.events.mqtt.published >= 2,
                       what="the directory and session events written under least privilege")
        service.request_stop()
        return await asyncio.wait_for(task, 5), service

    with caplog.at_level(logging.DEBUG):
        code, service = asyncio.run(scenario())
    assert code == 0 and service.redis_sink.dropped == 0
    text = caplog.text
    assert REDIS_PW not in text and ENGINE_PW not in text and "iopv-engine:***@" in text

    engine = redis.Redis(port=redis_server.port, username="iopv-engine", password=REDIS_PW, decode_responses=True)
    reader = redis.Redis(port=redis_server.port, username="iopv-reader", password=REDIS_PW, decode_responses=True)
    assert float(reader.hget("iopv:F0", "iopv")) > 0
    # the feed's reference data too: the ACL's +hgetall +hdel are enough (nothing refused)
    assert service.events.redis.failed_writes == 0
    assert reader.hget("iopv:_directory:F0", "status") == "active" and reader.hgetall("iopv:_directory")
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.hset("iopv:F0", "iopv", "1")  # readers cannot write
    with pytest.raises(redis.exceptions.NoPermissionError):
        engine.set("other:key", "1")  # outside the engine's prefix
    with pytest.raises(redis.exceptions.NoPermissionError):
        engine.flushall()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=redis_server.port).ping()  # the default user is off

    async def anonymous():
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="anon"):
            pass
    with pytest.raises(aiomqtt.MqttError):
        asyncio.run(anonymous())

    async def read_value():
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, username="iopv-reader", password=FEED_PW,
                                  identifier=f"chk-{uuid.uuid4().hex[:6]}") as client:
            await client.subscribe("iopv/F0")
            async with asyncio.timeout(5):
                async for message in client.messages:
                    return orjson.loads(message.payload)
    assert asyncio.run(read_value())["iopv"] != 666


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_mqtt_over_tls_with_client_certificate(tmp_path):
    make_certificates(tmp_path)
    directory = tmp_path / "broker"
    directory.mkdir()
    mosquitto = MosquittoServer(directory, tls=True, listener_config=(
        f"allow_anonymous true\ncafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'server.crt'}\n"
        f"keyfile {tmp_path / 'server.key'}\nrequire_certificate true\n")).start()
    redis_server = RedisServer(directory).start()
    pcf = tmp_path / "pcf.json"
    pcf.write_bytes(orjson.dumps(make_basket(seed=2)))
    try:
        settings = load_settings(environ={}, overrides={
            "engine": {"pcf_path": str(pcf), "interval_s": 0.2, "instance": "tls-test"},
            "mqtt": {"url": mosquitto.url, "tls_ca_file": str(tmp_path / "ca.crt"),
                     "tls_cert_file": str(tmp_path / "client.crt"), "tls_key_file": str(tmp_path / "client.key")},
            "redis": {"url": redis_server.url, "key_prefix": "tls"}})
        assert settings.mqtt.url.startswith("mqtts://")

        async def scenario(s):
            service = Service(s)
            task = asyncio.create_task(service.run(handle_signals=False))
            try:
                await wait_for(lambda: service.mqtt_sink.published >= 1 and service.feed.connected,
                               timeout_s=5, what="values over TLS")
                return True
            except AssertionError:
                return False
            finally:
                service.request_stop()
                await asyncio.wait_for(task, 5)

        assert asyncio.run(scenario(settings))
        # Without the client certificate the broker refuses the engine.
        no_cert = dataclasses.replace(settings, mqtt=dataclasses.replace(
            settings.mqtt, tls_cert_file="", tls_key_file="", reconnect_min_s=0.05, reconnect_max_s=0.1))
        assert not asyncio.run(scenario(no_cert))
    finally:
        mosquitto.stop()
        redis_server.stop()


async def _run_service(settings, until, timeout_s: float = 10.0) -> tuple[bool, Service, int]:
    """Run the engine service until ``until(service)`` holds (True) or ``timeout_s`` passes
    (False); then stop it. Also returns its exit code."""
    service = Service(settings)
    task = asyncio.create_task(service.run(handle_signals=False))
    try:
        await wait_for(lambda: until(service) or task.done(), timeout_s=timeout_s, what="service condition")
        reached = until(service)
    except AssertionError:
        reached = False
    assert not task.done(), "the service stopped on its own"
    service.request_stop()
    return reached, service, await asyncio.wait_for(task, 5)


def _redis_tls_settings(tmp_path, redis_server, mqtt_port: int, instance: str, **redis_overrides):
    pcf = tmp_path / "pcf.json"
    pcf.write_bytes(orjson.dumps(make_basket(seed=3)))
    return load_settings(environ={}, overrides={
        "engine": {"pcf_path": str(pcf), "interval_s": 0.2, "instance": instance},
        "mqtt": {"url": f"mqtt://127.0.0.1:{mqtt_port}"},
        "redis": {"url": redis_server.url, "key_prefix": "rtls", "reconnect_min_s": 0.05,
                  "reconnect_max_s": 0.2, **redis_overrides}})


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    directory = tmp_path_factory.mktemp("certs")
    make_certificates(directory)
    return directory


@pytest.fixture
def tls_dir(certificates, tmp_path):
    """(certificates, a fresh directory for the servers)."""
    return certificates, tmp_path


@pytest.mark.parametrize("mutual", [False, True], ids=["server-cert", "client-cert"])
def test_redis_over_tls_values_history_and_state_land(tls_dir, mutual):
    """TLS-only Redis (plain port off); the engine verifies the server certificate against the CA
    (host name included) and, with ``--tls-auth-clients yes``, presents its client certificate."""
    from iopv.adapters.redis import state as persistence
    from iopv.adapters.redis.client import HiredisSSLConnection, redis_client

    certs, directory = tls_dir
    mosquitto = MosquittoServer(directory).start()
    redis_server = RedisServer(directory, tls=(str(certs / "server.crt"), str(certs / "server.key"),
                                               str(certs / "ca.crt")),
                               tls_auth_clients="yes" if mutual else "no").start()
    client_pair = {"tls_cert_file": str(certs / "client.crt"), "tls_key_file": str(certs / "client.key")}
    try:
        assert redis_server.url == f"rediss://127.0.0.1:{redis_server.port}/0"
        settings = _redis_tls_settings(directory, redis_server, mosquitto.port, f"rtls-{int(mutual)}",
                                       tls_ca_file=str(certs / "ca.crt"), **(client_pair if mutual else {}))
        # TLS connections still pack commands with hiredis (from_url used to swap the class out).
        assert redis_client(settings.redis).connection_pool.connection_class is HiredisSSLConnection

        async def ping(url: str):
            client = redis_client(dataclasses.replace(settings.redis, url=url), retry=AsyncRetry(NoBackoff(), 0))
            try:
                return await client.ping()
            finally:
                await client.aclose()
        assert asyncio.run(ping(redis_server.url))
        # The host name is checked too: the certificate names 127.0.0.1, not localhost.
        with pytest.raises(redis.exceptions.ConnectionError, match="match|mismatch"):
            asyncio.run(ping(redis_server.url.replace("127.0.0.1", "localhost")))
        started = time.time_ns()
        reached, service, code = asyncio.run(_run_service(
            settings, lambda s: s.redis_sink.published >= 2 and s.redis_sink.last_ts_ns > started))
        assert reached and code == 0 and service.redis_sink.dropped == 0

        # Read back with a client that verifies the server against the same CA.
        reader = redis.Redis(host="127.0.0.1", port=redis_server.port, ssl=True, decode_responses=True,
                             ssl_ca_certs=str(certs / "ca.crt"), ssl_check_hostname=True,
                             **({"ssl_certfile": client_pair["tls_cert_file"],
                                 "ssl_keyfile": client_pair["tls_key_file"]} if mutual else {}))
        values = reader.hgetall("rtls:F0")
        assert float(values["iopv"]) > 0
        history = reader.xrange("rtls:F0:history")
        assert len(history) >= 2 and float(history[-1][1]["iopv"]) > 0
        # The restart state rides the same TLS connection and is read back over TLS at start.
        assert reader.exists(persistence.state_key(settings)) == 1
        assert asyncio.run(persistence.load(settings)) is not None
        once = {"socket_timeout": 2, "retry": Retry(NoBackoff(), 0)}  # fail at once, no retries
        with pytest.raises(redis.exceptions.ConnectionError):
            redis.Redis(port=redis_server.port, **once).ping()  # plain TCP is refused
        if mutual:
            with pytest.raises(redis.exceptions.ConnectionError):  # no client certificate: refused
                redis.Redis(host="127.0.0.1", port=redis_server.port, ssl=True,
                            ssl_ca_certs=str(certs / "ca.crt"), **once).ping()
    finally:
        mosquitto.stop()
        redis_server.stop()


def test_redis_tls_with_wrong_ca_never_connects_and_service_keeps_running(tls_dir, caplog):
    """A server certificate the configured CA did not sign: the sink retries (backoff) and never
    publishes; the service keeps publishing over MQTT and stops cleanly."""
    certs, directory = tls_dir
    mosquitto = MosquittoServer(directory).start()
    redis_server = RedisServer(directory, tls=(str(certs / "server.crt"), str(certs / "server.key"),
                                               str(certs / "ca.crt"))).start()
    try:
        settings = _redis_tls_settings(directory, redis_server, mosquitto.port, "rtls-wrong-ca",
                                       tls_ca_file=str(certs / "other-ca.crt"))
        with caplog.at_level(logging.WARNING):
            reached, service, code = asyncio.run(_run_service(
                settings, lambda s: s.mqtt_sink.published >= 3 and s.redis_sink.reconnects >= 2))
        assert reached and code == 0
        sink = service.redis_sink
        assert sink.published == 0 and sink.last_ts_ns == 0 and not sink.connected
        assert "certificate verify failed" in caplog.text
        reader = redis.Redis(host="127.0.0.1", port=redis_server.port, ssl=True,
                             ssl_ca_certs=str(certs / "ca.crt"))
        assert reader.keys("rtls:*") == []
    finally:
        mosquitto.stop()
        redis_server.stop()
