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
import sys
from dataclasses import asdict
from pathlib import Path

from pipeline_cli.perf.corpus import DEFAULT_CORPUS, corpus
from pipeline_cli.perf.cost import BALANCED_WEIGHT, PRICE_PER_GB_SECOND, PRICE_PER_REQUEST, recommend
from pipeline_cli.perf.cpu_quota import CGROUP_CPU, PERIOD_US, cgroups_available, measure
from pipeline_cli.perf.lambda_process import lambda_like_python
from pipeline_cli.perf.tune_report import plot, print_report
from pipeline_cli.project import PROJECT_ROOT

MEMORY_SIZES = (128, 256, 512, 768, 1024, 1280, 1536, 1769, 2048, 3008)
MIX = ("jpeg-1mp", "jpeg-12mp", "jpeg-12mp-exif6", "png-rgba-3mp", "webp-6mp")
QUICK_MIX = ("jpeg-1mp",)
QUICK_SIZES = (512, 1769)


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
