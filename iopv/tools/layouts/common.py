"""What the table-shaped layouts share: finding the header row, naming columns by a layout's
table of aliases, and reading a row's cells by field name."""

from __future__ import annotations

from collections.abc import Mapping

from iopv.tools.model import HoldingsError, blank
from iopv.tools.sheets import Record


def _norm(text: str) -> str:
    return " ".join(text.replace("\ufeff", "").split()).lower()


class Columns:
    """A header row read through a layout's table ``{field: (column names...)}``: the first
    alias present names the field's column."""

    def __init__(self, record: Record, table: Mapping[str, tuple[str, ...]]):
        self.record = record
        header = [_norm(f) for f in record.fields]
        self.width = len(header)
        self.index: dict[str, int] = {}
        self.names: dict[str, str] = {}
        for name, aliases in table.items():
            for alias in aliases:
                if _norm(alias) in header:
                    self.index[name] = header.index(_norm(alias))
                    self.names[name] = alias
                    break

    def require(self, table: Mapping[str, tuple[str, ...]], fields: tuple[str, ...], layout: str) -> None:
        missing = [" or ".join(repr(a) for a in table[f]) for f in fields if f not in self.index]
        if missing:
            raise HoldingsError(f"{self.record.where}: the {layout} header lacks the column(s) {', '.join(missing)} "
                                f"(renamed or removed?); header read: {','.join(self.record.fields).strip(',')}")

    def has(self, name: str) -> bool:
        return name in self.index

    def get(self, fields: list[str], name: str) -> str:
        at = self.index.get(name)
        return fields[at].strip() if at is not None and at < len(fields) else ""


def find_header(records: list[Record], markers: tuple[str, ...], *, limit: int = 60) -> int | None:
    """Index of the first record (within ``limit``) whose cells include every marker."""
    wanted = [_norm(m) for m in markers]
    for k, record in enumerate(records[:limit]):
        cells = {_norm(f) for f in record.fields}
        if all(m in cells for m in wanted):
            return k
    return None


def require_header(records: list[Record], markers: tuple[str, ...], where: str, question: str) -> int:
    """``find_header``'s index; without a header row, HoldingsError naming ``where``, the markers
    and ``question`` (which file this was meant to be)."""
    at = find_header(records, markers)
    if at is None:
        raise HoldingsError(f"{where}: no header row with {', '.join(markers)} ({question})")
    return at


def table_rows(records: list[Record], columns: Columns, out, *, strict: bool, end: str, blank_row: str):
    """(record, its cells) of every row of ``records`` (those after ``columns``' header), up to
    the first blank row; ``out.ended`` says where the table ended (``end``: the records ran out, or
    ``<blank_row> at <where>``), for the truncation checks. A layout may stop earlier (and say
    why in ``out.ended``)."""
    out.ended = end
    for record in records:
        if blank(record.fields):
            out.ended = f"{blank_row} at {record.where}"
            return
        yield record, fields_of(record, columns, strict=strict)


def fields_of(record: Record, columns: Columns, *, strict: bool) -> list[str]:
    """The row's cells, padded to the header's width; a CSV line with fewer cells than the
    header (``strict``) is an error: a line cut short or a shifted row."""
    fields = record.fields
    if len(fields) < columns.width:
        if strict and len([f for f in fields if f.strip()]) > 0 and len(fields) > 1:
            raise HoldingsError(f"{record.where}: expected {columns.width} fields as in the header "
                                f"({columns.record.where}), got {len(fields)} (a line cut short?)")
        fields = fields + [""] * (columns.width - len(fields))
    return fields
