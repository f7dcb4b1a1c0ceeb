"""ImagesTable: one ImageRecord per image (per bucket/key), written with conditions.

Every write is conditional on the S3 sequencer / etag of the version being processed, so
duplicate, concurrent and out-of-order events can never make the item regress to an older
version, and SUCCEEDED is only written by the attempt that owns the newest version. The
item's attributes are described in image_pipeline.record. Index "by-status" (status,
updated_at) serves cleanup and reprocess. Every read and write of the table goes through here.
Renditions of several sizes may share one key (one object for byte-identical renditions): the
record's rendition_keys are the objects, its renditions the sizes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from image_pipeline.keys import ObjectRef, normalize_sequencer
from image_pipeline.record import (
    FailureReason,
    ImageRecord,
    ImageStatus,
    SourceImage,
    StoredRendition,
    to_attributes,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

STATUS_INDEX = "by-status"
TIMED_OUT = "timed out"  # the failure reason the cleanup records on a stuck item


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # this attempt owns the version: go ahead
    DUPLICATE = "duplicate"  # this exact version is already SUCCEEDED/FAILED
    STALE = "stale"  # the item already reflects a newer version
    CURRENT = "current"  # a re-render request, and this version is already rendered at the spec asked for


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    previous: ImageRecord | None  # the item before this claim (or as found, when not claimed)


@dataclass(frozen=True)
class Page:
    """One page of a query or scan, and where the next one starts (None: this was the last)."""

    records: list[ImageRecord]
    next_key: dict[str, Any] | None


def _is_condition_failure(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


class ImagesRepository:
    def __init__(self, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._dynamodb = dynamodb
        self.table_name = table_name

    def get(self, image_id: str) -> ImageRecord | None:
        response = self._dynamodb.get_item(
            TableName=self.table_name, Key=to_attributes({"image_id": image_id}), ConsistentRead=True
        )
        item = response.get("Item")
        return ImageRecord.from_item(item) if item else None

    def claim(self, ref: ObjectRef, now: str, *, force: bool = False, spec_version: str | None = None) -> Claim:
        """Mark the version PROCESSING if it is newer than what the item holds.

        A repeat of the same version while PROCESSING is allowed (Lambda's retry of a crashed
        attempt). `force` (reprocess, backfill) re-runs the version the item already holds, whatever
        its status, unless it SUCCEEDED at `spec_version` already (CURRENT: nothing to re-render).
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
            condition = "(attribute_not_exists(image_id) OR source_etag = :etag)"
            set_clauses.append("source_sequencer = if_not_exists(source_sequencer, :seq)")
            values[":seq"] = sequencer
            if spec_version is not None:
                condition += " AND NOT (#status = :succeeded AND rendition_spec = :spec)"
                values.update({":succeeded": ImageStatus.SUCCEEDED.value, ":spec": spec_version})
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
            found = ImageRecord.from_item(found_raw) if found_raw else self.get(ref.image_id)
            same_version = found is not None and found.source.sequencer == sequencer
            if force and found is not None and found.source.etag == ref.etag:
                return Claim(ClaimOutcome.CURRENT, found)
            if force or not same_version:
                return Claim(ClaimOutcome.STALE, found)
            return Claim(ClaimOutcome.DUPLICATE, found)
        old = response.get("Attributes")
        return Claim(ClaimOutcome.CLAIMED, ImageRecord.from_item(old) if old else None)

    def mark_succeeded(
        self,
        ref: ObjectRef,
        now: str,
        image: SourceImage,
        renditions: Sequence[StoredRendition],
        spec_version: str,
    ) -> ImageRecord | None:
        """Record success if this attempt still owns the version; None if a newer one took over."""
        fields = {
            **image.to_dict(),
            "renditions": [rendition.to_dict() for rendition in renditions],
            "rendition_spec": spec_version,
        }
        return self._finish(ref, ImageStatus.SUCCEEDED, now, fields, clear_error=True)

    def mark_failed(self, ref: ObjectRef, now: str, reason: str, detail: str) -> ImageRecord | None:
        """Record a permanent failure (with its reason); None if a newer version took over."""
        return self._finish(ref, ImageStatus.FAILED, now, {"error": FailureReason(reason, detail).to_dict()})

    def _finish(
        self,
        ref: ObjectRef,
        status: ImageStatus,
        now: str,
        fields: Mapping[str, Any],
        *,
        clear_error: bool = False,
    ) -> ImageRecord | None:
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
        return ImageRecord.from_item(response["Attributes"])

    def status_page(
        self, status: ImageStatus, *, updated_before: str, start_key: Mapping[str, Any] | None, limit: int
    ) -> Page:
        """Up to `limit` items with a status, last updated before a moment, oldest first."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#status = :status AND updated_at < :before",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_attributes({":status": status.value, ":before": updated_before}),
            "Limit": limit,
        }
        if start_key:
            request["ExclusiveStartKey"] = start_key
        response = self._dynamodb.query(**request)
        return self._page(response.get("Items", []), response.get("LastEvaluatedKey"))

    def scan_page(self, start_key: Mapping[str, Any] | None, limit: int, *, key_prefix: str | None = None) -> Page:
        """Up to `limit` items from where the previous page stopped (whose key starts with
        `key_prefix`, if given: a filter applies after the limit, so a page may be empty)."""
        request: dict[str, Any] = {"TableName": self.table_name, "Limit": limit}
        if key_prefix is not None:
            request["FilterExpression"] = "begins_with(#key, :prefix)"
            request["ExpressionAttributeNames"] = {"#key": "key"}
            request["ExpressionAttributeValues"] = to_attributes({":prefix": key_prefix})
        if start_key:
            request["ExclusiveStartKey"] = start_key
        response = self._dynamodb.scan(**request)
        return self._page(response.get("Items", []), response.get("LastEvaluatedKey"))

    def scan(self, page_size: int = 100) -> Iterator[ImageRecord]:
        """Every item (reports and tools; the cleanup pages with a cursor it saves instead)."""
        page = self.scan_page(None, page_size)
        yield from page.records
        while page.next_key is not None:
            page = self.scan_page(page.next_key, page_size)
            yield from page.records

    @staticmethod
    def _page(items: Sequence[Mapping[str, Any]], next_key: Mapping[str, Any] | None) -> Page:
        return Page([ImageRecord.from_item(item) for item in items], dict(next_key) if next_key else None)

    def mark_timed_out(self, record: ImageRecord, now: str, detail: str) -> bool:
        """FAILED with reason "timed out", if the item is still in the PROCESSING state we saw."""
        try:
            self._dynamodb.update_item(
                TableName=self.table_name,
                Key=to_attributes({"image_id": record.image_id}),
                UpdateExpression="SET #status = :failed, updated_at = :now, #error = :error",
                ConditionExpression="#status = :processing AND updated_at = :seen",
                ExpressionAttributeNames={"#status": "status", "#error": "error"},
                ExpressionAttributeValues=to_attributes(
                    {
                        ":failed": ImageStatus.FAILED.value,
                        ":processing": ImageStatus.PROCESSING.value,
                        ":seen": record.updated_at,
                        ":now": now,
                        ":error": FailureReason(TIMED_OUT, detail).to_dict(),
                    }
                ),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False  # it moved on meanwhile (finished, or a new version claimed it)
            raise
        return True

    def delete(self, record: ImageRecord) -> bool:
        """Delete the item if it still describes the version we saw (no new upload meanwhile)."""
        try:
            self._dynamodb.delete_item(
                TableName=self.table_name,
                Key=to_attributes({"image_id": record.image_id}),
                ConditionExpression="source_etag = :etag",
                ExpressionAttributeValues=to_attributes({":etag": record.source.etag}),
            )
        except ClientError as error:
            if _is_condition_failure(error):
                return False
            raise
        return True
