"""Tools around the engine that users run by hand (``iopv import-holdings``): they produce inputs
such as basket files and are never imported by the service.

``holdings`` (the steps, the basket document and the report), ``layouts`` (issuers' holdings
layouts, one module each), ``sheets`` (CSV, XLSX and SpreadsheetML read into records),
``model`` (rows, instrument kinds, numbers and dates), ``instruments`` (rows -> basket lines and
cash), ``symbols`` (exchange suffixes, futures multipliers), ``fxrates`` (FX seeds from the
file), ``integrity`` (files cut short refused)."""
