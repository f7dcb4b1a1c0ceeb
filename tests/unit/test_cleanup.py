"""The cleanup job on a seeded table and buckets: every case, twice, dry, and in bounded runs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from image_pipeline.cleanup import STATE_KEY
from image_pipeline.keys import ObjectRef, image_id_for
from image_pipeline.repository import ImagesRepository
from pipeline_cli.imagefactory import make_jpeg
from pipeline_cli.twin.runtime import LambdaContext, load_handler
from pipeline_cli.twin.template import resource
from tests.faults import Fault, inject
from tests.s3events import s3_put_event
from tests.stack import TestStack, cleanup_for

Invoke = Callable[[dict[str, Any]], dict[str, Any]]
LATER = timedelta(hours=2)  # the job runs "two hours later": past the stuck and grace thresholds


def upload_and_process(stack: TestStack, invoke: Invoke, key: str) -> dict[str, Any]:
    invoke(s3_put_event(stack, key, make_jpeg(640, 480)))
    item = stack.item(image_id_for(stack.ingest_bucket, key))
    assert item is not None
    assert item["status"] == "SUCCEEDED"
    return item


def seed_every_case(stack: TestStack, invoke_thumbnail: Invoke) -> dict[str, Any]:
    """healthy, gone (original deleted), stuck (PROCESSING, old), in flight (PROCESSING, new),
    an orphan of a vanished image and a superseded version's leftover of a healthy one."""
    s3 = stack.clients.s3
    healthy = upload_and_process(stack, invoke_thumbnail, "uploads/healthy.jpg")
    gone = upload_and_process(stack, invoke_thumbnail, "uploads/gone.jpg")
    s3.delete_object(Bucket=stack.ingest_bucket, Key="uploads/gone.jpg")  # a delete marker: the original is gone

    repository = ImagesRepository(stack.clients.dynamodb, stack.images_table)
    claimed_at = datetime.now(UTC)
    for key in ("uploads/stuck.jpg", "uploads/in-flight.jpg"):
        put = stack.put_upload(key, make_jpeg(320, 240))
        ref = ObjectRef(stack.ingest_bucket, key, put["etag"], "0A", put["version_id"])
        # stuck: claimed 3 hours before the job runs; in flight: claimed as the job runs
        moment = claimed_at - timedelta(hours=1) if key.endswith("stuck.jpg") else claimed_at + LATER
        repository.claim(ref, moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
    in_flight = stack.item(image_id_for(stack.ingest_bucket, "uploads/in-flight.jpg"))
    assert in_flight is not None
    in_flight_file = f"renditions/{in_flight['image_id']}/{in_flight['source_etag']}/128.jpg"
    orphan = "renditions/0123456789abcdef0123456789abcdef/abc/128.jpg"
    leftover = f"renditions/{healthy['image_id']}/an-older-etag/512.jpg"
    for key in (in_flight_file, orphan, leftover):
        s3.put_object(Bucket=stack.renditions_bucket, Key=key, Body=b"jpeg")
    return {"healthy": healthy, "gone": gone, "in_flight_file": in_flight_file, "orphan": orphan, "leftover": leftover}


def test_a_run_removes_exactly_what_lost_its_source_and_times_out_stuck_items(
    stack: TestStack, invoke_thumbnail: Invoke
) -> None:
    seeded = seed_every_case(stack, invoke_thumbnail)
    before = set(stack.rendition_keys())

    report = cleanup_for(stack, at=datetime.now(UTC) + LATER).run()

    assert (report.items_checked, report.originals_gone, report.timed_out) == (4, 1, 1)
    assert report.renditions_deleted == 3  # the gone image's three renditions
    assert report.orphans_deleted == 2  # the vanished image's file and the healthy one's leftover
    assert report.cycle_complete
    assert stack.item(seeded["gone"]["image_id"]) is None
    stuck = stack.item(image_id_for(stack.ingest_bucket, "uploads/stuck.jpg"))
    assert stuck is not None
    assert stuck["status"] == "FAILED"
    assert stuck["error"]["reason"] == "timed out"
    in_flight = stack.item(image_id_for(stack.ingest_bucket, "uploads/in-flight.jpg"))
    assert in_flight is not None
    assert in_flight["status"] == "PROCESSING"
    healthy = stack.item(seeded["healthy"]["image_id"])
    assert healthy == seeded["healthy"]
    gone_files = {r["key"] for r in seeded["gone"]["renditions"]}
    assert set(stack.rendition_keys()) == before - gone_files - {seeded["orphan"], seeded["leftover"]}
    assert seeded["in_flight_file"] in stack.rendition_keys()


def test_running_twice_changes_nothing_more(stack: TestStack, invoke_thumbnail: Invoke) -> None:
    seed_every_case(stack, invoke_thumbnail)
    at = datetime.now(UTC) + LATER
    cleanup_for(stack, at=at).run()
    table_after_first = stack.clients.dynamodb.scan(TableName=stack.images_table)["Items"]
    files_after_first = stack.rendition_keys()

    second = cleanup_for(stack, at=at).run()

    assert (second.originals_gone, second.timed_out, second.renditions_deleted, second.orphans_deleted) == (0, 0, 0, 0)
    assert stack.clients.dynamodb.scan(TableName=stack.images_table)["Items"] == table_after_first
    assert stack.rendition_keys() == files_after_first


def test_a_dry_run_counts_the_same_and_changes_nothing(stack: TestStack, invoke_thumbnail: Invoke) -> None:
    seed_every_case(stack, invoke_thumbnail)
    at = datetime.now(UTC) + LATER
    table_before = stack.clients.dynamodb.scan(TableName=stack.images_table)["Items"]
    files_before = stack.rendition_keys()

    dry = cleanup_for(stack, at=at, dry_run=True).run()

    assert stack.clients.dynamodb.scan(TableName=stack.images_table)["Items"] == table_before
    assert stack.rendition_keys() == files_before
    real = cleanup_for(stack, at=at).run()
    assert (dry.originals_gone, dry.timed_out, dry.renditions_deleted, dry.orphans_deleted) == (
        real.originals_gone,
        real.timed_out,
        real.renditions_deleted,
        real.orphans_deleted,
    )


def test_a_bounded_run_stops_saves_its_place_and_the_next_runs_finish_the_cycle(
    stack: TestStack, invoke_thumbnail: Invoke
) -> None:
    for index in range(5):
        upload_and_process(stack, invoke_thumbnail, f"uploads/many/{index}.jpg")
        stack.clients.s3.delete_object(Bucket=stack.ingest_bucket, Key=f"uploads/many/{index}.jpg")
    at = datetime.now(UTC) + LATER

    first = cleanup_for(stack, at=at, max_items_per_run=2).run()
    assert first.stopped_early
    assert first.items_checked == 2
    assert stack.clients.s3.get_object(Bucket=stack.renditions_bucket, Key=STATE_KEY)  # the cursor is saved

    runs = [first]
    while not runs[-1].cycle_complete:
        runs.append(cleanup_for(stack, at=at, max_items_per_run=2).run())
        assert len(runs) < 20
    assert sum(run.originals_gone for run in runs) == 5
    assert stack.clients.dynamodb.scan(TableName=stack.images_table)["Items"] == []
    assert stack.rendition_keys() == []  # every rendition gone, and the cursor removed with the cycle


def test_the_handler_runs_dry_on_request_and_reports_counts(stack: TestStack, invoke_thumbnail: Invoke) -> None:
    upload_and_process(stack, invoke_thumbnail, "uploads/gone.jpg")
    stack.clients.s3.delete_object(Bucket=stack.ingest_bucket, Key="uploads/gone.jpg")
    env = {
        "IMAGES_TABLE": stack.images_table,
        "RENDITIONS_BUCKET": stack.renditions_bucket,
        "POWERTOOLS_SERVICE_NAME": "image-pipeline",
    }
    handler = load_handler("functions/cleanup", "app.lambda_handler", env)
    sys.modules[handler.__module__].clients = stack.clients  # type: ignore[attr-defined]
    context = LambdaContext(function_name="CleanupFunction", timeout_seconds=300)

    dry = handler({"dry_run": True}, context)
    assert dry["dry_run"] is True
    assert dry["originals_gone"] == 1
    assert len(stack.rendition_keys()) == 3
    real = handler({}, context)
    assert real["dry_run"] is False
    assert real["renditions_deleted"] == 3
    assert stack.rendition_keys() == []
    with pytest.raises(ValueError, match="dry_run"):
        handler({"dry_run": "yes"}, context)


def test_the_role_can_tell_a_gone_original_from_a_forbidden_one() -> None:
    """S3 answers HEAD of a missing key 404 only to a caller that may list the bucket (403
    otherwise): the job must be able to read and list exactly the ingest bucket, by its name."""
    ingest_name = resource("IngestBucket")["Properties"]["BucketName"]["Fn::Sub"]
    bucket_arn = "arn:${AWS::Partition}:s3:::" + ingest_name
    statements = [
        statement
        for policy in resource("CleanupFunction")["Properties"]["Policies"]
        for statement in policy.get("Statement", [])
    ]

    def granted(action: str) -> list[Any]:
        return [
            target
            for statement in statements
            if action in statement["Action"]
            for target in (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
        ]

    assert {"Fn::Sub": bucket_arn + "/uploads/*"} in granted("s3:GetObject")  # originals only
    assert {"Fn::Sub": bucket_arn} in granted("s3:ListBucket")


ACCESS_DENIED = Fault("denied", 403, "AccessDenied", "Access Denied")


def test_an_original_it_may_not_read_is_skipped_and_reported_and_the_cycle_still_completes(
    stack: TestStack, invoke_thumbnail: Invoke
) -> None:
    """An item for a bucket this role cannot read (a foreign event admitted by an older release)
    used to stop every run at the same place: HEAD's 403 was raised before the cursor was saved."""
    repository = ImagesRepository(stack.clients.dynamodb, stack.images_table)
    foreign = ObjectRef("someone-elses-bucket", "uploads/theirs.jpg", "e7a9", "0A", None)
    repository.claim(foreign, "2026-01-01T00:00:00.000Z")
    for index in range(3):
        upload_and_process(stack, invoke_thumbnail, f"uploads/after/{index}.jpg")
        stack.clients.s3.delete_object(Bucket=stack.ingest_bucket, Key=f"uploads/after/{index}.jpg")

    with inject(stack.clients.s3, "HeadObject", ACCESS_DENIED, when=lambda r: foreign.bucket in r.url):
        report = cleanup_for(stack, at=datetime.now(UTC) + LATER).run()

    assert report.cycle_complete
    assert (report.unreadable, report.originals_gone, report.renditions_deleted) == (1, 3, 9)
    [reported] = report.unreadable_items
    assert reported.startswith(foreign.image_id)
    assert "s3://someone-elses-bucket/uploads/theirs.jpg" in reported
    item = stack.item(foreign.image_id)
    assert item is not None  # left as it is: it is not the cleanup's to judge what it cannot see
    assert item["status"] == "PROCESSING"  # (nor timed out on a guess)
    assert stack.rendition_keys() == []
