"""CPU used during a run by processes outside the benchmark's own process tree."""

from __future__ import annotations

import os
import time
from types import TracebackType
from typing import Any

import psutil

# Above this share of the machine, a run's figures are flagged as disturbed.
NOISY_PCT = 10.0


class BackgroundCpu:
    """`with BackgroundCpu() as b: ...`; then b.pct is the share of all CPUs that
    other processes (or the hypervisor, as steal) took during the block.

    Machine busy time minus this process's own and its reaped children's CPU
    time: the scoring processes count as ours once waited for, which both
    contenders do before their run ends.
    """

    def __init__(self) -> None:
        self.core_s = 0.0
        self.pct = 0.0
        self._machine = psutil.cpu_times()
        self._own = psutil.Process().cpu_times()
        self._started = time.perf_counter()

    def __enter__(self) -> BackgroundCpu:
        self._machine = psutil.cpu_times()
        self._own = psutil.Process().cpu_times()
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        elapsed = time.perf_counter() - self._started
        busy = _busy(psutil.cpu_times()) - _busy(self._machine)
        own = _own(psutil.Process().cpu_times()) - _own(self._own)
        self.core_s = max(0.0, busy - own)
        self.pct = 100 * self.core_s / (elapsed * (os.cpu_count() or 1))


def wait_for_quiet(limit_s: float = 30.0, probe_s: float = 1.0) -> None:
    """Wait (up to limit_s) until other processes leave the CPUs mostly idle."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        with BackgroundCpu() as probe:
            time.sleep(probe_s)
        if probe.pct <= NOISY_PCT / 2:
            break
    waited = time.perf_counter() - started
    if waited > 2 * probe_s:
        print(f"  (waited {waited:.0f} s for other processes to quieten)", flush=True)


def _busy(times: Any) -> float:
    """Busy CPU seconds of the machine; guest time is already inside user/nice."""
    idle = times.idle + getattr(times, "iowait", 0.0)
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return sum(times) - idle - guest


def _own(times: Any) -> float:
    return times.user + times.system + times.children_user + times.children_system
