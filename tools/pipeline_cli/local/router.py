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
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from pipeline_cli.local.deploy import DeployedStack, QueueEventSource, Schedule
from pipeline_cli.local.lambda_events import lambda_sqs_event
from pipeline_cli.local.runtime import Invocation, LocalFunctions

SQS_RECEIVE_LIMIT = 10  # messages per ReceiveMessage call


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
        self._async_events: queue.Queue[_AsyncEvent] = queue.Queue()

    @contextmanager
    def attached(self) -> Iterator[EventRouter]:
        """Take over moto's Lambda calls while the block runs."""
        from pipeline_cli.lambda_router import route_lambda_invocations
        from pipeline_cli.moto_compat import step_functions_like_aws

        with ExitStack() as stack:
            stack.enter_context(mock.patch("moto.s3.notifications._invoke_awslambda", self._s3_notification))
            stack.enter_context(step_functions_like_aws())
            handlers = {spec.name: self._synchronous_handler(spec.logical_id) for spec in self.stack.functions.values()}
            stack.enter_context(route_lambda_invocations(handlers))
            yield self

    # -- S3 -> Lambda (asynchronous invocation) --------------------------------------------------

    def _s3_notification(self, account_id: str, event_body: Any, fn_arn: str, region_name: str) -> None:
        """Called by moto inside PutObject: queue the event, as S3 hands it to Lambda's async queue."""
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
            "responsePayload": invocation.error_payload,
        }
        self.sqs.send_message(QueueUrl=self._queue_url(destination_arn), MessageBody=json.dumps(record))

    def _queue_url(self, queue_arn: str) -> str:
        url: str = self.sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"]
        return url

    # -- SQS -> Lambda (event source mappings) ---------------------------------------------------

    def poll(self, source: QueueEventSource) -> int:
        """One batch from the queue to its function; returns how many messages were received."""
        messages: list[dict[str, Any]] = []
        while len(messages) < source.batch_size:
            received = self.sqs.receive_message(
                QueueUrl=source.queue_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, source.batch_size - len(messages)),
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                break
            messages += received
        if not messages:
            return 0
        stats = self.queue_stats[source.queue_arn]
        stats.batches += 1
        invocation = self.functions.invoke(source.function, lambda_sqs_event(messages, source.queue_arn), "sqs")
        failed_ids = self._failed_message_ids(source, messages, invocation)
        for message in messages:
            if message["MessageId"] in failed_ids:
                stats.failed += 1
                # Fast-forward the visibility timeout: the message is due for its next receive.
                self.sqs.change_message_visibility(
                    QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                stats.delivered += 1
                self.sqs.delete_message(QueueUrl=source.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    @staticmethod
    def _failed_message_ids(
        source: QueueEventSource, messages: list[dict[str, Any]], invocation: Invocation
    ) -> set[str]:
        every_id = {message["MessageId"] for message in messages}
        if invocation.failed:
            return every_id
        if not source.report_batch_item_failures or not isinstance(invocation.result, dict):
            return set()
        failures = invocation.result.get("batchItemFailures") or []
        reported = {str(failure.get("itemIdentifier", "")) for failure in failures}
        # Lambda treats an empty or unknown identifier as a failure of the whole batch.
        return every_id if not reported <= every_id else reported

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
        """Start an execution and wait for it, delivering the events it causes meanwhile.

        A run that continues as a new execution (past ReprocessPagesPerExecution pages) returns
        when the first one ends; the continuation goes on in moto's executor.
        """
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
        for source in self.stack.queue_sources:
            work += self.poll(source)
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
