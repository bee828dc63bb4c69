"""Benchmarks: long load runs, not tests. ``make bench`` runs ``python -m tests.bench``."""
