"""A backfill on the local twin: run BackfillStateMachine, tally its results, count what it cost.

The run's outcome is read the way an operator reads it on AWS: from the result files the Map's
ResultWriter wrote (one entry per child execution, its batch counts or its error). The request
counts (per AWS service and operation, each HTTP attempt as AWS bills it) and the parent's state
transitions are what the scale model is checked against (`pipeline scale-model`, docs/backfill.md).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from image_pipeline.rerender import BATCH_COUNTS
from image_pipeline.run_results import read_results
from pipeline_cli.twin.session import UPLOAD_PREFIX, LocalPipeline
from pipeline_cli.twin.template import load_template

WORKFLOW = "BackfillStateMachine"
INVENTORY_PREFIX = "inventory/"
# What Step Functions bills for a Standard workflow: each state entered (retries count too).
_TRANSITIONS = ("StateEntered",)


@dataclass
class BackfillReport:
    status: str
    counts: dict[str, int]  # images: rendered, current, failed, skipped; plus failed_batches
    failed_batches: list[dict[str, Any]]  # the FAILED entries of the results: Input, Error, Cause
    requests: Counter[str]  # "s3.GetObject" -> attempts, by the thumbnailer during the run
    thumbnail_invocations: int
    transitions: int  # the parent execution's
    error: str | None = None
    execution: dict[str, Any] = field(default_factory=dict)


class RequestCounter:
    """Counts every HTTP attempt the given boto3 clients send, by service and operation."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, event_name: str, **_: Any) -> None:
        _stage, service, operation = event_name.split(".", 2)
        with self._lock:
            self.counts[f"{service}.{operation}"] += 1

    @contextmanager
    def watching(self, *clients: Any) -> Iterator[RequestCounter]:
        for client in clients:
            client.meta.events.register("before-send", self._count)
        try:
            yield self
        finally:
            for client in clients:
                client.meta.events.unregister("before-send", self._count)


def write_inventory(pipeline: LocalPipeline, bucket: str) -> dict[str, str]:
    """An S3 Inventory report of the upload prefix (CSV, URL-encoded keys, gzipped), as S3 would
    deliver it daily (moto does not): the input of a backfill from an inventory."""
    ingest = pipeline.output("IngestBucketName")
    rows = io.StringIO()
    writer = csv.writer(rows, quoting=csv.QUOTE_ALL)
    for key in pipeline.object_keys("IngestBucketName", UPLOAD_PREFIX):
        writer.writerow([ingest, _inventory_encoded(key)])
    data_key = f"{INVENTORY_PREFIX}{ingest}/all/data/part-0.csv.gz"
    pipeline.s3.put_object(Bucket=bucket, Key=data_key, Body=gzip.compress(rows.getvalue().encode()))
    manifest = {
        "sourceBucket": ingest,
        "destinationBucket": f"arn:aws:s3:::{bucket}",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key",
        "files": [{"key": data_key, "size": 0, "MD5checksum": ""}],
    }
    manifest_key = f"{INVENTORY_PREFIX}{ingest}/all/manifest.json"
    pipeline.s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    return {"bucket": bucket, "key": manifest_key}


