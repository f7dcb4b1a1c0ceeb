"""The process's peak resident memory, as Lambda's "Max Memory Used" sees it."""

from __future__ import annotations

from pathlib import Path


def high_water_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the forking parent.
    status = Path("/proc/self/status").read_text(encoding="ascii")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
