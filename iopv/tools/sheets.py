"""A holdings download read into plain text records, whatever its container: CSV text (UTF-8
with or without BOM, or Windows-1252 after an Excel re-save), an XLSX workbook (openpyxl), or an
Excel 2003 XML workbook (SpreadsheetML: what iShares serves as ``fund.xls``, with a doubled BOM
and bare ``&`` that a strict XML parser refuses). The layouts (``iopv.tools.layouts``) read
records and never care which container they came from.

``sniff`` names a file's container from its first bytes, so a wrong ``--format`` is answered
with what the file is ("this is an XLSX workbook ...") instead of a decoding error."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from xml.etree import ElementTree

from iopv.tools.model import HoldingsError

#: Containers and how a message names them.
CONTAINERS = {
    "csv": "CSV text",
    "xlsx": "an XLSX workbook",
    "spreadsheetml": "an Excel 2003 XML workbook (SpreadsheetML, as iShares serves 'fund.xls')",
    "xls": "a binary Excel 97-2003 workbook (re-save it as XLSX or CSV)",
    "zip": "a ZIP archive that is not an XLSX workbook",
    "html": "an HTML page (a download that failed or a login page?)",
    "pdf": "a PDF document",
    "empty": "an empty file",
}
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class Record:
    """One line of a CSV or one row of a sheet: ``where`` names it in messages."""

    where: str
    line: int
    fields: list[str]


@dataclass(frozen=True, slots=True)
class Workbook:
    """A file's records by sheet (a CSV is one sheet named "")."""

    path: Path
    container: str
    sheets: dict[str, list[Record]]

    def sheet(self, *names: str) -> list[Record]:
        """The first sheet whose name is one of ``names`` (any case); a CSV's only sheet."""
        if self.container == "csv":
            return self.sheets[""]
        by_lower = {name.lower(): name for name in self.sheets}
        for name in names:
            if name.lower() in by_lower:
                return self.sheets[by_lower[name.lower()]]
        if len(self.sheets) == 1:
            return next(iter(self.sheets.values()))
        raise HoldingsError(f"{self.path}: no sheet {' or '.join(map(repr, names))} "
                            f"(sheets: {', '.join(self.sheets)})")


def sniff(path: Path) -> str:
    """The container of ``path`` (a key of ``CONTAINERS``) from its first bytes."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise HoldingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not head.strip():
        return "empty"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                return "xlsx" if any(n.startswith("xl/") for n in archive.namelist()) else "zip"
        except zipfile.BadZipFile:
            return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    text = head.decode("utf-8", errors="replace").lstrip(_BOM + " \r\n\t")
    lowered = text[:1024].lower()
    if lowered.startswith("<?xml") and "urn:schemas-microsoft-com:office:spreadsheet" in lowered:
        return "spreadsheetml"
    if lowered.startswith(("<!doctype html", "<html")):
        return "html"
    if head.startswith(b"%PDF"):
        return "pdf"
    return "csv"


def read_workbook(path: Path, accept: tuple[str, ...]) -> Workbook:
    """Read ``path`` if its container is one of ``accept``; otherwise say what it is."""
    container = sniff(path)
    if container not in accept:
        wanted = " or ".join(CONTAINERS[c].split(" (")[0] for c in accept)
        raise HoldingsError(f"{path}: this is {CONTAINERS[container]}, not {wanted}")
    reader = {"csv": _read_csv, "xlsx": _read_xlsx, "spreadsheetml": _read_spreadsheetml}[container]
    return Workbook(path, container, reader(path))


def _read_csv(path: Path) -> dict[str, list[Record]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")  # an Excel re-save on Windows
    text = text.lstrip(_BOM)
    records = []
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for fields in reader:
            records.append(Record(f"{path}:{start}", start, [f.lstrip(_BOM) for f in fields]))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise HoldingsError(f"{path}:{start}: {exc}") from None
    return {"": records}


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (datetime, date)):
        return value.strftime("%b %d, %Y")
    return str(value)


def _read_xlsx(path: Path) -> dict[str, list[Record]]:
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile/KeyError/InvalidFileException on a damaged workbook
        raise HoldingsError(f"{path}: not a readable XLSX workbook ({type(exc).__name__}: {exc})") from None
    try:
        return {name: [Record(f"{path}: sheet {name}, row {n}", n, [_cell_text(v) for v in values])
                       for n, values in enumerate(book[name].iter_rows(values_only=True), start=1)]
                for name in book.sheetnames}
    finally:
        book.close()


_SS = "{urn:schemas-microsoft-com:office:spreadsheet}"
#: ``&`` that starts no entity or character reference: iShares writes ``S&P`` bare.
_BARE_AMPERSAND = re.compile(r"&(?!(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);)")


def _read_spreadsheetml(path: Path) -> dict[str, list[Record]]:
    text = path.read_bytes().decode("utf-8", errors="replace").lstrip(_BOM + " \r\n\t")
    text = _BARE_AMPERSAND.sub("&amp;", text)
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        line, column = exc.position
        raise HoldingsError(f"{path}:{line}: column {column}: not well-formed SpreadsheetML ({exc})") from None
    sheets: dict[str, list[Record]] = {}
    for sheet in root.iter(f"{_SS}Worksheet"):
        name = sheet.get(f"{_SS}Name", f"Sheet{len(sheets) + 1}")
        records = []
        number = 0
        for row in sheet.iter(f"{_SS}Row"):
            index = row.get(f"{_SS}Index")
            number = int(index) if index else number + 1
            fields: list[str] = []
            for cell in row.iter(f"{_SS}Cell"):
                at = cell.get(f"{_SS}Index")
                if at:  # a cell after skipped empty ones
                    fields.extend([""] * (int(at) - 1 - len(fields)))
                data = cell.find(f"{_SS}Data")
                fields.append("" if data is None else "".join(data.itertext()).strip())
            records.append(Record(f"{path}: sheet {name}, row {number}", number, fields))
        sheets[name] = records
    if not sheets:
        raise HoldingsError(f"{path}: SpreadsheetML without a worksheet")
    return sheets
