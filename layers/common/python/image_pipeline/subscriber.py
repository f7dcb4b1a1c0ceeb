"""What every consumer of ImageEventsTopic shares: reading a delivered message, and idempotency.

Subscriptions use raw message delivery, so an SQS message body is exactly the JSON the
thumbnailer published (image_pipeline.events). Its `event_id` is deterministic per outcome,
so it is THE idempotency key: records live in IdempotencyTable (Powertools' DynamoDB
persistence layer, partition key "id", TTL attribute "expiration"), one key prefix per consumer.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import STATUS_CONSTANTS
from botocore.exceptions import BotoCoreError, ClientError

from image_pipeline.backoff import Backoff, queue_url_from_arn
from image_pipeline.events import ImageEvent

if TYPE_CHECKING:
    from collections.abc import Callable

    from aws_lambda_powertools.utilities.batch.base import FailureResponse
    from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo
    from aws_lambda_powertools.utilities.idempotency.hook import IdempotentHookFunction
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

    from image_pipeline.config import IdempotencySettings

EVENT_KEY_PATH = "event_id"
logger = Logger(child=True)


class MalformedEventError(ValueError):
    """The message body is not an image event; it can never succeed (it ends in the DLQ)."""


@dataclass(frozen=True)
class DeliveredEvent:
    """One event as a subscriber received it: the exact body text and its parsed form."""

    body: str
    message: dict[str, Any]
    event: ImageEvent

    @property
    def event_id(self) -> str:
        return self.event.event_id


def parse_delivered_event(body: str) -> DeliveredEvent:
    """Parse a raw-delivered message body; MalformedEventError says what is wrong with it."""
    try:
        message = json.loads(body)
    except ValueError as error:
        raise MalformedEventError(f"body is not JSON: {error}") from None
    if not isinstance(message, dict):
        raise MalformedEventError(f"body is a JSON {type(message).__name__}, not an object")
    try:
        event = ImageEvent.from_message(message)
    except (KeyError, TypeError, ValueError) as error:
        raise MalformedEventError(f"body is not an image event: missing or invalid {error}") from None
    if not event.event_id:
        raise MalformedEventError("event_id is empty")
    return DeliveredEvent(body=body, message=message, event=event)


def idempotency_config(
    settings: IdempotencySettings, *, response_hook: IdempotentHookFunction | None = None
) -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath=EVENT_KEY_PATH,
        raise_on_no_idempotency_key=True,
        expires_after_seconds=settings.ttl_seconds,
        response_hook=response_hook,
    )


def idempotency_store(dynamodb: DynamoDBClient, settings: IdempotencySettings) -> DynamoDBPersistenceLayer:
    # Attribute names are Powertools' defaults ("id", "expiration"), matching IdempotencyTable.
    return DynamoDBPersistenceLayer(table_name=settings.table, boto3_client=dynamodb)


class EventInProgressError(Exception):
    """Another invocation holds this event right now; retry the message later."""


class EventClaims:
    """Powertools idempotency records for a consumer that completes many events in one write.

    `idempotent_function` wraps one call per event; the audit consumer instead claims each
    event (an INPROGRESS record), writes them all in one object, then completes every claim,
    or releases them all if the write failed. A crash in between leaves INPROGRESS records
    that expire with the invocation's remaining time, so the redelivered messages are claimed
    again: at-least-once, never lost.
    """

    def __init__(self, store: DynamoDBPersistenceLayer, config: IdempotencyConfig, key_prefix: str) -> None:
        store.configure(config, key_prefix=key_prefix)
        self._store = store

    def claim(self, message: dict[str, Any], remaining_time_in_millis: int) -> bool:
        """True: this caller owns the event now. False: it was completed before (a duplicate)."""
        try:
            self._store.save_inprogress(data=message, remaining_time_in_millis=remaining_time_in_millis)
        except IdempotencyItemAlreadyExistsError as exists:
            try:
                record = exists.old_data_record or self._store.get_record(data=message)
            except IdempotencyItemNotFoundError:
                record = None
            if record is None:  # deleted between the put and the get: another attempt just failed
                raise EventInProgressError(f"event {message.get(EVENT_KEY_PATH)} changed state; retry") from None
            if record.status == STATUS_CONSTANTS["COMPLETED"]:
                return False
            raise EventInProgressError(
                f"event {message.get(EVENT_KEY_PATH)} is {record.status} in another invocation"
            ) from None
        return True

    def complete(self, message: dict[str, Any], result: dict[str, Any]) -> None:
        self._store.save_success(data=message, result=result)

    def release(self, message: dict[str, Any], error: Exception) -> None:
        self._store.delete_record(data=message, exception=error)


class BackoffBatchProcessor(BatchProcessor):
    """Powertools' SQS partial batch processor that also delays each failed record's retry."""

    def __init__(
        self,
        sqs: Callable[[], SQSClient],
        backoff: Callable[[], Backoff],
        jitter: Callable[[float, float], float] = random.uniform,
        **kwargs: Any,
    ) -> None:
        super().__init__(event_type=EventType.SQS, **kwargs)
        self._sqs = sqs  # callables: clients and settings are created on first use
        self._backoff = backoff
        self.jitter = jitter

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> FailureResponse:
        response = super().failure_handler(record, exception)
        if record is not None:
            self._delay(
                record.event_source_arn, record.receipt_handle, int(record.attributes.approximate_receive_count)
            )
        return response

    def _delay(self, queue_arn: str, receipt_handle: str, receive_count: int) -> None:
        delay = self._backoff().delay_seconds(receive_count, self.jitter)
        try:
            self._sqs().change_message_visibility(
                QueueUrl=queue_url_from_arn(queue_arn), ReceiptHandle=receipt_handle, VisibilityTimeout=delay
            )
        except (ClientError, BotoCoreError) as error:
            # The record is still reported failed: SQS retries it after the queue's own timeout.
            logger.warning(
                "retry delay not set; the queue's visibility timeout applies",
                extra={"receive_count": receive_count, "delay_seconds": delay, "error": str(error)},
            )
