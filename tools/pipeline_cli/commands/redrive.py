"""`pipeline redrive`: move messages from a dead-letter queue back to its source queue.

    pipeline redrive --dlq URL|ARN|NAME [--to URL|ARN|NAME] [--dry-run] [--max N]
                     [--method auto|move-task|loop] [--no-wait]

Without --to, the source is the one queue the DLQ's RedriveAllowPolicy names, else the one
queue whose RedrivePolicy targets the DLQ (SQS ListDeadLetterSourceQueues); several: pass --to.

Two ways to move, same outcome:
- SQS StartMessageMoveTask (AWS): SQS moves the messages itself; we wait and print its counts.
- receive/send/delete (where that API is missing, e.g. moto, or with --max, which the API
  cannot express): each message is SENT to the source BEFORE it is deleted from the DLQ, with
  its body and message attributes unchanged. Interrupted at any point, no message is lost;
  one interrupted between send and delete ends up in both queues (at-least-once), and the
  consumers' idempotency (keyed on the event_id in the body) makes the second copy a no-op.
  Messages are received with a visibility timeout, so a crashed run's messages reappear in
  the DLQ when it expires; sends the source rejected stay in the DLQ and are reported.

`redrive()` is the function the local runner and tests call with their own SQS client.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import ClientError

from image_pipeline.queues import receive_until_drained

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

Method = Literal["auto", "move-task", "loop"]
METHODS: tuple[Method, ...] = ("auto", "move-task", "loop")
MOVE_TASK = "StartMessageMoveTask"
LOOP = "receive/send/delete"
RECEIVE_VISIBILITY_SECONDS = 60  # long enough to send and delete one batch; a crashed run's batch reappears
# Error codes meaning "this endpoint has no StartMessageMoveTask" rather than "the call failed".
_UNSUPPORTED_CODES = {"NotImplemented", "InvalidAction", "UnknownOperationException", "UnsupportedOperation"}


class RedriveError(Exception):
    """The redrive cannot start (unknown queue, ambiguous source, task failed)."""


@dataclass
class RedriveReport:
    dead_letter_queue_url: str
    source_queue_url: str
    visible_before: int
    method: str
    moved: int = 0
    loop: MoveCounts | None = None  # what the receive/send/delete loop saw
    dry_run: bool = False
    task_handle: str | None = None
    task_running: bool = False  # started with wait=False: `moved` is not known yet

    @property
    def ok(self) -> bool:
        return self.loop is None or (self.loop.not_moved == 0 and self.loop.not_deleted == 0)


def queue_url(sqs: SQSClient, reference: str) -> str:
    """A queue URL from a URL, an ARN or a name."""
    if reference.startswith(("https://", "http://")):
        return reference
    try:
        if reference.startswith("arn:"):
            parts = reference.split(":")
            if len(parts) != 6 or parts[2] != "sqs":
                raise RedriveError(f"{reference!r} is not an SQS queue ARN")
            return sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
        return sqs.get_queue_url(QueueName=reference)["QueueUrl"]
    except ClientError as error:
        raise RedriveError(f"queue {reference!r} not found: {error}") from None


def _attributes(sqs: SQSClient, url: str, *names: str) -> dict[str, str]:
    response = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))  # type: ignore[arg-type]
    return {str(name): value for name, value in response.get("Attributes", {}).items()}


def queue_arn(sqs: SQSClient, url: str) -> str:
    return _attributes(sqs, url, "QueueArn")["QueueArn"]


def visible_messages(sqs: SQSClient, url: str) -> int:
    return int(_attributes(sqs, url, "ApproximateNumberOfMessages")["ApproximateNumberOfMessages"])


def find_source_queue(sqs: SQSClient, dead_letter_queue_url: str) -> str:
    """The one queue that dead-letters into this DLQ (RedriveAllowPolicy, then RedrivePolicy)."""
    # "All", not "RedriveAllowPolicy": moto rejects that name while AWS returns it with All.
    allow = _attributes(sqs, dead_letter_queue_url, "All").get("RedriveAllowPolicy")
    if allow:
        policy = json.loads(allow)
        sources = policy.get("sourceQueueArns", [])
        if policy.get("redrivePermission") == "byQueue" and len(sources) == 1:
            return queue_url(sqs, sources[0])
    urls: list[str] = []
    for page in sqs.get_paginator("list_dead_letter_source_queues").paginate(QueueUrl=dead_letter_queue_url):
        urls.extend(page.get("queueUrls", []))
    if len(urls) == 1:
        return urls[0]
    if not urls:
        raise RedriveError(f"no queue uses {dead_letter_queue_url} as its dead-letter queue; pass --to")
    raise RedriveError(f"several queues dead-letter into {dead_letter_queue_url}: {', '.join(urls)}; pass --to")


def _sendable_attributes(message: MessageTypeDef) -> dict[str, MessageAttributeValueTypeDef]:
    """Received attributes carry empty list fields SendMessage rejects; keep type and value."""
    attributes: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        kept: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
        if "StringValue" in value:
            kept["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            kept["BinaryValue"] = value["BinaryValue"]
        attributes[name] = kept
    return attributes


@dataclass
class MoveCounts:
    moved: int = 0
    not_moved: int = 0  # the destination rejected the send: still in the DLQ
    not_deleted: int = 0  # sent, but the DLQ delete failed: it will be moved again (a duplicate)
    first_rejection: str | None = None


def _send_entries(sqs: SQSClient, destination_url: str, entries: list[Any], counts: MoveCounts) -> list[str]:
    """Send a batch; if SQS refuses the batch as a whole (one bad entry, too long in total), send one by one."""
    try:
        sent = sqs.send_message_batch(QueueUrl=destination_url, Entries=entries)
    except ClientError:
        accepted = []
        for entry in entries:
            single = {name: value for name, value in entry.items() if name != "Id"}
            try:
                sqs.send_message(QueueUrl=destination_url, **single)
            except ClientError as error:
                counts.not_moved += 1
                counts.first_rejection = counts.first_rejection or str(error)
            else:
                accepted.append(entry["Id"])
        return accepted
    for failure in sent.get("Failed", []):
        counts.not_moved += 1
        counts.first_rejection = counts.first_rejection or f"{failure['Code']}: {failure.get('Message', '')}"
    return [item["Id"] for item in sent.get("Successful", [])]


def _entry(entry_id: str, message: MessageTypeDef, *, fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Id": entry_id,
        "MessageBody": message["Body"],
        "MessageAttributes": _sendable_attributes(message),
    }
    if fifo:
        system = message.get("Attributes", {})
        entry["MessageGroupId"] = system.get("MessageGroupId", "redrive")
        entry["MessageDeduplicationId"] = system.get("MessageDeduplicationId", message["MessageId"])
    return entry


def move_messages(
    sqs: SQSClient,
    dead_letter_queue_url: str,
    destination_url: str,
    *,
    max_messages: int | None = None,
    visibility_timeout: int = RECEIVE_VISIBILITY_SECONDS,
) -> MoveCounts:
    """Receive from the DLQ, send to the destination, then delete what the destination accepted."""
    fifo = destination_url.endswith(".fifo")
    counts = MoveCounts()
    batches = receive_until_drained(
        sqs,
        dead_letter_queue_url,
        limit=max_messages,
        handled=lambda: counts.moved + counts.not_moved,
        drained=lambda: visible_messages(sqs, dead_letter_queue_url) == 0,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        VisibilityTimeout=visibility_timeout,
    )
    for messages in batches:
        by_id = {str(index): message for index, message in enumerate(messages)}
        accepted = _send_entries(
            sqs, destination_url, [_entry(entry_id, m, fifo=fifo) for entry_id, m in by_id.items()], counts
        )
        if not accepted:
            continue
        # Delete only what the destination accepted; a crash before this line duplicates, never loses.
        deleted = sqs.delete_message_batch(
            QueueUrl=dead_letter_queue_url,
            Entries=[{"Id": entry_id, "ReceiptHandle": by_id[entry_id]["ReceiptHandle"]} for entry_id in accepted],
        )
        counts.moved += len(accepted)
        counts.not_deleted += len(deleted.get("Failed", []))
    return counts


def _move_task_unavailable(error: Exception) -> bool:
    if isinstance(error, NotImplementedError):  # moto, in-process
        return True
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        # A bare HTTP status as the code means the endpoint did not answer in the AWS error
        # protocol at all (moto server's 500 page for an unimplemented action).
        return code in _UNSUPPORTED_CODES or code.isdigit()
    return False


def _run_move_task(
    sqs: SQSClient,
    starter: SQSClient,
    report: RedriveReport,
    *,
    wait: bool,
    poll_seconds: float,
    sleep: Callable[[float], None],
) -> None:
    dead_letter_arn = queue_arn(sqs, report.dead_letter_queue_url)
    started = starter.start_message_move_task(
        SourceArn=dead_letter_arn, DestinationArn=queue_arn(sqs, report.source_queue_url)
    )
    report.method = MOVE_TASK
    report.task_handle = started["TaskHandle"]
    report.task_running = not wait
    while wait:
        tasks = sqs.list_message_move_tasks(SourceArn=dead_letter_arn, MaxResults=1).get("Results", [])
        task = tasks[0] if tasks else {}
        if task.get("Status") != "RUNNING":
            report.moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
            if task.get("Status") != "COMPLETED":
                raise RedriveError(f"move task {report.task_handle} {task.get('Status')}: {task.get('FailureReason')}")
            return
        sleep(poll_seconds)


def redrive(
    sqs: SQSClient,
    dead_letter_queue: str,
    to: str | None = None,
    *,
    dry_run: bool = False,
    max_messages: int | None = None,
    method: Method = "auto",
    wait: bool = True,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    move_task_sqs: SQSClient | None = None,
) -> RedriveReport:
    """Move messages from a DLQ (URL, ARN or name) back to its source queue, or `to`.

    `move_task_sqs` starts the move task (default: `sqs`); give it a client without retries
    so an endpoint that lacks the API (moto server answers 500) is detected at once, not
    after the retry policy's backoff.
    """
    dead_letter_url = queue_url(sqs, dead_letter_queue)
    source_url = queue_url(sqs, to) if to else find_source_queue(sqs, dead_letter_url)
    report = RedriveReport(dead_letter_url, source_url, visible_messages(sqs, dead_letter_url), method=method)
    if dry_run:  # receiving would change receive counts and visibility: only count
        report.dry_run = True
        return report
    if method == "move-task" or (method == "auto" and max_messages is None):
        try:
            _run_move_task(sqs, move_task_sqs or sqs, report, wait=wait, poll_seconds=poll_seconds, sleep=sleep)
        except (NotImplementedError, ClientError) as error:
            if method == "move-task" or not _move_task_unavailable(error):
                raise
        else:
            return report
    report.method = LOOP
    report.loop = move_messages(sqs, dead_letter_url, source_url, max_messages=max_messages)
    report.moved = report.loop.moved
    return report


def describe(report: RedriveReport) -> str:
    lines = [
        f"dead-letter queue: {report.dead_letter_queue_url} ({report.visible_before} messages visible)",
        f"source queue:      {report.source_queue_url}",
    ]
    if report.dry_run:
        lines.append(f"dry run: would move about {report.visible_before} messages; nothing was changed")
        return "\n".join(lines)
    if report.task_running:
        lines.append(f"started move task {report.task_handle}; follow it with `aws sqs list-message-move-tasks`")
        return "\n".join(lines)
    lines.append(f"moved {report.moved} messages with {report.method}")
    if report.task_handle:
        lines.append(f"move task: {report.task_handle}")
    if report.loop and report.loop.not_moved:
        lines.append(
            f"{report.loop.not_moved} messages were rejected by the destination and stay in the DLQ"
            f" (first: {report.loop.first_rejection})"
        )
    if report.loop and report.loop.not_deleted:
        lines.append(f"{report.loop.not_deleted} messages were sent but not deleted from the DLQ: they will move again")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pipeline redrive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dlq", required=True, help="dead-letter queue URL, ARN or name")
    parser.add_argument("--to", help="destination queue (default: the DLQ's source queue)")
    parser.add_argument("--dry-run", action="store_true", help="show what would move; change nothing")
    parser.add_argument("--max", type=int, dest="max_messages", help="move at most N messages (uses the loop)")
    parser.add_argument("--method", choices=METHODS, default="auto", help="default: move task, else the loop")
    parser.add_argument("--no-wait", action="store_true", help="start the move task and return")
    args = parser.parse_args(list(argv))
    if args.max_messages is not None and args.max_messages < 1:
        parser.error("--max must be at least 1")
    if args.max_messages is not None and args.method == "move-task":
        parser.error("--max needs the receive/send/delete loop: StartMessageMoveTask cannot stop after N")
    return args


def main(argv: Sequence[str]) -> int:
    from botocore.config import Config

    from image_pipeline.clients import BOTO_CONFIG, AwsClients

    args = parse_args(argv)
    single_attempt = AwsClients(config=BOTO_CONFIG.merge(Config(retries={"mode": "standard", "total_max_attempts": 1})))
    try:
        report = redrive(
            AwsClients().sqs,
            args.dlq,
            args.to,
            dry_run=args.dry_run,
            max_messages=args.max_messages,
            method=args.method,
            wait=not args.no_wait,
            move_task_sqs=single_attempt.sqs,
        )
    except RedriveError as error:
        print(f"pipeline redrive: {error}", file=sys.stderr)
        return 1
    print(describe(report))
    return 0 if report.ok else 1
