"""`pipeline tune`: ThumbnailFunction's MemorySize, chosen from measurements.

Lambda gives a function CPU in proportion to its memory: 1769 MB is one vCPU, less is a
fraction of one (and up to 3008 MB, a second vCPU that single-threaded work cannot use). This
runs the thumbnailer core on a mix of inputs under the CPU share each memory size would get,
and prints duration and cost per million images on arm64 and x86_64, with the sizes that the
aws-lambda-power-tuning strategies (cost, speed, balanced) would recommend.

How the CPU share is applied:
  cgroup  a cgroup-v1 CPU quota (cpu.cfs_quota_us / cpu.cfs_period_us = share), the mechanism
          Lambda itself uses; needs a writable /sys/fs/cgroup/cpu (root on this machine).
  model   elsewhere: single-thread time measured at full speed, divided by the share. It
          ignores the quota's 100 ms scheduling granularity and assumes CPU-bound work.
What it leaves out: S3/DynamoDB/SNS latency (the same at every size; network bandwidth does grow
with memory on Lambda), and arm64 vs x86 speed: durations measured on this machine's CPU are
priced with both architectures' rates.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline_cli.lambda_runtime import PROJECT_ROOT

MEMORY_SIZES = (128, 256, 512, 768, 1024, 1280, 1536, 1769, 2048, 3008)
MB_PER_VCPU = 1769
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000
MIX = ("jpeg-1mp", "jpeg-12mp", "jpeg-12mp-exif6", "png-rgba-3mp", "webp-6mp")
# AWS Lambda price list, us-east-1, first pricing tier (aws.amazon.com/lambda/pricing):
PRICE_PER_GB_SECOND = {"arm64": 0.0000133334, "x86_64": 0.0000166667}
PRICE_PER_REQUEST = 0.20 / 1_000_000
BALANCED_WEIGHT = 0.5  # power-tuning's default balancedWeight


def vcpu_share(memory_mb: int) -> float:
    return memory_mb / MB_PER_VCPU


# -- the worker: runs in a child process, inside the cgroup when there is one ----------------------

_WORKER = """
import json, os, sys, time
from pathlib import Path
cgroup = sys.argv[1]
if cgroup:
    Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))
