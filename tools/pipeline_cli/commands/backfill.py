"""`pipeline backfill`: re-render a library on the local twin with BackfillStateMachine.

Deploys template.yaml to an embedded moto server, uploads a library (generated images, a
folder of yours, an undecodable "poison" file) which the upload path renders, then changes the
rendition spec as an operator would (RENDITION_QUALITY=70 by default) and runs the backfill: a
Distributed Map over the originals (ListObjectsV2, or --inventory: an S3 Inventory report) whose
children hand ThumbnailFunction batches. Shows a progress bar, then what was rendered, already
current or failed, and the requests and transitions it took per image (what the scale model
assumes: `pipeline scale-model`). --twice runs it again: the second run renders nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline_cli.console import table_console
from pipeline_cli.imagefactory import make_jpeg
from pipeline_cli.twin.backfill import BackfillReport, check_concurrency_bound, run_backfill, write_inventory
from pipeline_cli.twin.session import UPLOAD_PREFIX, LocalPipeline, local_pipeline

LIBRARY_PREFIX = f"{UPLOAD_PREFIX}library/"
SPEC_VARIABLES = ("RENDITION_SIZES", "RENDITION_FORMAT", "RENDITION_QUALITY")


def library(count: int, folder: Path | None, poison: int) -> dict[str, bytes]:
    """Small generated photos (distinct, so no two renditions are alike), a folder, poison files."""
    originals = {f"{LIBRARY_PREFIX}generated/{index:05}.jpg": make_jpeg(96 + index % 7, 72) for index in range(count)}
    if folder is not None:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                originals[f"{LIBRARY_PREFIX}{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    for index in range(poison):
        originals[f"{LIBRARY_PREFIX}poison-{index}.jpg"] = b"\xff\xd8\xff\xe0 not really a JPEG"
    return originals


def rendition_objects_per_image(pipeline: LocalPipeline) -> int:
    """Rendition objects (PutObject requests) a rendered image takes here: one per size, except that
    sizes larger than a small original share one object (the scale model's --check needs it)."""
    per_image = {
        len({r["key"] for r in item["renditions"]}) for item in pipeline.items() if item["status"] == "SUCCEEDED"
    }
    if len(per_image) != 1:
        raise ValueError(f"images with {sorted(per_image)} rendition objects: the counts check needs one number")
    return per_image.pop()


def _upload(console: Console, pipeline: LocalPipeline, originals: dict[str, bytes]) -> None:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("upload + render at the old spec", total=len(originals))
        for key, body in originals.items():
            pipeline.upload(key, body)
            pipeline.router.step()
            progress.advance(task)
    pipeline.router.drain()


def _backfill(
    console: Console, pipeline: LocalPipeline, total: int, inventory: dict[str, str] | None, title: str
) -> BackfillReport:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(title, total=total)
        return run_backfill(pipeline, inventory, on_progress=lambda done: progress.update(task, completed=done))


def print_report(console: Console, report: BackfillReport, images: int, seconds: float) -> None:
    counts = report.counts
    console.print(
        f"[bold]{report.status}[/] in {seconds:.1f} s: {counts['rendered']} rendered, {counts['current']} already "
        f"current, {counts['failed']} failed (recorded on their items), {counts['skipped']} skipped; "
        f"{len(report.failed_batches)} batch(es) failed for good" + (f" ({report.error})" if report.error else "")
    )
    table = Table(title=f"what the run took, for {images} originals")
    table.add_column("request")
    table.add_column("count", justify="right")
    table.add_column("per image", justify="right")
    rows = {"Lambda Invoke (ThumbnailFunction batches)": report.thumbnail_invocations}
    rows |= dict(sorted(report.requests.items()))
    rows["Step Functions transitions (parent)"] = report.transitions
    for name, count in rows.items():
        table.add_row(name, str(count), f"{count / max(images, 1):.3f}")
    console.print(table)


def run(args: argparse.Namespace, console: Console) -> int:
    overrides = {"BackfillRetryIntervalSeconds": "1"}  # moto's executor really waits
    if args.batch:
        overrides["BackfillImagesPerBatch"] = str(args.batch)
    if args.concurrency:
        overrides["BackfillMaxConcurrency"] = str(args.concurrency)
    try:
        check_concurrency_bound(overrides)
    except ValueError as error:
        console.print(f"[red]{error}[/]")
        return 2
    originals = library(args.images, args.folder, args.poison)
    console.print("deploying template.yaml to an embedded moto server ...")
    with local_pipeline(overrides) as pipeline:
        _upload(console, pipeline, originals)
        console.print(f"spec change: {', '.join(args.change)} (ThumbnailFunction's environment)")
        pipeline.functions.update_environment("ThumbnailFunction", dict(item.split("=", 1) for item in args.change))
        inventory = write_inventory(pipeline, pipeline.output("ArchiveBucketName")) if args.inventory else None
        reports = []
        for attempt in range(2 if args.twice else 1):
            started = time.monotonic()
            title = "backfill" if attempt == 0 else "backfill again (nothing left to render)"
            report = _backfill(console, pipeline, len(originals), inventory, title)
            print_report(console, report, len(originals), time.monotonic() - started)
            reports.append(report)
        objects = rendition_objects_per_image(pipeline)
    if args.counts_json:
        args.counts_json.parent.mkdir(parents=True, exist_ok=True)
        measured = [
            {
                "images": len(originals),
                "counts": report.counts,
                "lambda_invocations": report.thumbnail_invocations,
                "requests": dict(report.requests),
                "transitions": report.transitions,
                "rendition_objects": objects,
            }
            for report in reports
        ]
        args.counts_json.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
        console.print(f"counts: {args.counts_json}")
    return 0 if all(report.status == "SUCCEEDED" for report in reports) else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pipeline backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200, help="generated originals in the library (default 200)")
    parser.add_argument("--folder", type=Path, help="also upload every file under this folder")
    parser.add_argument("--poison", type=int, default=1, help="undecodable uploads in the library (default 1)")
    parser.add_argument(
        "--change",
        nargs="+",
        default=["RENDITION_QUALITY=70"],
        metavar="NAME=VALUE",
        help=f"the spec change before the backfill, among {', '.join(SPEC_VARIABLES)} (default RENDITION_QUALITY=70)",
    )
    parser.add_argument("--inventory", action="store_true", help="read the originals from an S3 Inventory report")
    parser.add_argument("--twice", action="store_true", help="run the backfill a second time (it renders nothing)")
    parser.add_argument("--batch", type=int, help="BackfillImagesPerBatch (default: the template's)")
    parser.add_argument("--concurrency", type=int, help="BackfillMaxConcurrency (default: the template's)")
    parser.add_argument("--counts-json", type=Path, help="write each run's counts here (for scale-model --check)")
    args = parser.parse_args(argv)
    unknown = [item for item in args.change if item.partition("=")[0] not in SPEC_VARIABLES or "=" not in item]
    if unknown:
        parser.error(
            f"--change: {', '.join(unknown)}: expected NAME=VALUE with NAME one of {', '.join(SPEC_VARIABLES)}"
        )
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.folder is not None and not args.folder.is_dir():
        print(f"pipeline backfill: --folder {args.folder} is not a folder", file=sys.stderr)
        return 2
    return run(args, table_console())
