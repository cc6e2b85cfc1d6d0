"""Throwaway servers and synthetic universes, for the tests, the demo and the benchmarks."""
