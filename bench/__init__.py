"""Benchmark harness of the IOPV engine (issue #4): ``python -m bench [--quick]``; see bench/README.md."""
