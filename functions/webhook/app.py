"""WebhookFunction: SQS batches of image events -> one signed POST per event to WEBHOOK_URL.

Each event is delivered once per event_id (Powertools idempotency, IdempotencyTable); a
non-2xx answer or a missed deadline fails that record only (ReportBatchItemFailures), whose
retry is delayed with exponential backoff (ChangeMessageVisibility); after maxReceiveCount
receives SQS moves it to WebhookDeadLetterQueue.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.clients import AwsClients
from image_pipeline.config import WebhookSettings
from image_pipeline.observability import trace_lambda_handler
from image_pipeline.subscriber import (
    BackoffBatchProcessor,
    idempotency_config,
    idempotency_store,
    parse_delivered_event,
)
from image_pipeline.webhook import WebhookConsumer, WebhookSender, mark_duplicate

settings = WebhookSettings.from_env()
clients = AwsClients()  # created on first use, reused by warm invocations; tests replace it
logger = Logger()
metrics = Metrics()
processor = BackoffBatchProcessor(
    sqs=lambda: clients.sqs,
    backoff=lambda: settings.backoff,
    logger=logger,
)


@cache
def consumer_for(aws: AwsClients) -> WebhookConsumer:
    """One per container: the secrets provider caches the signing secret between invocations."""
    secrets = SecretsProvider(boto3_client=aws.secretsmanager)

    def signing_secret() -> str:
        return str(secrets.get(settings.secret_id, max_age=settings.secret_max_age_seconds))

    sender = WebhookSender(settings.url, signing_secret, timeout_seconds=settings.timeout_seconds)
    store = idempotency_store(aws.dynamodb, settings.idempotency)
    return WebhookConsumer(sender, store, idempotency_config(settings.idempotency, response_hook=mark_duplicate))


def deliver_record(record: SQSRecord) -> dict[str, Any]:
    logger.append_keys(message_id=record.message_id)
    delivered = parse_delivered_event(record.body)
    logger.append_keys(event_id=delivered.event_id)
    result = consumer_for(clients).deliver(delivered)
    metrics.add_metric(
        name="WebhookDuplicatesSkipped" if result["duplicate"] else "WebhookDelivered", unit=MetricUnit.Count, value=1
    )
    return result


@logger.inject_lambda_context(clear_state=True)
@trace_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    consumer_for(clients).config.register_lambda_context(context)
    try:
        return process_partial_response(
            event=event, record_handler=deliver_record, processor=processor, context=context
        )  # type: ignore[return-value]  # a TypedDict of batchItemFailures
    finally:
        metrics.add_metric(name="WebhookDeliveryFailures", unit=MetricUnit.Count, value=len(processor.fail_messages))
