"""aiomqtt client construction shared by the tick feed and the value publisher."""

from __future__ import annotations

import logging
import ssl

import aiomqtt

from iopv.config import MqttSettings


def tls_context(ca_file: str, cert_file: str = "", key_file: str = "") -> ssl.SSLContext:
    """A verifying client TLS context: the given CA (or the system's), optional client certificate."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def make_client(settings: MqttSettings, identifier: str, *, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
    """A client for the configured broker (created once, re-entered by the reconnect loop)."""
    client = aiomqtt.Client(
        settings.hostname,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=identifier,
        keepalive=settings.keepalive_s,
        will=will,
        max_inflight_messages=1000,
        timeout=10,
        tls_context=(tls_context(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file)
                     if settings.tls else None),
        logger=logging.getLogger(f"iopv.mqtt.{identifier}"),
    )
    # A cycle publishes one message per fund concurrently: thousands in flight are expected,
    # not a warning sign (aiomqtt warns above 10 by default).
    client.pending_calls_threshold = 1_000_000
    return client
