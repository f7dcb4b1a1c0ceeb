"""ReprocessStepsFunction: the code steps of BackfillStateMachine's reprocess source.

{"action": "select", "request": {"status": "FAILED"} | {"prefix": "..."} | {"objects": [...]},
 "sizes"?: [...], "listed_before": "<execution start>", "run": "<execution name>"}
 -> every selected image written as a JSON array to s3://<results bucket>/backfill/selected/<run>.json
    (the Distributed Map's ItemReader): {"bucket", "key", "images": n, "sizes": [...] | null}
{"action": "tally", "results": {"Bucket", "Key"} (the Map's ResultWriterDetails)}
 -> {"counts": {"rendered", "current", "failed", "skipped", "errors"}, "unrecorded": n}
    (unrecorded: images of batches that failed without their failure being recorded)
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.clients import AwsClients
from image_pipeline.config import ReprocessSettings
from image_pipeline.observability import trace_lambda_handler
from image_pipeline.repository import ImagesRepository
from image_pipeline.reprocess import REPROCESS_COUNTS, InvalidRequest, ReprocessRequest, select_images
from image_pipeline.run_results import read_results

settings = ReprocessSettings.from_env()
clients = AwsClients()  # created on first use, reused by warm invocations; tests replace it
logger = Logger()


@logger.inject_lambda_context(clear_state=True)
@trace_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    if action == "select":
        request = ReprocessRequest.parse(event.get("request") or {})
        images = select_images(
            ImagesRepository(clients.dynamodb, settings.images_table),
            request,
            listed_before=str(event["listed_before"]),
            page_size=settings.page_size,
        )
        key = f"backfill/selected/{event['run']}.json"
        clients.s3.put_object(
            Bucket=settings.results_bucket, Key=key, Body=json.dumps(images).encode(), ContentType="application/json"
        )
        logger.info("selected images", extra={"images": len(images), "manifest": key})
        sizes = list(request.sizes) if request.sizes else None
        return {"bucket": settings.results_bucket, "key": key, "images": len(images), "sizes": sizes}
    if action == "tally":
        results = read_results(
            lambda bucket, key: clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read(),
            event.get("results"),
            REPROCESS_COUNTS,
        )
        return {"counts": results.counts, "unrecorded": results.images_in_failed_batches}
    raise InvalidRequest(f"unknown action {action!r}: expected select or tally")
