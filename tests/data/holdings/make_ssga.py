"""Writes the synthetic SSGA holdings workbook (sheet ``holdings``, the layout of issue 11) with
openpyxl. Issuers' files may not be redistributed, so tests build this one at test time:
``python -m tests.data.holdings.make_ssga OUT.xlsx`` writes it by hand."""

from __future__ import annotations

import sys

ROWS = [
    ("Fund Name:", "Synthetic Example Select Sector Fund (not a real fund)"),
    ("Ticker Symbol:", "SXYZ"),
    ("Holdings:", "As of 14-Feb-2024"),
    (),
    ("Name", "Ticker", "Identifier", "SEDOL", "Weight", "Sector", "Shares Held", "Local Currency"),
    ("APPLE INC", "AAPL", "037833100", "2046251", 49.5, "Information Technology", 8757, "USD"),
    ("MICROSOFT CORP", "MSFT", "594918104", "2588173", 46.6, "Information Technology", 4501, "USD"),
    ("BERKSHIRE HATHAWAY INC CL B", "BRK.B", "084670702", "2073390", 3.8, "Financials", 350, "USD"),
    ("US DOLLAR", "CASH_USD", "CASH_USD", "-", 0.03, "-", 1234.56, "USD"),
    (),
    ("The information contained above is for illustrative purposes only. Synthetic example for tests.",),
]


def write_ssga(path, rows=ROWS) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "holdings"
    for row in rows:
        sheet.append(list(row))
    book.save(path)


if __name__ == "__main__":
    write_ssga(sys.argv[1])
