"""The published-record schemas: valid JSON Schema 2020-12, shipped in the package, the copies
in docs/schemas identical, their enums the engine's own names, and replay output valid."""

from __future__ import annotations

from pathlib import Path

import orjson
from jsonschema import Draft202012Validator

from iopv.core.constants import FUND_FLAG_WORDS, FUND_STATUS_WORDS
from iopv.schemas import SCHEMAS, load_schema

ROOT = Path(__file__).resolve().parents[2]


def test_schemas_are_valid_and_docs_copies_are_in_sync():
    for name, filename in SCHEMAS.items():
        Draft202012Validator.check_schema(load_schema(name))
        shipped = (ROOT / "iopv" / "schemas" / filename).read_bytes()
        assert (ROOT / "docs" / "schemas" / filename).read_bytes() == shipped, f"docs/schemas/{filename} differs"
    assert sorted(p.name for p in (ROOT / "docs" / "schemas").glob("*.json")) == sorted(SCHEMAS.values())


def test_enums_are_the_engines_names():
    boundary = load_schema("boundary-value")
    assert boundary["$defs"]["flag"]["enum"] == list(FUND_FLAG_WORDS)
    assert boundary["properties"]["status"]["enum"] == list(FUND_STATUS_WORDS)
    redis_value = load_schema("redis-value")
    assert redis_value["properties"]["status"]["enum"] == list(FUND_STATUS_WORDS)
    assert all(name in redis_value["properties"]["flags"]["pattern"] for name in FUND_FLAG_WORDS)
    # the Redis record is the boundary record without `fund`, with the `instance` that wrote it
    assert set(redis_value["properties"]) == set(boundary["properties"]) - {"fund"} | {"instance"}
    assert redis_value["required"] == [f for f in boundary["required"] if f != "fund"]


def test_replay_output_validates(tmp_path, capsys):
    from iopv.cli import main

    pcf = tmp_path / "pcf.json"
    pcf.write_bytes(orjson.dumps([{"fund": "X", "creation_unit": 2, "currency": "USD", "cash": 1.5,
                                   "as_of": "2024-12-06", "prior_nav": 10.0,
                                   "holdings": [{"symbol": "A", "shares": 3, "price": 7.25}]}]))
    tape = tmp_path / "tape.jsonl"
    tape.write_text('{"symbol": "A", "price": 7.5, "ts": 1000000000}\n'
                    '{"symbol": "X", "price": 12.0, "ts": 16000000000}\n')
    assert main(["replay", "--pcf", str(pcf), "--tape", str(tape), "--calendar", "always"]) == 0
    records = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    validator = Draft202012Validator(load_schema("boundary-value"))
    assert len(records) == 2 and records[1]["market_price"] == 12.0
    for record in records:
        assert list(validator.iter_errors(record)) == []
