"""Live table of values on the terminal (the demo's view), redrawn at every boundary."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import TextIO

from iopv.engine.publication import Publication

CLEAR = "\x1b[H\x1b[2J"


class TerminalDisplay:
    """A sink that prints every publication as a table: value and change against ``reference``
    (the values at previous closes), plus a status line."""

    name = "terminal"

    def __init__(self, names: dict[str, str], reference: dict[str, float], status: Callable[[], str],
                 *, decimals: int = 4, stream: TextIO | None = None):
        self.names = {fund: name.removeprefix("PowerShares ") for fund, name in names.items()}
        self.status = status
        self.decimals = decimals
        self.stream = stream or sys.stdout
        self.redraw = self.stream.isatty()
        self.reference = reference

    def offer(self, publication: Publication) -> None:
        when = dt.datetime.fromtimestamp(publication.ts_ns / 1e9, dt.UTC)
        lines = [f"IOPV at {when:%Y-%m-%d %H:%M:%S} UTC   {self.status()}",
                 f"{'fund':<6} {'name':<46} {'iopv':>12} {'vs close':>9}"]
        for record in publication.records:
            fund, value = record["fund"], record["iopv"]
            close = self.reference.get(fund, 0.0)
            change_bps = (value / close - 1.0) * 1e4 if close else 0.0
            lines.append(f"{fund:<6} {self.names.get(fund, '')[:46]:<46} "
                         f"{value:>12.{self.decimals}f} {change_bps:>+7.1f}bp")
        text = "\n".join(lines) + "\n"
        self.stream.write((CLEAR + text) if self.redraw else text + "\n")
        self.stream.flush()
