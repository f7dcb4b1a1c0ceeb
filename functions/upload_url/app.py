"""UploadUrlFunction: POST /uploads on UploadApi -> a presigned S3 PUT for one image.

Body: {"content_type": "image/jpeg", "size": 123456, "name": "holiday/cat.jpg" (optional)}.
200 with {method: "PUT", url, headers, key, content_type, size, expires_at}; 400 with
{"message": why} for a request that cannot be granted, 409 for a key that exists. The key is in
the caller's own folder, uploads/<caller scope>/. S3 enforces the signed headers when the caller
PUTs the file, and refuses to replace an object (412).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, ServiceError
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from image_pipeline.clients import AwsClients
from image_pipeline.config import UploadUrlSettings
from image_pipeline.observability import trace_lambda_handler
from image_pipeline.uploads import UploadConflict, UploadRequest, UploadRequestError, UploadSigner

settings = UploadUrlSettings.from_env()
clients = AwsClients()  # created on first use, reused by warm invocations; tests replace it
logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver()


@app.post("/uploads")
def create_upload() -> dict[str, Any]:
    # Who asked (IAM-authorised route): the caller's own folder, and in the logs, who owns each key.
    caller = app.current_event.request_context.authorizer.iam.user_arn or ""
    logger.append_keys(caller=caller or None)
    try:
        request = UploadRequest.from_body(app.current_event.decoded_body)
        upload = UploadSigner(clients.s3_presigner, settings).presign(request, caller)
    except UploadRequestError as error:
        metrics.add_metric(name="UploadRequestsRejected", unit=MetricUnit.Count, value=1)
        logger.info("upload request rejected", extra={"reason": str(error)})
        if isinstance(error, UploadConflict):
            raise ServiceError(HTTPStatus.CONFLICT, str(error)) from error
        raise BadRequestError(str(error)) from error
    metrics.add_metric(name="UploadUrlsIssued", unit=MetricUnit.Count, value=1)
    logger.info("presigned upload issued", extra={"key": upload.key, "size": upload.size})
    return upload.to_dict()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@trace_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
