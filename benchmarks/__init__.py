"""Benchmarks, run on demand (not part of the test run): see README "Speed"."""