from image_pipeline.imaging import RenditionSpec, make_renditions
spec = RenditionSpec(sizes=(1024, 512, 128), format="JPEG", quality=82)
repeats = int(sys.argv[2])
durations = {}
for path in sys.argv[3:]:
    data = Path(path).read_bytes()
    make_renditions(data, spec)  # warm: the first call pays for plugin and codec setup
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        make_renditions(data, spec)
        samples.append((time.perf_counter() - started) * 1000)
    durations[Path(path).name] = sorted(samples)[len(samples) // 2]
status = Path("/proc/self/status").read_text()
peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
print(json.dumps({"durations_ms": durations, "peak_rss_mb": peak}))
"""


def cgroups_available() -> bool:
    return (CGROUP_CPU / "cpu.cfs_quota_us").exists() and os.access(CGROUP_CPU, os.W_OK)


def run_worker(inputs: list[Path], repeats: int, quota: float | None) -> dict[str, Any]:
    """Median ms per input and peak RSS, under a CPU quota of `quota` vCPUs (None: unlimited)."""
    cgroup = None
    if quota is not None:
        cgroup = CGROUP_CPU / f"image-pipeline-tune-{uuid.uuid4().hex[:8]}"
        cgroup.mkdir()
        (cgroup / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (cgroup / "cpu.cfs_quota_us").write_text(str(max(1000, round(quota * PERIOD_US))))
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "layers" / "common" / "python")}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _WORKER, str(cgroup or ""), str(repeats), *map(str, inputs)],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    finally:
        if cgroup is not None:
            cgroup.rmdir()  # empty again: the worker has exited
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# -- the model and the recommendation --------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    memory_mb: int
    duration_ms: float  # mean over the mix of each input's median
    viable: bool  # the measured peak RSS fits
    cost_per_million: dict[str, float]


def cost_per_million(memory_mb: int, duration_ms: float, architecture: str) -> float:
    """USD per million invocations: billed duration (rounded up to 1 ms) x GB-s rate + requests."""
    gb_seconds = memory_mb / 1024 * math.ceil(duration_ms) / 1000
    return (gb_seconds * PRICE_PER_GB_SECOND[architecture] + PRICE_PER_REQUEST) * 1_000_000


def configuration(memory_mb: int, duration_ms: float, peak_rss_mb: float) -> Configuration:
    return Configuration(
        memory_mb=memory_mb,
        duration_ms=duration_ms,
        viable=peak_rss_mb * 1.15 <= memory_mb,  # headroom for the runtime and the upload buffers
        cost_per_million={arch: cost_per_million(memory_mb, duration_ms, arch) for arch in PRICE_PER_GB_SECOND},
    )


def recommend(configurations: list[Configuration], architecture: str) -> dict[str, int]:
    """The sizes aws-lambda-power-tuning's strategies pick.

    cost: the cheapest; speed: the fastest; balanced: the lowest
    weight x cost/max(cost) + (1 - weight) x duration/max(duration), weight 0.5.
    """
    viable = [c for c in configurations if c.viable]
    if not viable:
        raise ValueError("no memory size fits the measured peak RSS")
    max_cost = max(c.cost_per_million[architecture] for c in viable)
    max_duration = max(c.duration_ms for c in viable)

    def balanced(c: Configuration) -> float:
        cost = c.cost_per_million[architecture] / max_cost
        return BALANCED_WEIGHT * cost + (1 - BALANCED_WEIGHT) * c.duration_ms / max_duration

    return {
        "cost": min(viable, key=lambda c: (c.cost_per_million[architecture], c.duration_ms)).memory_mb,
        "speed": min(viable, key=lambda c: (round(c.duration_ms, 1), c.cost_per_million[architecture])).memory_mb,
        "balanced": min(viable, key=balanced).memory_mb,
    }


def measure(
    inputs: list[Path], sizes: tuple[int, ...], repeats: int, method: str
) -> tuple[list[Configuration], dict[str, Any]]:
    baseline = run_worker(inputs, repeats, quota=None)
    peak = float(baseline["peak_rss_mb"])
    configurations = []
    for memory in sizes:
        share = vcpu_share(memory)
        if method == "cgroup":
            measured = run_worker(inputs, repeats, quota=share)
            durations = list(measured["durations_ms"].values())
            peak = max(peak, float(measured["peak_rss_mb"]))
        else:
            durations = [d / min(1.0, share) for d in baseline["durations_ms"].values()]
        configurations.append(configuration(memory, statistics.fmean(durations), peak))
        print(f"  {memory} MB: {statistics.fmean(durations):.0f} ms", file=sys.stderr, flush=True)
    return configurations, {"peak_rss_mb": peak, "full_speed_ms": baseline["durations_ms"]}


def print_report(
    configurations: list[Configuration], picks: dict[str, dict[str, int]], method: str, peak: float
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"ThumbnailFunction core, mix of {len(MIX)} inputs, CPU share by {method}; peak RSS {peak:.0f} MB"
    )
    for column in ("MemorySize", "vCPU", "ms / image", "$ / 1M arm64", "$ / 1M x86_64", "picked by (arm64)"):
        table.add_column(column, justify="right")
    for c in configurations:
        chosen = ", ".join(strategy for strategy, memory in picks["arm64"].items() if memory == c.memory_mb)
        table.add_row(
            f"{c.memory_mb}" + ("" if c.viable else " (too small)"),
            f"{min(vcpu_share(c.memory_mb), 2):.2f}",
            f"{c.duration_ms:.0f}",
            f"{c.cost_per_million['arm64']:.2f}",
            f"{c.cost_per_million['x86_64']:.2f}",
            chosen,
        )
    Console(width=120).print(table)
    for architecture, strategies in picks.items():
        print(f"{architecture}: " + ", ".join(f"{name} -> {memory} MB" for name, memory in strategies.items()))


def plot(configurations: list[Configuration], picks: dict[str, dict[str, int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory = [c.memory_mb for c in configurations]
    figure, duration_axis = plt.subplots(figsize=(9, 5))
    duration_axis.plot(memory, [c.duration_ms for c in configurations], "o-", color="tab:blue", label="ms per image")
    duration_axis.set_xlabel("MemorySize (MB)")
    duration_axis.set_ylabel("ms per image (core)", color="tab:blue")
    cost_axis = duration_axis.twinx()
    for architecture, style in (("arm64", "s--"), ("x86_64", "^:")):
        costs = [c.cost_per_million[architecture] for c in configurations]
        cost_axis.plot(memory, costs, style, color="tab:orange", label=f"$ per 1M images, {architecture}")
    cost_axis.set_ylabel("USD per million images", color="tab:orange")
    duration_axis.axvline(picks["arm64"]["balanced"], color="grey", linestyle="--", linewidth=1)
    figure.legend(loc="upper center", ncols=3, fontsize=8)
    figure.suptitle(f"balanced (arm64): {picks['arm64']['balanced']} MB", y=0.02, fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str]) -> int:
    from pipeline_cli.bench import corpus

    parser = argparse.ArgumentParser(prog="pipeline tune", description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("auto", "cgroup", "model"), default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default=",".join(map(str, MEMORY_SIZES)), help="memory sizes (MB), comma-separated")
    parser.add_argument("--out", type=Path, default=Path("build/tune"))
    args = parser.parse_args(argv)
    method = args.method
    if method == "auto":
        method = "cgroup" if cgroups_available() else "model"
    if method == "cgroup" and not cgroups_available():
        print(
            f"pipeline tune: {CGROUP_CPU} is not a writable cgroup-v1 cpu controller; use --method model",
            file=sys.stderr,
        )
        return 2
    sizes = tuple(int(size) for size in args.sizes.split(","))
    inputs = list(corpus(PROJECT_ROOT / "build" / "bench" / "corpus", MIX).values())
    print(f"tuning on {len(inputs)} inputs, {args.repeats} repeats, CPU share by {method} ...", file=sys.stderr)
    configurations, baseline = measure(inputs, sizes, args.repeats, method)
    picks = {architecture: recommend(configurations, architecture) for architecture in PRICE_PER_GB_SECOND}
    print_report(configurations, picks, method, baseline["peak_rss_mb"])
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "method": method,
        "inputs": MIX,
        "repeats": args.repeats,
        "prices": {"per_gb_second": PRICE_PER_GB_SECOND, "per_request": PRICE_PER_REQUEST, "region": "us-east-1"},
        "configurations": [asdict(c) for c in configurations],
        "recommendations": picks,
        **baseline,
    }
    (args.out / "tune.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    plot(configurations, picks, args.out / "tune.png")
    print(f"wrote {args.out / 'tune.json'} and {args.out / 'tune.png'}", file=sys.stderr)
    return 0
