"""CPU time and peak memory of running processes, read from ``/proc`` (Linux), for the benchmarks' accounting."""

from __future__ import annotations

import os
from collections.abc import Mapping

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime and stime, fields 14 and 15 of proc(5)


def peak_rss_mib(pid: int) -> float:
    """The most resident memory process ``pid`` has used (``VmHWM``), in MiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class CpuMeter:
    """CPU seconds each named process used between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._started: dict[str, float] = {}

    def start(self) -> None:
        """Take the starting point."""
        self._started = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        """CPU seconds per name since :meth:`start`."""
        return {name: cpu_seconds(pid) - self._started[name] for name, pid in self.pids.items()}
