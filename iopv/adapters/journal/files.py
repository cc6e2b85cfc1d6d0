"""The journal's day files: one per instance and UTC day (``<instance>-<YYYY-MM-DD>.iopvj``),
opened for appending with a torn tail cut first, deleted past the retention, and flagged
``<file>.incomplete`` (with the reason) when something was not recorded.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

from iopv.adapters.journal import format as fmt
from iopv.core.constants import DAY_NS

log = logging.getLogger(__name__)

SUFFIX = ".iopvj"


def day_of(time_ns: int) -> str:
    """The UTC day of ``time_ns`` as ``YYYY-MM-DD``."""
    return dt.datetime.fromtimestamp(time_ns // DAY_NS * 86_400, dt.UTC).strftime("%Y-%m-%d")


def journal_path(directory: str | os.PathLike, instance: str, time_ns: int) -> Path:
    """The day file of ``instance`` for the UTC day of ``time_ns``."""
    return Path(directory) / f"{instance}-{day_of(time_ns)}{SUFFIX}"


def open_day_file(directory: Path, instance: str, time_ns: int) -> tuple[int, Path]:
    """The day file of ``time_ns`` opened for appending (created with its header when new): a
    damaged tail, from a process killed mid-write, is cut at the last whole block first. Raises
    ``OSError`` for a file that is not a journal at all."""
    directory.mkdir(parents=True, exist_ok=True)
    path = journal_path(directory, instance, time_ns)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    size = os.fstat(fd).st_size
    if size:
        data = fmt.map_file(str(path))
        try:
            end, damage = fmt.block_spans(data, str(path))
        finally:
            if hasattr(data, "close"):
                data.close()
        if damage is not None:
            if end == 0:
                os.close(fd)
                raise OSError(f"{path}: exists and is not an IOPV journal: {damage}")
            log.warning("journal: %s; cutting the file at offset %d before appending (%d bytes)",
                        damage, end, size - end)
            os.ftruncate(fd, end)
            size = end
    if not size:
        os.write(fd, fmt.FILE_HEADER)
    return fd, path


def sweep(directory: Path, instance: str, retention_days: int, time_ns: int) -> None:
    """Delete ``instance``'s day files (and their flags) older than ``retention_days`` (0: keep all)."""
    if retention_days <= 0:
        return
    oldest = day_of(time_ns - retention_days * DAY_NS)
    prefix = f"{instance}-"
    for path in directory.glob(f"{prefix}*{SUFFIX}*"):
        day = path.name[len(prefix):len(prefix) + 10]
        if len(day) == 10 and day < oldest:
            try:
                path.unlink()
                log.info("journal: deleted %s (older than %d days)", path, retention_days)
            except OSError as exc:
                log.warning("journal: cannot delete %s: %s", path, exc)


def flag_incomplete(path: Path, reason: str) -> None:
    """Append ``reason`` (with the time) to ``<path>.incomplete``: the day is not whole."""
    try:
        with open(f"{path}.incomplete", "a", encoding="utf-8") as handle:
            handle.write(f"{dt.datetime.now(dt.UTC).isoformat(timespec='seconds')} {reason}\n")
    except OSError as exc:
        log.warning("journal: cannot flag %s incomplete: %s", path, exc)
