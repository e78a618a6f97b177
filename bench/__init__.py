"""Benchmarks: every `bench_*.py` module here has `run() -> list[dict]`; `python -m bench`."""