def _inventory_encoded(key: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(key, safe="/")


def run_backfill(
    pipeline: LocalPipeline,
    inventory: dict[str, str] | None = None,
    on_progress: Callable[[int], None] = lambda images: None,
    timeout_seconds: float = 900,
) -> BackfillReport:
    """Start a backfill, deliver what it causes until it ends, and read its results."""
    thumbnailer = pipeline.functions.module("ThumbnailFunction").clients
    first = len(pipeline.functions.invocations)
    done = threading.Event()

    def watch() -> None:  # the progress bar: images in the batches ThumbnailFunction finished
        while not done.wait(0.2):
            on_progress(_images_done(pipeline, first))

    watcher = threading.Thread(target=watch, daemon=True)
    counter = RequestCounter()
    with counter.watching(thumbnailer.s3, thumbnailer.dynamodb, thumbnailer.sns):
        watcher.start()
        try:
            execution = pipeline.router.execute(
                WORKFLOW, {"inventory": inventory} if inventory else {}, timeout_seconds
            )
        finally:
            done.set()
            watcher.join()
    on_progress(_images_done(pipeline, first))
    execution = _with_output(pipeline, execution)
    batches = [
        call
        for call in pipeline.functions.invocations[first:]
        if call.function == "ThumbnailFunction" and call.trigger == "stepfunctions"
    ]
    counts, failed = _tally(pipeline, execution)
    return BackfillReport(
        status=execution["status"],
        counts=counts,
        failed_batches=failed,
        requests=counter.counts,
        thumbnail_invocations=len(batches),
        transitions=_transitions(pipeline, execution["executionArn"]),
        error=execution.get("error"),
        execution=execution,
    )


def _with_output(pipeline: LocalPipeline, execution: dict[str, Any]) -> dict[str, Any]:
    """moto sets a finished execution's status a moment before its output: wait for the output."""
    stepfunctions = pipeline.endpoint.client("stepfunctions")
    for _ in range(100):
        if execution["status"] != "SUCCEEDED" or "output" in execution:
            break
        time.sleep(0.05)
        execution = stepfunctions.describe_execution(executionArn=execution["executionArn"])
    return execution


def _images_done(pipeline: LocalPipeline, first: int) -> int:
    return sum(
        sum(call.result["counts"].values())
        for call in pipeline.functions.invocations[first:]
        if call.function == "ThumbnailFunction" and call.trigger == "stepfunctions" and call.result
    )


def _tally(pipeline: LocalPipeline, execution: dict[str, Any]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The images' counts and the failed batches, from the run's ResultWriter files."""
    results = read_results(
        lambda bucket, key: _read(pipeline, bucket, key), _result_writer_details(pipeline, execution), BATCH_COUNTS
    )
    return results.counts, results.failed_batches


def _result_writer_details(pipeline: LocalPipeline, execution: dict[str, Any]) -> dict[str, str] | None:
    """Where the results are: the output of a run that ended, or the newest manifest of a failed one."""
    if execution.get("output"):
        details: dict[str, str] = json.loads(execution["output"])["results"]  # BackfillCompleted's
        return details
    bucket = pipeline.output("ArchiveBucketName")
    listed = pipeline.s3.list_objects_v2(Bucket=bucket, Prefix="backfill/").get("Contents", [])
    manifests = sorted((o for o in listed if o["Key"].endswith("/manifest.json")), key=lambda o: o["LastModified"])
    return {"Bucket": bucket, "Key": manifests[-1]["Key"]} if manifests else None


def _read(pipeline: LocalPipeline, bucket: str, key: str) -> bytes:
    body: bytes = pipeline.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return body


def _transitions(pipeline: LocalPipeline, execution_arn: str) -> int:
    stepfunctions = pipeline.endpoint.client("stepfunctions")
    events = stepfunctions.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    return sum(1 for event in events if event["type"].endswith(_TRANSITIONS))


def check_concurrency_bound(parameter_overrides: dict[str, str]) -> None:
    """The backfill's MaxConcurrency is bounded by ThumbnailFunction's reserved concurrency: each
    child holds one invocation, and more would only be throttled (ValueError if above)."""
    parameters = load_template()["Parameters"]

    def value(name: str) -> int:
        return int(parameter_overrides.get(name, parameters[name]["Default"]))

    if value("BackfillMaxConcurrency") > value("ThumbnailReservedConcurrency"):
        raise ValueError(
            f"BackfillMaxConcurrency {value('BackfillMaxConcurrency')} exceeds ThumbnailReservedConcurrency "
            f"{value('ThumbnailReservedConcurrency')}: each batch holds one ThumbnailFunction invocation"
        )
