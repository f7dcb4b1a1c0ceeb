"""`pipeline demo`: the whole pipeline on this machine, on sample images, and what happened.

Deploys template.yaml to an embedded moto server, uploads the samples (and any folder you
name), and delivers every event to the real handlers: S3 -> ThumbnailFunction -> ImagesTable,
RenditionsBucket, ImageEventsTopic -> SQS -> WebhookFunction (to a receiver on 127.0.0.1) and
AuditFunction (to ArchiveBucket). Then, optionally, the cleanup schedule and the reprocess
workflow. Prints a summary and writes an HTML contact sheet with each image's event trail.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline_cli.commands.demo_report import image_rows, print_summary, write_html
from pipeline_cli.commands.redrive import redrive
from pipeline_cli.console import table_console
from pipeline_cli.imagefactory import make_jpeg, sample_images
from pipeline_cli.twin.session import LocalPipeline, local_pipeline
from pipeline_cli.webhook_receiver import WebhookServer

DEMO_PREFIX = "uploads/demo/"
SERVER_ERROR = 500


def demo_uploads(images_dir: Path | None, with_samples: bool = True) -> dict[str, bytes]:
    """Generated samples (every supported format, plus two bad files) and the user's files."""
    uploads: dict[str, bytes] = {}
    if with_samples:
        uploads |= sample_images()
        uploads["truncated.jpg"] = make_jpeg(1600, 1200)[:20_000]  # an interrupted upload
        uploads["notes.jpg"] = b"<html><body>not an image</body></html>"  # named like one
    if images_dir is not None:
        for path in sorted(images_dir.rglob("*")):
            if path.is_file():
                uploads[path.relative_to(images_dir).as_posix()] = path.read_bytes()
    return {DEMO_PREFIX + name: body for name, body in uploads.items()}


def process_with_progress(console: Console, pipeline: LocalPipeline, uploads: dict[str, bytes]) -> None:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        uploading = progress.add_task("upload to IngestBucket", total=len(uploads))
        for key, body in uploads.items():
            pipeline.upload(key, body)
            progress.advance(uploading)
        processing = progress.add_task("thumbnail + fan-out", total=len(uploads))
        while pipeline.router.step():
            done = {
                invocation.event["Records"][0]["s3"]["object"]["key"]
                for invocation in pipeline.functions.invocations
                if invocation.trigger == "s3"
            }
            progress.update(processing, completed=len(done))
        progress.update(processing, completed=len(uploads))
    pipeline.router.drain()


def _redrive_webhook_dlq(console: Console, pipeline: LocalPipeline, receiver: WebhookServer) -> None:
    if pipeline.queue_depth("WebhookDeadLetterQueueUrl") == 0:
        return
    receiver.fail_event_types.clear()  # the receiver is "fixed"
    # moto has no StartMessageMoveTask: go straight to the receive/send/delete loop.
    report = redrive(pipeline.sqs, pipeline.output("WebhookDeadLetterQueueUrl"), method="loop")
    console.print(
        f"[bold]redrive[/]: moved {report.moved} message(s) from the webhook DLQ back to its queue "
        f"({report.method}); the receiver now answers 200"
    )
    pipeline.router.drain()


def run(args: argparse.Namespace, console: Console) -> int:
    uploads = demo_uploads(args.images, with_samples=not args.no_samples)
    if not uploads:
        console.print("[red]nothing to upload[/] (--no-samples and no --images)")
        return 2
    args.report.parent.mkdir(parents=True, exist_ok=True)
    for previous in ("logs", "files"):  # this run's logs and images only, not every run's
        shutil.rmtree(args.report.parent / previous, ignore_errors=True)
    with WebhookServer(secret="") as receiver:
        if not args.no_faults:
            receiver.fail_event_types.add("ImageFailed")
        console.print("deploying template.yaml to an embedded moto server ...")
        with local_pipeline({"WebhookUrl": receiver.url}, log_dir=args.report.parent / "logs") as pipeline:
            secrets = pipeline.endpoint.client("secretsmanager")
            receiver.secret = secrets.get_secret_value(SecretId=pipeline.output("WebhookSigningSecretArn"))[
                "SecretString"
            ]
            console.print(
                f"stack [bold]{pipeline.stack.name}[/] at {pipeline.endpoint.url}: "
                f"{len(pipeline.stack.physical_ids)} resources, {len(pipeline.stack.wired)} wired by the runner; "
                f"webhook receiver {receiver.url}"
                + ("" if args.no_faults else " (answers 500 to ImageFailed events until the redrive)")
            )
            process_with_progress(console, pipeline, uploads)
            if not args.no_faults:
                _redrive_webhook_dlq(console, pipeline, receiver)
            if args.run_cleanup:
                for schedule in pipeline.stack.schedules:
                    invocation = pipeline.router.fire(schedule)
                    outcome = invocation.error_message if invocation.failed else invocation.result
                    console.print(f"schedule {schedule.name} ({schedule.expression}): {outcome}")
                pipeline.router.drain()
            if args.reprocess:
                execution = pipeline.router.execute("BackfillStateMachine", {"reprocess": {"status": "FAILED"}})
                console.print(
                    f"reprocess FAILED: {execution['status']} {execution.get('output', execution.get('cause', ''))}"
                )
            rows = image_rows(pipeline, uploads, receiver.requests)
            print_summary(console, rows, pipeline.router.queue_stats.values(), key_prefix=DEMO_PREFIX)
            verified = sum(1 for request in receiver.requests if request.signature_error is None)
            statuses = Counter(request.status for request in receiver.requests)
            answers = ", ".join(f"{count} x HTTP {status}" for status, count in sorted(statuses.items()))
            console.print(
                f"webhook receiver: {len(receiver.requests)} POSTs, {verified} signed correctly; answered {answers}"
            )
            report = write_html(pipeline, rows, pipeline.router.queue_stats.values(), args.report)
            console.print(f"HTML report: [bold]{report.resolve()}[/]  (function logs: {args.report.parent / 'logs'})")
    unprocessed = [row.key for row in rows if row.status not in ("SUCCEEDED", "FAILED")]
    if unprocessed:
        console.print(f"[red]not processed:[/] {', '.join(unprocessed)}")
        return 1
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="pipeline demo",
        description=__doc__.splitlines()[0],
        epilog="Images table: 'rendition bytes' is the size of all of an image's renditions together; "
        "'ms' the thumbnailer's time on it, retries included. Each run replaces the previous run's "
        "logs/ and files/ next to the report.",
    )
    parser.add_argument("--images", type=Path, help="also upload every file under this folder")
    parser.add_argument(
        "--no-samples", action="store_true", help="upload only the --images folder, not the generated samples"
    )
    parser.add_argument(
        "--no-faults", action="store_true", help="keep the webhook receiver healthy (no DLQ, no redrive)"
    )
    parser.add_argument("--run-cleanup", action="store_true", help="fire the cleanup schedule once after the uploads")
    parser.add_argument("--reprocess", action="store_true", help="re-render the FAILED images (a reprocess run)")
    parser.add_argument(
        "--report", type=Path, default=Path("build/demo/report.html"), help="where the HTML report goes"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.images is not None and not args.images.is_dir():
        print(f"pipeline demo: --images {args.images} is not a folder", file=sys.stderr)
        return 2
    return run(args, table_console())
