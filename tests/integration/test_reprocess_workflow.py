"""A reprocess run (BackfillStateMachine's reprocess source) executed for real by moto's Step
Functions executor: the definition and DefinitionSubstitutions come from template.yaml through the
local runner, and its Lambda tasks run the real ThumbnailFunction and ReprocessStepsFunction handlers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from pipeline_cli.imagefactory import make_jpeg
from pipeline_cli.twin.session import LocalPipeline, local_pipeline

pytestmark = pytest.mark.slow

WORKFLOW = "BackfillStateMachine"


@pytest.fixture
def pipeline() -> Iterator[LocalPipeline]:
    # 1 s first retry: moto's executor really waits; MaxPixels low so big uploads FAIL at first.
    overrides = {"BackfillRetryIntervalSeconds": "1", "BackfillRetryMaxAttempts": "2", "MaxPixels": "1000000"}
    with local_pipeline(overrides) as deployed:
        yield deployed


def subscribe_to_summaries(pipeline: LocalPipeline) -> str:
    """An operator's queue on ImageEventsTopic for the run summaries; returns its URL."""
    sqs, sns = pipeline.sqs, pipeline.endpoint.client("sns")
    url = sqs.create_queue(QueueName="operator-summaries")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {"event_type": ["ReprocessCompleted", "ReprocessFailed"]}
    sns.subscribe(
        TopicArn=pipeline.output("ImageEventsTopicArn"),
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps(policy)},
    )
    url_of_queue: str = url
    return url_of_queue


def received(pipeline: LocalPipeline, url: str) -> list[dict[str, Any]]:
    messages = pipeline.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return [
        {"body": json.loads(m["Body"]), "event_type": m["MessageAttributes"]["event_type"]["StringValue"]}
        for m in messages.get("Messages", [])
    ]


def upload_failing(pipeline: LocalPipeline, count: int) -> list[str]:
    """Images over MaxPixels (1 MP here): FAILED too_many_pixels until the limit is raised."""
    keys = [f"uploads/big/{index}.jpg" for index in range(count)]
    for key in keys:
        pipeline.upload(key, make_jpeg(1600, 1200))
    pipeline.router.drain()
    assert {item["status"] for item in pipeline.items()} == {"FAILED"}
    return keys


def by_key(pipeline: LocalPipeline) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in pipeline.items()}


def test_a_run_fixes_failed_images_once_the_cause_is_removed(pipeline: LocalPipeline) -> None:
    keys = upload_failing(pipeline, 3)
    summary_queue = subscribe_to_summaries(pipeline)
    pipeline.functions.update_environment("ThumbnailFunction", {"MAX_PIXELS": "50000000"})  # the fix

    execution = pipeline.router.execute(WORKFLOW, {"reprocess": {"status": "FAILED"}})

    assert execution["status"] == "SUCCEEDED"
    items = by_key(pipeline)
    assert {items[key]["status"] for key in keys} == {"SUCCEEDED"}
    assert all(len(items[key]["renditions"]) == 3 for key in keys)
    [summary] = received(pipeline, summary_queue)
    assert summary["event_type"] == "ReprocessCompleted"
    assert summary["body"]["counts"] == {"rendered": 3, "current": 0, "failed": 0, "skipped": 0, "errors": 0}
    assert summary["body"]["request"] == {"status": "FAILED"}


def test_one_image_failing_for_good_is_recorded_and_the_others_succeed(pipeline: LocalPipeline) -> None:
    keys = upload_failing(pipeline, 3)
    summary_queue = subscribe_to_summaries(pipeline)
    pipeline.functions.update_environment("ThumbnailFunction", {"MAX_PIXELS": "50000000"})
    pipeline.s3.delete_object(Bucket=pipeline.output("IngestBucketName"), Key=keys[0])  # cannot be re-read

    execution = pipeline.router.execute(WORKFLOW, {"reprocess": {"status": "FAILED", "sizes": [256]}})

    assert execution["status"] == "SUCCEEDED"  # the batch goes on past the gone image
    items = by_key(pipeline)
    lost = items[keys[0]]
    # gone since it was listed: nothing to render, the item keeps its failure (the cleanup job
    # deletes it once it sees the original gone); the run's results say why it was skipped
    assert (lost["status"], lost["error"]["reason"]) == ("FAILED", "too_many_pixels")
    for key in keys[1:]:
        assert items[key]["status"] == "SUCCEEDED"
        assert [rendition["size"] for rendition in items[key]["renditions"]] == [256]
    [summary] = received(pipeline, summary_queue)
    assert summary["body"]["counts"] == {"rendered": 2, "current": 0, "failed": 0, "skipped": 1, "errors": 0}


