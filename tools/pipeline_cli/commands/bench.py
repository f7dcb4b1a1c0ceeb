"""`pipeline bench`: the thumbnailer against a naive Pillow baseline, the decode-only floor and libvips.

One run measures, side by side on a generated corpus (cached in build/bench/corpus):
  - median wall time per variant; the variants take turns in every repeat, in rotating order,
    so drift on this shared machine hits all of them alike;
  - peak RSS (VmHWM) of a fresh process per variant that runs it once: the whole process, as
    Lambda's "Max Memory Used" sees it. `handler` is the Lambda-like process: the thumbnail
    handler module imported, its clients created, then the same renditions;
  - PSNR (luma) of every rendition against a full-decode LANCZOS reference (oriented, flattened
    on white), on the pixels before encoding (`imaging.resample`, which make_renditions encodes),
    so it scores the method; the delivered JPEGs are scored too, where both variants lose alike;
  - the engines users would pick instead, pyvips and sharp (libvips), each per size and as a
    cascade, one thread, taking turns with the variants above; their files scored alike, bytes
    per rendition too (pipeline_cli.perf.peers; skipped peers are listed as such);
  - where the time goes on the baseline: each step of the thumbnailer's path timed on its own;
  - the cold start: importing functions/thumbnail/app.py and creating its clients, in fresh
    interpreters of a venv holding only what the function has on Lambda, with Lambda's
    credential variables set; what is left after a SnapStart restore; and the SDK's share (boto3
    and the same clients without the handler), which no change to the handler can take away.
Sizes, format, quality and the environment come from template.yaml (ThumbnailFunction, the
parameters' defaults), through the handler's own settings class. The variants, the corpus and
the scores are in pipeline_cli.perf.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from pipeline_cli.perf.bench_report import (
    TARGETS,
    finite,
    plot,
    print_breakdown,
    print_engines,
    print_output_formats,
    print_report,
    relative,
    verdicts,
)
from pipeline_cli.perf.breakdown import breakdown
from pipeline_cli.perf.corpus import BASELINE, CORPUS, DEFAULT_CORPUS, QUICK, corpus
from pipeline_cli.perf.handler import handler_environment, project_spec
from pipeline_cli.perf.lambda_process import cold_start, lambda_like_python
from pipeline_cli.perf.peers import Peers
from pipeline_cli.perf.timing import measure, output_formats

SNAPSTART_COLD = "SnapStart, after the restore (import = after-restore hooks)"
SDK_COLD = "the SDK alone (boto3 and the same three clients, no handler)"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, help="timed runs per variant and input (default 7; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}: a smoke run")
    parser.add_argument("--only", nargs="+", metavar="INPUT", help="only these inputs, e.g. heic-12mp")
    parser.add_argument("--out", type=Path, default=Path("build/bench"), help="bench.json and bench.png go here")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="generated inputs, reused across runs")
    parser.add_argument("--no-peers", action="store_true", help="leave out pyvips and sharp")
    args = parser.parse_args(argv)
    names = tuple(args.only) if args.only else QUICK if args.quick else tuple(case.name for case in CORPUS)
    repeats = args.repeats or (2 if args.quick else 7)
    spec = project_spec()
    paths = corpus(args.corpus, names)
    # --quick (a smoke run) measures in this interpreter rather than build a Lambda-like venv.
    python = Path(sys.executable) if args.quick else lambda_like_python(args.out / "lambda-venv")
    print(f"benchmarking {len(paths)} inputs, {repeats} repeats each ...", file=sys.stderr)
    with Peers(enabled=not args.no_peers) as peers:
        results = measure(paths, spec, repeats, python, peers.runners)
    runs = 3 if args.quick else 7
    cold = {
        "tracing off": cold_start(python, runs, tracing=False),
        "tracing on (as deployed)": cold_start(python, runs, tracing=True),
        SNAPSTART_COLD: cold_start(python, runs, tracing=False, snapstart=True),
        SDK_COLD: cold_start(python, runs, tracing=False, sdk_only=True),
    }
    checks = verdicts(results, cold["tracing off"]["total_ms"])
    print_report(results, checks, cold, spec)
    print_engines(results, peers)
    steps = breakdown(paths[BASELINE].read_bytes(), spec, repeats) if BASELINE in paths else {}
    if steps:
        print_breakdown(BASELINE, steps)
    formats = output_formats(paths[BASELINE].read_bytes(), spec, repeats) if BASELINE in paths else {}
    if formats:
        print_output_formats(formats, spec)
    document = {
        "spec": asdict(spec),
        "handler_environment": handler_environment(),
        "repeats": repeats,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "cold_start_python": relative(python)},
        "inputs": [{**asdict(r), "speedup_vs_naive": r.speedup_vs_naive, "x_floor": r.x_floor} for r in results],
        "peers": peers.describe(),
        "breakdown_ms": {BASELINE: steps} if steps else {},
        "cold_start": cold,
        "output_formats": formats,
        "targets": {
            name: {"comparison": TARGETS[name][0], "target": TARGETS[name][1], **check}
            for name, check in checks.items()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(finite(document), indent=2) + "\n", encoding="utf-8")
    plot(results, args.out / "bench.png")
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.png'}", file=sys.stderr)
    return 0
