"""Benchmarks (`scalefold bench ...`)."""
