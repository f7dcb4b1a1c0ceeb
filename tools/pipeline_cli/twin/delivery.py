"""The event router: delivers what AWS would deliver, to the real handlers, in this process.

- S3 notifications: moto builds the event from the bucket's notification configuration (wired
  from the template); the router receives it instead of moto's Docker-only Lambda call and
  invokes asynchronously, as S3 does: retries up to the function's MaximumRetryAttempts, then
  the OnFailure destination gets Lambda's destination record.
- SQS event source mappings: a poller per mapping with its batch size, the queue's visibility
  timeout, receive counts and partial batch responses; moto moves a message to the DLQ once
  its receive count passes maxReceiveCount.
- Schedules: fired on demand, with the schedule's input, retry policy and DLQ.
- Step Functions: moto's executor runs the definition; its Lambda tasks come here.

Time is fast-forwarded: a failed message is made visible again at once instead of after its
visibility timeout, retries do not wait, batching windows are not waited for.
"""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline_cli.twin.deploy import DeployedStack, QueueEventSource, Schedule
from pipeline_cli.twin.events import lambda_sqs_event
from pipeline_cli.twin.runtime import Invocation, LocalFunctions

SQS_RECEIVE_LIMIT = 10  # messages per ReceiveMessage call


@dataclass
class Poll:
    """One batch an event source mapping delivered."""

    received: list[str]  # message ids in the batch
    failed: list[str]  # ids that stay on the queue: reported in batchItemFailures, or all of them
    invocation: Invocation | None = field(default=None, repr=False)

    @property
    def error(self) -> Exception | None:
        """What the function raised (the whole batch failed), if it did."""
        return self.invocation.exception if self.invocation is not None else None


def failed_message_ids(
    messages: list[dict[str, Any]], invocation: Invocation, report_batch_item_failures: bool
) -> list[str]:
    """The messages Lambda leaves on the queue after an invocation, in batch order.

    An error fails the whole batch. With ReportBatchItemFailures, the batchItemFailures' ids fail,
    and an empty, missing or unknown itemIdentifier fails the whole batch, as Lambda treats it;
    without it, a returned response acknowledges every message.
    """
    every_id = [message["MessageId"] for message in messages]
    if invocation.failed:
        return every_id
    if not report_batch_item_failures or not isinstance(invocation.result, dict):
        return []
    failures = invocation.result.get("batchItemFailures") or []
    reported = {str(failure.get("itemIdentifier") or "") for failure in failures}
    if not reported <= set(every_id):
        return every_id
    return [message_id for message_id in every_id if message_id in reported]


class SqsPoller:
    """Lambda's SQS event source mapping for one queue: receive up to BatchSize messages, invoke,
    delete what succeeded. A failed message is made visible again at once (its visibility timeout
    fast-forwarded); SQS (moto) counts its receives and dead-letters it past maxReceiveCount."""

    def __init__(self, sqs: Any, source: QueueEventSource, invoke: Callable[[dict[str, Any]], Invocation]) -> None:
        self.sqs = sqs
        self.source = source
        self._invoke = invoke

    def receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.source.batch_size:
            received = self.sqs.receive_message(
                QueueUrl=self.source.queue_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, self.source.batch_size - len(messages)),
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                break
            messages += received
        return messages

    def invoke(self, messages: list[dict[str, Any]]) -> Poll:
        """Invoke the function with received messages; which of them failed (nothing settled yet)."""
        invocation = self._invoke(lambda_sqs_event(messages, self.source.queue_arn))
        failed = failed_message_ids(messages, invocation, self.source.report_batch_item_failures)
        return Poll([message["MessageId"] for message in messages], failed, invocation)

    def deliver(self, messages: list[dict[str, Any]]) -> Poll:
        """Invoke, then settle each message as Lambda does: delete it, or make it visible again."""
        poll = self.invoke(messages)
        for message in messages:
            if message["MessageId"] in poll.failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.source.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=self.source.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return poll

    def poll(self) -> Poll:
        """One batch from the queue to the function (an empty Poll when the queue had none)."""
        messages = self.receive()
        return self.deliver(messages) if messages else Poll([], [])

    def drain(self, max_polls: int = 50) -> list[Poll]:
        """Poll until a receive comes back empty."""
        polls: list[Poll] = []
        for _ in range(max_polls):
            poll = self.poll()
            if not poll.received:
                return polls
            polls.append(poll)
        raise RuntimeError(f"queue {self.source.queue_arn} still not empty after {max_polls} polls")


