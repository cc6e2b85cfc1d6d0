"""Layer 1, the model: codes and flags, baskets as arrays (universe, packed layout), the trading calendar.

Imports nothing else of the package. Everything above builds on these arrays and constants."""
