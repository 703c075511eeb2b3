"""Benchmark scoring script: sleeps 10 ms per file and returns one line per file."""

from __future__ import annotations

import os
import time

SLEEP_PER_FILE_S = 0.01


def init() -> None:
    pass


def run(mini_batch: list[str]) -> list[str]:
    lines = []
    for path in mini_batch:
        time.sleep(SLEEP_PER_FILE_S)
        lines.append(f"{os.path.basename(path)},ok")
    return lines
