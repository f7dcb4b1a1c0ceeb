"""The events the pipeline publishes to ImageEventsTopic, and their wire format.

Message body (JSON): {"schema_version", "event_type", "event_id", "occurred_at", "image": {...},
"error": {...}?}. Message attributes `event_type` and `format` let subscribers filter.
`event_id` is derived from the image version, the rendition spec version and the outcome, so
re-publishing the same outcome (a retried Lambda, a duplicate S3 event) yields the same id and
idempotent consumers drop it, while a re-render at a new spec is news they all hear.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from image_pipeline.record import ImageRecord, ImageStatus

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

SCHEMA_VERSION = 1

# Record attributes that describe the image in an event (internal bookkeeping stays out).
_IMAGE_FIELDS = (
    "image_id",
    "bucket",
    "key",
    "status",
    "source_version_id",
    "source_etag",
    "width",
    "height",
    "format",
    "bytes",
    "sha256",
    "rendition_spec",
    "renditions",
    "updated_at",
)


class EventType(StrEnum):
    IMAGE_PROCESSED = "ImageProcessed"
    IMAGE_FAILED = "ImageFailed"


@dataclass(frozen=True)
class ImageEvent:
    event_type: str
    event_id: str
    occurred_at: str
    image: dict[str, Any]
    error: dict[str, Any] | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def to_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "event_type": self.event_type,
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "image": self.image,
        }
        if self.error is not None:
            message["error"] = self.error
        return message

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> ImageEvent:
        """Parse a message body (raises KeyError/TypeError on a malformed one)."""
        return cls(
            event_type=str(message["event_type"]),
            event_id=str(message["event_id"]),
            occurred_at=str(message["occurred_at"]),
            image=dict(message["image"]),
            error=dict(message["error"]) if message.get("error") else None,
        )


def event_for_record(record: ImageRecord) -> ImageEvent:
    """The event describing a record's terminal state (SUCCEEDED or FAILED)."""
    succeeded = record.status is ImageStatus.SUCCEEDED
    event_type = EventType.IMAGE_PROCESSED if succeeded else EventType.IMAGE_FAILED
    item = record.to_dict()
    image = {name: item[name] for name in _IMAGE_FIELDS if name in item}
    rendition_keys = ",".join(rendition.key for rendition in record.renditions)
    version = [record.image_id, record.source.etag, record.source.sequencer]
    if record.rendition_spec is not None:  # absent on items rendered before specs had versions: their ids stay
        version.append(record.rendition_spec)
    identity = "|".join((*version, event_type))
    error = record.error.to_dict() if not succeeded and record.error is not None else None
    image_format = (record.image.format if record.image else "") or "unknown"
    return ImageEvent(
        event_type=event_type.value,
        event_id=hashlib.sha256(f"{identity}|{rendition_keys}".encode()).hexdigest()[:32],
        occurred_at=record.updated_at,
        image=image,
        error=error,
        attributes={"event_type": event_type.value, "format": image_format},
    )


class EventPublisher:
    def __init__(self, sns: SNSClient, topic_arn: str) -> None:
        self._sns = sns
        self.topic_arn = topic_arn

    def publish(self, event: ImageEvent) -> str:
        response = self._sns.publish(
            TopicArn=self.topic_arn,
            Message=json.dumps(event.to_message(), separators=(",", ":"), ensure_ascii=False),
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in event.attributes.items()
            },
        )
        return response["MessageId"]
