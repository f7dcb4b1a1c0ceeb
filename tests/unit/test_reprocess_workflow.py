"""Reprocess runs (BackfillStateMachine's reprocess source) executed for real by moto's Step
Functions executor on the unit-test stack.

The state machine is the deployed one (template.yaml's ASL, its DefinitionSubstitutions resolved
by the twin's deployment); the Lambda tasks run the real ThumbnailFunction and
ReprocessStepsFunction handlers (pipeline_cli.twin.moto_compat), the Distributed Map runs as on AWS
(its moto compatibility layer). Here: selecting every page into one manifest rendered in batches, a batch's failure
recorded on its items, an item deleted meanwhile, a run that fails as a whole, where summaries
go; and the code steps (request, selection, tally) on their own. The same runs deployed from the
template by the local runner, with transient errors, are tests/integration/test_reprocess_workflow.py.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from image_pipeline.keys import ObjectRef, image_id_for
from image_pipeline.record import ImageRecord, ImageStatus, SourceVersion
from image_pipeline.replay import UnreplayableRecord, parse_destination_record, replay_through_workflow
from image_pipeline.repository import ImagesRepository
from image_pipeline.reprocess import REPROCESS_COUNTS, InvalidRequest, ReprocessRequest, select_images
from image_pipeline.run_results import read_results
from image_pipeline.thumbnailer import utc_now
from pipeline_cli.imagefactory import make_jpeg
from pipeline_cli.twin.moto_compat import Invocation, route_lambda_invocations, step_functions_like_aws
from pipeline_cli.twin.runtime import load_handler
from tests.consumers import FanoutStack
from tests.s3events import next_sequencer, s3_put_event
from tests.stack import TestStack

Handler = Callable[[dict[str, Any], Any], Any]
FUNCTIONS = ("ThumbnailFunction", "ReprocessStepsFunction")
FAR_FUTURE = "9999-12-31T00:00:00.000Z"


@dataclass
class Workflow:
    stack: TestStack
    arn: str
    handlers: dict[str, Handler]  # what each function (logical id) runs; a test may wrap one
    invocations: list[Invocation]
    runs: int = 0

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start a reprocess run with `request`; once it has finished, its description."""
        sfn = self.stack.clients.session.client("stepfunctions")
        self.runs += 1
        name = f"run-{self.runs}"  # SelectImages names the run's manifest after it
        arn = sfn.start_execution(stateMachineArn=self.arn, name=name, input=json.dumps({"reprocess": request}))[
            "executionArn"
        ]
        deadline = time.monotonic() + 120  # a guard against a hung executor, not a timing assertion
        while time.monotonic() < deadline:
            execution: dict[str, Any] = dict(sfn.describe_execution(executionArn=arn))
            # moto sets a finished execution's status a moment before its output
            if execution["status"] != "RUNNING" and (execution["status"] != "SUCCEEDED" or "output" in execution):
                return execution
            time.sleep(0.05)
        raise TimeoutError("the reprocess run did not finish")

    def calls(self, function: str) -> list[Invocation]:
        name = self.stack.deployed.functions[function].name
        return [call for call in self.invocations if call.function == name]


@pytest.fixture
def reprocess_workflow(stack: TestStack, thumbnail_app: ModuleType) -> Iterator[Callable[..., Workflow]]:
    """The stack's BackfillStateMachine for reprocess runs, its Lambda tasks routed to the real
    handlers while the test runs (ReprocessStepsFunction with the page size given)."""
    handlers: dict[str, Handler] = {}
    routes = {
        stack.deployed.functions[function].name: lambda event, context, function=function: handlers[function](
            event, context
        )
        for function in FUNCTIONS
    }
    with route_lambda_invocations(routes) as invocations, step_functions_like_aws():

        def workflow(*, page_size: int = 200) -> Workflow:
            steps_env = stack.env("ReprocessStepsFunction", REPROCESS_PAGE_SIZE=str(page_size))
            steps = load_handler("functions/reprocess", "app.lambda_handler", steps_env)
            sys.modules[steps.__module__].clients = stack.clients  # type: ignore[attr-defined]
            handlers.update(ThumbnailFunction=thumbnail_app.lambda_handler, ReprocessStepsFunction=steps)
            return Workflow(stack, stack.resource("BackfillStateMachine"), handlers, invocations)

        yield workflow


