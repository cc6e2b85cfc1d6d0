"""A security is a ticker and its market: the symbol a holding gets in the basket, from the
issuer's exchange name through a documented, configurable map (docs/importer.md, "Symbols").

The symbol form is ``TICKER`` for a US listing (so existing US feeds keep working) and
``TICKER.SUFFIX`` elsewhere (``SAN.PA`` Sanofi in Paris, ``SAN.MC`` Santander in Madrid,
``2330.TW``). The default suffixes are Yahoo Finance's; a feed that names symbols otherwise
gives its own map with ``--symbol-map FILE`` (TOML)::

    [exchanges]                 # issuer's exchange name -> suffix; "" bare ticker, "-" not listed
    "Xetra" = "DE"
    "Tokyo Stock Exchange" = "T"
    [multipliers]               # futures root -> contract multiplier (files without a notional)
    "XAE" = 100
    [options]
    separator = "."             # between ticker and suffix
    replace_defaults = false    # true: only this file's exchanges and multipliers

Exchange names match ignoring case and repeated spaces. Unknown sections and keys are errors.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

from iopv.core.universe import NAME_PATTERN
from iopv.tools.model import HoldingsError

#: Where a listing trades -> the suffix of its symbol. "" = a bare ticker (US listings and US
#: futures exchanges); "-" = not listed anywhere (the row is kept at its market value, reported).
DEFAULT_EXCHANGES: Mapping[str, str] = MappingProxyType({
    # United States: bare tickers
    "NASDAQ": "", "New York Stock Exchange Inc.": "", "Nyse Mkt Llc": "", "NYSE Arca": "",
    "Cboe BZX": "", "Cboe BZX formerly known as BATS": "", "Nyse Arca": "", "Nasdaq Global Select": "",
    "Index And Options Market": "", "Chicago Mercantile Exchange": "", "Ice Futures U.S.": "",
    "Chicago Board Of Trade": "", "New York Mercantile Exchange": "", "Cboe Futures Exchange": "",
    # elsewhere: Yahoo Finance's suffixes
    "Abu Dhabi Securities Exchange": "AD", "Asx - All Markets": "AX", "Athens Exchange S.A. Cash Market": "AT",
    "Bolsa De Madrid": "MC", "Bolsa De Valores De Colombia": "CL", "Bolsa Mexicana De Valores": "MX",
    "Borsa Italiana": "MI", "Budapest Stock Exchange": "BD", "Bursa Malaysia": "KL", "Dubai Financial Market": "DU",
    "Egyptian Exchange": "CA", "Euronext Amsterdam": "AS", "Gretai Securities Market": "TWO",
    "Hong Kong Exchanges And Clearing Ltd": "HK", "Indonesia Stock Exchange": "JK",
    "Irish Stock Exchange - All Market": "IR", "Istanbul Stock Exchange": "IS", "Johannesburg Stock Exchange": "JO",
    "Korea Exchange (Kosdaq)": "KQ", "Korea Exchange (Stock Market)": "KS", "Kuwait Stock Exchange": "KW",
    "London Stock Exchange": "L", "Nasdaq Omx Helsinki Ltd.": "HE", "Nasdaq Omx Nordic": "ST",
    "National Stock Exchange Of India": "NS", "New Zealand Exchange Ltd": "NZ",
    "Nyse Euronext - Euronext Brussels": "BR", "Nyse Euronext - Euronext Lisbon": "LS",
    "Nyse Euronext - Euronext Paris": "PA", "Omx Nordic Exchange Copenhagen A/S": "CO", "Oslo Bors Asa": "OL",
    "Philippine Stock Exchange Inc.": "PS", "Prague Stock Exchange": "PR", "Qatar Exchange": "QA",
    "SIX Swiss Exchange": "SW", "Santiago Stock Exchange": "SN", "Saudi Stock Exchange": "SR",
    "Shanghai Stock Exchange": "SS", "Shenzhen Stock Exchange": "SZ", "Singapore Exchange": "SI",
    "Standard-Classica-Forts": "ME", "Stock Exchange Of Thailand": "BK", "Taiwan Stock Exchange": "TW",
    "Tel Aviv Stock Exchange": "TA", "Tokyo Stock Exchange": "T", "Toronto Stock Exchange": "TO",
    "Warsaw Stock Exchange/Equities/Main Market": "WA", "Wiener Boerse Ag": "VI", "XBSP": "SA", "Xetra": "DE",
    "NO MARKET (E.G. UNLISTED)": "-",
})

#: Futures root -> contract multiplier, for files that give contracts but no notional value
#: (iShares files give the notional: the multiplier is worked out from it and checked here).
DEFAULT_MULTIPLIERS: Mapping[str, Decimal] = MappingProxyType({
    root: Decimal(m) for root, m in {
        "ES": 50, "MES": 5, "NQ": 20, "MNQ": 2, "RTY": 50, "M2K": 5, "YM": 5, "MYM": "0.5",
        "EMD": 100, "MFS": 50, "MME": 50, "FESX": 10, "FDAX": 25, "NK": 5, "XAE": 100, "XAB": 100,
        "XAF": 250, "XAI": 100, "XAK": 100, "XAP": 100, "XAU": 250, "XAV": 100, "XAY": 100,
    }.items()})

_SUFFIX = re.compile(r"[A-Za-z0-9]*|-")
_TICKER_SEPARATORS = re.compile(r"[/ ]+")
#: The basket's symbol character set: the loader's own pattern, so an imported basket loads.
SYMBOL_PATTERN = NAME_PATTERN
_FUTURE = re.compile(r"([A-Z0-9]+?)[FGHJKMNQUVXZ]\d{1,2}")


def _key(name: str) -> str:
    return " ".join(name.split()).lower()


@dataclass(frozen=True, kw_only=True)
class SymbolMap:
    """Exchange names -> suffixes, futures roots -> multipliers, and the separator."""

    exchanges: Mapping[str, str] = field(default_factory=lambda: DEFAULT_EXCHANGES)
    multipliers: Mapping[str, Decimal] = field(default_factory=lambda: DEFAULT_MULTIPLIERS)
    separator: str = "."

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", MappingProxyType({_key(k): v for k, v in self.exchanges.items()}))

    def suffix(self, exchange: str) -> str | None:
        """The suffix for ``exchange`` ("" bare, "-" not listed), None when the map lacks it."""
        return self._by_key.get(_key(exchange))  # type: ignore[attr-defined]

    def symbol(self, ticker: str, exchange: str) -> str | None:
        """``TICKER[.SUFFIX]`` for a listed ticker; None for an exchange not in the map."""
        suffix = self.suffix(exchange)
        if suffix is None:
            return None
        clean = clean_ticker(ticker)
        return clean if suffix in ("", "-") else f"{clean}{self.separator}{suffix}"

    def multiplier(self, ticker: str) -> Decimal | None:
        """A futures ticker's multiplier by its root (``ESM5`` -> ES -> 50), or None."""
        match = _FUTURE.fullmatch(ticker.strip().upper())
        return self.multipliers.get(match.group(1)) if match else None


