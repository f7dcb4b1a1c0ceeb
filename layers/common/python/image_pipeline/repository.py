"""ImagesTable: one item per image (per bucket/key), written with conditions.

Every write is conditional on the S3 sequencer / etag of the version being processed, so
duplicate, concurrent and out-of-order events can never make the item regress to an older
version, and SUCCEEDED is only written by the attempt that owns the newest version.

Item: image_id, bucket, key, status (PROCESSING|SUCCEEDED|FAILED), created_at, updated_at,
source_etag, source_version_id, source_sequencer, attempts, and once done: width, height,
format, bytes, sha256, renditions [{size,width,height,key,bytes,content_type}], or error
{reason, detail}. Index "by-status" (status, updated_at) serves cleanup and reprocess.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from image_pipeline.keys import ObjectRef, normalize_sequencer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

STATUS_INDEX = "by-status"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class ImageStatus(StrEnum):
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # this attempt owns the version: go ahead
    DUPLICATE = "duplicate"  # this exact version is already SUCCEEDED/FAILED
    STALE = "stale"  # the item already reflects a newer version


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    previous: dict[str, Any] | None  # the item before this claim (or as found, when not claimed)


def to_attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _serializer.serialize(value) for name, value in values.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; every number we store is an integer."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "as_integer_ratio") and not isinstance(value, bool | int | float):
        return int(value)
    return value


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class ImagesRepository:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._dynamodb = dynamodb
        self.table_name = table_name

    def get(self, image_id: str) -> dict[str, Any] | None:
        response = self._dynamodb.get_item(
            TableName=self.table_name, Key=to_attributes({"image_id": image_id}), ConsistentRead=True
        )
        item = response.get("Item")
        return from_item(item) if item else None

    def claim(self, ref: ObjectRef, now: str, *, force: bool = False) -> Claim:
        """Mark the version PROCESSING if it is newer than what the item holds.

        A repeat of the same version while PROCESSING is allowed (Lambda's retry of a crashed
        attempt). `force` (reprocess) re-runs the version the item already holds, whatever its status.
        """
        sequencer = normalize_sequencer(ref.sequencer)
        values: dict[str, Any] = {
            ":processing": ImageStatus.PROCESSING.value,
            ":bucket": ref.bucket,
            ":key": ref.key,
            ":etag": ref.etag,
            ":now": now,
            ":zero": 0,
            ":one": 1,
        }
        set_clauses = [
            "#status = :processing",
            "#bucket = :bucket",
            "#key = :key",
            "source_etag = :etag",
            "updated_at = :now",
            "created_at = if_not_exists(created_at, :now)",
            "attempts = if_not_exists(attempts, :zero) + :one",
        ]
        if ref.version_id:
            values[":version"] = ref.version_id
            set_clauses.append("source_version_id = :version")
        if force:
            # A reprocess request has no sequencer: keep the recorded one as the ordering guard.
            condition = "attribute_not_exists(image_id) OR source_etag = :etag"
            set_clauses.append("source_sequencer = if_not_exists(source_sequencer, :seq)")
            values[":seq"] = sequencer
        else:
            values[":seq"] = sequencer
            set_clauses.append("source_sequencer = :seq")
            condition = (
                "attribute_not_exists(image_id) OR source_sequencer < :seq"
                " OR (source_sequencer = :seq AND #status = :processing)"
            )
        try:
            response = self._dynamodb.update_item(
                TableName=self.table_name,
                Key=to_attributes({"image_id": ref.image_id}),
                UpdateExpression="SET " + ", ".join(set_clauses) + " REMOVE #error",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status", "#bucket": "bucket", "#key": "key", "#error": "error"},
                ExpressionAttributeValues=to_attributes(values),
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_condition_failure(error):
                raise
            found_raw: Mapping[str, Any] | None = error.response.get("Item")  # type: ignore[assignment]
            found = from_item(found_raw) if found_raw else self.get(ref.image_id)
            same_version = found is not None and found.get("source_sequencer") == sequencer
            if force or not same_version:
                return Claim(ClaimOutcome.STALE, found)
            return Claim(ClaimOutcome.DUPLICATE, found)
        old = response.get("Attributes")
        return Claim(ClaimOutcome.CLAIMED, from_item(old) if old else None)

    def mark_succeeded(
        self, ref: ObjectRef, now: str, details: Mapping[str, Any], renditions: Sequence[Mapping[str, Any]]
    ) -> dict[str, Any] | None:
        """Record success if this attempt still owns the version; None if a newer one took over."""
        fields = {**details, "renditions": list(renditions)}
        return self._finish(ref, ImageStatus.SUCCEEDED, now, fields, clear_error=True)

    def mark_failed(self, ref: ObjectRef, now: str, reason: str, detail: str) -> dict[str, Any] | None:
        """Record a permanent failure (with its reason); None if a newer version took over."""
        return self._finish(ref, ImageStatus.FAILED, now, {"error": {"reason": reason, "detail": detail}})

    def _finish(
        self,
        ref: ObjectRef,
        status: ImageStatus,
        now: str,
        fields: Mapping[str, Any],
        *,
        clear_error: bool = False,
    ) -> dict[str, Any] | None:
        names = {"#status": "status"}
        values: dict[str, Any] = {":status": status.value, ":now": now, ":etag": ref.etag}
        set_clauses = ["#status = :status", "updated_at = :now"]
        for index, (name, value) in enumerate(fields.items()):
            names[f"#f{index}"] = name
            values[f":f{index}"] = value
            set_clauses.append(f"#f{index} = :f{index}")
        expression = "SET " + ", ".join(set_clauses)
        if clear_error:
            names["#error"] = "error"
            expression += " REMOVE #error"
        condition = "source_etag = :etag"
        if ref.sequencer:
            values[":seq"] = normalize_sequencer(ref.sequencer)
            condition += " AND source_sequencer = :seq"
        try:
            response = self._dynamodb.update_item(
                TableName=self.table_name,
                Key=to_attributes({"image_id": ref.image_id}),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_attributes(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return None
            raise
        return from_item(response["Attributes"])

    def by_status(self, status: ImageStatus, *, updated_before: str | None = None) -> Iterator[dict[str, Any]]:
        """Items with a status, oldest first (paginated query on the by-status index)."""
        condition = "#status = :status"
        values: dict[str, Any] = {":status": status.value}
        if updated_before is not None:
            condition += " AND updated_at < :before"
            values[":before"] = updated_before
        paginator = self._dynamodb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table_name,
            IndexName=STATUS_INDEX,
            KeyConditionExpression=condition,
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_attributes(values),
        ):
            for item in page.get("Items", []):
                yield from_item(item)

    def scan_page(
        self, start_key: Mapping[str, Any] | None, limit: int
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Up to `limit` items from where the previous page stopped, and where the next starts."""
        request: dict[str, Any] = {"TableName": self.table_name, "Limit": limit}
        if start_key:
            request["ExclusiveStartKey"] = start_key
        response = self._dynamodb.scan(**request)
        return [from_item(item) for item in response.get("Items", [])], response.get("LastEvaluatedKey")

    def mark_timed_out(self, item: Mapping[str, Any], now: str, detail: str) -> bool:
        """FAILED with reason "timed out", if the item is still in the PROCESSING state we saw."""
        try:
            self._dynamodb.update_item(
                TableName=self.table_name,
                Key=to_attributes({"image_id": item["image_id"]}),
                UpdateExpression="SET #status = :failed, updated_at = :now, #error = :error",
                ConditionExpression="#status = :processing AND updated_at = :seen",
                ExpressionAttributeNames={"#status": "status", "#error": "error"},
                ExpressionAttributeValues=to_attributes(
                    {
                        ":failed": ImageStatus.FAILED.value,
                        ":processing": ImageStatus.PROCESSING.value,
                        ":seen": item["updated_at"],
                        ":now": now,
                        ":error": {"reason": "timed out", "detail": detail},
                    }
                ),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False  # it moved on meanwhile (finished, or a new version claimed it)
            raise
        return True

    def delete(self, item: Mapping[str, Any]) -> bool:
        """Delete the item if it still describes the version we saw (no new upload meanwhile)."""
        try:
            self._dynamodb.delete_item(
                TableName=self.table_name,
                Key=to_attributes({"image_id": item["image_id"]}),
                ConditionExpression="source_etag = :etag",
                ExpressionAttributeValues=to_attributes({":etag": item["source_etag"]}),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True