def seed_failed(stack: TestStack, keys: list[str]) -> None:
    """Good images that FAILED (as under a release with a bug since fixed): what a reprocess
    run exists for."""
    repository = ImagesRepository(stack.clients.dynamodb, stack.images_table)
    for key in keys:
        uploaded = stack.put_upload(key, make_jpeg(320, 240))
        ref = ObjectRef(stack.ingest_bucket, key, uploaded["etag"], next_sequencer(), uploaded["version_id"])
        repository.claim(ref, utc_now())
        repository.mark_failed(ref, utc_now(), "corrupt", "a decoder bug, fixed since")
    assert {status_of(stack, key) for key in keys} == {"FAILED"}


def status_of(stack: TestStack, key: str) -> str | None:
    item = stack.item(image_id_for(stack.ingest_bucket, key))
    return None if item is None else str(item["status"])


def summaries(stack: TestStack) -> list[dict[str, Any]]:
    return [event for event in stack.published_events() if event["_attributes"]["event_type"].startswith("Reprocess")]


def rendered_keys(workflow: Workflow) -> list[str]:
    return [image["key"] for call in workflow.calls("ThumbnailFunction") for image in call.event["images"]]


def test_a_run_selects_every_page_renders_each_image_once_in_batches_and_publishes_one_summary(
    stack: TestStack, reprocess_workflow: Callable[..., Workflow]
) -> None:
    keys = [f"uploads/batch/{index}.jpg" for index in range(5)]
    seed_failed(stack, keys)
    workflow = reprocess_workflow(page_size=2)  # 3 pages selected into one manifest

    execution = workflow.run({"status": "FAILED"})

    assert execution["status"] == "SUCCEEDED"
    assert {status_of(stack, key) for key in keys} == {"SUCCEEDED"}
    assert sorted(rendered_keys(workflow)) == sorted(keys)  # each image once: no page listed twice
    assert [len(call.event["images"]) for call in workflow.calls("ThumbnailFunction")] == [5]  # one batch
    assert [call.event["action"] for call in workflow.calls("ReprocessStepsFunction")] == ["select", "tally"]
    [summary] = summaries(stack)
    assert summary["_attributes"]["event_type"] == "ReprocessCompleted"
    assert summary["counts"] == {"rendered": 5, "current": 0, "failed": 0, "skipped": 0, "errors": 0}
    assert summary["unrecorded"] == 0
    assert summary["execution"] == execution["executionArn"]
    assert summary["request"] == {"status": "FAILED"}


def test_a_gone_original_is_skipped_and_keeps_its_failure_and_an_item_deleted_meanwhile_is_not_recreated(
    stack: TestStack, reprocess_workflow: Callable[..., Workflow]
) -> None:
    fixed, gone, deleted = "uploads/fixed.jpg", "uploads/gone.jpg", "uploads/deleted.jpg"
    seed_failed(stack, [fixed, gone, deleted])
    for key in (gone, deleted):
        stack.clients.s3.delete_object(Bucket=stack.ingest_bucket, Key=key)
    workflow = reprocess_workflow()
    render = workflow.handlers["ThumbnailFunction"]

    def cleanup_runs_meanwhile(event: dict[str, Any], context: Any) -> Any:
        # The cleanup job deletes `deleted`'s item (its original is gone) while it is rendered.
        stack.clients.dynamodb.delete_item(
            TableName=stack.images_table, Key={"image_id": {"S": image_id_for(stack.ingest_bucket, deleted)}}
        )
        return render(event, context)

    workflow.handlers["ThumbnailFunction"] = cleanup_runs_meanwhile

    execution = workflow.run({"status": "FAILED", "sizes": [256]})

    assert execution["status"] == "SUCCEEDED"  # the batch goes on past the gone images
    fixed_item = stack.item(image_id_for(stack.ingest_bucket, fixed))
    assert fixed_item is not None
    assert fixed_item["status"] == "SUCCEEDED"
    assert [rendition["size"] for rendition in fixed_item["renditions"]] == [256]
    gone_item = stack.item(image_id_for(stack.ingest_bucket, gone))
    assert gone_item is not None
    # Gone since it was listed: nothing to render; the item keeps its failure and reason (the
    # cleanup job deletes it once it sees the original gone). The batch's result says why.
    assert (gone_item["status"], gone_item["error"]["reason"]) == ("FAILED", "corrupt")
    [call] = workflow.calls("ThumbnailFunction")
    assert sorted((r["key"], r["outcome"], r["reason"]) for r in call.result["results"] if r["key"] != fixed) == [
        (deleted, "IGNORED", "source_missing"),
        (gone, "IGNORED", "source_missing"),
    ]
    assert stack.item(image_id_for(stack.ingest_bucket, deleted)) is None  # not re-created
    [summary] = summaries(stack)
    assert summary["counts"] == {"rendered": 1, "current": 0, "failed": 0, "skipped": 2, "errors": 0}


