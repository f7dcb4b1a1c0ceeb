"""`pipeline scale-model`: the backfill's wall time and cost for 10^4 to 10^8 images.

Takes the tuned ms per image at the template's ThumbnailMemorySize (docs/perf/tune.json), the
template's batch size and rendition sizes, and AWS list prices; prints a table per concurrency
and writes scale.json and scale.png. --check COUNTS compares the model's requests per image with
a local run's (`pipeline backfill --counts-json COUNTS`). docs/backfill.md explains the limits.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline_cli.console import table_console
from pipeline_cli.perf.scale import Estimate, Scenario, estimate, expected_requests
from pipeline_cli.project import PROJECT_ROOT
from pipeline_cli.twin.template import load_template

SIZES = (10**4, 10**5, 10**6, 10**7, 10**8)


def _template_default(name: str) -> str:
    return str(load_template()["Parameters"][name]["Default"])


def tuned_ms(tune_json: Path, memory_mb: int) -> float:
    configurations = json.loads(tune_json.read_text(encoding="utf-8"))["configurations"]
    [tuned] = [c for c in configurations if c["memory_mb"] == memory_mb]
    return float(tuned["duration_ms"])


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    memory_mb = int(_template_default("ThumbnailMemorySize"))
    ms = tuned_ms(args.tune_json, memory_mb)
    return [
        Scenario(
            images=images,
            concurrency=concurrency,
            ms_per_image=ms,
            io_ms_per_image=args.io_ms,
            memory_mb=memory_mb,
            batch=args.batch or int(_template_default("BackfillImagesPerBatch")),
            sizes=len(_template_default("RenditionSizes").split(",")),
            inventory=not args.listing,
            reserved_concurrency=concurrency,  # the bound: ThumbnailReservedConcurrency raised to match
        )
        for concurrency in args.concurrency
        for images in SIZES
    ]


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def print_table(console: Console, estimates: list[Estimate]) -> None:
    first = estimates[0].scenario
    table = Table(
        title=f"backfill: {first.ms_per_image:.0f} ms + {first.io_ms_per_image:.0f} ms I/O per image at "
        f"{first.memory_mb} MB arm64, {first.batch} images per batch, {first.sizes} renditions, "
        + ("S3 Inventory" if first.inventory else "ListObjectsV2")
    )
    for column in ("images", "concurrency", "wall time", "images/s", "limited by", "cost USD", "USD per million"):
        table.add_column(column, justify="left" if column == "limited by" else "right")
    for e in estimates:
        table.add_row(
            f"{e.scenario.images:.0e}",
            str(e.scenario.concurrency),
            _duration(e.seconds),
            f"{e.images_per_second:,.0f}",
            e.limited_by,
            f"{e.total_cost:,.2f}",
            f"{e.total_cost / e.scenario.images * 1e6:,.2f}",
        )
    console.print(table)
    cost = estimates[-1].cost
    console.print(
        "cost split (any size, same shares): " + ", ".join(f"{k} {v / sum(cost.values()):.0%}" for k, v in cost.items())
    )


def plot(estimates: list[Estimate], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (times, costs) = plt.subplots(1, 2, figsize=(11, 4.2))
    for concurrency in sorted({e.scenario.concurrency for e in estimates}):
        mine = [e for e in estimates if e.scenario.concurrency == concurrency]
        times.plot(
            [e.scenario.images for e in mine],
            [e.seconds / 3600 for e in mine],
            marker="o",
            label=f"concurrency {concurrency}",
        )
    mine = [e for e in estimates if e.scenario.concurrency == estimates[0].scenario.concurrency]
    for service in mine[0].cost:
        costs.plot([e.scenario.images for e in mine], [e.cost[service] for e in mine], marker="o", label=service)
    costs.plot(
        [e.scenario.images for e in mine], [e.total_cost for e in mine], color="black", linewidth=2, label="total"
    )
    for axis, label in ((times, "wall time (h)"), (costs, "cost (USD)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("images")
        axis.set_ylabel(label)
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=8)
    times.set_title("wall time by concurrency")
    costs.set_title("cost by service (any concurrency)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def check(console: Console, counts_json: Path, batch: int, sizes: int) -> bool:
    """The model's requests for each measured run's outcomes == the requests the run made."""
    ok = True
    for run in json.loads(counts_json.read_text(encoding="utf-8")):
        counts = run["counts"]
        # rendition objects per image: one per size, fewer when sizes exceed a small original
        model = expected_requests(
            counts["rendered"], counts["current"], counts["failed"], run.get("rendition_objects", sizes)
        )
        model["lambda.Invoke"] = math.ceil(run["images"] / batch)
        model["states.Transitions"] = 4
        measured = {
            **run["requests"],
            "lambda.Invoke": run["lambda_invocations"],
            "states.Transitions": run["transitions"],
        }
        for name in sorted(set(model) | set(measured)):
            same = model.get(name, 0) == measured.get(name, 0)
            ok &= same
            mark = "[green]=[/]" if same else "[red]![/]"
            console.print(f"  {mark} {name}: model {model.get(name, 0)}, measured {measured.get(name, 0)}")
        console.print(f"run of {run['images']} images ({counts}): {'matches' if ok else 'DIFFERS'}")
    return ok


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline scale-model", description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--batch", type=int, help="images per batch (default: the template's BackfillImagesPerBatch)")
    parser.add_argument("--io-ms", type=float, default=40.0, help="assumed in-region I/O per image, ms (default 40)")
    parser.add_argument("--listing", action="store_true", help="model ListObjectsV2 instead of an S3 Inventory")
    parser.add_argument("--tune-json", type=Path, default=PROJECT_ROOT / "docs/perf/tune.json")
    parser.add_argument("--out", type=Path, default=Path("build/scale"), help="scale.json and scale.png go here")
    parser.add_argument("--check", type=Path, metavar="COUNTS", help="a `pipeline backfill --counts-json` file")
    args = parser.parse_args(argv)
    console = table_console(width=150)
    estimates = [estimate(s) for s in scenarios(args)]
    print_table(console, estimates)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(
        json.dumps(
            [
                asdict(e.scenario) | {"seconds": e.seconds, "limited_by": e.limited_by, "cost": e.cost}
                for e in estimates
            ],
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    plot(estimates, args.out / "scale.png")
    console.print(f"wrote {args.out / 'scale.json'} and {args.out / 'scale.png'}")
    if args.check:
        return 0 if check(console, args.check, estimates[0].scenario.batch, estimates[0].scenario.sizes) else 1
    return 0
