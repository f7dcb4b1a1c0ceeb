"""Replaying the events ThumbnailFunction gave up on: its OnFailure destination records.

An upload event whose every asynchronous attempt failed (DynamoDB unavailable before the claim,
the thumbnailer throttled past MaximumEventAgeInSeconds) leaves no item for the reprocess
workflow to find: Lambda's destination record in ThumbnailFailuresQueue is all there is. It
holds the original event (requestPayload), so a replay sends that event again:

- to the function, asynchronously (`replay_failures`): the replay gets Lambda's retries and,
  failing again, a new destination record, so nothing is lost either way; or
- to a reprocess run of BackfillStateMachine, as the input {"reprocess": {"objects": [{"bucket",
  "key"}, ...]}} (`objects_input`), which re-renders each object's current version.

A record is deleted only once its replay was accepted; one that cannot be read stays in the
queue (and is reported). Replaying twice is harmless: the thumbnailer's claim makes a repeated
event a duplicate and a reprocess of a done image re-renders it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from image_pipeline.queues import receive_until_drained
from image_pipeline.reprocess import MAX_OBJECTS

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_stepfunctions import SFNClient

RECEIVE_VISIBILITY_SECONDS = 300  # a crashed replay's records reappear after this


class UnreplayableRecord(ValueError):
    """The message is not a Lambda destination record of an event this pipeline can replay."""


@dataclass(frozen=True)
class FailedEvent:
    """One destination record: which function gave up on which event, and why."""

    function_arn: str  # unqualified
    condition: str  # RetriesExhausted, EventAgeExceeded, ...
    error_type: str
    payload: dict[str, Any]  # the original event, as the function received it
    objects: tuple[tuple[str, str], ...]  # (bucket, key) of each object it names


def parse_destination_record(body: str) -> FailedEvent:
    try:
        record = json.loads(body)
        context = record["requestContext"]
        payload = record["requestPayload"]
        function_arn = str(context["functionArn"])
    except (ValueError, KeyError, TypeError) as error:
        raise UnreplayableRecord(f"not a Lambda destination record ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict):
        raise UnreplayableRecord("the record's requestPayload is not an event object")
    if "Records" in payload:
        try:
            objects = tuple(
                (str(r["s3"]["bucket"]["name"]), unquote_plus(str(r["s3"]["object"]["key"])))
                for r in payload["Records"]
            )
        except (KeyError, TypeError) as error:
            raise UnreplayableRecord(f"requestPayload is not an S3 event ({error})") from None
    elif isinstance(payload.get("bucket"), str) and isinstance(payload.get("key"), str):
        objects = ((payload["bucket"], payload["key"]),)  # a direct (reprocess) request
    else:
        raise UnreplayableRecord("requestPayload names no object (neither an S3 event nor a direct request)")
    if function_arn.count(":") == 7:  # arn:aws:lambda:region:account:function:name:qualifier
        function_arn = function_arn.rsplit(":", 1)[0]
    response = record.get("responsePayload")
    error_type = str(response.get("errorType", "")) if isinstance(response, dict) else ""
    return FailedEvent(function_arn, str(context.get("condition", "")), error_type, payload, objects)


@dataclass
class ReplayReport:
    received: int = 0
    replayed: int = 0  # records whose event was accepted again (and deleted from the queue)
    objects: list[str] = field(default_factory=list)  # s3://bucket/key of each replayed object
    unreadable: int = 0  # not destination records: left in the queue
    not_accepted: int = 0  # the function (or workflow) refused the replay: left in the queue
    first_problem: str | None = None
    execution: str | None = None  # the reprocess execution that re-rendered them (workflow mode)

    @property
    def ok(self) -> bool:
        return self.unreadable == 0 and self.not_accepted == 0

    def problem(self, text: str) -> None:
        self.first_problem = self.first_problem or text


@dataclass(frozen=True)
class Received:
    receipt_handle: str
    event: FailedEvent


def receive_failures(
    sqs: SQSClient, queue_url: str, report: ReplayReport, *, max_records: int | None = None
) -> list[Received]:
    """Receive destination records (hidden for RECEIVE_VISIBILITY_SECONDS), parsed; the unreadable
    ones are counted and left to reappear."""
    received: list[Received] = []
    batches = receive_until_drained(
        sqs,
        queue_url,
        limit=max_records,
        handled=lambda: report.received,
        VisibilityTimeout=RECEIVE_VISIBILITY_SECONDS,
    )
    for messages in batches:
        for message in messages:
            report.received += 1
            try:
                received.append(Received(message["ReceiptHandle"], parse_destination_record(message["Body"])))
            except UnreplayableRecord as error:
                report.unreadable += 1
                report.problem(f"message {message['MessageId']}: {error}")
    return received


def replay_failures(
    sqs: SQSClient,
    functions: LambdaClient,
    queue_url: str,
    *,
    function: str | None = None,
    max_records: int | None = None,
) -> ReplayReport:
    """Invoke the function (the record's own, or `function`) asynchronously with each record's
    original event; delete each record once Lambda accepted its replay."""
    report = ReplayReport()
    for record in receive_failures(sqs, queue_url, report, max_records=max_records):
        try:
            functions.invoke(
                FunctionName=function or record.event.function_arn,
                InvocationType="Event",
                Payload=json.dumps(record.event.payload).encode(),
            )
        except (ClientError, BotoCoreError) as error:
            report.not_accepted += 1
            report.problem(f"{record.event.function_arn}: {error}")
            continue
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record.receipt_handle)
        report.replayed += 1
        report.objects += [f"s3://{bucket}/{key}" for bucket, key in record.event.objects]
    return report


def objects_input(records: list[Received]) -> dict[str, Any]:
    """The reprocess run's input that re-renders every object the records name (once each)."""
    unique = dict.fromkeys(obj for record in records for obj in record.event.objects)
    return {"reprocess": {"objects": [{"bucket": bucket, "key": key} for bucket, key in unique]}}


def replay_through_workflow(
    sqs: SQSClient,
    stepfunctions: SFNClient,
    queue_url: str,
    state_machine_arn: str,
    *,
    max_records: int = MAX_OBJECTS,
    poll_seconds: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayReport:
    """Re-render the objects of up to `max_records` records with one reprocess execution; the
    records are deleted only when every object was rendered (or its failure recorded)."""
    report = ReplayReport()
    records = receive_failures(sqs, queue_url, report, max_records=min(max_records, MAX_OBJECTS))
    if not records:
        return report
    started = stepfunctions.start_execution(  # named: its history says what it was for
        stateMachineArn=state_machine_arn, name=f"replay-{uuid.uuid4().hex}", input=json.dumps(objects_input(records))
    )
    report.execution = started["executionArn"]
    while (execution := stepfunctions.describe_execution(executionArn=started["executionArn"]))["status"] == "RUNNING":
        sleep(poll_seconds)
    output = json.loads(execution.get("output") or "{}")
    summary: dict[str, Any] = output if isinstance(output, dict) else {}  # ReprocessCompleted's body
    counts = summary.get("counts", {})
    unsettled = counts.get("errors") or counts.get("skipped") or summary.get("unrecorded")
    if execution["status"] != "SUCCEEDED" or unsettled:
        report.not_accepted += len(records)  # they reappear once their visibility timeout passes
        report.problem(f"execution {execution['status']}, counts {counts}: records kept for another replay")
        return report
    for record in records:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=record.receipt_handle)
        report.replayed += 1
        report.objects += [f"s3://{bucket}/{key}" for bucket, key in record.event.objects]
    return report
