"""Issuers' holdings layouts, one small module each (``ishares``, ``invesco``, ``ssga``, ``vanguard``):
``read(path) -> Holdings`` (the rows and fund facts, ``iopv.tools.model``), ``CONTAINERS`` (the file
types it comes in) and ``looks_like(records)`` (used to name the right ``--format`` when the wrong
one is given). A new layout is one more module here and one line in ``LAYOUTS`` (``common``: the
header and column aliases the table-shaped layouts share); the instrument mappings
(``iopv.tools.instruments``) and the checks (``iopv.tools.integrity``) are shared."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from iopv.tools.layouts import invesco, ishares, ssga, vanguard
from iopv.tools.model import Holdings, HoldingsError
from iopv.tools.sheets import CONTAINERS, read_workbook, sniff

LAYOUTS: dict[str, ModuleType] = {"ishares": ishares, "invesco": invesco, "ssga": ssga, "vanguard": vanguard}


def read_holdings(path: str | Path, layout: str) -> Holdings:
    """Read ``path`` in ``layout``. A file of another container or layout is refused saying what
    it is and, when another layout reads it, which ``--format`` to give."""
    if layout not in LAYOUTS:
        raise HoldingsError(f"--format: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    path = Path(path)
    module = LAYOUTS[layout]
    container = sniff(path)
    if container not in module.CONTAINERS:
        wanted = " or ".join(CONTAINERS[c].split(" (")[0] for c in module.CONTAINERS)
        raise HoldingsError(f"{path}: this is {CONTAINERS[container]}, not {wanted} as --format {layout} "
                            f"expects{_hint(path, container, layout)}")
    try:
        return module.read(path)
    except HoldingsError as exc:
        hint = _hint(path, container, layout) if "is this" in str(exc) else ""
        if hint:
            raise HoldingsError(f"{exc}{hint}") from None
        raise


def _hint(path: Path, container: str, layout: str) -> str:
    """``; it reads as an SSGA holdings file: use --format ssga`` when another layout fits."""
    for name, module in LAYOUTS.items():
        if name == layout or container not in module.CONTAINERS:
            continue
        try:
            book = read_workbook(path, (container,))
        except HoldingsError:
            return ""
        if any(module.looks_like(records) for records in book.sheets.values()):
            return f"; it looks like a{'n' if name[0] in 'aeiou' else ''} {name} holdings file: use --format {name}"
    return ""
