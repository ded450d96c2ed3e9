"""Synthetic scenario generators: log data with known answers, for demos, tests and benchmarks."""
