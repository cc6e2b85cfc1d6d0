"""The real issuers' holdings files of shared/realdata/holdings (beside the repository, as in CI)
and an independent Decimal reference of what each is worth: the sum of its market-value column,
read here with the csv module, openpyxl or a regular expression -- not with the importer's
readers -- so the importer is checked against the file, not against itself."""

from __future__ import annotations

import csv
import re
from decimal import Decimal
from pathlib import Path

import pytest

#: shared/ sits beside the repository: <repo>/../shared/realdata/holdings
HOLDINGS = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "holdings"
#: The divisor the tests give files that state no shares outstanding (any positive number:
#: the checks are relative).
TEST_SHARES = Decimal(1_000_000)
_MV_COLUMNS = ("Market Value", "MarketValue", "MARKET VALUE*")


def real_files() -> list[Path]:
    if not HOLDINGS.is_dir():
        return []
    return sorted(p for p in HOLDINGS.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix != ".md")


def need_real(path: Path | None = None) -> Path:
    if not HOLDINGS.is_dir():
        pytest.skip(f"no shared real data at {HOLDINGS} (shared/ is not beside the repository)")
    return path or HOLDINGS


def layout_of(path: Path) -> str:
    """The layout a file is filed under: its name starts ``<issuer>_``."""
    return path.name.split("_")[0]


def fund_of(path: Path) -> str:
    return path.name.split("_")[1].upper()


def _dec(text) -> Decimal:
    if isinstance(text, float):
        return Decimal(repr(text))
    return Decimal(str(text).replace(",", "").replace("$", "").strip())


def grid(path: Path) -> list[list[str]]:
    """Rows of cells as text, whatever the container (holdings sheet first)."""
    head = path.read_bytes()[:4]
    if head.startswith(b"PK"):
        import openpyxl
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        sheet = book[book.sheetnames[0]]
        rows = [["" if v is None else (repr(v) if isinstance(v, float) else str(v)) for v in r]
                for r in sheet.iter_rows(values_only=True)]
        book.close()
        return rows
    text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    if text.lstrip().startswith("<?xml"):
        sheet = re.search(r'<ss:Worksheet ss:Name="Holdings">(.*?)</ss:Worksheet>', text, re.S).group(1)
        return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<ss:Cell[^>]*>(.*?)</ss:Cell>", row, re.S)]
                for row in re.findall(r"<ss:Row[^>]*>(.*?)</ss:Row>", sheet, re.S)]
    return [list(r) for r in csv.reader(text.splitlines())]


def market_value_sum(path: Path) -> Decimal:
    """Sum of the market-value column over every holdings table in the file."""
    total, column = Decimal(0), None
    for row in grid(path):
        cells = [c.strip() for c in row]
        found = next((name for name in _MV_COLUMNS if name in cells), None)
        if found:
            column = cells.index(found)
            continue
        if column is None:
            continue
        if not any(c.strip("\xa0 ") for c in cells) or len(cells) <= column:
            column = None if layout_of(path) != "invesco" else column
            continue
        total += _dec(cells[column])
    return total


def stated_shares(path: Path) -> Decimal | None:
    for row in grid(path)[:12]:
        if row and row[0].strip() == "Shares Outstanding":
            return _dec(row[1])
    return None


def ssga_rows(path: Path) -> list[dict]:
    """SSGA rows as {name, ticker, weight, shares} (header ``Name,Ticker,...,Shares Held``)."""
    rows = grid(path)
    at = next(k for k, r in enumerate(rows) if "Shares Held" in r)
    header = rows[at]
    out = []
    for row in rows[at + 1:]:
        if not any(c.strip() for c in row):
            break
        cells = dict(zip(header, row))
        out.append({"name": cells["Name"], "ticker": cells["Ticker"], "weight": _dec(cells["Weight"]),
                    "shares": _dec(cells["Shares Held"])})
    return out


_CONTRACT_MONTH = re.compile(r"(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)\d{2}$")


def ssga_prices_and_value(path: Path, out: Path) -> Decimal:
    """Write test closes for an SSGA file (``out``: symbol,close), derived from its weights as if
    the fund were worth 10^9 (the file has no prices), and return the whole fund's value at
    them: shares x close for securities, ``Shares Held`` for cash lines (no ticker), 0 for a
    futures line (worth nothing at its own close)."""
    lines, total = ["symbol,close"], Decimal(0)
    for row in ssga_rows(path):
        if row["ticker"] in ("", "-"):
            total += row["shares"]
            continue
        close = max((row["weight"] * Decimal(10**7) / row["shares"]).quantize(Decimal("0.0001")), Decimal("0.01"))
        lines.append(f"{row['ticker']},{close}")
        if not _CONTRACT_MONTH.search(" ".join(row["name"].split()).upper()):
            total += row["shares"] * close
    out.write_text("\n".join(lines) + "\n")
    return total
