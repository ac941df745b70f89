"""Benchmarks: ``python bench/<name>.py`` (or ``python -m bench.<name>``) from the repository root;
each prints a table and writes ``bench/results/<name>.json``."""
