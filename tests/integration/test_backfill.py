"""BackfillStateMachine end to end on the twin: a library of a few hundred small originals, a spec
change, the backfill run twice (the second renders nothing), with faults injected on the way:
Lambda throttling the children's invocations, S3 throttling one image past botocore's retries,
and a poison upload. Nothing is lost: every image ends at the new spec or FAILED with its reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from moto.awslambda.models import LambdaBackend
from moto.core.exceptions import JsonRESTError

from image_pipeline.imaging import RenditionSpec
from pipeline_cli.commands.backfill import library
from pipeline_cli.perf.scale import expected_requests
from pipeline_cli.twin.backfill import check_concurrency_bound, run_backfill, write_inventory
from pipeline_cli.twin.session import LocalPipeline, local_pipeline
from tests.faults import THROTTLED, BackoffRecorder, inject

pytestmark = pytest.mark.slow

IMAGES = 240
SIZES = "96,48"  # small renditions of small originals: the run is about the workflow, not Pillow
NEW_SPEC = RenditionSpec(sizes=(96, 48), format="JPEG", quality=70)


class Throttled(JsonRESTError):
    """Lambda's answer when the function's reserved concurrency is in use: 429."""

    code = 429

    def __init__(self) -> None:
        super().__init__("TooManyRequestsException", "Rate Exceeded.")


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalPipeline]:
    overrides = {
        "RenditionSizes": SIZES,
        "BackfillImagesPerBatch": "10",
        "BackfillRetryIntervalSeconds": "1",  # moto's executor really waits
        "BackfillRetryMaxAttempts": "2",
    }
    with local_pipeline(overrides) as deployed:
        for key, body in library(IMAGES, None, poison=1).items():
            deployed.upload(key, body)
        deployed.router.drain()
        deployed.functions.update_environment("ThumbnailFunction", {"RENDITION_QUALITY": "70"})  # the spec change
        yield deployed


@pytest.fixture(autouse=True)
def _twin_endpoint(pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module's twin outlives each test's clean environment: point AWS clients at it again
    (a spec change reloads ThumbnailFunction, which creates its clients then)."""
    for name, value in pipeline.endpoint.environment.items():
        monkeypatch.setenv(name, value)


def by_key(pipeline: LocalPipeline) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in pipeline.items()}


@pytest.fixture(scope="module")
def first_run(pipeline: LocalPipeline) -> dict[str, Any]:
    """The backfill, with 3 child invocations throttled by Lambda and one image's reads by S3."""
    before = by_key(pipeline)
    lambda_invoke = LambdaBackend.invoke
    throttled: list[str] = []
    invoked: list[str] = []  # the FunctionName each child passed

    def throttle_three(self: LambdaBackend, function_name: str, *args: Any, **kwargs: Any) -> Any:
        if "ThumbnailFunction" in function_name:
            invoked.append(function_name)
            if len(throttled) < 3:
                throttled.append(function_name)
                raise Throttled()
        return lambda_invoke(self, function_name, *args, **kwargs)

    s3 = pipeline.functions.module("ThumbnailFunction").clients.s3
    slow_key = "00007.jpg"
    recorder = BackoffRecorder()
    with (
        mock.patch.object(LambdaBackend, "invoke", throttle_three),
        mock.patch("botocore.endpoint.time", recorder),  # botocore's own retry sleeps, recorded
        inject(s3, "GetObject", THROTTLED["s3"], times=7, when=lambda request: slow_key in request.url) as slow_down,
    ):
        report = run_backfill(pipeline)
    return {"report": report, "before": before, "throttled": throttled, "invoked": invoked, "slow_down": slow_down}


def test_every_image_ends_at_the_new_spec_or_failed_with_its_reason(
    pipeline: LocalPipeline, first_run: dict[str, Any]
) -> None:
    report = first_run["report"]
    assert report.status == "SUCCEEDED", report.execution
    # the slow image's batch rendered its 9 others before failing: its retry found them current
    assert report.counts == {"rendered": IMAGES - 9, "current": 9, "failed": 1, "skipped": 0}
    assert report.failed_batches == []
    items = by_key(pipeline)
    assert len(items) == IMAGES + 1
    poison = [item for key, item in items.items() if "poison" in key]
    assert [(item["status"], bool(item["error"]["reason"])) for item in poison] == [("FAILED", True)]
    rendered = [item for key, item in items.items() if "poison" not in key]
    assert {item["status"] for item in rendered} == {"SUCCEEDED"}
    assert {item["rendition_spec"] for item in rendered} == {NEW_SPEC.version}
    stored = set(pipeline.object_keys("RenditionsBucketName", "renditions/"))
    assert stored == {rendition["key"] for item in rendered for rendition in item["renditions"]}  # old ones removed
    assert all(f"/{NEW_SPEC.version}/" in key for key in stored)


