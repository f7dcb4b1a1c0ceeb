"""ThumbnailFunction: S3 ObjectCreated events, or direct re-render requests, -> renditions.

Direct requests (the reprocess and backfill workflows): one image {"bucket", "key", "sizes"?} or a
batch {"images": [...], ...}, described in image_pipeline.rerender. They re-render each object's
current version unless it is already rendered at the spec asked for. An S3 event returns
{"results": [...]}, one per record.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline import snapstart
from image_pipeline.clients import AwsClients
from image_pipeline.config import ThumbnailSettings
from image_pipeline.events import EventPublisher
from image_pipeline.keys import ObjectRef
from image_pipeline.observability import trace_lambda_handler
from image_pipeline.repository import ImagesRepository
from image_pipeline.rerender import RenderRequest, render
from image_pipeline.thumbnailer import Outcome, Result, Thumbnailer, rendition_spec

settings = ThumbnailSettings.from_env()
clients = AwsClients()  # created on first use, reused by warm invocations; tests replace it
logger = Logger()
metrics = Metrics()

S3_REQUEST_ID = 'Records[0].responseElements."x-amz-request-id"'
# The clients build_thumbnailer creates: with SnapStart, their models are parsed before the snapshot.
snapstart.register_hooks(clients, ("s3", "dynamodb", "sns"), rendition_spec(settings))


def build_thumbnailer(aws: AwsClients) -> Thumbnailer:
    return Thumbnailer(
        settings,
        s3=aws.s3,
        repository=ImagesRepository(aws.dynamodb, settings.images_table),
        publisher=EventPublisher(aws.sns, settings.events_topic_arn),
    )


def refs_from_s3_event(event: S3Event) -> list[ObjectRef]:
    return [
        ObjectRef(
            bucket=record.s3.bucket.name,
            key=unquote_plus(record.s3.get_object.key),  # S3 URL-encodes keys, spaces as '+'
            etag=record.s3.get_object.etag,
            sequencer=str(record.s3.get_object.get("sequencer") or ""),
            version_id=record.s3.get_object.version_id,
            size=record.s3.get_object.get("size"),
        )
        for record in event.records
        if record.event_name.startswith("ObjectCreated")
    ]


def _record(result: Result) -> None:
    metrics.add_metric(name=f"Images{result.outcome.value.title()}", unit=MetricUnit.Count, value=1)
    if result.outcome is Outcome.SUCCEEDED:
        metrics.add_metric(name="ProcessingTime", unit=MetricUnit.Milliseconds, value=result.duration_ms)
    log = logger.warning if result.outcome is Outcome.FAILED else logger.info
    log(f"image {result.outcome.value.lower()}", extra=result.to_dict())


@logger.inject_lambda_context(correlation_id_path=S3_REQUEST_ID)
@trace_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    thumbnailer = build_thumbnailer(clients)
    if "Records" not in event:
        # One image whose object is gone raises ImageRejected (the caller hears why); in a batch it
        # is skipped. A batch's transient failures raise TransientError: the workflow retries it.
        return render(thumbnailer, RenderRequest.parse(event), _record)
    results = [thumbnailer.process(ref) for ref in refs_from_s3_event(S3Event(event))]
    for result in results:
        _record(result)
    return {"results": [result.to_dict() for result in results]}
