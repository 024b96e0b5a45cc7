"""Benchmarks of the whole system, reported as ratios measured in one run (`make bench`)."""
