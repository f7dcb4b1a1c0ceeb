"""ReprocessStepsFunction: the reprocess workflow's code steps (the state machine calls it).

{"action": "list", "request": {"status": "FAILED"} | {"prefix": "..."}, "sizes"?: [...],
 "listed_before": "<execution start>", "next_token": null | "..."} -> {"images": [...], "next_token": ...}
{"action": "tally", "counts": {...}, "results": [Map results]} -> {"succeeded": n, "failed": n, ...}
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.clients import AwsClients
from image_pipeline.config import ReprocessSettings
from image_pipeline.observability import trace_lambda_handler
from image_pipeline.repository import ImagesRepository
from image_pipeline.reprocess import InvalidRequest, ReprocessRequest, list_images, tally

settings = ReprocessSettings.from_env()
clients = AwsClients()  # created on first use, reused by warm invocations; tests replace it
logger = Logger()


@logger.inject_lambda_context(clear_state=True)
@trace_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    if action == "list":
        page = list_images(
            ImagesRepository(clients.dynamodb, settings.images_table),
            ReprocessRequest.parse(event.get("request") or {}),
            listed_before=str(event["listed_before"]),
            next_token=event.get("next_token"),
            page_size=settings.page_size,
        )
        logger.info("listed images", extra={"images": len(page["images"]), "more": bool(page["next_token"])})
        return page
    if action == "tally":
        return tally(event.get("counts") or {}, event.get("results") or [])
    raise InvalidRequest(f"unknown action {action!r}: expected list or tally")
