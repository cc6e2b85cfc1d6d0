"""IOPV engine: the intraday indicative value of ETFs, streamed every interval from live ticks."""

__version__ = "0.1.0"