@dataclass
class QueueStats:
    source: QueueEventSource
    batches: int = 0
    delivered: int = 0  # messages processed and deleted
    failed: int = 0  # message deliveries that failed (each receive counts)
    in_dlq: int = 0


@dataclass(frozen=True)
class _AsyncEvent:
    function_arn: str
    event: dict[str, Any]
    trigger: str


class EventRouter:
    def __init__(self, stack: DeployedStack, functions: LocalFunctions) -> None:
        self.stack = stack
        self.functions = functions
        self.sqs = stack.endpoint.client("sqs")
        self.queue_stats = {source.queue_arn: QueueStats(source) for source in stack.queue_sources}
        self.pollers = [
            SqsPoller(self.sqs, source, self._invoker(source.function, "sqs")) for source in stack.queue_sources
        ]
        self._async_events: queue.Queue[_AsyncEvent] = queue.Queue()

    @contextmanager
    def attached(self) -> Iterator[EventRouter]:
        """Take over moto's Lambda calls while the block runs."""
        from pipeline_cli.twin.moto_compat import (
            route_lambda_invocations,
            route_s3_notifications,
            step_functions_like_aws,
        )

        with ExitStack() as stack:
            stack.enter_context(route_s3_notifications(self._s3_notification))
            stack.enter_context(step_functions_like_aws())
            handlers = {spec.name: self._synchronous_handler(spec.logical_id) for spec in self.stack.functions.values()}
            stack.enter_context(route_lambda_invocations(handlers))
            yield self

    # -- S3 -> Lambda (asynchronous invocation) --------------------------------------------------

    def _s3_notification(self, fn_arn: str, event_body: Any) -> None:
        """Called inside PutObject: queue the event, as S3 hands it to Lambda's async queue."""
        self._async_events.put(_AsyncEvent(fn_arn, event_body, "s3"))

    def _run_async(self, item: _AsyncEvent) -> Invocation:
        spec = self.stack.function_by_name(item.function_arn)
        config = self.stack.async_configs.get(spec.logical_id)
        attempts = 1 + (config.max_retry_attempts if config else 2)
        invocation = self._invoke_with_retries(spec.logical_id, item.event, item.trigger, attempts)
        if invocation.failed and config and config.on_failure_arn:
            self._send_to_destination(config.on_failure_arn, spec.arn, item.event, invocation, attempts)
        return invocation

    def _invoke_with_retries(self, function: str, event: Any, trigger: str, attempts: int) -> Invocation:
        """An event source's retries, without their waits: up to `attempts` invocations."""
        for _ in range(attempts - 1):
            invocation = self.functions.invoke(function, event, trigger)
            if not invocation.failed:
                return invocation
        return self.functions.invoke(function, event, trigger)

    def _send_to_destination(
        self, destination_arn: str, function_arn: str, event: Any, invocation: Invocation, attempts: int
    ) -> None:
        if ":sqs:" not in destination_arn:
            raise NotImplementedError(
                f"on-failure destination {destination_arn}: the local runner delivers to SQS only"
            )
        record = {  # Lambda's destination record for an asynchronous invocation
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": invocation.request_id,
                "functionArn": f"{function_arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": invocation.error,
        }
        self.sqs.send_message(QueueUrl=self._queue_url(destination_arn), MessageBody=json.dumps(record))

    def _queue_url(self, queue_arn: str) -> str:
        url: str = self.sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"]
        return url

    # -- SQS -> Lambda (event source mappings) ---------------------------------------------------

    def _invoker(self, function: str, trigger: str) -> Callable[[Any], Invocation]:
        return lambda event: self.functions.invoke(function, event, trigger)

    def poll(self, poller: SqsPoller) -> int:
        """One batch from the queue to its function; returns how many messages were received."""
        poll = poller.poll()
        if poll.received:
            stats = self.queue_stats[poller.source.queue_arn]
            stats.batches += 1
            stats.failed += len(poll.failed)
            stats.delivered += len(poll.received) - len(poll.failed)
        return len(poll.received)

    # -- schedules and state machines ------------------------------------------------------------

    def fire(self, schedule: Schedule) -> Invocation:
        """Deliver one occurrence of a schedule (EventBridge Scheduler passes Input as the event)."""
        event = json.loads(schedule.input) if schedule.input else {}
        invocation = self._invoke_with_retries(schedule.target_arn, event, "schedule", 1 + schedule.max_retry_attempts)
        if invocation.failed and schedule.dead_letter_arn:
            self.sqs.send_message(
                QueueUrl=self._queue_url(schedule.dead_letter_arn),
                MessageBody=schedule.input,
                MessageAttributes={
                    "ERROR_CODE": {"DataType": "String", "StringValue": "AWS.Scheduler.InvocationError"},
                    "ERROR_MESSAGE": {"DataType": "String", "StringValue": invocation.error_message or ""},
                },
            )
        return invocation

    def _synchronous_handler(self, logical_id: str) -> Any:
        def handle(event: Any, context: Any) -> Any:
            invocation = self.functions.invoke(logical_id, event, "stepfunctions")
            if invocation.exception is not None:
                raise invocation.exception
            return invocation.result

        return handle

    def execute(
        self, state_machine: str, execution_input: dict[str, Any], timeout_seconds: float = 300
    ) -> dict[str, Any]:
        """Start an execution and wait for it, delivering the events it causes meanwhile."""
        stepfunctions = self.stack.endpoint.client("stepfunctions")
        arn = self.stack.state_machines[state_machine]
        execution_arn = stepfunctions.start_execution(
            stateMachineArn=arn, name=f"local-{uuid.uuid4().hex[:12]}", input=json.dumps(execution_input)
        )["executionArn"]
        deadline = time.monotonic() + timeout_seconds
        while True:
            self.drain()
            description: dict[str, Any] = stepfunctions.describe_execution(executionArn=execution_arn)
            if description["status"] != "RUNNING":
                self.drain()
                return description
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still running after {timeout_seconds} s")
            time.sleep(0.05)

    # -- the loop --------------------------------------------------------------------------------

    def step(self) -> int:
        """Deliver what is due now: pending async events, then one batch per queue."""
        work = 0
        while True:
            try:
                item = self._async_events.get_nowait()
            except queue.Empty:
                break
            self._run_async(item)
            work += 1
        for poller in self.pollers:
            work += self.poll(poller)
        return work

    def drain(self, max_steps: int = 10_000) -> None:
        """Deliver until nothing is left to deliver."""
        for _ in range(max_steps):
            if not self.step():
                self._count_dead_letters()
                return
        raise RuntimeError(f"events still flowing after {max_steps} delivery rounds (a delivery loop?)")

    def _count_dead_letters(self) -> None:
        for stats in self.queue_stats.values():
            redrive = self.sqs.get_queue_attributes(QueueUrl=stats.source.queue_url, AttributeNames=["RedrivePolicy"])
            policy = redrive.get("Attributes", {}).get("RedrivePolicy")
            if not policy:
                continue
            dlq_url = self._queue_url(json.loads(policy)["deadLetterTargetArn"])
            attributes = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
            stats.in_dlq = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
