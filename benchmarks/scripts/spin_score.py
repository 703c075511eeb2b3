"""Benchmark scoring script: SPIN_MS ms of CPU per file (0: no work), a line each."""

from __future__ import annotations

import os
import time

spin_s = 0.0


def init() -> None:
    global spin_s
    spin_s = float(os.environ.get("SPIN_MS", "0")) / 1000


def run(mini_batch: list[str]) -> list[str]:
    lines = []
    for path in mini_batch:
        # CPU time, not wall time: the same work whatever else runs beside it.
        until = time.process_time() + spin_s
        while time.process_time() < until:
            pass
        lines.append(f"{os.path.basename(path)},ok")
    return lines
