"""Shards: the documented hash (CRC-32 of the UTF-8 ticker), K/N parsing, a shard's universe, the
``iopv shards`` report, and the new settings' validation."""

from __future__ import annotations

import zlib

import orjson
import pytest

from iopv.cli import main
from iopv.config import ConfigError, MqttSettings, RedisSettings, load_settings
from iopv.core.shard import Shard, load_shard, parse_shard, shard_of, tick_symbols
from iopv.core.universe import PcfError, load_pcf

DEMO = "config/pcf/demo.json"


def test_shard_of_is_crc32_of_the_utf8_ticker_mod_n():
    # Fixed values other tools can check against (zlib / java.util.zip.CRC32 / PostgreSQL crc32):
    # crc32("PWB") = 4275379341, crc32("PWV") = 3826239728, crc32("SPY") = 968359423.
    assert [shard_of(f, 2) for f in ("PWB", "PWV", "SPY")] == [1, 0, 1]
    assert [shard_of(f, 3) for f in ("PWB", "PWV", "SPY")] == [0, 2, 1]
    for fund in ("PWB", "PWV", "SPY", "QQQ", "EWJ.T"):
        assert shard_of(fund, 4) == zlib.crc32(fund.encode()) % 4
    assert shard_of("PWB", 1) == 0


@pytest.mark.parametrize("text, expected", [("0/1", Shard(0, 1)), ("1/2", Shard(1, 2)), (" 3/8 ", Shard(3, 8))])
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["2/2", "1", "-1/2", "0/0", "a/b", "1/2/3", ""])
def test_parse_shard_rejects(text):
    with pytest.raises(ValueError, match="K"):
        parse_shard(text)


def test_shards_partition_the_funds_and_keep_their_symbols():
    whole = load_pcf(DEMO)
    parts = [load_shard(DEMO, Shard(k, 3)) for k in range(3)]
    funds = [f for p in parts for f in p.funds]
    assert sorted(funds) == sorted(whole.funds) and len(funds) == len(set(funds))
    for k, part in enumerate(parts):
        assert all(shard_of(f, 3) == k for f in part.funds)
        assert list(part.funds) == [f for f in whole.funds if shard_of(f, 3) == k]  # file order
        assert part.version == whole.version
        symbols = set(tick_symbols(part))
        for f in part.funds:
            start, end = whole.fund_offsets[whole.funds.index(f)], whole.fund_offsets[whole.funds.index(f) + 1]
            held = {whole.symbols[s] for s in whole.holding_security[start:end]}
            assert held <= symbols


def test_a_bad_fund_in_another_shard_still_rejects_the_file(tmp_path):
    document = orjson.loads(open(DEMO, "rb").read())
    victim = next(f for f in document if shard_of(f["fund"], 2) == 1)
    victim["creation_unit"] = 0
    path = tmp_path / "bad.json"
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(PcfError, match="creation_unit"):
        load_shard(path, Shard(0, 2))


def test_iopv_shards_prints_each_shard(capsys):
    assert main(["shards", DEMO, "--count", "2", "--funds"]) == 0
    out = capsys.readouterr().out
    whole = load_pcf(DEMO)
    for k in range(2):
        part = load_shard(DEMO, Shard(k, 2))
        assert f"shard {k}/2: {len(part.funds)} funds, {part.holdings} holdings" in out
        assert " ".join(part.funds) in out
    assert f"{len(whole.funds)} funds" in out.splitlines()[0]


def test_new_settings_are_validated():
    assert load_settings(environ={"IOPV_ENGINE_SHARD": "1/2"}).engine.shard == "1/2"
    with pytest.raises(ConfigError, match="engine.shard"):
        load_settings(environ={"IOPV_ENGINE_SHARD": "2/2"})
    with pytest.raises(ConfigError, match="redis.cluster"):
        RedisSettings(url="redis://a:1,b:2").validate()
    cluster = RedisSettings(url="redis://a:1,b:2", cluster=True)
    cluster.validate()
    assert cluster.seed_urls == ("redis://a:1", "redis://b:2")
    mqtt = MqttSettings(url="mqtt://a:1883,mqtt://b:1884")
    mqtt.validate()
    assert mqtt.urls == ("mqtt://a:1883", "mqtt://b:1884")
    assert (mqtt.node(1).hostname, mqtt.node(1).port, mqtt.node(2).port) == ("b", 1884, 1883)
    with pytest.raises(ConfigError, match="mqtt.url"):
        MqttSettings(url="mqtt://a:1883,http://b").validate()
