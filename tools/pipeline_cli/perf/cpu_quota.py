"""Running ThumbnailFunction's Lambda-like process under the CPU share a memory size gets.

  cgroup  a cgroup-v1 CPU quota (cpu.cfs_quota_us / cpu.cfs_period_us = share), the mechanism
          Lambda's CPU limit is built on (needs a writable /sys/fs/cgroup/cpu);
  model   CPU time measured at full speed divided by the share (capped at one vCPU).
The worker (pipeline_cli.perf.tune_worker) joins the cgroup before it imports anything.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from pipeline_cli.perf.cost import Configuration, configuration, model_duration_ms, vcpu_share
from pipeline_cli.perf.lambda_process import handler_options, lambda_like_environment
from pipeline_cli.project import PROJECT_ROOT

CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 20_000  # 128 MB's quota is then 1.4 ms, above the kernel's 1 ms minimum


def cgroups_available() -> bool:
    return (CGROUP_CPU / "cpu.cfs_quota_us").exists() and os.access(CGROUP_CPU, os.W_OK)


def run_worker(python: Path, inputs: list[Path], repeats: int, quota: float | None) -> dict[str, Any]:
    """Median ms (wall and CPU) per input and peak RSS, under `quota` vCPUs (None: unlimited)."""
    cgroup = None
    if quota is not None:
        cgroup = CGROUP_CPU / f"image-pipeline-tune-{uuid.uuid4().hex[:8]}"
        cgroup.mkdir()
        (cgroup / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (cgroup / "cpu.cfs_quota_us").write_text(str(max(1000, round(quota * PERIOD_US))))
    options = {**handler_options(), "inputs": [str(path) for path in inputs]}
    try:
        done = subprocess.run(
            [str(python), "-m", "pipeline_cli.perf.tune_worker", str(cgroup or ""), str(repeats), json.dumps(options)],
            capture_output=True,
            text=True,
            check=True,
            env=lambda_like_environment(),
            cwd=PROJECT_ROOT,
        )
    finally:
        if cgroup is not None:
            cgroup.rmdir()  # empty again: the worker has exited
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(
    python: Path, inputs: list[Path], sizes: tuple[int, ...], repeats: int, method: str
) -> tuple[list[Configuration], dict[str, Any]]:
    baseline = run_worker(python, inputs, repeats, quota=None)
    print(f"  full speed: {statistics.fmean(baseline['wall_ms'].values()):.0f} ms", file=sys.stderr, flush=True)
    peak = float(baseline["peak_rss_mb"])
    cpu_ms = statistics.fmean(baseline["cpu_ms"].values())
    measured: dict[int, dict[str, Any]] = {}
    for memory in sizes:
        if method == "cgroup":
            measured[memory] = run_worker(python, inputs, repeats, quota=vcpu_share(memory))
            peak = max(peak, float(measured[memory]["peak_rss_mb"]))
            mean_ms = statistics.fmean(measured[memory]["wall_ms"].values())
            print(f"  {memory} MB: {mean_ms:.0f} ms", file=sys.stderr, flush=True)
    configurations = []
    for memory in sizes:
        model_ms = model_duration_ms(cpu_ms, memory)
        if method == "cgroup":
            duration = statistics.fmean(measured[memory]["wall_ms"].values())
            configurations.append(configuration(memory, duration, peak, model_ms))
        else:
            configurations.append(configuration(memory, model_ms, peak))
    details = {
        "peak_rss_mb": peak,
        "full_speed": baseline,
        "per_size": {str(memory): result for memory, result in measured.items()},
    }
    return configurations, details
