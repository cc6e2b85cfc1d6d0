"""What every holdings layout reads a file into: one ``Row`` per holding line, classified by
instrument kind, and the fund facts of the file (``Holdings``). Numbers are exact ``Decimal``s
as printed. Every problem raises ``HoldingsError`` naming the file and line (or sheet and row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import NamedTuple


class InstrumentT(NamedTuple):
    """Instrument kinds (docs/importer.md, "Instruments"), a row's ``kind``. Each maps onto the
    linear basket in ``iopv.tools.instruments``."""

    EQUITY: str = "equity"  # a listed security: shares x close x FX
    CASH: str = "cash"  # cash in any currency, committed and collateral cash included (may be negative)
    MONEY_MARKET: str = "money_market"  # a money-market fund: its market value
    FUTURE: str = "future"  # contracts x multiplier on its own symbol, offset by cash
    FX_FORWARD: str = "fx_forward"  # a currency forward: its currency exposure
    BOND: str = "bond"  # par / 100 units at the clean price per 100, accrued interest in cash
    OTHER: str = "other"  # an instrument the importer has no mapping for: its market value, reported


Instrument = InstrumentT()
KINDS = tuple(Instrument)


class HoldingsError(ValueError):
    """A holdings file that cannot be read or turned into a basket; the message names the file
    and line (or sheet and row) and what was expected."""


@dataclass(slots=True)
class Row:
    """One holding line, as printed. Money is in the fund currency unless said otherwise.

    ``quantity``: shares, contracts, par or a cash amount (in ``currency``); ``price``: the file's
    price (``price_currency``: "" = fund currency, or the local currency; bonds: per 100 of par);
    ``market_value``: the row's value in the fund currency, or None (SSGA); ``fx_rate``: the
    file's rate as printed, local currency per unit of the fund currency (iShares); ``weight``:
    percent of the fund, or None; ``weight_below``: the file printed ``<weight`` (Vanguard's
    ``<0.01%``)."""

    where: str
    line: int
    kind: str
    ticker: str
    name: str
    quantity: Decimal | None
    market_value: Decimal | None
    price: Decimal | None = None
    price_currency: str = ""
    currency: str = ""
    exchange: str = ""
    country: str = ""
    isin: str = ""
    sedol: str = ""
    cusip: str = ""
    notional: Decimal | None = None
    weight: Decimal | None = None
    weight_below: bool = False
    fx_rate: Decimal | None = None
    asset_class: str = ""
    coupon: str = ""
    maturity: str = ""
    #: futures: the quantity already counts index units (contracts x multiplier), e.g. SSGA
    units_are_notional: bool = False

    def label(self) -> str:
        return f"{self.where}: {self.ticker or '-'} {self.name!r}"


@dataclass(slots=True)
class Holdings:
    """A holdings file: the fund facts its layout gives and its rows in file order.

    ``stated_count``: the number of securities the file says it holds (and which kinds that
    count covers), checked against the rows; ``ended``: where the holdings table ended ("blank
    line", "end of file", ...), for the messages about a file cut short; ``nav_history``:
    {ISO date: (NAV per share, shares outstanding)} when the file carries one (iShares fund.xls)."""

    path: str
    layout: str
    container: str = "csv"
    rows: list[Row] = field(default_factory=list)
    fund: str = ""
    name: str = ""
    as_of: str = ""
    shares_outstanding: Decimal | None = None
    stated_count: int | None = None
    stated_count_kinds: tuple[str, ...] = (Instrument.EQUITY, Instrument.BOND)
    ended: str = ""
    nav_history: dict[str, tuple[Decimal, Decimal | None]] = field(default_factory=dict)


_EMPTY = ("", "-", "--", "---", "N/A", "n/a", "NA")


def number(text: object, where: str, column: str, *, empty_ok: bool = False) -> Decimal | None:
    """``"1,234.50"``, ``"$1,234.50"``, ``"-$6.76"``, ``"(12.5)"``, ``"4.5%"`` -> Decimal;
    an empty cell or ``-`` -> None when ``empty_ok``, else an error naming ``where`` and ``column``."""
    if isinstance(text, (int, Decimal)):
        return Decimal(text)
    if isinstance(text, float):
        return Decimal(repr(text))
    raw = "" if text is None else str(text)
    cleaned = raw.strip().replace(",", "").replace("$", "").removesuffix("%").strip()
    if cleaned in _EMPTY:
        if empty_ok:
            return None
        raise HoldingsError(f"{where}: {column}: expected a number, got {raw!r}")
    if cleaned.startswith("(") and cleaned.endswith(")"):  # accounting negative
        cleaned = "-" + cleaned[1:-1]
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise HoldingsError(f"{where}: {column}: expected a number, got {raw!r}") from None
    if not value.is_finite():
        raise HoldingsError(f"{where}: {column}: expected a finite number, got {raw!r}")
    return value


def weight(text: object, where: str, column: str) -> tuple[Decimal | None, bool]:
    """A weight in percent; ``<0.01%`` -> (0.01, True): below that bound."""
    raw = "" if text is None else str(text).strip()
    if raw.startswith("<"):
        return number(raw[1:], where, column), True
    return number(text, where, column, empty_ok=True), False


DATE_FORMATS = ("%b %d, %Y", "%d-%b-%Y", "%m/%d/%Y", "%Y-%m-%d", "%d-%b-%y", "%Y-%m-%d %H:%M:%S")


def iso_date(text: object, where: str) -> str:
    """A date as the issuers print it -> ``YYYY-MM-DD``."""
    if isinstance(text, (datetime, date)):
        return (text.date() if isinstance(text, datetime) else text).isoformat()
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(str(text).strip(), fmt).date().isoformat()
        except ValueError:
            continue
    raise HoldingsError(f"{where}: expected a date like 'Dec 06, 2024' or '12/06/2024', got {text!r}")


def blank(fields: list[str]) -> bool:
    return not any(f.strip().strip("\xa0") for f in fields)


def empty(text: str) -> bool:
    """A cell the issuers leave empty: blank, ``-``, ``--``, ``---``."""
    return text.strip() in _EMPTY
