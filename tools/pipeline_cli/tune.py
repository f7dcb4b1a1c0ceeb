"""`pipeline tune`: ThumbnailFunction's MemorySize, chosen from measurements.

Lambda gives a function CPU in proportion to its memory: 1769 MB is one vCPU, less is that
fraction of one, more (up to 3008 MB here) adds a second vCPU that single-threaded work cannot
use. This runs the thumbnailer on a mix of inputs under the CPU share each memory size gets, and
prints duration and cost per million images on arm64 and x86_64, with the sizes that
aws-lambda-power-tuning's strategies (cost, speed, balanced) would pick.

What runs: a Lambda-like process per memory size, in the venv `make bench` builds (the layer's
pins and the runtime's boto3): it imports functions/thumbnail/app.py with the template's
environment, creates its clients, and times the handler's own make_renditions call (with its
spec) on each input. So peak RSS is the function's whole process, and the timed part is the
CPU-bound work that the memory size changes. The S3/DynamoDB/SNS calls are left out: on Lambda
their time is network wait, which a CPU quota does not stretch, and an emulator in the process
(moto) would bill its own CPU to the function.

How the CPU share is applied:
  cgroup  a cgroup-v1 CPU quota (cpu.cfs_quota_us / cpu.cfs_period_us = share, period 20 ms),
          the mechanism Lambda's CPU limit is built on. Needs a writable /sys/fs/cgroup/cpu
          (root). Limits: the period Lambda uses is not published (a shorter one smooths the
          throttling, a longer one makes short jobs burstier); other processes on this machine
          still compete for the core the quota allows.
  model   where there is no such cgroup: CPU time measured at full speed divided by the share
          (capped at one vCPU). Assumes the work is CPU-bound and single-threaded and that
          throttling is fluid; it ignores the period's granularity. The cgroup run prints the
          model's figures next to its own, so the two can be compared.
Also left out: arm64 vs x86 speed (durations from this machine's CPU are priced with both
architectures' rates) and cold starts (`make bench` measures those).
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

from pipeline_cli.bench import (
    DEFAULT_CORPUS,
    corpus,
    handler_environment,
    handler_location,
    lambda_like_environment,
    lambda_like_python,
)
from pipeline_cli.lambda_runtime import PROJECT_ROOT

MEMORY_SIZES = (128, 256, 512, 768, 1024, 1280, 1536, 1769, 2048, 3008)
MB_PER_VCPU = 1769
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 20_000  # 128 MB's quota is then 1.4 ms, above the kernel's 1 ms minimum
MIX = ("jpeg-1mp", "jpeg-12mp", "jpeg-12mp-exif6", "png-rgba-3mp", "webp-6mp")
QUICK_MIX = ("jpeg-1mp",)
QUICK_SIZES = (512, 1769)
# AWS Lambda prices, us-east-1, first tier (aws.amazon.com/lambda/pricing, checked 2026-11):
# duration per GB-second by architecture, and requests at $0.20 per million.
PRICE_PER_GB_SECOND = {"arm64": 0.0000133334, "x86_64": 0.0000166667}
PRICE_PER_REQUEST = 0.20 / 1_000_000
BALANCED_WEIGHT = 0.5  # power-tuning's default balancedWeight


def vcpu_share(memory_mb: int) -> float:
    return memory_mb / MB_PER_VCPU


# -- the worker: a Lambda-like process, moved into the cgroup before it imports anything ----------

_WORKER = """
import json, os, sys, time
from pathlib import Path
cgroup, repeats, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
if cgroup:
    Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))
