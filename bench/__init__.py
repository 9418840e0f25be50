"""Benchmarks (`make bench`) and the chaos suite (`make chaos`)."""