def clean_ticker(ticker: str) -> str:
    """Into the symbol set: ``BRK/B`` and ``BF B`` -> ``BRK.B``, ``BF.B``; Mexico's series mark
    dropped (``WALMEX*`` -> ``WALMEX``); ``&`` -> ``_`` (``M&M`` -> ``M_M``)."""
    return _TICKER_SEPARATORS.sub(".", ticker.strip()).rstrip("*").replace("&", "_")


def valid_symbol(symbol: str) -> bool:
    return bool(SYMBOL_PATTERN.fullmatch(symbol))


_SECTIONS = {"exchanges", "multipliers", "options"}
_OPTIONS = {"separator", "replace_defaults"}


def load_symbol_map(path: str | Path | None) -> SymbolMap:
    """The default map, or ``path`` (TOML, module docstring) over it. Unknown sections or keys
    and values of the wrong kind are errors naming the file and key."""
    if path is None:
        return SymbolMap()
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HoldingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HoldingsError(f"{path}: not TOML: {exc}") from None
    problems = [f"{path}: [{key}]: unknown section (known: {', '.join(sorted(_SECTIONS))})"
                for key in document if key not in _SECTIONS]
    options = document.get("options", {})
    problems += [f"{path}: options.{key}: unknown key (known: {', '.join(sorted(_OPTIONS))})"
                 for key in options if key not in _OPTIONS]
    separator = options.get("separator", ".")
    if separator not in (".", "-", "_"):
        problems.append(f"{path}: options.separator: expected '.', '-' or '_', got {separator!r}")
    replace = options.get("replace_defaults", False)
    if not isinstance(replace, bool):
        problems.append(f"{path}: options.replace_defaults: expected true or false, got {replace!r}")
    exchanges = {} if replace is True else dict(DEFAULT_EXCHANGES)
    for name, suffix in document.get("exchanges", {}).items():
        if not isinstance(suffix, str) or not _SUFFIX.fullmatch(suffix):
            problems.append(f"{path}: exchanges.{name!r}: expected a suffix of letters and digits, "
                            f"\"\" (bare ticker) or \"-\" (not listed), got {suffix!r}")
        exchanges[name] = suffix
    multipliers = {} if replace is True else dict(DEFAULT_MULTIPLIERS)
    for root, value in document.get("multipliers", {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{path}: multipliers.{root!r}: expected a number > 0, got {value!r}")
            continue
        multipliers[root.upper()] = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if problems:
        raise HoldingsError("\n".join(problems))
    return SymbolMap(exchanges=MappingProxyType(exchanges), multipliers=MappingProxyType(multipliers),
                     separator=separator)
