"""Crash, corruption, concurrency, fault and bad-input tests (see docs/reliability.md)."""
