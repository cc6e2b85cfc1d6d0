"""aiomqtt client construction shared by the tick feed and the value publisher, and every private
aiomqtt/paho internal the package relies on, in this one module: no other module touches them.

aiomqtt owns each connection (connect, TLS, credentials, will, keepalive, reconnect). The tick
feed reads QoS 0 PUBLISH packets off paho's socket itself and the value publisher writes its own
pre-encoded PUBLISH packets through paho (``iopv.adapters.mqtt.feed`` / ``.sink``). That needs,
from the pinned range (aiomqtt >=2.5,<3 on paho-mqtt >=2.1,<2.3, in pyproject.toml), the eight
private attributes named in ``INTERNALS``: aiomqtt's ``Client._client`` (the paho client) and
``Client._disconnected`` (the future that ends the current connection); paho's ``Client._sock``
(the connection's socket, wrapped on open), ``Client._protocol`` (3.1.1 or 5),
``Client._mid_generate`` (its packet id counter), ``Client._out_messages`` (its unacknowledged
messages), ``Client._packet_queue`` (its outgoing packet queue) and
``MQTTMessageInfo._set_as_published`` (called once a packet is written). ``paho_client`` checks
every one when the feed or a sink starts and fails loudly if any has gone;
tests/integration/test_feed_callback.py and test_mqtt_publish.py exercise them against a real
broker.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable

import aiomqtt
import paho.mqtt.client as paho

from iopv.adapters.mqtt.wire import MAX_PACKET_ID, PUBLISH
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


#: Every private attribute used, by owner (``paho_client`` checks them all at start-up).
INTERNALS = {
    "aiomqtt.Client": ("_client", "_disconnected"),
    "paho.Client": ("_sock", "_protocol", "_mid_generate", "_out_messages", "_packet_queue"),
    "paho.MQTTMessageInfo": ("_set_as_published",),
}


def missing_internals(client: aiomqtt.Client) -> list[str]:
    """The ``INTERNALS`` (and paho's ``on_socket_open`` hook) that ``client`` lacks, by name."""
    inner = getattr(client, "_client", None)
    owners = {"aiomqtt.Client": client, "paho.Client": inner, "paho.MQTTMessageInfo": paho.MQTTMessageInfo}
    missing = [f"{owner}.{name}" for owner, names in INTERNALS.items() for name in names
               if not hasattr(owners[owner], name)]
    if inner is not None and not isinstance(inner, paho.Client):
        missing.append("aiomqtt.Client._client (not a paho.Client)")
    elif not hasattr(inner, "on_socket_open"):
        missing.append("paho.Client.on_socket_open")
    return missing


def paho_client(client: aiomqtt.Client) -> paho.Client:
    """The paho client inside an aiomqtt client, checked for every internal this module uses and
    for MQTT 3.1.1 (the packets read and written here). Called at start-up by the tick feed and
    the value publisher: an aiomqtt or paho upgrade that moved anything fails here, loudly."""
    missing = missing_internals(client)
    if missing:
        raise RuntimeError(
            f"aiomqtt {getattr(aiomqtt, '__version__', '?')} / paho-mqtt {getattr(paho, '__version__', '?')} "
            f"no longer have the internals the MQTT feed and value publisher rely on (missing: "
            f"{', '.join(missing)}); pinned in pyproject.toml: see iopv/adapters/mqtt/client.py")
    inner = client._client  # noqa: SLF001
    if inner._protocol != paho.MQTTv311:  # noqa: SLF001 -- MQTT 5 packets carry properties
        raise RuntimeError("the MQTT tick feed and value publisher read and write MQTT 3.1.1 packets only")
    return inner


def connection_lost(client: aiomqtt.Client) -> asyncio.Future:
    """aiomqtt's future for the end of the current connection: an exception on a lost
    connection, a result on a clean disconnect. Replaced by aiomqtt on every connect."""
    return client._disconnected  # noqa: SLF001


async def until_disconnected(client: aiomqtt.Client) -> None:
    """Wait for the end of the current connection; raise ``aiomqtt.MqttError`` then (what
    aiomqtt's message iterator raises, without its queue)."""
    lost = connection_lost(client)
    await asyncio.wait((lost,))  # never cancels the future itself
    reason = None if lost.cancelled() else lost.exception()
    raise aiomqtt.MqttError("Disconnected") from reason


def current_socket(inner: paho.Client):
    """The socket of paho's current connection (a wrapper when ``wrap_sockets`` installed one),
    None while disconnected."""
    return inner._sock  # noqa: SLF001


def wrap_sockets(inner: paho.Client, wrap) -> None:
    """Make every socket paho opens ``wrap(sock)`` before aiomqtt registers its reader: paho
    calls ``on_socket_open`` right after storing the new socket in its private ``_sock``, and
    reads, writes and polls through that attribute from then on."""
    aiomqtt_open = inner.on_socket_open

    def on_socket_open(client: paho.Client, userdata, sock) -> None:
        wrapped = wrap(sock)
        client._sock = wrapped  # noqa: SLF001
        aiomqtt_open(client, userdata, wrapped)

    inner.on_socket_open = on_socket_open


def reserve_packet_ids(inner: paho.Client, count: int) -> list[int]:
    """``count`` packet ids from paho's own counter -- the one its publish and subscribe draw
    from -- so an id is not handed out again on this connection for 65,535 allocations; ids of
    paho's own unacknowledged messages (the retained status) are skipped."""
    in_use = inner._out_messages  # noqa: SLF001
    if count > MAX_PACKET_ID - len(in_use) - 1:
        raise ValueError(f"cannot have {count} packet ids in flight (max {MAX_PACKET_ID - len(in_use) - 1})")
    generate = inner._mid_generate  # noqa: SLF001
    ids = []
    while len(ids) < count:
        packet_id = generate()
        if packet_id not in in_use:
            ids.append(packet_id)
    return ids


class _Written(paho.MQTTMessageInfo):
    """paho calls ``_set_as_published`` once every byte of a QoS 0 PUBLISH is written, or with
    ``rc`` = ``MQTT_ERR_CONN_LOST`` when it resets the connection first; possibly from
    aiomqtt's connect thread, hence ``call_soon_threadsafe``."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future):
        super().__init__(0)
        self._future = future

    def _set_as_published(self) -> None:
        super()._set_as_published()
        future = self._future
        future.get_loop().call_soon_threadsafe(_resolve, future, self.rc)


def _resolve(future: asyncio.Future, rc: int) -> None:
    if not future.done():
        future.set_result(rc)


def write_packets(inner: paho.Client, data: bytes, written: asyncio.Future | None = None) -> None:
    """Queue ``data`` (whole packets) on paho's outgoing queue, as one packet: paho writes it in
    order with its own packets (never inside one), resumes partial writes when the socket is
    writable again, over TLS too, and drops it if the connection resets. ``written`` gets
    paho's return code (``MQTT_ERR_SUCCESS`` = all written) -- needed for QoS 0, whose only
    completion is the write. The packet id 0 is never a real one (ids are 1-65535), so paho's
    on_publish for it (aiomqtt's) finds nothing to complete."""
    view = memoryview(data)  # paho slices from the written position on: no copy of the rest
    if written is None:
        inner._packet_queue(PUBLISH, view, 0, 1, None)  # noqa: SLF001 -- "QoS 1": no callback
    else:
        inner._packet_queue(PUBLISH, view, 0, 0, _Written(written))  # noqa: SLF001


class NodeRotation:
    """A publisher's clients, one per broker of ``mqtt.url``'s list, made once each, and which
    one the next connection uses: the same broker until a connection fails or drops, then the
    next (a cluster rides through a dead node)."""

    __slots__ = ("count", "node", "_connects", "_clients")

    def __init__(self, count: int):
        self.count = count
        self.node = 0  # grows by one per failed or dropped connection; the index is node % count
        self._connects = 0
        self._clients: dict = {}

    def next_node(self) -> int:
        """The index (in the URL list) of the node to connect to now."""
        if self._connects and self.count > 1:
            self.node += 1
        self._connects += 1
        return self.node % self.count

    def next_client(self, make: Callable[[int], aiomqtt.Client]) -> aiomqtt.Client:
        """The client of the node to connect to now, made by ``make(node index)`` the first time."""
        node = self.next_node()
        client = self._clients.get(node)
        if client is None:
            client = self._clients[node] = make(node)
        return client