class FunctionTimedOut(Exception):
    """The render's Lambda task failing for good after it did its work (e.g. a timeout)."""


def test_a_failed_batch_never_fails_an_item_that_succeeded_or_moved_to_a_newer_version_meanwhile(
    stack: TestStack, reprocess_workflow: Callable[..., Workflow], invoke_thumbnail: Callable[[dict[str, Any]], Any]
) -> None:
    """RecordFailure is conditional on the version listed and on it not having succeeded."""
    healed, replaced, stuck = "uploads/healed.jpg", "uploads/replaced.jpg", "uploads/stuck.jpg"
    seed_failed(stack, [healed, replaced, stuck])
    workflow = reprocess_workflow()
    render = workflow.handlers["ThumbnailFunction"]
    newer: dict[str, Any] = {}

    def fails_after_the_fact(event: dict[str, Any], context: Any) -> Any:
        # healed: rendered by this very batch before the task failed for good (timed out)
        render({**event, "images": [image for image in event["images"] if image["key"] == healed]}, context)
        # replaced: a newer version was uploaded and processed meanwhile
        newer.update(s3_put_event(stack, replaced, make_jpeg(400, 300)))
        invoke_thumbnail(newer)
        raise FunctionTimedOut("Task timed out after 60.00 seconds")

    workflow.handlers["ThumbnailFunction"] = fails_after_the_fact

    execution = workflow.run({"status": "FAILED"})

    assert execution["status"] == "SUCCEEDED"
    healed_item = stack.item(image_id_for(stack.ingest_bucket, healed))
    assert healed_item is not None
    assert healed_item["status"] == "SUCCEEDED"
    assert "error" not in healed_item
    assert set(stack.rendition_keys()) >= {r["key"] for r in healed_item["renditions"]}
    replaced_item = stack.item(image_id_for(stack.ingest_bucket, replaced))
    assert replaced_item is not None
    assert (replaced_item["status"], replaced_item["width"]) == ("SUCCEEDED", 400)
    assert replaced_item["source_etag"] == newer["Records"][0]["s3"]["object"]["eTag"]
    stuck_item = stack.item(image_id_for(stack.ingest_bucket, stuck))
    assert stuck_item is not None  # still the version listed, never succeeded: the failure is recorded
    assert (stuck_item["status"], stuck_item["error"]) == (
        "FAILED",
        {"reason": "reprocess_failed", "detail": "FunctionTimedOut"},
    )
    [summary] = summaries(stack)
    assert summary["counts"] == {"rendered": 0, "current": 0, "failed": 0, "skipped": 2, "errors": 1}


def event_types(stack: TestStack, url: str) -> list[str]:
    response = stack.clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    return [json.loads(message["Body"])["event_type"] for message in response.get("Messages", [])]


def test_summaries_reach_operators_not_the_consumers(
    stack: TestStack, reprocess_workflow: Callable[..., Workflow]
) -> None:
    seed_failed(stack, ["uploads/one.jpg"])
    consumer_queues = {function: queues.url for function, queues in FanoutStack.of(stack).consumers.items()}
    workflow = reprocess_workflow()

    completed = workflow.run({"status": "FAILED"})
    failed = workflow.run({"status": "LOST"})  # the whole run fails: its Catch notifies

    assert completed["status"] == "SUCCEEDED"
    assert (failed["status"], failed["error"]) == ("FAILED", "ReprocessFailed")
    assert [event["_attributes"]["event_type"] for event in summaries(stack)] == [
        "ReprocessCompleted",
        "ReprocessFailed",
    ]
    for function, queue in consumer_queues.items():  # the image's own event only
        assert event_types(stack, queue) == ["ImageProcessed"], function


# -- the code steps on their own --------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({"status": "FAILED"}, ReprocessRequest(ImageStatus.FAILED, None, None)),
        ({"prefix": "uploads/2026/"}, ReprocessRequest(None, "uploads/2026/", None)),
        ({"prefix": "uploads/", "sizes": [256, 1024]}, ReprocessRequest(None, "uploads/", (1024, 256))),
    ],
)
def test_a_request_names_a_status_or_a_prefix_and_maybe_sizes(
    request_: dict[str, Any], expected: ReprocessRequest
) -> None:
    assert ReprocessRequest.parse(request_) == expected


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        ({}, "exactly one of"),
        ({"status": "FAILED", "prefix": "uploads/"}, "exactly one of"),
        ({"status": "LOST"}, "status must be one of"),
        ({"prefix": ""}, "prefix must be a non-empty string"),
        ({"prefix": 7}, "prefix must be a non-empty string"),
        ({"status": "FAILED", "sizes": [0]}, "sizes"),
        ({"status": "FAILED", "sizes": ["big"]}, "sizes"),
        ({"status": "FAILED", "sizes": 512}, "sizes"),
        ({"status": "FAILED", "sizes": []}, "sizes"),
        ({"status": "FAILED", "size": [512]}, "unknown fields"),
    ],
)
def test_a_request_that_cannot_be_served_says_why(request_: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidRequest, match=says):
        ReprocessRequest.parse(request_)


