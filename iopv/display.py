"""Live table of values on the terminal (the demo's view), redrawn at every boundary."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Callable, TextIO

from iopv.publication import Publication

CLEAR = "\x1b[H\x1b[2J"


class TerminalDisplay:
    """A sink that prints every publication as a table: value, change since the first value."""

    name = "terminal"

    def __init__(self, names: dict[str, str], status: Callable[[], str], *, decimals: int = 4,
                 stream: TextIO | None = None):
        self.names = names
        self.status = status
        self.decimals = decimals
        self.stream = stream or sys.stdout
        self.redraw = self.stream.isatty()
        self.first: dict[str, float] = {}

    def offer(self, publication: Publication) -> None:
        when = dt.datetime.fromtimestamp(publication.ts_ns / 1e9, dt.timezone.utc)
        lines = [f"IOPV at {when:%Y-%m-%d %H:%M:%S} UTC   {self.status()}",
                 f"{'fund':<6} {'name':<46} {'iopv':>12} {'change':>9}"]
        for record in publication.records:
            fund, value = record["fund"], record["iopv"]
            first = self.first.setdefault(fund, value)
            change_bps = (value / first - 1.0) * 1e4 if first else 0.0
            lines.append(f"{fund:<6} {self.names.get(fund, '')[:46]:<46} "
                         f"{value:>12.{self.decimals}f} {change_bps:>+7.1f}bp")
        text = "\n".join(lines) + "\n"
        self.stream.write((CLEAR + text) if self.redraw else text + "\n")
        self.stream.flush()
