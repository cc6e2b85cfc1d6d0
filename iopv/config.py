"""Typed, frozen settings: TOML file < ``IOPV_*`` environment < command-line flags.

Every section is a frozen, keyword-only dataclass. Unknown keys -- in the file, in the
environment (any ``IOPV_<SECTION>_<KEY>`` that names no setting) or passed by code -- are an
error that names the key and where it came from, never a silently ignored typo.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_PREFIX = "IOPV_"
#: Environment variables with the prefix that are not settings.
ENV_RESERVED = frozenset({"IOPV_CONFIG"})

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config" / "default.toml"


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type, or out of range."""


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """The valuation cycle."""

    pcf_path: str = str(Path(__file__).resolve().parent.parent / "config" / "pcf" / "demo.json")
    interval_s: float = 15.0
    decimals: int = 4
    instance: str = "iopv-1"
    # Methodology (docs/methodology.md).
    calendar: str = "XNYS"  # "always", or an exchange_calendars code: values only inside its sessions
    stale_after_s: float = 60.0  # a holding whose price is older than this is stale; 0 = never
    min_coverage: float = 0.0  # status degraded when coverage is below this fraction
    halted_weight: float = 0.5  # status halted when halted holdings weigh at least this fraction
    spike_pct: float = 0.0  # spike filter: hold back moves beyond this % of the last price; 0 = off
    spike_confirm_ticks: int = 3  # consecutive ticks at a new level that confirm it
    pcf_watch_s: float = 0.0  # check pcf_path for a new basket file every this many s; 0 = off
    shard: str = "0/1"  # "K/N": this instance values the funds with crc32(ticker) mod N == K (iopv.core.shard)
    # Event time (docs/methodology.md "Event time"): boundary B is cut, valued, at B + watermark_ms,
    # from the ticks stamped at or before B; a tick stamped over max_lead_ms beyond the open
    # boundary is refused (future_ts).
    watermark_ms: float = 50.0
    max_lead_ms: float = 60_000.0

    def validate(self) -> None:
        if not (math.isfinite(self.interval_s) and 0.001 <= self.interval_s <= 86_400):
            raise ConfigError(f"engine.interval_s: expected a number of seconds from 0.001 to 86400, got {self.interval_s!r}")
        if not 0 <= self.decimals <= 10:
            raise ConfigError(f"engine.decimals: expected 0..10, got {self.decimals!r}")
        if not self.pcf_path:
            raise ConfigError("engine.pcf_path: expected a path to a basket file, got an empty string")
        if not self.instance or any(c in self.instance for c in "#+/ \t\r\n"):
            raise ConfigError(f"engine.instance: expected a name without '#', '+', '/' or spaces, got {self.instance!r}")
        for name in ("stale_after_s", "spike_pct", "pcf_watch_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"engine.{name}: expected a number >= 0, got {value!r}")
        if not (math.isfinite(self.watermark_ms) and 0 <= self.watermark_ms < self.interval_s * 1e3):
            raise ConfigError(f"engine.watermark_ms: expected a number of ms >= 0 and below the interval "
                              f"({self.interval_s * 1e3:g} ms), got {self.watermark_ms!r}")
        if not (math.isfinite(self.max_lead_ms) and self.max_lead_ms > 0):
            raise ConfigError(f"engine.max_lead_ms: expected a number of ms > 0, got {self.max_lead_ms!r}")
        for name in ("min_coverage", "halted_weight"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"engine.{name}: expected a fraction 0..1, got {value!r}")
        from iopv.core.shard import parse_shard
        try:
            parse_shard(self.shard)
        except ValueError as exc:
            raise ConfigError(f"engine.shard: {exc}") from None
        if self.spike_confirm_ticks < 2:
            raise ConfigError(f"engine.spike_confirm_ticks: expected >= 2, got {self.spike_confirm_ticks!r}")
        from iopv.core.calendar import CalendarError, SessionCalendar

        try:
            SessionCalendar(self.calendar)
        except CalendarError as exc:
            raise ConfigError(str(exc)) from None

    @property
    def interval_ns(self) -> int:
        return round(self.interval_s * 1_000_000_000)

    @property
    def watermark_ns(self) -> int:
        return round(self.watermark_ms * 1_000_000)

    @property
    def max_lead_ns(self) -> int:
        return round(self.max_lead_ms * 1_000_000)


@dataclass(frozen=True, kw_only=True)
class MqttSettings:
    """The broker that carries ticks in and values out."""

    url: str = "mqtt://127.0.0.1:1883"
    tick_topic_prefix: str = "ticks"
    value_topic_prefix: str = "iopv"
    value_qos: int = 1
    keepalive_s: int = 30
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0
    password_file: str = ""  # overrides the URL's password; keeps the secret out of configs
    tls_ca_file: str = ""  # CA bundle; setting it (or an mqtts:// URL) turns TLS on
    tls_cert_file: str = ""  # client certificate (mutual TLS), with tls_key_file
    tls_key_file: str = ""

    def validate(self) -> None:
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("mqtt", "tcp", "mqtts") or not parts.hostname:
                raise ConfigError(f"mqtt.url: expected mqtt[s]://host[:port][,mqtt[s]://host[:port]...], "
                                  f"got {redact_url(self.url)!r}")
        _check_files("mqtt", self)
        for name in ("tick_topic_prefix", "value_topic_prefix"):
            value = getattr(self, name)
            if not value or any(c in value for c in "#+ \t\r\n") or value.startswith("/") or value.endswith("/"):
                raise ConfigError(f"mqtt.{name}: expected a topic prefix without wildcards or spaces, got {value!r}")
        if self.value_qos not in (0, 1, 2):
            raise ConfigError(f"mqtt.value_qos: expected 0, 1 or 2, got {self.value_qos!r}")
        if self.keepalive_s < 1:
            raise ConfigError(f"mqtt.keepalive_s: expected >= 1, got {self.keepalive_s!r}")
        _check_backoff("mqtt", self.reconnect_min_s, self.reconnect_max_s)

    @property
    def urls(self) -> tuple[str, ...]:
        """The brokers of ``url``: one, or a comma-separated list of a cluster's nodes (tried in order)."""
        return tuple(part.strip() for part in self.url.split(",")) or (self.url,)

    def node(self, i: int) -> MqttSettings:
        """These settings for broker ``i`` (mod the list) alone."""
        urls = self.urls
        return self if len(urls) == 1 else dataclasses.replace(self, url=urls[i % len(urls)])

    @property
    def hostname(self) -> str:
        return urlsplit(self.urls[0]).hostname or "127.0.0.1"

    @property
    def tls(self) -> bool:
        return urlsplit(self.urls[0]).scheme == "mqtts" or bool(self.tls_ca_file)

    @property
    def port(self) -> int:
        return urlsplit(self.urls[0]).port or (8883 if self.tls else 1883)

    @property
    def username(self) -> str | None:
        return urlsplit(self.urls[0]).username

    @property
    def password(self) -> str | None:
        return read_secret(self.password_file) if self.password_file else urlsplit(self.urls[0]).password


@dataclass(frozen=True, kw_only=True)
class RedisSettings:
    """The Redis server that holds the latest values and their history."""

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "iopv"
    history_maxlen: int = 100_000
    history_queue_cycles: int = 960  # publications held while Redis is away (4 h at 15 s)
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0
    password_file: str = ""  # overrides the URL's password
    tls_ca_file: str = ""  # CA bundle for rediss:// URLs
    tls_cert_file: str = ""  # client certificate (mutual TLS), with tls_key_file
    tls_key_file: str = ""
    #: "script": each chunk of funds in one server-side script call (EVALSHA); "pipeline": one
    #: HSET + XADD per fund in pipelines, for servers where scripting is not allowed.
    write_mode: str = "script"
    #: Redis Cluster: ``url`` lists seed nodes ``redis://host:port[,host:port...]`` (iopv.adapters.redis.cluster).
    cluster: bool = False

    def validate(self) -> None:
        if "," in self.url and not self.cluster:
            raise ConfigError(f"redis.url: a list of nodes needs redis.cluster = true, got {redact_url(self.url)!r}")
        for url in self.seed_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("redis", "rediss", "unix") or (self.cluster and not parts.hostname):
                raise ConfigError(f"redis.url: expected redis://host[:port][/db]"
                                  f"{' or a list of cluster nodes redis://host:port,host:port' if self.cluster else ''}"
                                  f", got {redact_url(self.url)!r}")
        if not self.key_prefix or any(c in self.key_prefix for c in " \t\r\n"):
            raise ConfigError(f"redis.key_prefix: expected a non-empty prefix without spaces, got {self.key_prefix!r}")
        if self.history_maxlen < 1:
            raise ConfigError(f"redis.history_maxlen: expected >= 1, got {self.history_maxlen!r}")
        if self.history_queue_cycles < 1:
            raise ConfigError(f"redis.history_queue_cycles: expected >= 1, got {self.history_queue_cycles!r}")
        if self.write_mode not in ("script", "pipeline"):
            raise ConfigError(f"redis.write_mode: expected \"script\" or \"pipeline\", got {self.write_mode!r}")
        _check_files("redis", self)
        _check_backoff("redis", self.reconnect_min_s, self.reconnect_max_s)

    @property
    def seed_urls(self) -> tuple[str, ...]:
        """The nodes of ``url``; in cluster mode a bare ``host:port`` after the first takes its scheme."""
        parts = [part.strip() for part in self.url.split(",")]
        scheme = parts[0].partition("://")[0] if "://" in parts[0] else "redis"
        return tuple(p if "://" in p else f"{scheme}://{p}" for p in parts)


@dataclass(frozen=True, kw_only=True)
class IntakeSettings:
    """Tick intake and the publishing queues."""

    batch_capacity: int = 65_536
    sink_queue_cycles: int = 64

    def validate(self) -> None:
        if self.batch_capacity < 1:
            raise ConfigError(f"intake.batch_capacity: expected >= 1, got {self.batch_capacity!r}")
        if self.sink_queue_cycles < 1:
            raise ConfigError(f"intake.sink_queue_cycles: expected >= 1, got {self.sink_queue_cycles!r}")


@dataclass(frozen=True, kw_only=True)
class OpsSettings:
    """Operability: health endpoint, feed watchdog, restart recovery."""

    http_host: str = "127.0.0.1"
    http_port: int = 0  # 0: no HTTP endpoint
    feed_silence_s: float = 30.0  # no tick for this long while connected: feed reported silent
    restore_state: bool = True  # restore the session's last prices from Redis at start
    # The audit journal (docs/audit.md): one compressed file per session day; "" = off.
    journal_dir: str = ""
    journal_retention_days: int = 30  # day files older than this are deleted; 0 = keep all
    journal_flush_ms: float = 500.0  # ticks handed to the OS at least this often (<= 1000)
    journal_queue_bytes: int = 64 << 20  # records waiting for the writer thread; beyond: ticks dropped, counted
    journal_max_wait_ms: float = 1000.0  # a boundary's values wait at most this for the journal

    def validate(self) -> None:
        if not (math.isfinite(self.journal_flush_ms) and 1 <= self.journal_flush_ms <= 1000):
            raise ConfigError(f"ops.journal_flush_ms: expected 1..1000, got {self.journal_flush_ms!r}")
        if self.journal_retention_days < 0:
            raise ConfigError(f"ops.journal_retention_days: expected >= 0, got {self.journal_retention_days!r}")
        if self.journal_queue_bytes < 1 << 16:
            raise ConfigError(f"ops.journal_queue_bytes: expected >= 65536, got {self.journal_queue_bytes!r}")
        if not (math.isfinite(self.journal_max_wait_ms) and 0 <= self.journal_max_wait_ms <= 60_000):
            raise ConfigError(f"ops.journal_max_wait_ms: expected 0..60000, got {self.journal_max_wait_ms!r}")
        if not 0 <= self.http_port <= 65535:
            raise ConfigError(f"ops.http_port: expected 0..65535, got {self.http_port!r}")
        if not (math.isfinite(self.feed_silence_s) and self.feed_silence_s >= 0):
            raise ConfigError(f"ops.feed_silence_s: expected a number >= 0, got {self.feed_silence_s!r}")


@dataclass(frozen=True, kw_only=True)
class RealtimeSettings:
    """Real-time mode: a fund's value published as soon as a constituent moves it."""

    enabled: bool = False
    throttle_ms: float = 250.0  # at most one real-time value per fund per this many ms
    topic_prefix: str = "iopv-rt"  # real-time values go to <prefix>/<FUND>, retained
    qos: int = 0  # a real-time value is superseded within a throttle window: no broker acks
    revalue_s: float = 15.0  # the rolling revaluation rebuilds every fund's running sums once per this

    def validate(self) -> None:
        if not (math.isfinite(self.throttle_ms) and 0 <= self.throttle_ms <= 60_000):
            raise ConfigError(f"realtime.throttle_ms: expected 0..60000, got {self.throttle_ms!r}")
        if not (math.isfinite(self.revalue_s) and 0.1 <= self.revalue_s <= 3600):
            raise ConfigError(f"realtime.revalue_s: expected 0.1..3600, got {self.revalue_s!r}")
        value = self.topic_prefix
        if not value or any(c in value for c in "#+ \t\r\n") or value.startswith("/") or value.endswith("/"):
            raise ConfigError(f"realtime.topic_prefix: expected a topic prefix without wildcards or spaces, got {value!r}")
        if self.qos not in (0, 1, 2):
            raise ConfigError(f"realtime.qos: expected 0, 1 or 2, got {self.qos!r}")


@dataclass(frozen=True, kw_only=True)
class EventsSettings:
    """The feed's reference data beside the values: fund directory, session events, daily summary
    and heartbeat (README "Outputs", docs/subscribers.md; ``iopv.service.feed_events``)."""

    enabled: bool = True
    heartbeat_s: float = 5.0  # a retained heartbeat per instance this often; 0 = none
    start_of_day_lead_s: float = 1800.0  # start_of_day this long before the session's open
    end_of_day_delay_s: float = 900.0  # end_of_day this long after the session's close
    qos: int = 1  # QoS of the directory, session, summary and heartbeat messages

    def validate(self) -> None:
        if not (math.isfinite(self.heartbeat_s) and (self.heartbeat_s == 0 or 0.1 <= self.heartbeat_s <= 3600)):
            raise ConfigError(f"events.heartbeat_s: expected 0 (off) or 0.1..3600, got {self.heartbeat_s!r}")
        if not (math.isfinite(self.start_of_day_lead_s) and 0 <= self.start_of_day_lead_s <= 43_200):
            raise ConfigError(f"events.start_of_day_lead_s: expected 0..43200, got {self.start_of_day_lead_s!r}")
        if not (math.isfinite(self.end_of_day_delay_s) and 0 <= self.end_of_day_delay_s <= 28_800):
            raise ConfigError(f"events.end_of_day_delay_s: expected 0..28800, got {self.end_of_day_delay_s!r}")
        if self.qos not in (0, 1, 2):
            raise ConfigError(f"events.qos: expected 0, 1 or 2, got {self.qos!r}")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """All settings, one frozen section per concern."""

    engine: EngineSettings = field(default_factory=EngineSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    events: EventsSettings = field(default_factory=EventsSettings)

    def validate(self) -> Settings:
        for section in SECTIONS:
            getattr(self, section).validate()
        return self


SECTIONS: dict[str, type] = {
    "engine": EngineSettings,
    "mqtt": MqttSettings,
    "redis": RedisSettings,
    "intake": IntakeSettings,
    "ops": OpsSettings,
    "realtime": RealtimeSettings,
    "events": EventsSettings,
}


def _check_backoff(section: str, low: float, high: float) -> None:
    if not (0 < low <= high):
        raise ConfigError(f"{section}.reconnect_min_s/reconnect_max_s: expected 0 < min <= max, got {low!r}, {high!r}")


def _check_files(section: str, settings: Any) -> None:
    for name in ("password_file", "tls_ca_file", "tls_cert_file", "tls_key_file"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            raise ConfigError(f"{section}.{name}: file not found: {path}")
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError(f"{section}.tls_cert_file/tls_key_file: give both or neither")


def read_secret(path: str) -> str:
    """A secret kept in a file (e.g. a mounted Kubernetes/Docker secret), without its final newline."""
    return Path(path).read_text(encoding="utf-8").rstrip("\r\n")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (safe to log)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _coerce(section: str, key: str, kind: type, value: Any, origin: str) -> Any:
    where = f"{origin}: {section}.{key}"
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif kind is float:
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                return float(value)
        except (ValueError, OverflowError):
            pass
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")


def _field_types(cls: type) -> dict[str, type]:
    types = {"float": float, "int": int, "str": str, "bool": bool}
    return {f.name: types[str(f.type)] for f in dataclasses.fields(cls)}


def _merge(layers: dict[str, dict[str, Any]], section: str, values: Mapping[str, Any], origin: str) -> None:
    if section not in SECTIONS:
        raise ConfigError(f"{origin}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
    known = _field_types(SECTIONS[section])
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{origin}: unknown key {section}.{key} (known: {', '.join(known)})")
        layers[section][key] = _coerce(section, key, known[key], value, origin)


def env_names() -> dict[str, tuple[str, str]]:
    """``IOPV_<SECTION>_<KEY>`` -> (section, key) for every setting."""
    return {
        f"{ENV_PREFIX}{section.upper()}_{name.upper()}": (section, name)
        for section, cls in SECTIONS.items()
        for name in _field_types(cls)
    }


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Settings from the TOML file at ``path`` (default ``config/default.toml`` or ``$IOPV_CONFIG``),
    then ``IOPV_*`` variables of ``environ``, then ``overrides`` (``{"section": {"key": value}}``,
    ``None`` values skipped). Raises ConfigError naming the offending key."""
    environ = os.environ if environ is None else environ
    layers: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    if path is None:
        path = environ.get("IOPV_CONFIG") or DEFAULT_CONFIG_PATH
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for section, values in document.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: unknown top-level key {section!r} (settings live in sections: {', '.join(SECTIONS)})")
        _merge(layers, section, values, str(path))
    # A relative basket path in a config file is relative to that file, not to the caller's cwd.
    pcf = layers["engine"].get("pcf_path")
    if pcf and not Path(pcf).is_absolute():
        layers["engine"]["pcf_path"] = str((path.parent / pcf).resolve())
    names = env_names()
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        if name not in names:
            raise ConfigError(f"environment: unknown setting {name} (see README, 'Configuration')")
        section, key = names[name]
        _merge(layers, section, {key: value}, f"environment {name}")
    for section, values in (overrides or {}).items():
        _merge(layers, section, {k: v for k, v in values.items() if v is not None}, "command line")
    settings = Settings(**{section: SECTIONS[section](**values) for section, values in layers.items()})
    return settings.validate()