BATCH_COUNT = st.integers(0, 50)


@given(
    batches=st.lists(st.fixed_dictionaries(dict.fromkeys(("rendered", "current", "failed", "skipped"), BATCH_COUNT))),
    recorded=st.lists(st.lists(st.sampled_from(["ERROR", "SKIPPED"]), min_size=1, max_size=10), max_size=5),
    failed_batches=st.lists(st.integers(1, 10), max_size=3),
)
def test_tally_counts_every_image_of_the_results_once_in_its_bucket(
    batches: list[dict[str, int]], recorded: list[list[str]], failed_batches: list[int]
) -> None:
    """The results ResultWriter wrote: rendered batches, batches failed on their items, failed batches."""
    succeeded = [{"Output": json.dumps({"counts": counts})} for counts in batches] + [
        {"Output": json.dumps({"recorded": [{"outcome": outcome} for outcome in outcomes]})} for outcomes in recorded
    ]
    failed = [
        {"Input": json.dumps({"Items": [{"key": str(n)} for n in range(size)]}), "Error": "E", "Cause": "c"}
        for size in failed_batches
    ]
    files = {
        "run/manifest.json": {"ResultFiles": {"SUCCEEDED": [{"Key": "run/S.json"}], "FAILED": [{"Key": "run/F.json"}]}},
        "run/S.json": succeeded,
        "run/F.json": failed,
    }

    results = read_results(
        lambda bucket, key: json.dumps(files[key]).encode(),
        {"Bucket": "b", "Key": "run/manifest.json"},
        REPROCESS_COUNTS,
    )

    images = sum(sum(counts.values()) for counts in batches) + sum(len(outcomes) for outcomes in recorded)
    assert sum(results.counts.values()) == images
    assert results.counts["rendered"] == sum(counts["rendered"] for counts in batches)
    assert results.counts["errors"] == sum(
        outcomes.count("ERROR") for outcomes in recorded
    )  # RecordFailure recorded why
    assert results.images_in_failed_batches == sum(failed_batches)
    assert [batch["Error"] for batch in results.failed_batches] == ["E"] * len(failed_batches)


def put_item(stack: TestStack, key: str, status: str, updated_at: str) -> None:
    record = ImageRecord(
        image_id=image_id_for(stack.ingest_bucket, key),
        bucket=stack.ingest_bucket,
        key=key,
        status=ImageStatus(status),
        source=SourceVersion(etag="etag", sequencer="0A"),
        created_at=updated_at,
        updated_at=updated_at,
        attempts=1,
    )
    stack.clients.dynamodb.put_item(TableName=stack.images_table, Item=record.to_item())


def selected(stack: TestStack, request: ReprocessRequest, listed_before: str, page_size: int) -> list[str]:
    repository = ImagesRepository(stack.clients.dynamodb, stack.images_table)
    images = select_images(repository, request, listed_before=listed_before, page_size=page_size)
    return [image["key"] for image in images]


def test_selecting_by_prefix_reads_past_scan_pages_with_no_match_and_selects_each_image_once(
    stack: TestStack,
) -> None:
    for index in range(60):
        put_item(stack, f"uploads/other/{index}.jpg", "SUCCEEDED", "2026-01-01T00:00:00.000Z")
    wanted = [f"uploads/2026/{index}.jpg" for index in range(3)]
    for key in wanted:
        put_item(stack, key, "SUCCEEDED", "2026-01-01T00:00:00.000Z")

    keys = selected(stack, ReprocessRequest(None, "uploads/2026/", (256,)), FAR_FUTURE, page_size=2)

    assert sorted(keys) == wanted  # every one, none twice


