"""Peak resident memory of this process and all its descendants, sampled in a thread."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil

SAMPLE_EVERY_S = 0.05
_MB = 1024**2


def tree_rss() -> int:
    """RSS in bytes of this process plus every live descendant."""
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


class PeakTreeMemory:
    """`with PeakTreeMemory() as m: ...`; then m.added_mb is the peak tree RSS
    during the block minus the tree RSS just before it (what the block adds)."""

    def __init__(self, interval: float = SAMPLE_EVERY_S) -> None:
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeakTreeMemory:
        self.baseline = self.peak = tree_rss()
        self._thread = threading.Thread(
            target=self._run, name="bench-memory", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def added_mb(self) -> float:
        return (self.peak - self.baseline) / _MB

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, tree_rss())
            self.samples += 1