def test_the_faults_really_happened_and_were_retried(first_run: dict[str, Any], pipeline: LocalPipeline) -> None:
    assert len(first_run["throttled"]) == 3  # Lambda.TooManyRequestsException, retried with jitter
    assert first_run["slow_down"].failed == 7  # past botocore's 6 attempts: the batch failed, was retried
    batches = [
        call
        for call in pipeline.functions.invocations
        if call.function == "ThumbnailFunction" and call.trigger == "stepfunctions"
    ]
    assert "TransientError" in {call.error_type for call in batches}
    assert first_run["report"].thumbnail_invocations == len(batches) > (IMAGES + 1) // 10


def test_the_children_invoke_the_live_alias_which_snapstart_restores(
    first_run: dict[str, Any], pipeline: LocalPipeline
) -> None:
    function = pipeline.stack.functions["ThumbnailFunction"]
    alias = pipeline.stack.endpoint.client("lambda").get_alias(FunctionName=function.name, Name="live")
    assert alias["FunctionVersion"] != "$LATEST"
    assert set(first_run["invoked"]) == {alias["AliasArn"]}  # never $LATEST, which SnapStart does not cover
    assert len(first_run["invoked"]) == first_run["report"].thumbnail_invocations + len(first_run["throttled"])


def test_consumers_hear_about_every_re_render_with_a_new_event_id(
    pipeline: LocalPipeline, first_run: dict[str, Any]
) -> None:
    pipeline.router.drain()
    processed = [event for event in pipeline.archived_events() if event["event_type"] == "ImageProcessed"]
    new = [event for event in processed if event["image"].get("rendition_spec") == NEW_SPEC.version]
    assert len({event["image"]["image_id"] for event in new}) == IMAGES
    old_ids = {event["event_id"] for event in processed if event not in new}
    assert old_ids.isdisjoint(event["event_id"] for event in new)


def test_the_run_results_are_in_s3_and_the_summary_on_the_topic(
    pipeline: LocalPipeline, first_run: dict[str, Any]
) -> None:
    output = json.loads(first_run["report"].execution["output"])
    assert output["event_type"] == "BackfillCompleted"
    manifest = json.loads(pipeline.read("ArchiveBucketName", output["results"]["Key"]))
    assert [file["Key"].rsplit("/", 1)[1] for file in manifest["ResultFiles"]["SUCCEEDED"]] == ["SUCCEEDED_0.json"]
    assert manifest["ResultFiles"]["FAILED"] == []


def test_a_second_run_renders_nothing(pipeline: LocalPipeline, first_run: dict[str, Any]) -> None:
    items = by_key(pipeline)

    again = run_backfill(pipeline)

    assert again.status == "SUCCEEDED"
    assert again.counts == {"rendered": 0, "current": IMAGES, "failed": 1, "skipped": 0}  # the poison tried again
    assert "s3.PutObject" not in again.requests
    assert again.requests == expected_requests(rendered=0, current=IMAGES, failed=1, sizes=2)  # the scale model's
    after = by_key(pipeline)
    assert {key: after[key] for key in after if "poison" not in key} == {
        key: items[key] for key in items if "poison" not in key
    }


def test_a_backfill_from_an_inventory_report_reaches_every_original(
    pipeline: LocalPipeline, first_run: dict[str, Any]
) -> None:
    pipeline.functions.update_environment("ThumbnailFunction", {"RENDITION_QUALITY": "60"})
    inventory = write_inventory(pipeline, pipeline.output("ArchiveBucketName"))

    report = run_backfill(pipeline, inventory)

    assert report.status == "SUCCEEDED", report.execution
    assert report.counts == {"rendered": IMAGES, "current": 0, "failed": 1, "skipped": 0}
    assert report.requests == expected_requests(rendered=IMAGES, current=0, failed=1, sizes=2)  # the scale model's
    assert report.thumbnail_invocations == -(-(IMAGES + 1) // 10)
    assert report.transitions == 4
    assert len({item["rendition_spec"] for item in pipeline.items() if item["status"] == "SUCCEEDED"}) == 1


def test_a_run_fails_when_batches_fail_beyond_the_tolerance_and_says_which(pipeline: LocalPipeline) -> None:
    pipeline.functions.update_environment("ThumbnailFunction", {"RENDITION_QUALITY": "50"})
    s3 = pipeline.functions.module("ThumbnailFunction").clients.s3
    with mock.patch("botocore.endpoint.time", BackoffRecorder()), inject(s3, "PutObject", THROTTLED["s3"]):  # S3 down
        report = run_backfill(pipeline)

    assert report.status == "FAILED"
    assert report.error == "States.ExceedToleratedFailureThreshold"
    assert report.failed_batches
    assert {batch["Error"] for batch in report.failed_batches} == {"TransientError"}
    stuck = {item["key"] for item in pipeline.items() if item["status"] == "PROCESSING"}
    failed_inputs = {image["Key"] for batch in report.failed_batches for image in batch["Input"]["Items"]}
    assert stuck <= failed_inputs  # every image left unrendered is in a failed batch, for the redrive


def test_max_concurrency_is_bounded_by_the_thumbnailers_reserved_concurrency() -> None:
    check_concurrency_bound({})  # the template's defaults
    with pytest.raises(ValueError, match="exceeds ThumbnailReservedConcurrency"):
        check_concurrency_bound({"BackfillMaxConcurrency": "50", "ThumbnailReservedConcurrency": "20"})
