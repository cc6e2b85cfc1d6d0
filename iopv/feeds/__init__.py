"""Tick sources: ``mqtt`` (live) and ``tape`` (recorded JSON lines, for replay)."""