@contextmanager
def expired_credentials(pipeline: LocalPipeline, *, first_attempt_only: bool) -> Iterator[list[str]]:
    """ThumbnailFunction's rendition uploads meet expired credentials (S3 answers 400 ExpiredToken,
    which botocore does not retry): the handler raises TransientError and the workflow's Retry runs
    the batch again. Yields the URLs rejected."""
    renditions_s3 = pipeline.functions.module("ThumbnailFunction").clients.s3
    rejected: list[str] = []
    invoked_before = len(pipeline.functions.invocations)

    def expired_token(request: Any, **_: Any) -> AWSResponse | None:
        later = pipeline.functions.invocations[invoked_before:]
        if first_attempt_only and any(call.function == "ThumbnailFunction" for call in later):
            return None  # the retry runs with fresh credentials
        rejected.append(request.url)
        body = b"<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>"
        return AWSResponse(request.url, 400, {}, _Raw(body))

    renditions_s3.meta.events.register("before-send.s3.PutObject", expired_token)
    try:
        yield rejected
    finally:
        renditions_s3.meta.events.unregister("before-send.s3.PutObject", expired_token)


def test_a_transient_error_is_retried_and_then_succeeds(pipeline: LocalPipeline) -> None:
    [key] = upload_failing(pipeline, 1)
    pipeline.functions.update_environment("ThumbnailFunction", {"MAX_PIXELS": "50000000"})

    with expired_credentials(pipeline, first_attempt_only=True) as rejected:
        execution = pipeline.router.execute(WORKFLOW, {"reprocess": {"prefix": "uploads/big/"}})

    assert execution["status"] == "SUCCEEDED"
    assert by_key(pipeline)[key]["status"] == "SUCCEEDED"
    attempts = [call for call in pipeline.functions.invocations if call.trigger == "stepfunctions"]
    rendering = [call for call in attempts if call.function == "ThumbnailFunction"]
    assert [call.error_type for call in rendering] == ["TransientError", None]
    assert rejected  # the first attempt really met the error


def test_a_batch_failing_past_its_retries_fails_its_images_on_their_items_with_the_reason(
    pipeline: LocalPipeline,
) -> None:
    keys = upload_failing(pipeline, 2)
    summary_queue = subscribe_to_summaries(pipeline)
    pipeline.functions.update_environment("ThumbnailFunction", {"MAX_PIXELS": "50000000"})

    with expired_credentials(pipeline, first_attempt_only=False):  # every attempt: retries cannot help
        execution = pipeline.router.execute(WORKFLOW, {"reprocess": {"status": "FAILED"}})

    assert execution["status"] == "SUCCEEDED"  # recorded on the items: the run goes on
    items = by_key(pipeline)
    assert [items[key]["status"] for key in keys] == ["FAILED", "FAILED"]
    assert [items[key]["error"] for key in keys] == [{"reason": "reprocess_failed", "detail": "TransientError"}] * 2
    rendering = [call for call in pipeline.functions.invocations if call.trigger == "stepfunctions"]
    assert [call.error_type for call in rendering if call.function == "ThumbnailFunction"] == ["TransientError"] * 3
    [summary] = received(pipeline, summary_queue)
    assert summary["body"]["counts"] == {"rendered": 0, "current": 0, "failed": 0, "skipped": 0, "errors": 2}
    assert summary["body"]["unrecorded"] == 0


def test_a_run_that_cannot_start_notifies_and_fails(pipeline: LocalPipeline) -> None:
    summary_queue = subscribe_to_summaries(pipeline)

    execution = pipeline.router.execute(WORKFLOW, {"reprocess": {"status": "LOST"}})

    assert execution["status"] == "FAILED"
    assert execution["error"] == "ReprocessFailed"
    [notice] = received(pipeline, summary_queue)
    assert notice["event_type"] == "ReprocessFailed"
    assert notice["body"]["failure"]["Error"] == "InvalidRequest"
    assert "status must be one of" in notice["body"]["failure"]["Cause"]


class _Raw:
    """The raw stream an AWSResponse reads its body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body