from pipeline_cli.lambda_runtime import load_handler
handler = load_handler(options["code_uri"], options["handler"], options["env"])
app = sys.modules[handler.__module__]
from image_pipeline.imaging import make_renditions
spec = app.build_thumbnailer(app.clients).spec()  # creates the clients, as the first invocation does
wall, cpu = {}, {}
for path in options["inputs"]:
    data = Path(path).read_bytes()
    make_renditions(data, spec)  # warm: the first call pays for plugin and codec setup
    walls, cpus = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        make_renditions(data, spec)
        walls.append((time.perf_counter() - started) * 1000)
        cpus.append((time.process_time() - started_cpu) * 1000)
    wall[Path(path).name] = sorted(walls)[len(walls) // 2]
    cpu[Path(path).name] = sorted(cpus)[len(cpus) // 2]
status = Path("/proc/self/status").read_text()
peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")) / 1024
print(json.dumps({"wall_ms": wall, "cpu_ms": cpu, "peak_rss_mb": peak}))
"""


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
    code_uri, handler = handler_location()
    options = {
        "code_uri": code_uri,
        "handler": handler,
        "env": {**handler_environment(), "POWERTOOLS_TRACE_DISABLED": "true"},
        "inputs": [str(path) for path in inputs],
    }
    try:
        done = subprocess.run(
            [str(python), "-c", _WORKER, str(cgroup or ""), str(repeats), json.dumps(options)],
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


# -- the model and the recommendation --------------------------------------------------------------


@dataclass(frozen=True)
class Configuration:
    memory_mb: int
    duration_ms: float  # mean over the mix of each input's median
    viable: bool  # the measured peak RSS fits
    cost_per_million: dict[str, float]  # USD, duration + requests
    model_ms: float | None = None  # the model's prediction, when the cgroup measured duration_ms


def compute_cost(memory_mb: int, duration_ms: float, architecture: str) -> float:
    """USD for one invocation's duration: billed in whole milliseconds, at the GB-second rate."""
    return memory_mb / 1024 * math.ceil(duration_ms) / 1000 * PRICE_PER_GB_SECOND[architecture]


def cost_per_million(memory_mb: int, duration_ms: float, architecture: str) -> float:
    """USD per million images (one invocation each): duration plus the request charge."""
    return (compute_cost(memory_mb, duration_ms, architecture) + PRICE_PER_REQUEST) * 1_000_000


def configuration(
    memory_mb: int, duration_ms: float, peak_rss_mb: float, model_ms: float | None = None
) -> Configuration:
    return Configuration(
        memory_mb=memory_mb,
        duration_ms=duration_ms,
        viable=peak_rss_mb < memory_mb,
        cost_per_million={arch: cost_per_million(memory_mb, duration_ms, arch) for arch in PRICE_PER_GB_SECOND},
        model_ms=model_ms,
    )


def recommend(configurations: list[Configuration], architecture: str) -> dict[str, int]:
    """The sizes aws-lambda-power-tuning's analyzer picks, among the viable ones.

    Its cost is the duration charge only (ceil(ms) x rate x memory; the request charge is the
    same everywhere). cost: the cheapest, ties to the faster; speed: the fastest, ties to the
    cheaper; balanced: the lowest w x cost/max(cost) + (1 - w) x duration/max(duration), w = 0.5.
    """
    viable = [c for c in configurations if c.viable]
    if not viable:
        raise ValueError("no memory size fits the measured peak RSS")

    def cost(c: Configuration) -> float:
        return compute_cost(c.memory_mb, c.duration_ms, architecture)

    max_cost, max_duration = max(map(cost, viable)), max(c.duration_ms for c in viable)

    def balanced(c: Configuration) -> float:
        return BALANCED_WEIGHT * cost(c) / max_cost + (1 - BALANCED_WEIGHT) * c.duration_ms / max_duration

    return {
        "cost": min(viable, key=lambda c: (cost(c), c.duration_ms)).memory_mb,
        "speed": min(viable, key=lambda c: (c.duration_ms, cost(c))).memory_mb,
        "balanced": min(viable, key=balanced).memory_mb,
    }


def model_duration_ms(cpu_ms: float, memory_mb: int) -> float:
    """CPU-bound, single-threaded work at a fluid share of one vCPU."""
    return cpu_ms / min(1.0, vcpu_share(memory_mb))


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


# -- reporting ------------------------------------------------------------------------------------


def print_report(
    configurations: list[Configuration],
    picks: dict[str, dict[str, int]],
    method: str,
    peak: float,
    mix: tuple[str, ...],
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ThumbnailFunction, mix of {len(mix)} inputs, CPU share by {method}; peak RSS {peak:.0f} MB")
    columns = ["MemorySize", "vCPU", "ms / image"]
    columns += ["model ms"] if method == "cgroup" else []
    columns += ["$ / 1M arm64", "$ / 1M x86_64", "picked (arm64)", "picked (x86_64)"]
    for column in columns:
        table.add_column(column, justify="right")
    for c in configurations:
        row = [
            f"{c.memory_mb}" + ("" if c.viable else " (RSS!)"),
            f"{vcpu_share(c.memory_mb):.2f}",
            f"{c.duration_ms:.0f}",
        ]
        row += [f"{c.model_ms:.0f}"] if c.model_ms is not None else []
        row += [f"{c.cost_per_million['arm64']:.2f}", f"{c.cost_per_million['x86_64']:.2f}"]
        row += [
            ", ".join(s for s, memory in picks[arch].items() if memory == c.memory_mb) for arch in ("arm64", "x86_64")
        ]
        table.add_row(*row)
    Console(width=140).print(table)
    print(f"(RSS!): below the measured peak RSS, not viable. Inputs: {', '.join(mix)}.")
    for architecture, strategies in picks.items():
        print(f"{architecture}: " + ", ".join(f"{name} -> {memory} MB" for name, memory in strategies.items()))


def plot(configurations: list[Configuration], picks: dict[str, dict[str, int]], method: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory = [c.memory_mb for c in configurations]
    figure, duration_axis = plt.subplots(figsize=(10, 5.5))
    duration_axis.plot(memory, [c.duration_ms for c in configurations], "o-", color="tab:blue", label=f"ms ({method})")
    model = [c.model_ms for c in configurations if c.model_ms is not None]
    if len(model) == len(configurations):
        duration_axis.plot(memory, model, ".:", color="tab:cyan", label="ms (model)")
    duration_axis.set_xlabel("MemorySize (MB)")
    duration_axis.set_ylabel("ms per image", color="tab:blue")
    duration_axis.set_yscale("log")
    cost_axis = duration_axis.twinx()
    for architecture, style in (("arm64", "s--"), ("x86_64", "^:")):
        costs = [c.cost_per_million[architecture] for c in configurations]
        cost_axis.plot(memory, costs, style, color="tab:orange", label=f"$ per 1M images, {architecture}")
    cost_axis.set_ylabel("USD per million images", color="tab:orange")
    for c in configurations:
        if not c.viable:
            duration_axis.axvspan(c.memory_mb - 40, c.memory_mb + 40, color="red", alpha=0.15)
    balanced = picks["arm64"]["balanced"]
    duration_axis.axvline(balanced, color="grey", linestyle="--", linewidth=1)
    figure.legend(loc="upper center", ncols=4, fontsize=8)
    figure.suptitle(f"picks (arm64): {picks['arm64']}; red: below peak RSS", y=0.02, fontsize=9)
    figure.tight_layout(rect=(0, 0.04, 1, 0.93))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline tune", description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("auto", "cgroup", "model"), default="auto")
    parser.add_argument("--repeats", type=int, help="timed runs per input and size (default 5; --quick: 1)")
    parser.add_argument("--sizes", help="memory sizes (MB), comma-separated (default 128..3008)")
    parser.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK_MIX)} at {QUICK_SIZES} MB: a smoke run")
    parser.add_argument("--out", type=Path, default=Path("build/tune"), help="tune.json and tune.png go here")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="inputs, shared with `pipeline bench`")
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
    sizes = (
        tuple(int(size) for size in args.sizes.split(","))
        if args.sizes
        else QUICK_SIZES
        if args.quick
        else MEMORY_SIZES
    )
    mix = QUICK_MIX if args.quick else MIX
    repeats = args.repeats or (1 if args.quick else 5)
    inputs = list(corpus(args.corpus, mix).values())
    # --quick (a smoke run) measures in this interpreter rather than build a Lambda-like venv.
    python = (
        Path(sys.executable) if args.quick else lambda_like_python(PROJECT_ROOT / "build" / "bench" / "lambda-venv")
    )
    print(f"tuning on {len(inputs)} inputs, {repeats} repeats, CPU share by {method} ...", file=sys.stderr)
    configurations, details = measure(python, inputs, sizes, repeats, method)
    picks = {architecture: recommend(configurations, architecture) for architecture in PRICE_PER_GB_SECOND}
    print_report(configurations, picks, method, details["peak_rss_mb"], mix)
    document = {
        "method": method,
        "period_us": PERIOD_US if method == "cgroup" else None,
        "inputs": mix,
        "repeats": repeats,
        "prices": {"per_gb_second": PRICE_PER_GB_SECOND, "per_request": PRICE_PER_REQUEST, "region": "us-east-1"},
        "balanced_weight": BALANCED_WEIGHT,
        "configurations": [asdict(c) for c in configurations],
        "recommendations": picks,
        **details,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    plot(configurations, picks, method, args.out / "tune.png")
    print(f"wrote {args.out / 'tune.json'} and {args.out / 'tune.png'}", file=sys.stderr)
    return 0
