"""Benchmarks that print ratios against the physical limit (see bench/README.md)."""
