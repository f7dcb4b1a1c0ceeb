"""AuditFunction: SQS batches of image events -> one JSON-lines object per batch and day in ArchiveBucket.

Records are staged one by one (a malformed or concurrently held event fails only its own
record), then the batch is written once. Each event is claimed in IdempotencyTable before the
write and completed after it, so a redelivered event is not archived twice; if the write fails
every claim is released and the invocation fails, so SQS retries the whole batch.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.archive import IDEMPOTENCY_KEY_PREFIX, ArchiveBatch
from image_pipeline.clients import AwsClients
from image_pipeline.config import AuditSettings
from image_pipeline.observability import trace_lambda_handler
from image_pipeline.subscriber import EventClaims, idempotency_config, idempotency_store, parse_delivered_event

settings = AuditSettings.from_env()
clients = AwsClients()  # created on first use, reused by warm invocations; tests replace it
logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, logger=logger)  # type: ignore[arg-type]  # a logging.Logger twin


@cache
def claims_for(aws: AwsClients) -> EventClaims:
    store = idempotency_store(aws.dynamodb, settings.idempotency)
    return EventClaims(store, idempotency_config(settings.idempotency), IDEMPOTENCY_KEY_PREFIX)


@logger.inject_lambda_context(clear_state=True)
@trace_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch = ArchiveBatch(
        clients.s3,
        settings.archive_bucket,
        settings.archive_prefix,
        claims_for(clients),
        context.get_remaining_time_in_millis,
    )

    def stage_record(record: SQSRecord) -> bool:
        logger.append_keys(message_id=record.message_id)
        return batch.stage(parse_delivered_event(record.body))

    try:
        response = process_partial_response(
            event=event, record_handler=stage_record, processor=processor, context=context
        )
        objects = batch.flush()  # raises after releasing its claims: the whole batch is retried
    finally:
        metrics.add_metric(name="ArchiveRecordFailures", unit=MetricUnit.Count, value=len(processor.fail_messages))
        logger.remove_keys(["message_id"])
    archived = sum(len(archive_object.event_ids) for archive_object in objects)
    metrics.add_metric(name="EventsArchived", unit=MetricUnit.Count, value=archived)
    metrics.add_metric(name="ArchiveObjectsWritten", unit=MetricUnit.Count, value=len(objects))
    logger.info("batch archived", extra={"objects": [o.key for o in objects], "events": archived})
    return response  # type: ignore[return-value]  # a TypedDict of batchItemFailures
