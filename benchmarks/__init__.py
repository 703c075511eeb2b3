"""Batch Studio benchmarks; `python -m benchmarks` times the engine against a pool."""

from __future__ import annotations
