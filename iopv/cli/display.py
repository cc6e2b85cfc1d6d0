"""The values as a table on the terminal (rich): the demo's live view and ``iopv tail``'s.

The columns are those of the browser board, computed by ``iopv.engine.view`` (change against
the prior NAV or the previous closes, premium, status, coverage, age, alerts); this module only
lays them out. On a terminal the table is redrawn in place (rich's ``Live``); otherwise (a pipe,
a log file) each update is printed as plain text, one table after another.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from iopv.engine import view
from iopv.engine.publication import Publication

#: Row style per alert, the first alert of a row winning (``view.ALERTS`` order).
ALERT_STYLES = {"halted": "bold white on red", "degraded": "black on dark_orange",
                "recovering": "black on dark_orange", "stale": "black on yellow", "late": "dim"}
NAME_WIDTH = 30
#: Width of a table printed to a file or pipe.
PLAIN_WIDTH = 160


def values_table(rows: Iterable[dict[str, Any]], *, names: dict[str, str] | None = None, decimals: int = 4,
                 title: str = "", caption: str = "") -> Table:
    """A rich table of view rows (``view.row``): the board's columns, standing-out rows styled."""
    names = names or {}
    table = Table(title=title or None, caption=caption or None, title_justify="left", caption_justify="left",
                  expand=False, pad_edge=False)
    for key, heading in view.COLUMNS:
        table.add_column(heading, justify="left" if key in ("fund", "status", "alerts") else "right",
                         no_wrap=True)
        if key == "fund" and names:
            table.add_column("name", no_wrap=True, max_width=NAME_WIDTH)
    for row in rows:
        cells = view.cells(row, decimals)
        if names:
            cells.insert(1, names.get(row["fund"], "")[:NAME_WIDTH])
        change = row["change_bps"]
        style_of_change = "green" if change and change > 0 else "red" if change and change < 0 else ""
        texts = [Text(c) for c in cells]
        texts[3 if names else 2].stylize(style_of_change)  # the change column (fund, [name], value, change)
        alerts = row["alerts"]
        table.add_row(*texts, style=ALERT_STYLES[alerts[0]] if alerts else None)
    return table


class TableView:
    """Keeps a table on a stream: in place on a terminal, printed anew otherwise."""

    def __init__(self, stream: TextIO | None = None, *, force_terminal: bool | None = None):
        self.console = Console(file=stream or sys.stdout, force_terminal=force_terminal, soft_wrap=False)
        if not self.console.is_terminal:
            self.console.width = PLAIN_WIDTH  # no terminal to fit: do not squeeze the columns
        self.live: Live | None = None

    def show(self, table: Table) -> None:
        if not self.console.is_terminal:
            self.console.print(table)
            self.console.file.flush()
            return
        if self.live is None:
            self.live = Live(table, console=self.console, auto_refresh=False, transient=False)
            self.live.start()
        self.live.update(table, refresh=True)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


class TerminalDisplay:
    """The demo's sink: the table of every publication, with a status line and the board's URL."""

    name = "terminal"

    def __init__(self, names: dict[str, str], reference: dict[str, float], status: Callable[[], str],
                 *, decimals: int = 4, interval_s: float = 15.0, stream: TextIO | None = None):
        self.names = {fund: name.removeprefix("PowerShares ") for fund, name in names.items()}
        self.reference = reference
        self.status = status
        self.decimals = decimals
        self.interval_s = interval_s
        self.url = ""  # the board's, shown under the table once the web server is up
        self.view = TableView(stream)

    def offer(self, publication: Publication) -> None:
        now_ns = time.time_ns()
        rows = [view.row(r, now_ns=now_ns, interval_s=self.interval_s, reference=self.reference.get(r["fund"]),
                         decimals=self.decimals) for r in publication.records]
        when = dt.datetime.fromtimestamp(publication.ts_ns / 1e9, dt.UTC)
        caption = self.status() + (f"\nboard: {self.url}" if self.url else "")
        self.view.show(values_table(rows, names=self.names, decimals=self.decimals,
                                    title=f"IOPV at {when:%Y-%m-%d %H:%M:%S} UTC", caption=caption))

    def close(self) -> None:
        self.view.close()
