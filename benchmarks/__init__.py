"""Benchmarks for atlas: one module per workload, shared helpers in ``_harness``."""
