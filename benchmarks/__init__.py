"""Benchmark harness: appserver against a pinned uvicorn, same apps, same load generator.

Run it with ``make bench`` (``python -m benchmarks --help`` lists the options).
"""
