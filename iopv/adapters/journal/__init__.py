"""The audit journal on disk: the file format (``format``), the records' encoding on the event
loop's side (``records``), the live writer and its thread (``writer``), the day files (``files``).

See docs/audit.md. The replay and explain logic that reads it lives in ``iopv.engine``
(``journal_replay``, ``explain``), fed the decoded events of ``format.events``.
"""

from iopv.adapters.journal.format import JournalError, JournalReader, events

__all__ = ["JournalError", "JournalReader", "events"]