def test_selecting_by_status_leaves_out_what_changed_after_the_run_started(stack: TestStack) -> None:
    put_item(stack, "uploads/old.jpg", "FAILED", "2026-01-01T00:00:00.000Z")
    put_item(stack, "uploads/failed-again.jpg", "FAILED", "2026-01-03T00:00:00.000Z")  # by this run itself
    put_item(stack, "uploads/fine.jpg", "SUCCEEDED", "2026-01-01T00:00:00.000Z")

    keys = selected(stack, ReprocessRequest(ImageStatus.FAILED, None, None), "2026-01-02T00:00:00.000Z", 10)

    assert keys == ["uploads/old.jpg"]


# -- replaying what the thumbnailer gave up on ----------------------------------------------


def destination_record(event: dict[str, Any], function: str = "ThumbnailFunction") -> str:
    """Lambda's OnFailure destination record of an asynchronous invocation (as the local runner sends)."""
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": "2026-11-27T22:00:00.000Z",
            "requestContext": {
                "requestId": "e4b4b4f2-0000-0000-0000-000000000000",
                "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{function}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": "TransientError", "errorMessage": "claiming the image item failed"},
        }
    )


def queued(stack: TestStack, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = stack.clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]  # type: ignore[arg-type]
    return sum(int(attributes[name]) for name in names)


def test_the_workflow_replays_lost_uploads_and_keeps_the_records_it_could_not_settle(
    stack: TestStack, reprocess_workflow: Callable[..., Workflow]
) -> None:
    """Uploads with no item (their events failed before the claim) are rendered from their
    destination records by one execution; a run that cannot settle every object keeps them all."""
    sqs = stack.clients.sqs
    failures = sqs.create_queue(QueueName="ThumbnailFailuresQueue")["QueueUrl"]
    lost = [s3_put_event(stack, f"uploads/lost/{index}.jpg", make_jpeg(320, 240)) for index in range(2)]
    for event in lost:
        sqs.send_message(QueueUrl=failures, MessageBody=destination_record(event))
    sqs.send_message(QueueUrl=failures, MessageBody="not a destination record")
    workflow = reprocess_workflow()
    sfn = stack.clients.session.client("stepfunctions")

    report = replay_through_workflow(sqs, sfn, failures, workflow.arn, poll_seconds=0.05)

    assert (report.received, report.replayed, report.unreadable, report.not_accepted) == (3, 2, 1, 0)
    for event in lost:
        key = event["Records"][0]["s3"]["object"]["key"]
        item = stack.item(image_id_for(stack.ingest_bucket, key))
        assert item is not None
        assert (item["status"], len(item["renditions"])) == ("SUCCEEDED", 3)
        assert f"s3://{stack.ingest_bucket}/{key}" in report.objects
    [summary] = summaries(stack)
    assert summary["request"] == {
        "objects": [{"bucket": stack.ingest_bucket, "key": f"uploads/lost/{i}.jpg"} for i in range(2)]
    }
    assert queued(stack, failures) == 1  # the unreadable record stays (hidden for a while), the rest are gone

    gone = s3_put_event(stack, "uploads/lost/deleted-since.jpg", make_jpeg(64, 48))
    stack.clients.s3.delete_object(Bucket=stack.ingest_bucket, Key="uploads/lost/deleted-since.jpg")
    kept = sqs.create_queue(QueueName="ThumbnailFailuresQueue2")["QueueUrl"]
    sqs.send_message(QueueUrl=kept, MessageBody=destination_record(gone))

    unsettled = replay_through_workflow(sqs, sfn, kept, workflow.arn, poll_seconds=0.05)

    assert (unsettled.replayed, unsettled.not_accepted) == (0, 1)  # its render failed, nothing recorded it
    assert queued(stack, kept) == 1  # still there for the next replay


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{}", "not a Lambda destination record"),
        (json.dumps({"requestContext": {"functionArn": "arn"}, "requestPayload": {"foo": 1}}), "names no object"),
        (json.dumps({"requestContext": {"functionArn": "arn"}, "requestPayload": []}), "not an event object"),
    ],
)
def test_a_message_that_is_not_a_replayable_record_says_why(body: str, says: str) -> None:
    with pytest.raises(UnreplayableRecord, match=says):
        parse_destination_record(body)


def test_a_record_names_its_function_unqualified_and_the_objects_of_its_event(stack: TestStack) -> None:
    event = s3_put_event(stack, "uploads/with space.jpg", make_jpeg(32, 32))
    failed = parse_destination_record(destination_record(event))
    assert failed.function_arn == "arn:aws:lambda:us-east-1:123456789012:function:ThumbnailFunction"
    assert failed.objects == ((stack.ingest_bucket, "uploads/with space.jpg"),)
    assert (failed.condition, failed.error_type, failed.payload) == ("RetriesExhausted", "TransientError", event)
